"""Live projections that the dashboards draw: plain Python, thread-safe, bounded.

They are fed by bus subscriptions (``apply`` / ``apply_many`` run on the bus's thread) and read by the
UI's refresh (``snapshot`` / ``series`` run on the document's thread); a lock guards the hand-over and
every buffer has a fixed bound, so memory does not grow with traffic. Nothing here imports Panel.

>>> m = LiveMetrics(window_s=60)
>>> m.snapshot()["calls"]
0
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..events.model import Event
    from ..providers.cost import Budget

__all__ = ["SERIES_COLUMNS", "TOPICS", "BudgetBurn", "LiveMetrics", "ProviderLive"]

#: the bus topics :class:`LiveMetrics` listens to
TOPICS = ("provider.*", "budget.*")
#: columns of :meth:`LiveMetrics.series`
SERIES_COLUMNS = ("t", "requests", "answered", "failed", "error_rate", "p50_ms", "p95_ms", "ttft_ms", "cost_usd")


def _ts(event: Any) -> float:
    ts = getattr(event, "ts", None)
    return ts.timestamp() if ts is not None else time.time()


def _percentile(values: Sequence[float], q: float) -> float:
    if not len(values):
        return float("nan")
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def _percentiles(values: Any, qs: Sequence[float]) -> list[float]:
    """Several percentiles of ``values`` in one pass (NaN when empty)."""
    if not len(values):
        return [float("nan")] * len(qs)
    import numpy as np

    return [float(x) for x in np.percentile(np.asarray(values, dtype=float), qs)]


def _samples() -> array[float]:
    return array("d")  # 8 bytes a sample (a list of floats takes 32)


def _keep(samples: array[float], value: float, seen: int, cap: int) -> None:
    """Bounded per-second sample list: the first ``cap``, then the most recent replace in turn."""
    if len(samples) < cap:
        samples.append(value)
    else:
        samples[seen % cap] = value


@dataclass
class _Second:
    t: int
    requests: int = 0
    answered: int = 0
    failed: int = 0
    cost: float = 0.0
    latencies: array[float] = field(default_factory=_samples)
    ttfts: array[float] = field(default_factory=_samples)
    summary: tuple[float, float, float] | None = None  # (p50, p95, ttft p50) in s, once the samples are dropped

    def percentiles(self) -> tuple[float, float, float]:
        """Latency p50, p95 and TTFT p50 of this second (seconds; NaN without calls)."""
        if self.summary is not None:
            return self.summary
        p50, p95 = _percentiles(self.latencies, (50, 95))
        return p50, p95, _percentile(self.ttfts, 50)

    def compact(self) -> None:
        """Keep only the figures the time series shows (the second has left every window)."""
        self.summary = self.percentiles()
        self.latencies = self.ttfts = _samples()


@dataclass
class ProviderLive:
    """What the stream has said about one provider."""

    id: str
    answered: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    breaker: str = "closed"
    last_error: str = ""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    @property
    def calls(self) -> int:
        return self.answered + self.failed

    @property
    def success_rate(self) -> float:
        return self.answered / self.calls if self.calls else float("nan")

    def row(self) -> dict[str, Any]:
        lat = list(self.latencies)
        return {
            "id": self.id,
            "calls": self.calls,
            "answered": self.answered,
            "failed": self.failed,
            "success_rate": self.success_rate,
            "p50_ms": _percentile(lat, 50) * 1000,
            "p95_ms": _percentile(lat, 95) * 1000,
            "cost_usd": self.cost_usd,
            "breaker": self.breaker,
            "last_error": self.last_error,
        }


@dataclass
class BudgetBurn:
    """Spend against one budget bucket in its current period."""

    label: str
    bucket: str
    limit_usd: float
    spent_usd: float = 0.0
    soft_ratio: float = 0.8
    warned: bool = False
    exceeded: int = 0

    @property
    def ratio(self) -> float:
        if self.limit_usd > 0:
            return self.spent_usd / self.limit_usd
        return float("inf") if self.spent_usd > 0 else 0.0

    def row(self) -> dict[str, Any]:
        return {
            "budget": self.label,
            "bucket": self.bucket,
            "spent_usd": self.spent_usd,
            "limit_usd": self.limit_usd,
            "ratio": self.ratio,
            "warned": self.warned,
            "refused": self.exceeded,
        }


class LiveMetrics:
    """Throughput, latency percentiles, TTFT, errors, cost burn against budgets and breaker states.

    A projection of ``provider.*`` and ``budget.*`` events (subscribe it with :meth:`subscribe`, or call
    :meth:`apply` yourself). Time comes from each event's ``ts``, so replayed events land in their own
    seconds; rates and percentiles are over the last ``window_s`` seconds before the newest event.

    Args:
        window_s: the window of rates and percentiles.
        history_s: per-second points kept for the time series (a bounded deque).
        budgets: :class:`~lumina_lab.providers.Budget` objects whose burn to track (e.g. ``lab.budgets.budgets``).
        breakers: initial breaker state per provider id (later changes come from ``provider.breaker.changed``).
        samples_per_s: latency samples kept per second (bounds the percentile work).
        clock: wall time, for :meth:`snapshot` when no event has arrived for a while.
    """

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        history_s: int = 600,
        budgets: Iterable[Budget] = (),
        breakers: dict[str, str] | None = None,
        samples_per_s: int = 2_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from ..errors import ValidationError

        if window_s <= 0 or history_s < 1 or samples_per_s < 1:
            raise ValidationError(
                f"window_s={window_s}, history_s={history_s}, samples_per_s={samples_per_s} must be positive"
            )
        self.window_s = float(window_s)
        self.samples_per_s = samples_per_s
        self.budgets = list(budgets)
        self.clock = clock
        self._seconds: deque[_Second] = deque(maxlen=int(history_s))
        self._lock = threading.Lock()
        self.providers: dict[str, ProviderLive] = {}
        for pid, state in (breakers or {}).items():
            self.providers[pid] = ProviderLive(pid, breaker=state)
        self.burn: dict[str, BudgetBurn] = {}
        self.totals: Counter[str] = Counter()
        self.cost_usd = 0.0
        self.last_ts: float | None = None
        self.version = 0  # bumped by every applied event (cheap "anything new?" for refreshers)
        self.breaker_changes: deque[dict[str, Any]] = deque(maxlen=100)
        self._listeners: list[Callable[[], Any]] = []

    @classmethod
    def of(cls, lab: Any, **options: Any) -> LiveMetrics:
        """Metrics seeded from a lab (its budgets, and its providers' current breaker states), or empty for None."""
        if lab is not None:
            options.setdefault("budgets", lab.budgets.budgets)
            options.setdefault("breakers", {s.id: s.breaker.state for s in lab.providers})
        return cls(**options)

    def on_change(self, fn: Callable[[], Any]) -> Callable[[], None]:
        """Call ``fn()`` (on the feeding thread) after each batch of events is applied; returns the remover."""
        self._listeners.append(fn)

        def remove() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return remove

    def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # a listener must not fail (and so re-deliver) the batch
                pass

    # ------------------------------------------------------------------ feeding
    def subscribe(self, bus: Any, *, maxsize: int = 10_000) -> list[Any]:
        """Subscribe to :data:`TOPICS` on ``bus`` (``drop_oldest``, batched); return the subscriptions."""
        return [
            bus.subscribe(topic, self.apply_many, batch=512, maxsize=maxsize, overflow="drop_oldest")
            for topic in TOPICS
        ]

    def apply_many(self, events: Iterable[Event]) -> None:
        with self._lock:
            for ev in events:
                self._apply(ev)
        if self._listeners:
            self._notify()

    def apply(self, event: Event) -> None:
        """Take one event (thread-safe)."""
        with self._lock:
            self._apply(event)
        if self._listeners:
            self._notify()

    def _second(self, t: float) -> _Second:
        sec = int(t)
        secs = self._seconds
        if not secs:
            secs.append(_Second(sec))
            return secs[-1]
        last = secs[-1].t
        if sec == last:
            return secs[-1]
        if sec > last:
            for s in range(max(last + 1, sec - (secs.maxlen or 1) + 1), sec + 1):  # gaps are seconds with zero
                secs.append(_Second(s))
            self._compact(sec)
            return secs[-1]
        i = len(secs) - 1 - (last - sec)
        return secs[i] if i >= 0 else secs[0]  # older than the history: count it in the oldest second

    def _compact(self, newest: int) -> None:
        """Drop the samples of seconds older than any window can reach (memory stays flat once the window is
        full; the history keeps their percentiles)."""
        cutoff = newest - self.window_s - 2
        for s in self._seconds:
            if s.t >= cutoff:
                break
            if s.summary is None:
                s.compact()

    def _provider(self, pid: str) -> ProviderLive:
        p = self.providers.get(pid)
        if p is None:
            p = self.providers[pid] = ProviderLive(pid)
        return p

    def _apply(self, ev: Any) -> None:
        kind = getattr(ev, "event_type", None) or getattr(ev, "type", "")
        t = _ts(ev)
        self.version += 1
        self.totals[kind] += 1
        if self.last_ts is None or t > self.last_ts:
            self.last_ts = t
        if kind == "provider.request.routed":
            self._second(t).requests += 1
        elif kind == "provider.call.finished":
            s = self._second(t)
            s.answered += 1
            s.cost += ev.cost_usd
            _keep(s.latencies, ev.latency_s, s.answered, self.samples_per_s)
            if ev.ttft_s is not None:
                _keep(s.ttfts, ev.ttft_s, s.answered, self.samples_per_s)
            p = self._provider(ev.provider)
            p.answered += 1
            p.cost_usd += ev.cost_usd
            p.latencies.append(ev.latency_s)
            self.cost_usd += ev.cost_usd
            self._charge(ev, t)
        elif kind == "provider.call.failed":
            self._second(t).failed += 1
            p = self._provider(ev.provider)
            p.failed += 1
            p.last_error = f"{ev.error_type}: {ev.error}"[:200]
        elif kind == "provider.breaker.changed":
            self._provider(ev.provider).breaker = ev.new
            self.breaker_changes.append({"ts": t, "provider": ev.provider, "old": ev.old, "new": ev.new})
        elif kind == "budget.warning":
            b = self.burn.get(ev.bucket)
            if b is None:
                b = self.burn[ev.bucket] = BudgetBurn(ev.budget, ev.bucket, ev.limit_usd)
            b.spent_usd = max(b.spent_usd, ev.spent_usd)
            b.warned = True
        elif kind == "budget.exceeded":
            for b in self._buckets_of(ev, t):
                b.exceeded += 1

    def _buckets_of(self, ev: Any, t: float) -> list[BudgetBurn]:
        if not self.budgets:
            return []
        principal, project = getattr(ev, "principal", None), getattr(ev, "project", None)
        out = []
        for budget in self.budgets:
            key = budget.bucket_of(principal, project, t)
            if key is None:
                continue
            b = self.burn.get(key)
            if b is None:
                b = self.burn[key] = BudgetBurn(budget.label, key, budget.limit_usd, soft_ratio=budget.soft_ratio)
            out.append(b)
        return out

    def _charge(self, ev: Any, t: float) -> None:
        for b in self._buckets_of(ev, t):
            b.spent_usd += ev.cost_usd

    def tick(self, now: float | None = None) -> None:
        """Let time pass: seconds up to ``now`` (wall time) without events become zero points in :meth:`series`."""
        now = self.clock() if now is None else now
        with self._lock:
            secs = self._seconds
            if secs and int(now) > secs[-1].t:
                self._second(now)

    # ------------------------------------------------------------------ reading
    def _window(self, now: float | None) -> tuple[list[_Second], float]:
        end = now if now is not None else max(self.last_ts or 0.0, 0.0)
        start = end - self.window_s
        return [s for s in self._seconds if s.t > start - 1 and s.t <= end], end

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The figures of the overview: rates, percentiles (ms), TTFT, error rate, cost, budgets, breakers.

        Rates are over ``window_s`` seconds ending at ``now`` (default: the newest event's time).
        """
        with self._lock:
            secs, _end = self._window(now)
            requests = sum(s.requests for s in secs)
            answered = sum(s.answered for s in secs)
            failed = sum(s.failed for s in secs)
            import numpy as np

            lat = np.concatenate([np.asarray(s.latencies, dtype=float) for s in secs]) if secs else ()
            ttft = np.concatenate([np.asarray(s.ttfts, dtype=float) for s in secs]) if secs else ()
            p50, p95, p99 = _percentiles(lat, (50, 95, 99))
            ttft50, ttft95 = _percentiles(ttft, (50, 95))
            cost = sum(s.cost for s in secs)
            span = self.window_s
            if secs:  # before a full window has passed, the rate is over the seconds seen
                end = now if now is not None else secs[-1].t + 1
                span = min(self.window_s, max(1.0, end - secs[0].t))
            calls = answered + failed
            return {
                "requests_per_s": requests / span,
                "answered_per_s": answered / span,
                "error_rate": failed / calls if calls else 0.0,
                "p50_ms": p50 * 1000,
                "p95_ms": p95 * 1000,
                "p99_ms": p99 * 1000,
                "ttft_p50_ms": ttft50 * 1000,
                "ttft_p95_ms": ttft95 * 1000,
                "cost_per_min_usd": cost / span * 60,
                "cost_usd": self.cost_usd,
                "calls": self.totals["provider.call.finished"] + self.totals["provider.call.failed"],
                "answered": self.totals["provider.call.finished"],
                "failed": self.totals["provider.call.failed"],
                "requests": self.totals["provider.request.routed"],
                "breakers": {pid: p.breaker for pid, p in sorted(self.providers.items())},
                "budgets": [b.row() for b in sorted(self.burn.values(), key=lambda b: -b.ratio)],
                "events": sum(self.totals.values()),
                "last_ts": self.last_ts,
            }

    def series(self, *, since: int | None = None, include_current: bool = False) -> list[dict[str, Any]]:
        """One row per second (oldest first, at most ``history_s``): see :data:`SERIES_COLUMNS`.

        Args:
            since: only seconds after this one (for streaming new points).
            include_current: also the newest second, which may still be filling.
        """
        with self._lock:
            secs = list(self._seconds)
            if secs and not include_current:
                secs = secs[:-1]
            rows = []
            for s in secs:
                if since is not None and s.t <= since:
                    continue
                calls = s.answered + s.failed
                p50, p95, ttft = s.percentiles()
                rows.append(
                    {
                        "t": s.t,
                        "requests": s.requests,
                        "answered": s.answered,
                        "failed": s.failed,
                        "error_rate": s.failed / calls if calls else 0.0,
                        "p50_ms": p50 * 1000,
                        "p95_ms": p95 * 1000,
                        "ttft_ms": ttft * 1000,
                        "cost_usd": s.cost,
                    }
                )
            return rows

    def provider_rows(self) -> list[dict[str, Any]]:
        """One row per provider seen (or seeded): calls, success rate, p50/p95, cost, breaker, last error."""
        with self._lock:
            return [p.row() for _, p in sorted(self.providers.items())]

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"LiveMetrics({s['calls']} calls, {s['failed']} failed, ${s['cost_usd']:.4f}, "
            f"p95 {s['p95_ms']:.0f} ms over {self.window_s:.0f}s)"
        )
