"""The routing lab: workloads, discrete-event replay through the live router, learned quality-aware routers.

>>> from lumina_lab.sim import RoutingLab, poisson, RidgeRouter, evaluate
"""

from __future__ import annotations

from .bandit_eval import PromptClusters, evaluate_bandit
from .engine import Degradation, Outage, RoutingLab, SimResult
from .learned import (
    DEFAULT_PRICES,
    EnsembleRouter,
    KNNRouter,
    LearnedRouter,
    LearnedThreshold,
    LogisticRouter,
    RandomRouter,
    RidgeRouter,
    evaluate,
    load_correctness,
    oracle_scores,
    prompt_costs,
    text_statistics,
)
from .shipped import shipped_workload, shipped_workloads
from .sweep import grid, sweep
from .traffic import workload_from_store
from .workloads import Task, Workload, bursty, diurnal, poisson, read_workload

__all__ = [
    "DEFAULT_PRICES",
    "Degradation",
    "EnsembleRouter",
    "KNNRouter",
    "LearnedRouter",
    "LearnedThreshold",
    "LogisticRouter",
    "Outage",
    "PromptClusters",
    "RandomRouter",
    "RidgeRouter",
    "RoutingLab",
    "SimResult",
    "Task",
    "Workload",
    "bursty",
    "diurnal",
    "evaluate",
    "evaluate_bandit",
    "grid",
    "load_correctness",
    "oracle_scores",
    "poisson",
    "prompt_costs",
    "read_workload",
    "shipped_workload",
    "shipped_workloads",
    "sweep",
    "text_statistics",
    "workload_from_store",
]
