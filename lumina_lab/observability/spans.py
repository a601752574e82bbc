"""Spans built live from the event stream, for export (OTLP, console).

The local span store derives spans from the stored event log with SQL
(:mod:`lumina_lab.observability.store`).  Exporters need spans as they finish,
so :class:`SpanBuilder` folds the same events incrementally, with the same
rules and the same ids:

* a routed request is a ``route`` span (trace id: the enclosing span's trace
  when one is active — a notebook run, an OpenTelemetry span — otherwise the
  request id, a UUIDv7, as 32 hex digits; span id ``md5(request_id/route)``);
* each provider call is an ``attempt`` child, named ``chat {model}`` and
  marked ``first``, ``retry``, ``fallback``, ``hedge``, ``failover`` (streams)
  or ``cascade``; time to first token (``ttft_s``) becomes a ``first_token``
  event when exported;
* memory operations (``memory.*`` events with their ``ms``) and policy
  decisions are spans under whatever span was active when they happened;
* ``span.started``/``span.ended`` events are spans opened by code
  (``lab.run(...)``).

A request ends with its successful answer (the losing side of a hedge closes
as cancelled); after a failure the builder waits for the retry, fallback or
next stream that usually follows at once, and settles the request as failed
when nothing follows (:meth:`SpanBuilder.settle`).  Span records go to
*sinks*, told ``span_opened(span)`` and ``span_closed(span)``.  Nothing here
runs on the routing hot path: the builder is a bus subscriber.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

__all__ = [
    "COLUMNS",
    "SpanBuilder",
    "SpanRecord",
    "SpanSink",
    "gen_ai_system",
    "hex_id",
    "otel_attributes",
    "trace_id_for_request",
]

#: Stored columns of a span, in order (see :mod:`lumina_lab.observability.store`).
COLUMNS = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "kind",
    "start_ts",
    "end_ts",
    "status",
    "rev",
    "source",
    "session",
    "request_id",
    "provider",
    "model",
    "attempt",
    "attempt_kind",
    "strategy",
    "breaker_state",
    "stream",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_s",
    "ttft_s",
    "error_type",
    "error",
    "principal",
    "project",
    "attributes",
    "events",
)
_HEX = frozenset("0123456789abcdef")
log = logging.getLogger(__name__)


def hex_id(key: str, n: int = 16) -> str:
    """A deterministic id: the first ``n`` hex digits of ``md5(key)`` (DuckDB's ``md5`` gives the same)."""
    return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()[:n]


def trace_id_for_request(request_id: str) -> str:
    """The trace id of a request routed outside any span: its UUIDv7 id as 32 hex digits (else its md5)."""
    h = request_id.replace("-", "")
    if len(h) == 32 and _HEX.issuperset(h):
        return h
    return hex_id(request_id, 32)


def route_span_id(request_id: str) -> str:
    return hex_id(request_id + "/route")


def attempt_span_id(request_id: str, n: int) -> str:
    """Span id of a request's ``n``-th provider call (1-based, in the order the calls started)."""
    return hex_id(f"{request_id}/{n}")


def gen_ai_system(model: str | None, provider: str | None = None) -> str:
    """The ``gen_ai.system`` value for a model (inferred from its name; simulated providers say so)."""
    if provider and provider.startswith("sim-"):
        return "lumina.simulated"
    m = (model or "").lower().rsplit("/", 1)[-1]
    for prefixes, system in _SYSTEMS:
        if m.startswith(prefixes):
            return system
    return provider or "unknown"


_SYSTEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci"), "openai"),
    (("claude",), "anthropic"),
    (("gemini",), "gcp.gemini"),
    (("mistral", "mixtral", "codestral", "ministral"), "mistral_ai"),
    (("command",), "cohere"),
    (("deepseek",), "deepseek"),
    (("grok",), "xai"),
    (("llama", "meta-llama"), "meta"),
)


class SpanRecord:
    """One span.  Fields not set read as ``None`` (class defaults keep creation cheap)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ts: datetime
    end_ts: datetime | None = None
    status: str = "unset"
    rev: int = 0
    source: str | None = None
    session: str | None = None
    request_id: str | None = None
    provider: str | None = None
    model: str | None = None
    attempt: int | None = None
    attempt_kind: str | None = None
    strategy: str | None = None
    breaker_state: str | None = None
    stream: bool | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    error_type: str | None = None
    error: str | None = None
    principal: str | None = None
    project: str | None = None
    attributes: dict[str, Any] | None = None
    events: list[tuple[str, datetime, dict[str, Any]]] | None = None
    # rolled up from descendants while they are live (exported on non-leaf spans; the store rolls up in SQL)
    tot_cost: float = 0.0
    tot_in: int = 0
    tot_out: int = 0
    exported: bool = False

    def __init__(
        self, trace_id: str, span_id: str, parent_id: str | None, name: str, kind: str, start_ts: datetime
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self.start_ts = start_ts

    def add_event(self, name: str, ts: datetime, attributes: dict[str, Any] | None = None) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, ts, attributes or {}))

    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def copy(self) -> SpanRecord:
        new = SpanRecord.__new__(SpanRecord)
        new.__dict__.update(self.__dict__)
        if self.attributes is not None:
            new.attributes = dict(self.attributes)
        if self.events is not None:
            new.events = list(self.events)
        return new

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ts is None else (self.end_ts - self.start_ts).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in COLUMNS}

    def __repr__(self) -> str:
        state = "open" if self.end_ts is None else self.status
        return f"SpanRecord({self.name!r}, kind={self.kind!r}, {state}, span={self.span_id}, parent={self.parent_id})"


class SpanSink(Protocol):
    """Where spans go: told when a span opens and when it closes."""

    def span_opened(self, span: SpanRecord) -> None: ...

    def span_closed(self, span: SpanRecord) -> None: ...


class _Req:
    """What the builder knows about one routed request."""

    __slots__ = ("attempts", "failovers", "fallbacks", "hedges", "n", "opened", "pending", "route")

    def __init__(self, route: SpanRecord) -> None:
        self.route = route
        self.attempts: dict[tuple[str, int], SpanRecord] = {}
        self.n = 0
        self.hedges: set[str] | None = None
        self.fallbacks: set[str] | None = None
        self.failovers: set[str] | None = None
        self.pending: tuple[str, datetime] | None = None
        self.opened = time.monotonic()


class SpanBuilder:
    """Folds events into spans and hands them to ``sinks`` (a projection: ``apply(event)``).

    Args:
        sinks: receivers of ``open(span)``/``close(span)``.
        settle_s: how long a request whose last call failed stays open waiting for a retry or fallback
            (normally these follow at once; see :meth:`settle`).
        max_open_s: requests still open after this long (a stream whose consumer walked away) are
            closed as abandoned.
        recent: closed requests remembered for late events (a hedge's losing call, a cascade step).

    Not thread-safe: callers serialise ``apply`` and ``settle`` (the :class:`Observability` hub holds a lock).
    """

    def __init__(
        self,
        sinks: Sequence[SpanSink] = (),
        *,
        settle_s: float = 0.25,
        max_open_s: float = 600.0,
        recent: int = 4096,
    ) -> None:
        self.sinks: tuple[SpanSink, ...] = tuple(sinks)
        self.settle_s = settle_s
        self.max_open_s = max_open_s
        self._recent_max = recent
        self._reqs: dict[str, _Req] = {}
        self._recent: OrderedDict[str, _Req] = OrderedDict()
        self._pending: dict[str, float] = {}
        self._live: dict[str, SpanRecord] = {}  # open non-leaf spans (routes, runs): roll-up targets
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self.breakers: dict[str, str] = {}
        self.spans_closed = 0
        self.errors = 0
        self._last_sweep = time.monotonic()
        self._dispatch: dict[str, Callable[[Any], None] | None] = {
            "provider.request.routed": self._routed,
            "provider.call.started": self._started,
            "provider.call.finished": self._finished,
            "provider.call.failed": self._failed,
            "provider.retry.scheduled": self._retry,
            "provider.hedge.launched": self._hedge,
            "provider.fallback.used": self._fallback,
            "provider.stream.failover": self._failover,
            "provider.breaker.changed": self._breaker,
            "budget.exceeded": self._budget_exceeded,
            "memory.written": self._memory,
            "memory.searched": self._memory,
            "policy.decided": self._policy,
            "span.started": self._span_started,
            "span.ended": self._span_ended,
        }

    # ------------------------------------------------------------------ entry points
    def apply(self, event: Any) -> None:
        """Fold one event (events of other types are ignored)."""
        self.apply_many((event,))

    def apply_many(self, events: Iterable[Any]) -> None:
        """Fold events in order.  An event that cannot be folded is counted in ``errors`` and skipped."""
        dispatch = self._dispatch
        for event in events:
            t = event.event_type
            handler = dispatch[t] if t in dispatch else self._resolve_cached(t)
            if handler is not None:
                try:
                    handler(event)
                except Exception as exc:  # never fail (and so re-deliver) a batch for one odd event
                    self.errors += 1
                    if self.errors <= 10:
                        log.warning(
                            "span builder skipped %s %s: %s: %s", t, getattr(event, "id", ""), type(exc).__name__, exc
                        )

    def _resolve_cached(self, event_type: str) -> Callable[[Any], None] | None:
        handler = self._dispatch[event_type] = self._resolve(event_type)
        return handler

    def _resolve(self, event_type: str) -> Callable[[Any], None] | None:
        if event_type.startswith("memory."):
            return self._memory  # any memory operation with a duration (compressed, consolidated, ...)
        return None

    def settle(self, *, force: bool = False, now: float | None = None) -> int:
        """Close requests whose last call failed and nothing followed for ``settle_s`` (all with ``force``).

        Also closes requests open longer than ``max_open_s`` as abandoned.  Returns requests closed.
        """
        now = time.monotonic() if now is None else now
        closed = 0
        if self._pending:
            for rid, since in list(self._pending.items()):
                if force or now - since >= self.settle_s:
                    req = self._reqs.get(rid)
                    self._pending.pop(rid, None)
                    if req is not None and req.pending is not None:
                        status, end = req.pending
                        self._close_request(rid, req, status, end)
                        closed += 1
        if now - self._last_sweep >= min(self.max_open_s, 5.0):
            self._last_sweep = now
            for rid, req in list(self._reqs.items()):
                if now - req.opened >= self.max_open_s:
                    end = max([req.route.start_ts, *(s.start_ts for s in req.attempts.values())])
                    req.route.set_attribute("lumina.outcome", "abandoned")
                    self._close_request(rid, req, "unset", end)
                    closed += 1
        return closed

    @property
    def open_requests(self) -> int:
        return len(self._reqs)

    # ------------------------------------------------------------------ span plumbing
    def _open(self, span: SpanRecord) -> None:
        for sink in self.sinks:
            sink.span_opened(span)

    def _close(self, span: SpanRecord) -> None:
        self.spans_closed += 1
        for sink in self.sinks:
            sink.span_closed(span)

    def _roll_up(self, span: SpanRecord) -> None:
        cost, n_in, n_out = span.cost_usd or 0.0, span.input_tokens or 0, span.output_tokens or 0
        live = self._live
        parent = live.get(span.parent_id)  # type: ignore[arg-type]
        depth = 0
        while parent is not None and depth < 64:
            parent.tot_cost += cost
            parent.tot_in += n_in
            parent.tot_out += n_out
            parent = live.get(parent.parent_id)  # type: ignore[arg-type]
            depth += 1

    def _session_for(self, trace_id: str, source: str | None) -> str | None:
        return self._sessions.get(trace_id) or source

    # ------------------------------------------------------------------ requests
    def _request(self, ev: Any) -> _Req:
        rid = ev.request_id
        req = self._reqs.get(rid)
        if req is not None:
            return req
        old = self._recent.pop(rid, None)
        if old is not None:  # a late event of a closed request: reopen its route span
            route = old.route.copy()
            route.rev += 1
            route.end_ts = None
            route.status = "unset"
            old.route = route
            old.pending = None
            self._reqs[rid] = old
            self._live[route.span_id] = route
            self._open(route)
            return old
        trace_id, parent = ev.trace_id, ev.span_id
        if trace_id is None:
            trace_id, parent = trace_id_for_request(rid), None
        route = SpanRecord(trace_id, route_span_id(rid), parent, "route", "route", ev.ts)
        route.request_id = rid
        route.source = ev.source
        route.session = self._sessions.get(trace_id) or ev.source
        req = self._reqs[rid] = _Req(route)
        self._live[route.span_id] = route
        self._open(route)
        return req

    def _routed(self, ev: Any) -> None:
        req = self._reqs.get(ev.request_id) or self._request(ev)
        route = req.route
        route.strategy = ev.strategy
        route.principal = ev.principal
        route.project = ev.project
        route.name = "route " + ev.strategy
        attrs = {"lumina.chosen": ev.chosen, "lumina.candidates": ev.candidates}
        if ev.excluded:
            attrs["lumina.excluded"] = ev.excluded
        if ev.predicted_cost_usd:
            attrs["lumina.predicted_cost_usd"] = ev.predicted_cost_usd
        if route.attributes:
            route.attributes.update(attrs)
        else:
            route.attributes = attrs

    def _started(self, ev: Any) -> None:
        req = self._reqs.get(ev.request_id) or self._request(ev)
        if req.pending is not None:
            req.pending = None
            self._pending.pop(ev.request_id, None)
        req.n = n = req.n + 1
        provider = ev.provider
        if ev.attempt > 1:
            kind = "retry"
        elif n == 1:
            kind = "first"
        elif req.hedges and provider in req.hedges:
            kind = "hedge"
        elif req.failovers and provider in req.failovers:
            kind = "failover"
        elif req.fallbacks and provider in req.fallbacks:
            kind = "fallback"
        elif req.route.strategy == "cascade":
            kind = "cascade"
        else:
            kind = "fallback"
        route = req.route
        if ev.stream and route.strategy is None:
            route.name = "route stream"
        span = SpanRecord(
            route.trace_id, attempt_span_id(ev.request_id, n), route.span_id, "chat " + ev.model, "attempt", ev.ts
        )
        span.source = route.source
        span.session = route.session
        span.principal = route.principal
        span.project = route.project
        span.request_id = ev.request_id
        span.provider = provider
        span.model = ev.model
        span.attempt = ev.attempt
        span.attempt_kind = kind
        span.stream = ev.stream
        span.breaker_state = self.breakers.get(provider, "closed")
        req.attempts[(provider, ev.attempt)] = span
        self._open(span)

    def _attempt_for(self, ev: Any) -> tuple[_Req, SpanRecord]:
        req = self._reqs.get(ev.request_id) or self._request(ev)
        span = req.attempts.pop((ev.provider, ev.attempt), None)
        if span is None:  # started before we subscribed, or a late answer of a call closed as cancelled
            route = req.route
            req.n += 1
            start = ev.ts - timedelta(seconds=max(ev.latency_s or 0.0, 0.0))
            span = SpanRecord(
                route.trace_id,
                attempt_span_id(ev.request_id, req.n),
                route.span_id,
                "chat " + ev.model,
                "attempt",
                start,
            )
            span.request_id = ev.request_id
            span.provider = ev.provider
            span.model = ev.model
            span.attempt = ev.attempt
            span.attempt_kind = "retry" if ev.attempt > 1 else ("first" if req.n == 1 else "fallback")
            span.stream = getattr(ev, "stream", None)
            span.breaker_state = self.breakers.get(ev.provider, "closed")
        return req, span

    def _finished(self, ev: Any) -> None:
        req, span = self._attempt_for(ev)
        span.end_ts = end = ev.ts
        span.status = "ok"
        span.input_tokens = ev.input_tokens
        span.output_tokens = ev.output_tokens
        span.cost_usd = ev.cost_usd
        span.latency_s = ev.latency_s
        span.ttft_s = ev.ttft_s  # the "first_token" span event is derived from it (export, waterfall)
        self._roll_up(span)
        self._close(span)
        rid = ev.request_id
        if req.route.strategy == "cascade" and not ev.stream:
            self._set_pending(rid, req, "ok", end)
        else:
            self._close_request(rid, req, "ok", end)

    def _failed(self, ev: Any) -> None:
        req, span = self._attempt_for(ev)
        span.end_ts = end = ev.ts
        span.status = "error"
        span.error_type = ev.error_type
        span.error = ev.error
        span.latency_s = ev.latency_s
        if not ev.retryable:
            span.set_attribute("lumina.retryable", False)
        self._close(span)
        route = req.route
        route.error_type, route.error = ev.error_type, f"{ev.provider}: {ev.error}"
        if not req.attempts:
            self._set_pending(ev.request_id, req, "error", end)

    def _set_pending(self, rid: str, req: _Req, status: str, end: datetime) -> None:
        req.pending = (status, end)
        self._pending[rid] = time.monotonic()

    def _continues(self, ev: Any) -> _Req:
        req = self._request(ev)
        if req.pending is not None:
            req.pending = None
            self._pending.pop(ev.request_id, None)
        return req

    def _retry(self, ev: Any) -> None:
        req = self._continues(ev)
        req.route.add_event(
            "retry",
            ev.ts,
            {
                "lumina.provider_id": ev.provider,
                "lumina.attempt": ev.attempt,
                "lumina.delay_s": ev.delay_s,
                "lumina.reason": ev.reason,
            },
        )

    def _hedge(self, ev: Any) -> None:
        req = self._continues(ev)
        if req.hedges is None:
            req.hedges = set()
        req.hedges.add(ev.hedge)
        req.route.add_event(
            "hedge", ev.ts, {"lumina.primary": ev.primary, "lumina.hedge": ev.hedge, "lumina.after_s": ev.after_s}
        )

    def _fallback(self, ev: Any) -> None:
        req = self._continues(ev)
        if req.fallbacks is None:
            req.fallbacks = set()
        req.fallbacks.add(ev.next)
        req.route.add_event(
            "fallback", ev.ts, {"lumina.failed": ev.failed, "lumina.next": ev.next, "lumina.reason": ev.reason}
        )

    def _failover(self, ev: Any) -> None:
        req = self._continues(ev)
        if req.failovers is None:
            req.failovers = set()
        req.failovers.add(ev.next)
        req.route.add_event(
            "stream_failover",
            ev.ts,
            {
                "lumina.failed": ev.failed,
                "lumina.next": ev.next,
                "lumina.chars_received": ev.chars_received,
                "lumina.reason": ev.reason,
            },
        )

    def _budget_exceeded(self, ev: Any) -> None:
        req = self._request(ev)
        route = req.route
        route.add_event("budget_exceeded", ev.ts, {"lumina.error": ev.error})
        route.error_type, route.error = "BudgetExceeded", ev.error
        if not req.attempts:
            self._set_pending(ev.request_id, req, "error", ev.ts)

    def _breaker(self, ev: Any) -> None:
        self.breakers[ev.provider] = ev.new

    def _close_request(self, rid: str, req: _Req, status: str, end: datetime) -> None:
        for span in req.attempts.values():  # e.g. the losing side of a hedge, cancelled when the other answered
            span.end_ts = max(end, span.start_ts)
            span.set_attribute("lumina.outcome", "cancelled")
            self._close(span)
        req.attempts.clear()
        req.pending = None
        self._pending.pop(rid, None)
        route = req.route
        route.end_ts = max(end, route.start_ts)
        route.status = status
        if status == "ok":
            route.error_type = route.error = None
        self._live.pop(route.span_id, None)  # its totals already reached every live ancestor (_roll_up)
        self._close(route)
        self._reqs.pop(rid, None)
        recent = self._recent
        recent[rid] = req
        if len(recent) > self._recent_max:
            recent.popitem(last=False)

    # ------------------------------------------------------------------ memory, policy, user spans
    def _leaf(self, ev: Any, name: str, kind: str, seconds: float) -> SpanRecord:
        trace_id, parent = ev.trace_id, ev.span_id
        if trace_id is None:
            trace_id, parent = hex_id(ev.id, 32), None
        end = ev.ts
        span = SpanRecord(trace_id, hex_id(ev.id), parent, name, kind, end - timedelta(seconds=max(seconds, 0.0)))
        span.end_ts = end
        span.status = "ok"
        span.source = ev.source
        span.session = self._session_for(trace_id, ev.source)
        return span

    def _memory(self, ev: Any) -> None:
        ms = getattr(ev, "ms", None)
        if ms is None:
            return
        payload = ev.payload()
        payload.pop("ms", None)
        t = ev.event_type
        collection = payload.get("collection")
        if t == "memory.written":
            name = f"memory.{payload.get('op', 'write')}"
        elif t == "memory.searched":
            name = "memory.search"
        else:
            name = t
        if collection:
            name = f"{name} {collection}"
        span = self._leaf(ev, name, "memory", ms / 1000.0)
        span.principal = payload.get("principal")
        span.latency_s = ms / 1000.0
        span.attributes = {f"lumina.memory.{k}": v for k, v in payload.items() if v is not None}
        span.attributes["lumina.memory.operation"] = t.split(".", 1)[1]
        self._close(span)

    def _policy(self, ev: Any) -> None:
        ms = getattr(ev, "ms", None)  # older events lack it: a zero-length span
        span = self._leaf(ev, f"policy {ev.action}", "policy", (ms or 0.0) / 1000.0)
        span.principal = ev.principal
        if ms is not None:
            span.latency_s = ms / 1000.0
        attrs: dict[str, Any] = {
            "lumina.policy.decision": ev.decision,
            "lumina.policy.principal": ev.principal,
            "lumina.policy.action": ev.action,
            "lumina.policy.resource": ev.resource,
            "lumina.policy.point": ev.point,
        }
        if ev.policies:
            attrs["lumina.policy.policies"] = list(ev.policies)
        if ev.version is not None:
            attrs["lumina.policy.version"] = ev.version
        if ev.errors:
            attrs["lumina.policy.errors"] = list(ev.errors)
            span.status = "error"
            span.error_type, span.error = "PolicyError", "; ".join(ev.errors)
        span.attributes = attrs
        self._close(span)

    def _span_started(self, ev: Any) -> None:
        trace_id = ev.trace_id or hex_id(ev.id, 32)
        span = SpanRecord(trace_id, ev.span_id or hex_id(ev.id), ev.parent_id, ev.name, ev.kind, ev.ts)
        if ev.session:
            self._sessions[trace_id] = ev.session
            if len(self._sessions) > 4096:
                self._sessions.popitem(last=False)
        span.session = ev.session or self._session_for(trace_id, ev.source)
        span.source = ev.source
        if ev.attributes:
            span.attributes = dict(ev.attributes)
        self._live[span.span_id] = span
        self._open(span)

    def _span_ended(self, ev: Any) -> None:
        span = self._live.pop(ev.span_id, None) if ev.span_id else None
        if span is None:
            trace_id = ev.trace_id or hex_id(ev.id, 32)
            span = SpanRecord(
                trace_id,
                ev.span_id or hex_id(ev.id),
                ev.parent_id,
                ev.name,
                ev.kind,
                ev.ts - timedelta(seconds=ev.duration_s),
            )
            span.source = ev.source
            span.session = self._session_for(trace_id, ev.source)
        span.end_ts = max(ev.ts, span.start_ts)
        span.status = ev.status
        if ev.error:
            span.error = ev.error
            span.error_type = ev.error.split(":", 1)[0]
        if ev.attributes:
            if span.attributes is None:
                span.attributes = {}
            span.attributes.update(ev.attributes)
        self._close(span)


# ---------------------------------------------------------------------------------------- OTel attributes
_OI_KIND = {"route": "CHAIN", "attempt": "LLM", "run": "CHAIN", "span": "CHAIN", "policy": "GUARDRAIL"}


def _attr_value(value: Any) -> Any:
    """An OpenTelemetry attribute value (str, bool, int, float, or a homogeneous list of those)."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return list(value)
    import json

    return json.dumps(value, default=str, sort_keys=True)


def otel_attributes(span: SpanRecord) -> dict[str, Any]:
    """The span's attributes under the OpenTelemetry GenAI conventions, OpenInference names and ours."""
    a: dict[str, Any] = {"lumina.span.kind": span.kind}
    kind = span.kind
    oi = _OI_KIND.get(kind)
    if kind == "memory":
        oi = "RETRIEVER" if span.name.startswith("memory.search") else "CHAIN"
    if oi:
        a["openinference.span.kind"] = oi
    if span.session:
        a["session.id"] = span.session
        a["lumina.session"] = span.session
    if span.source:
        a["lumina.source"] = span.source
    if span.request_id:
        a["lumina.request_id"] = span.request_id
    if span.principal:
        a["lumina.principal"] = span.principal
        a["user.id"] = span.principal
    if span.project:
        a["lumina.project"] = span.project
    if kind == "attempt":
        system = gen_ai_system(span.model, span.provider)
        a["gen_ai.operation.name"] = "chat"
        a["gen_ai.system"] = system
        a["gen_ai.provider.name"] = system
        if span.model:
            a["gen_ai.request.model"] = span.model
            a["llm.model_name"] = span.model
        if span.status == "ok" and span.model:
            a["gen_ai.response.model"] = span.model
        a["gen_ai.request.stream"] = bool(span.stream)
        if span.input_tokens is not None:
            a["gen_ai.usage.input_tokens"] = span.input_tokens
            a["llm.token_count.prompt"] = span.input_tokens
        if span.output_tokens is not None:
            a["gen_ai.usage.output_tokens"] = span.output_tokens
            a["llm.token_count.completion"] = span.output_tokens
        if span.input_tokens is not None and span.output_tokens is not None:
            a["llm.token_count.total"] = span.input_tokens + span.output_tokens
        if span.ttft_s is not None:
            a["gen_ai.response.time_to_first_chunk"] = span.ttft_s
        if span.cost_usd is not None:
            a["lumina.cost_usd"] = span.cost_usd
        a["lumina.provider_id"] = span.provider or ""
        a["lumina.attempt"] = span.attempt or 1
        a["lumina.attempt.kind"] = span.attempt_kind or "first"
        a["lumina.breaker_state"] = span.breaker_state or "closed"
        if span.latency_s is not None:
            a["lumina.latency_s"] = span.latency_s
    else:
        if span.strategy:
            a["lumina.strategy"] = span.strategy
        if span.tot_cost or span.tot_in or span.tot_out or kind == "route":
            a["lumina.cost_usd"] = span.tot_cost
            a["lumina.usage.input_tokens"] = span.tot_in
            a["lumina.usage.output_tokens"] = span.tot_out
    if span.error_type:
        a["error.type"] = span.error_type
    if span.attributes:
        for k, v in span.attributes.items():
            if v is not None:
                a[k] = _attr_value(v)
    return a
