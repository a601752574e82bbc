"""Events of the provider runtime (every step of a routed call)."""

from __future__ import annotations

from ..events import Event, event

__all__ = [
    "BreakerChanged",
    "BudgetExceededEvent",
    "BudgetWarning",
    "CallFailed",
    "CallFinished",
    "CallStarted",
    "FallbackUsed",
    "HedgeLaunched",
    "RequestRouted",
    "RetryScheduled",
    "StreamFailover",
]


@event("provider.request.routed")
class RequestRouted(Event):
    request_id: str
    strategy: str
    chosen: str
    candidates: list[str]
    excluded: dict[str, str] = {}
    principal: str | None = None
    project: str | None = None
    predicted_cost_usd: float = 0.0


@event("provider.call.started")
class CallStarted(Event):
    request_id: str
    provider: str
    model: str
    attempt: int
    stream: bool = False


@event("provider.call.finished")
class CallFinished(Event):
    request_id: str
    provider: str
    model: str
    attempt: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    ttft_s: float | None = None
    principal: str | None = None
    project: str | None = None
    stream: bool = False


@event("provider.call.failed")
class CallFailed(Event):
    request_id: str
    provider: str
    model: str
    attempt: int
    error_type: str
    error: str
    retryable: bool
    latency_s: float


@event("provider.retry.scheduled")
class RetryScheduled(Event):
    request_id: str
    provider: str
    attempt: int
    delay_s: float
    reason: str


@event("provider.breaker.changed")
class BreakerChanged(Event):
    provider: str
    old: str
    new: str
    failure_rate: float


@event("provider.hedge.launched")
class HedgeLaunched(Event):
    request_id: str
    primary: str
    hedge: str
    after_s: float


@event("provider.fallback.used")
class FallbackUsed(Event):
    request_id: str
    failed: str
    next: str
    reason: str


@event("provider.stream.failover")
class StreamFailover(Event):
    request_id: str
    failed: str
    next: str
    chars_received: int
    reason: str


@event("budget.warning")
class BudgetWarning(Event):
    budget: str
    bucket: str
    spent_usd: float
    limit_usd: float


@event("budget.exceeded")
class BudgetExceededEvent(Event):
    request_id: str
    error: str
    principal: str | None = None
    project: str | None = None
