"""Passive statistics per provider: EWMA latency and TTFT, tail latency, success rate, cost efficiency."""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["ProviderStats"]


class ProviderStats:
    """Running statistics of one provider, updated at dispatch and on completion.

    ``inflight`` is incremented when the router *dispatches* a call, so a burst
    of concurrent requests sees each other's load immediately.
    """

    __slots__ = (
        "_p95",
        "_recent",
        "alpha",
        "calls",
        "dispatched",
        "ewma_cost_usd",
        "ewma_latency_s",
        "ewma_success",
        "ewma_ttft_s",
        "failures",
        "inflight",
        "successes",
    )

    def __init__(self, *, alpha: float = 0.2, window: int = 256) -> None:
        self.alpha = alpha
        self.calls = 0
        self.dispatched = 0
        self.successes = 0
        self.failures = 0
        self.inflight = 0
        self.ewma_latency_s: float | None = None
        self.ewma_ttft_s: float | None = None
        self.ewma_success = 1.0
        self.ewma_cost_usd: float | None = None
        self._recent: deque[float] = deque(maxlen=window)
        self._p95: float | None = None

    def on_dispatch(self) -> None:
        self.inflight += 1
        self.dispatched += 1

    def on_success(self, latency_s: float, ttft_s: float | None, cost_usd: float) -> None:
        # Router.account_success writes this out (keep the two the same)
        a = self.alpha
        b = 1 - a
        self.inflight -= 1
        self.calls += 1
        self.successes += 1
        v = self.ewma_latency_s
        self.ewma_latency_s = latency_s if v is None else b * v + a * latency_s
        if ttft_s is not None:
            v = self.ewma_ttft_s
            self.ewma_ttft_s = ttft_s if v is None else b * v + a * ttft_s
        v = self.ewma_cost_usd
        self.ewma_cost_usd = cost_usd if v is None else b * v + a * cost_usd
        self.ewma_success = b * self.ewma_success + a
        self._recent.append(latency_s)
        self._p95 = None

    def on_failure(self) -> None:
        self.inflight -= 1
        self.calls += 1
        self.failures += 1
        self.ewma_success = (1 - self.alpha) * self.ewma_success

    def on_abandon(self) -> None:
        """A dispatched call was cancelled (e.g. the losing side of a hedge)."""
        self.inflight -= 1

    @property
    def p95_latency_s(self) -> float | None:
        if self._p95 is None and self._recent:
            ordered = sorted(self._recent)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return self._p95

    @property
    def success_rate(self) -> float:
        return self.successes / self.calls if self.calls else 1.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "inflight": self.inflight,
            "success_rate": round(self.success_rate, 4),
            "ewma_success": round(self.ewma_success, 4),
            "ewma_latency_ms": None if self.ewma_latency_s is None else round(self.ewma_latency_s * 1000, 2),
            "p95_latency_ms": None if self.p95_latency_s is None else round(self.p95_latency_s * 1000, 2),
            "ewma_ttft_ms": None if self.ewma_ttft_s is None else round(self.ewma_ttft_s * 1000, 2),
            "ewma_cost_usd": self.ewma_cost_usd,
        }
