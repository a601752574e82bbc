"""Metrics: a projection of the event stream, exposed to Prometheus and to alert rules.

:class:`Metrics` folds events into plain counters and histograms (cheap: a dict
update per event, under one lock per batch) and keeps a sliding window for
rates.  :meth:`Metrics.collector` turns them into Prometheus metric families at
scrape time (prometheus-client is imported only then), and
:meth:`Metrics.snapshot` gives alert rules a flat dict of current values.

Exposed metrics (all prefixed ``lumina_``): ``requests_total``,
``provider_calls_total``, ``provider_errors_total``,
``provider_call_duration_seconds``, ``provider_ttft_seconds``, ``tokens_total``,
``cost_usd_total``, ``retries_total``, ``fallbacks_total``, ``hedges_total``,
``stream_failovers_total``, ``breaker_state``, ``budget_remaining_usd``,
``budget_limit_usd``, ``budget_exceeded_total``, ``memory_operation_duration_seconds``,
``memory_cache_hits_total``, ``policy_decisions_total``, ``policy_denials_total``,
``policy_decision_duration_seconds``, ``request_rate``, ``error_rate``,
``alerts_firing``, ``events_observed_total``.
"""

from __future__ import annotations

import logging
import math
import threading
import types
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..clock import WALL, Clock

__all__ = ["BREAKER_STATES", "Histogram", "Metrics", "need_prometheus_client"]

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MEMORY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: ``lumina_breaker_state`` values.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Histogram:
    """Fixed-bucket histogram (non-cumulative counts; Prometheus gets cumulative ones)."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for le, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if le == math.inf else repr(float(le)), acc))
        return out

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (None when empty)."""
        if not self.count:
            return None
        target, acc = q * self.count, 0
        for le, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            acc += n
            if acc >= target:
                return le
        return math.inf


class _Window:
    """Per-second buckets over the last ``seconds``: calls, errors, latency, ttft, cost, requests."""

    __slots__ = ("buckets", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.buckets: deque[list[float]] = deque()

    def _bucket(self, now: float) -> list[float]:
        sec = math.floor(now)
        b = self.buckets
        if b and b[-1][0] == sec:
            return b[-1]
        row = [sec, 0, 0, 0.0, 0, 0.0, 0, 0.0, 0]
        b.append(row)
        self._trim(now)
        return row

    def _trim(self, now: float) -> None:
        b, horizon = self.buckets, now - self.seconds
        while b and b[0][0] + 1 <= horizon:
            b.popleft()

    def call(self, now: float, ok: bool, latency: float | None, ttft: float | None, cost: float) -> None:
        row = self._bucket(now)
        row[1] += 1
        if not ok:
            row[2] += 1
        if latency is not None:
            row[3] += latency
            row[4] += 1
        if ttft is not None:
            row[5] += ttft
            row[6] += 1
        row[7] += cost

    def request(self, now: float) -> None:
        self._bucket(now)[8] += 1

    def totals(self, now: float) -> list[float]:
        self._trim(now)
        tot = [0.0] * 9
        for row in self.buckets:
            for i in range(1, 9):
                tot[i] += row[i]
        return tot


class Metrics:
    """Counters, histograms and windowed rates folded from events (a projection: ``apply(event)``).

    Args:
        clock: time of the sliding window (a :class:`~lumina_lab.clock.ManualClock` in tests).
        window_s: span of the windowed rates (``request_rate``, ``error_rate``, ...).

    Live sources can be attached: :meth:`watch_budgets` (remaining budget read from a
    :class:`~lumina_lab.providers.BudgetManager`) and :meth:`watch_registry` (breaker states).
    """

    def __init__(self, *, clock: Clock | None = None, window_s: float = 60.0) -> None:
        self.clock = clock or WALL
        self.window = _Window(window_s)
        self.lock = threading.RLock()
        self.requests: dict[str, int] = {}
        self.calls: dict[tuple[str, str, str], int] = {}
        self.errors: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.ttft: dict[tuple[str, str], Histogram] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.cost: dict[tuple[str, str], float] = {}
        self.retries: dict[str, int] = {}
        self.fallbacks: dict[str, int] = {}
        self.hedges: dict[str, int] = {}
        self.failovers: dict[str, int] = {}
        self.breakers: dict[str, str] = {}
        self.budget_seen: dict[tuple[str, str], tuple[float, float]] = {}  # (budget, bucket) -> (spent, limit)
        self.budget_exceeded: dict[str, int] = {}
        self.memory: dict[tuple[str, str], Histogram] = {}
        self.memory_cache_hits: dict[str, int] = {}
        self.policy: dict[tuple[str, str], int] = {}
        self.policy_denials: dict[str, int] = {}
        self.policy_latency: dict[str, Histogram] = {}
        self.alerts: dict[str, int] = {}
        self.events_observed = 0
        self.fold_errors = 0
        self._stream_requests: OrderedDict[str, None] = OrderedDict()
        self._budgets: Any = None
        self._registry: Any = None
        self._budget_cache: tuple[tuple[float, Any], list[tuple[str, str, float, float]]] = ((-math.inf, None), [])
        self._dispatch: dict[str, Callable[[Any, float], None] | None] = {
            "provider.request.routed": self._routed,
            "provider.call.started": self._started,
            "provider.call.finished": self._finished,
            "provider.call.failed": self._failed,
            "provider.retry.scheduled": self._retry,
            "provider.hedge.launched": self._hedge,
            "provider.fallback.used": self._fallback,
            "provider.stream.failover": self._failover,
            "provider.breaker.changed": self._breaker,
            "budget.warning": self._budget_warning,
            "budget.exceeded": self._budget_exceeded,
            "policy.decided": self._policy,
            "policy.denied": self._policy_denied,
            "alert.fired": self._alert_fired,
            "alert.resolved": self._alert_resolved,
        }

    # ------------------------------------------------------------------ folding
    def apply(self, event: Any) -> None:
        """Fold one event."""
        self.apply_many((event,))

    def apply_many(self, events: Iterable[Any]) -> None:
        """Fold events (one lock acquisition for all of them)."""
        now = self.clock.now()
        dispatch = self._dispatch
        with self.lock:
            for ev in events:
                self.events_observed += 1
                t = ev.event_type
                handler = dispatch[t] if t in dispatch else self._resolve(t)
                if handler is not None:
                    try:
                        handler(ev, now)
                    except Exception as exc:  # never fail (and so re-deliver) a batch for one odd event
                        self.fold_errors += 1
                        if self.fold_errors <= 10:
                            log.warning("metrics skipped %s: %s: %s", t, type(exc).__name__, exc)

    def _resolve(self, event_type: str) -> Callable[[Any, float], None] | None:
        handler = self._memory if event_type.startswith("memory.") else None
        self._dispatch[event_type] = handler
        return handler

    def _routed(self, ev: Any, now: float) -> None:
        self.requests[ev.strategy] = self.requests.get(ev.strategy, 0) + 1
        self.window.request(now)

    def _started(self, ev: Any, now: float) -> None:
        if ev.stream and ev.attempt == 1:  # streams are not announced by provider.request.routed
            seen = self._stream_requests
            if ev.request_id not in seen:
                seen[ev.request_id] = None
                if len(seen) > 4096:
                    seen.popitem(last=False)
                self.requests["stream"] = self.requests.get("stream", 0) + 1
                self.window.request(now)

    def _finished(self, ev: Any, now: float) -> None:
        pm = (ev.provider, ev.model)
        key = (ev.provider, ev.model, "ok")
        self.calls[key] = self.calls.get(key, 0) + 1
        h = self.latency.get(pm)
        if h is None:
            h = self.latency[pm] = Histogram(LATENCY_BUCKETS)
        h.observe(ev.latency_s)
        if ev.ttft_s is not None:
            h = self.ttft.get(pm)
            if h is None:
                h = self.ttft[pm] = Histogram(LATENCY_BUCKETS)
            h.observe(ev.ttft_s)
        tokens = self.tokens
        k = (ev.provider, ev.model, "input")
        tokens[k] = tokens.get(k, 0) + ev.input_tokens
        k = (ev.provider, ev.model, "output")
        tokens[k] = tokens.get(k, 0) + ev.output_tokens
        self.cost[pm] = self.cost.get(pm, 0.0) + ev.cost_usd
        self.window.call(now, True, ev.latency_s, ev.ttft_s, ev.cost_usd)

    def _failed(self, ev: Any, now: float) -> None:
        key = (ev.provider, ev.model, "error")
        self.calls[key] = self.calls.get(key, 0) + 1
        k = (ev.provider, ev.model, ev.error_type)
        self.errors[k] = self.errors.get(k, 0) + 1
        self.window.call(now, False, None, None, 0.0)

    def _retry(self, ev: Any, now: float) -> None:
        self.retries[ev.provider] = self.retries.get(ev.provider, 0) + 1

    def _hedge(self, ev: Any, now: float) -> None:
        self.hedges[ev.primary] = self.hedges.get(ev.primary, 0) + 1

    def _fallback(self, ev: Any, now: float) -> None:
        self.fallbacks[ev.failed] = self.fallbacks.get(ev.failed, 0) + 1

    def _failover(self, ev: Any, now: float) -> None:
        self.failovers[ev.failed] = self.failovers.get(ev.failed, 0) + 1

    def _breaker(self, ev: Any, now: float) -> None:
        self.breakers[ev.provider] = ev.new

    def _budget_warning(self, ev: Any, now: float) -> None:
        self.budget_seen[(ev.budget, ev.bucket.split("|", 1)[-1])] = (ev.spent_usd, ev.limit_usd)

    def _budget_exceeded(self, ev: Any, now: float) -> None:
        project = ev.project or ""
        self.budget_exceeded[project] = self.budget_exceeded.get(project, 0) + 1

    def _memory(self, ev: Any, now: float) -> None:
        ms = getattr(ev, "ms", None)
        if ms is None:
            return
        t = ev.event_type
        if t == "memory.written":
            op = ev.op
        elif t == "memory.searched":
            op = f"search_{ev.mode}"
            if ev.cache_hit:
                self.memory_cache_hits[ev.backend] = self.memory_cache_hits.get(ev.backend, 0) + 1
        else:
            op = t.split(".", 1)[1]
        key = (op, getattr(ev, "backend", "") or "")
        h = self.memory.get(key)
        if h is None:
            h = self.memory[key] = Histogram(MEMORY_BUCKETS)
        h.observe(ms / 1000.0)

    def _policy(self, ev: Any, now: float) -> None:
        key = (ev.decision, ev.point)
        self.policy[key] = self.policy.get(key, 0) + 1
        ms = getattr(ev, "ms", None)
        if ms is not None:
            h = self.policy_latency.get(ev.point)
            if h is None:
                h = self.policy_latency[ev.point] = Histogram(MEMORY_BUCKETS)
            h.observe(ms / 1000.0)

    def _policy_denied(self, ev: Any, now: float) -> None:
        self.policy_denials[ev.point] = self.policy_denials.get(ev.point, 0) + 1

    def _alert_fired(self, ev: Any, now: float) -> None:
        self.alerts[ev.rule] = 1

    def _alert_resolved(self, ev: Any, now: float) -> None:
        self.alerts[ev.rule] = 0

    # ------------------------------------------------------------------ live sources
    def watch_budgets(self, budgets: Any) -> None:
        """Read remaining budget from this :class:`BudgetManager` (at most once a second; or a function returning it)."""
        self._budgets = budgets

    def watch_registry(self, registry: Any) -> None:
        """Read breaker states of every provider of this :class:`ProviderRegistry` (or a function returning it)."""
        self._registry = registry

    def _budget_rows(self) -> list[tuple[str, str, float, float]]:
        """``(budget, bucket, remaining, limit)`` rows: live when a manager is watched, else from events."""
        budgets = _resolve(self._budgets)
        if budgets is not None and getattr(budgets, "budgets", None):
            (at, owner), rows = self._budget_cache
            now = self.clock.now()
            if now - at >= 1.0 or now < at or owner is not budgets:
                frame = budgets.status()
                rows = [
                    (r.budget, r.bucket, float(r.remaining_usd), float(r.limit_usd))
                    for r in frame.itertuples(index=False)
                ]
                seen = {r[0] for r in rows}
                for b in budgets.budgets:  # budgets nobody charged yet: all of it remains
                    if b.label not in seen:
                        rows.append((b.label, "", float(b.limit_usd), float(b.limit_usd)))
                self._budget_cache = ((now, budgets), rows)
            return rows
        return [(b, bucket, limit - spent, limit) for (b, bucket), (spent, limit) in self.budget_seen.items()]

    def _breaker_states(self) -> dict[str, str]:
        states = dict(self.breakers)
        registry = _resolve(self._registry)
        if registry is not None:
            for s in list(registry):
                states[s.id] = s.breaker.state
        return states

    # ------------------------------------------------------------------ reading
    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Current values for alert rules and dashboards.

        Keys: ``request_rate``, ``call_rate`` (per second over the window), ``error_rate`` (failed calls /
        calls in the window), ``latency_avg_s``, ``ttft_avg_s``, ``cost_rate_usd_per_s``, ``requests_total``,
        ``calls_total``, ``errors_total``, ``cost_usd_total``, ``input_tokens_total``, ``output_tokens_total``,
        ``breakers_open``, ``budget_remaining_usd`` (smallest over budgets; None without budgets),
        ``alerts_firing``, ``window_s``, and ``providers`` ({provider: {calls, errors, error_rate, cost_usd}}).
        """
        now = self.clock.now() if now is None else now
        with self.lock:
            w = self.window.totals(now)
            seconds = self.window.seconds
            calls, errors = w[1], w[2]
            calls_total = sum(self.calls.values())
            errors_total = sum(n for (_, _, outcome), n in self.calls.items() if outcome == "error")
            providers: dict[str, dict[str, float]] = {}
            for (p, _, outcome), n in self.calls.items():
                d = providers.setdefault(p, {"calls": 0, "errors": 0, "cost_usd": 0.0})
                d["calls"] += n
                if outcome == "error":
                    d["errors"] += n
            for (p, _), c in self.cost.items():
                providers.setdefault(p, {"calls": 0, "errors": 0, "cost_usd": 0.0})["cost_usd"] += c
            for d in providers.values():
                d["error_rate"] = d["errors"] / d["calls"] if d["calls"] else 0.0
            budgets = self._budget_rows()
            states = self._breaker_states()
            return {
                "window_s": seconds,
                "request_rate": w[8] / seconds,
                "call_rate": calls / seconds,
                "error_rate": errors / calls if calls else 0.0,
                "latency_avg_s": w[3] / w[4] if w[4] else None,
                "ttft_avg_s": w[5] / w[6] if w[6] else None,
                "cost_rate_usd_per_s": w[7] / seconds,
                "requests_total": sum(self.requests.values()),
                "calls_total": calls_total,
                "errors_total": errors_total,
                "cost_usd_total": sum(self.cost.values()),
                "input_tokens_total": sum(n for (_, _, t), n in self.tokens.items() if t == "input"),
                "output_tokens_total": sum(n for (_, _, t), n in self.tokens.items() if t == "output"),
                "breakers_open": sum(1 for s in states.values() if s == "open"),
                "budget_remaining_usd": min((r[2] for r in budgets), default=None),
                "alerts_firing": sum(self.alerts.values()),
                "providers": providers,
            }

    def collector(self) -> Any:
        """A prometheus-client collector that reads these metrics at scrape time."""
        return _Collector(self)

    def registry(self) -> Any:
        """A new prometheus-client ``CollectorRegistry`` holding :meth:`collector`."""
        need_prometheus_client()
        from prometheus_client import CollectorRegistry

        reg = CollectorRegistry(auto_describe=False)
        reg.register(self.collector())
        return reg

    def exposition(self) -> str:
        """The Prometheus text format of the current values."""
        need_prometheus_client()
        from prometheus_client import generate_latest

        return generate_latest(self.registry()).decode()

    def families(self) -> Iterator[Any]:
        """Prometheus metric families of the current values."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        def counter(name: str, doc: str, labels: list[str], items: Iterable[tuple[Any, float]]) -> Any:
            fam = CounterMetricFamily(name, doc, labels=labels)
            for key, value in items:
                fam.add_metric([str(k) for k in (key if isinstance(key, tuple) else (key,))], value)
            return fam

        def histogram(name: str, doc: str, labels: list[str], items: Iterable[tuple[Any, Histogram]]) -> Any:
            fam = HistogramMetricFamily(name, doc, labels=labels)
            for key, h in items:
                fam.add_metric(
                    [str(k) for k in (key if isinstance(key, tuple) else (key,))], h.cumulative(), sum_value=h.sum
                )
            return fam

        def gauge(name: str, doc: str, labels: list[str], items: Iterable[tuple[Any, float]]) -> Any:
            fam = GaugeMetricFamily(name, doc, labels=labels)
            for key, value in items:
                fam.add_metric([str(k) for k in (key if isinstance(key, tuple) else (key,))], value)
            return fam

        with self.lock:
            snap = self.snapshot()
            yield counter("lumina_requests", "Requests routed, by strategy.", ["strategy"], list(self.requests.items()))
            yield counter(
                "lumina_provider_calls",
                "Provider calls by outcome.",
                ["provider", "model", "outcome"],
                list(self.calls.items()),
            )
            yield counter(
                "lumina_provider_errors",
                "Failed provider calls by error type.",
                ["provider", "model", "error_type"],
                list(self.errors.items()),
            )
            yield histogram(
                "lumina_provider_call_duration_seconds",
                "Provider call latency.",
                ["provider", "model"],
                list(self.latency.items()),
            )
            yield histogram(
                "lumina_provider_ttft_seconds", "Time to first token.", ["provider", "model"], list(self.ttft.items())
            )
            yield counter(
                "lumina_tokens", "Tokens by direction.", ["provider", "model", "type"], list(self.tokens.items())
            )
            yield counter("lumina_cost_usd", "Spend in USD.", ["provider", "model"], list(self.cost.items()))
            yield counter("lumina_retries", "Retries scheduled.", ["provider"], list(self.retries.items()))
            yield counter(
                "lumina_fallbacks", "Fallbacks away from a provider.", ["provider"], list(self.fallbacks.items())
            )
            yield counter(
                "lumina_hedges", "Hedged requests, by primary provider.", ["provider"], list(self.hedges.items())
            )
            yield counter(
                "lumina_stream_failovers", "Streams failed over mid-answer.", ["provider"], list(self.failovers.items())
            )
            yield gauge(
                "lumina_breaker_state",
                "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                ["provider"],
                [(p, BREAKER_STATES.get(s, -1)) for p, s in self._breaker_states().items()],
            )
            budgets = self._budget_rows()
            yield gauge(
                "lumina_budget_remaining_usd",
                "Budget left in USD.",
                ["budget", "bucket"],
                [((b, k), rem) for b, k, rem, _ in budgets],
            )
            yield gauge(
                "lumina_budget_limit_usd",
                "Budget limit in USD.",
                ["budget", "bucket"],
                [((b, k), lim) for b, k, _, lim in budgets],
            )
            yield counter(
                "lumina_budget_exceeded",
                "Calls refused by a budget, by project.",
                ["project"],
                list(self.budget_exceeded.items()),
            )
            yield histogram(
                "lumina_memory_operation_duration_seconds",
                "Memory operation timings.",
                ["op", "backend"],
                list(self.memory.items()),
            )
            yield counter(
                "lumina_memory_cache_hits",
                "Memory searches answered from cache.",
                ["backend"],
                list(self.memory_cache_hits.items()),
            )
            yield counter(
                "lumina_policy_decisions", "Policy decisions.", ["decision", "point"], list(self.policy.items())
            )
            yield counter(
                "lumina_policy_denials", "Actions refused by policy.", ["point"], list(self.policy_denials.items())
            )
            yield histogram(
                "lumina_policy_decision_duration_seconds",
                "Policy decision timings (when events carry them).",
                ["point"],
                list(self.policy_latency.items()),
            )
            yield gauge(
                "lumina_request_rate",
                f"Requests per second over the last {snap['window_s']:g}s.",
                [],
                [((), snap["request_rate"])],
            )
            yield gauge(
                "lumina_error_rate",
                f"Failed calls / calls over the last {snap['window_s']:g}s.",
                [],
                [((), snap["error_rate"])],
            )
            yield gauge("lumina_alerts_firing", "1 while an alert fires.", ["alert"], list(self.alerts.items()))
            yield counter(
                "lumina_events_observed", "Events folded into these metrics.", [], [((), self.events_observed)]
            )


def need_prometheus_client() -> None:
    """Raise a :class:`ConfigError` with the fix when prometheus-client is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError(
            "the Prometheus endpoint needs the prometheus-client package",
            key="observability.metrics_port",
            hint="pip install prometheus-client  (or pip install 'lumina-lab[observability]')",
        ) from None


def _resolve(source: Any) -> Any:
    """A watched object, or what a watched getter function returns now."""
    if isinstance(source, (types.FunctionType, types.MethodType)):
        return source()
    return source


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics.families()

    def describe(self) -> list[Any]:
        return []
