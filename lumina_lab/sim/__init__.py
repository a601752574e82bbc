"""The routing lab: learned quality-aware routers and their RouteLLM-style evaluation.

>>> from lumina_lab.sim import LogisticRouter, evaluate
"""

from __future__ import annotations

from .learned import (
    DEFAULT_PRICES,
    EnsembleRouter,
    KNNRouter,
    LearnedRouter,
    LearnedThreshold,
    LogisticRouter,
    RandomRouter,
    evaluate,
    load_correctness,
    oracle_scores,
    prompt_costs,
)

__all__ = [
    "DEFAULT_PRICES",
    "EnsembleRouter",
    "KNNRouter",
    "LearnedRouter",
    "LearnedThreshold",
    "LogisticRouter",
    "RandomRouter",
    "evaluate",
    "load_correctness",
    "oracle_scores",
    "prompt_costs",
]
