"""Provider runtime: registry, capability routing, streaming, cost and budgets, resilience.

>>> from lumina_lab.providers import ProviderRegistry, Router, SimulatedProvider
>>> registry = ProviderRegistry([SimulatedProvider("gpt-4.1-mini"), SimulatedProvider("gpt-4.1")])
>>> router = Router(registry, "cheapest")
"""

from __future__ import annotations

from .base import BaseProvider, Provider
from .cost import Budget, BudgetManager, CostLedger, estimate_tokens, predict_cost
from .registry import ProviderRegistry, ProviderState
from .resilience import CircuitBreaker, RetryPolicy
from .router import RouteDecision, Router
from .simulated import SimulatedProvider
from .strategies import (
    STRATEGIES,
    Cascade,
    Cheapest,
    Fastest,
    LeastBusy,
    RoundRobin,
    Strategy,
    ThompsonBandit,
    WeightedScore,
)
from .types import Capabilities, ChatRequest, ChatResponse, Limits, Message, Pricing, StreamChunk, Usage

__all__ = [
    "STRATEGIES",
    "BaseProvider",
    "Budget",
    "BudgetManager",
    "Capabilities",
    "Cascade",
    "ChatRequest",
    "ChatResponse",
    "Cheapest",
    "CircuitBreaker",
    "CostLedger",
    "Fastest",
    "LeastBusy",
    "Limits",
    "Message",
    "Pricing",
    "Provider",
    "ProviderRegistry",
    "ProviderState",
    "RetryPolicy",
    "RoundRobin",
    "RouteDecision",
    "Router",
    "SimulatedProvider",
    "Strategy",
    "StreamChunk",
    "ThompsonBandit",
    "Usage",
    "WeightedScore",
    "estimate_tokens",
    "predict_cost",
]
