"""The span store: spans are a SQL projection of the event log, computed by DuckDB when asked.

Every fact a span is made of is already an event in the event store: the router
publishes ``provider.request.routed``, ``provider.call.started`` /
``finished`` / ``failed``, retries, hedges, fallbacks and failovers; memory
publishes its operations with their ``ms``; policy its decisions; ``lab.run``
announces its spans with ``span.started`` / ``span.ended``.  So spans are not
written a second time: :class:`SpanStore` derives them with one SQL query over
the ``events`` view of an event store.  Consequences:

* tracing adds no work to the routing hot path and no second log to write;
* spans of every process on the machine are there (the file event store is
  read by all of them), and so are spans still in progress (a call started and
  not finished yet), within the event store's flush interval;
* spans can be derived for any time in the past the event log covers.

Derivation (mirrored in Python by :class:`~lumina_lab.observability.spans.SpanBuilder`
for live OTLP export, with the same ids):

* a request is a ``route`` span (trace id: the enclosing span's when the
  request was routed inside one, else the request's UUIDv7 id as 32 hex
  digits; span id ``md5(request_id + "/route")[:16]``), open while one of its
  calls is open or a retry/fallback it announced has not started yet;
* every ``provider.call.started`` is an ``attempt`` child (span id
  ``md5(request_id + "/" + n)[:16]``), ended by the matching finished/failed
  event; kinds ``first``, ``retry``, ``hedge``, ``fallback``, ``failover``,
  ``cascade``; the losing side of a hedge closes as ``cancelled`` when the
  winner answers; the circuit breaker's state at the start comes from
  ``provider.breaker.changed`` (an ASOF join);
* memory and policy events are leaf spans under the span active when they
  happened; ``span.*`` events are spans opened by code.

Cost and tokens sit on the leaves; ``traces`` rolls them up per trace,
:meth:`SpanStore.trace` per span (a recursive CTE), :meth:`SpanStore.sessions`
per session.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from ..events.store.base import check_limit

if TYPE_CHECKING:
    import pandas as pd

    from .trace import Trace

__all__ = ["SPAN_COLUMNS", "SpanStore"]

#: Columns of the ``spans`` table.
SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "kind",
    "start_ts",
    "end_ts",
    "status",
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
    "in_progress",
    "duration_ms",
)

_TRACE_COLUMNS = (
    "trace_id",
    "root",
    "root_kind",
    "status",
    "start_ts",
    "end_ts",
    "duration_ms",
    "in_progress",
    "spans",
    "open_spans",
    "requests",
    "calls",
    "failed_calls",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "models",
    "providers",
    "session",
    "project",
    "source",
)

#: How long a call may stay open before it is shown as abandoned (a stream whose reader walked away).
MAX_OPEN_S = 600
#: How long an announced retry or fallback keeps its request open without a next event (plus the retry delay).
PENDING_GRACE_S = 5
#: With a ``since`` filter, events this long before it are read too, so traces that started after
#: ``since`` are whole; only a trace lasting longer than this can show up cut.
SCAN_MARGIN_S = 3600

_TYPES = (
    "type LIKE 'provider.%' OR type LIKE 'memory.%' "
    "OR type IN ('budget.exceeded', 'policy.decided', 'span.started', 'span.ended')"
)
_CONTINUE = (
    "('provider.retry.scheduled', 'provider.fallback.used', 'provider.stream.failover', 'provider.hedge.launched')"
)
_TS_JSON = "strftime(ts, '%Y-%m-%dT%H:%M:%S.%f+00:00')"

# The derivation.  {where} narrows the events scanned ("AND ts >= ?" with a margin before a `since` filter).
_DERIVE = f"""
ev AS MATERIALIZED (
    SELECT id, type, ts, source, trace_id AS ctx_trace, span_id AS ctx_span, payload::JSON AS payload,
           payload->>'$.request_id' AS rid
    FROM events WHERE ({_TYPES}) {{where}}),
pv AS MATERIALIZED (SELECT * FROM ev WHERE rid IS NOT NULL AND (type LIKE 'provider.%' OR type = 'budget.exceeded')),
started AS (
    SELECT rid, id, ts, payload->>'$.provider' AS provider, payload->>'$.model' AS model,
           (payload->>'$.attempt')::INTEGER AS attempt, coalesce((payload->>'$.stream')::BOOLEAN, false) AS stream,
           row_number() OVER (PARTITION BY rid ORDER BY id) AS n
    FROM pv WHERE type = 'provider.call.started'),
ended AS (
    SELECT rid, ts, type = 'provider.call.finished' AS ok, payload->>'$.provider' AS provider,
           (payload->>'$.attempt')::INTEGER AS attempt,
           (payload->>'$.input_tokens')::BIGINT AS input_tokens, (payload->>'$.output_tokens')::BIGINT AS output_tokens,
           (payload->>'$.cost_usd')::DOUBLE AS cost_usd, (payload->>'$.latency_s')::DOUBLE AS latency_s,
           (payload->>'$.ttft_s')::DOUBLE AS ttft_s, payload->>'$.error_type' AS error_type,
           payload->>'$.error' AS error, (payload->>'$.retryable')::BOOLEAN AS retryable,
           row_number() OVER (PARTITION BY rid, payload->>'$.provider', payload->>'$.attempt' ORDER BY id) AS k
    FROM pv WHERE type IN ('provider.call.finished', 'provider.call.failed')),
brk AS (SELECT payload->>'$.provider' AS provider, ts, payload->>'$.new' AS state
        FROM ev WHERE type = 'provider.breaker.changed'),
req AS MATERIALIZED (
    SELECT rid,
        min(ts) AS start_ts, max(ts) AS last_ts, arg_max(type, id) AS last_type, arg_max(payload, id) AS last_payload,
        coalesce(arg_min(ctx_trace, id) FILTER (WHERE type = 'provider.request.routed'), arg_min(ctx_trace, id)) AS ctx_trace,
        coalesce(arg_min(ctx_span, id) FILTER (WHERE type = 'provider.request.routed'), arg_min(ctx_span, id)) AS ctx_span,
        arg_min(source, id) AS source,
        arg_min(payload, id) FILTER (WHERE type = 'provider.request.routed') AS routed,
        count(*) FILTER (WHERE type = 'provider.call.finished') AS finishes,
        min(ts) FILTER (WHERE type = 'provider.call.finished') AS first_finish,
        count(*) FILTER (WHERE type IN ('provider.call.failed', 'budget.exceeded')) AS failures,
        arg_max(payload, id) FILTER (WHERE type IN ('provider.call.failed', 'budget.exceeded')) AS last_failure,
        arg_max(type, id) FILTER (WHERE type IN ('provider.call.failed', 'budget.exceeded')) AS last_failure_type,
        coalesce(list(payload->>'$.hedge') FILTER (WHERE type = 'provider.hedge.launched'), []) AS hedges,
        coalesce(list(payload->>'$.next') FILTER (WHERE type = 'provider.fallback.used'), []) AS fallbacks,
        coalesce(list(payload->>'$.next') FILTER (WHERE type = 'provider.stream.failover'), []) AS failovers,
        coalesce(bool_or((payload->>'$.stream')::BOOLEAN) FILTER (WHERE type = 'provider.call.started'), false) AS streamed,
        to_json(list(json_object(
            'name', CASE type WHEN 'provider.retry.scheduled' THEN 'retry' WHEN 'provider.hedge.launched' THEN 'hedge'
                    WHEN 'provider.fallback.used' THEN 'fallback' WHEN 'provider.stream.failover' THEN 'stream_failover'
                    ELSE 'budget_exceeded' END,
            'ts', {_TS_JSON}, 'attributes', payload) ORDER BY id)
            FILTER (WHERE type IN {_CONTINUE[:-1]}, 'budget.exceeded')))::VARCHAR AS events
    FROM pv GROUP BY rid),
rq AS MATERIALIZED (
    SELECT r.*,
        CASE WHEN regexp_full_match(replace(r.rid, '-', ''), '[0-9a-f]{{32}}') THEN replace(r.rid, '-', '')
             ELSE md5(r.rid) END AS own_trace,
        substr(md5(r.rid || '/route'), 1, 16) AS route_id,
        r.routed->>'$.strategy' AS strategy
    FROM req r),
att AS MATERIALIZED (
    SELECT s.rid AS request_id, s.n, s.provider, s.model, s.attempt, s.stream, s.ts AS start_ts,
           coalesce(q.ctx_trace, q.own_trace) AS trace_id, substr(md5(s.rid || '/' || s.n), 1, 16) AS span_id,
           q.route_id AS parent_id, q.source, q.strategy, q.routed->>'$.principal' AS principal,
           q.routed->>'$.project' AS project,
           e.ts AS ended_ts, e.ok, e.input_tokens, e.output_tokens, e.cost_usd, e.latency_s, e.ttft_s,
           e.error_type, e.error, e.retryable,
           e.ts IS NULL AND q.finishes > 0 AND coalesce(q.strategy, '') <> 'cascade' AS cancelled,
           e.ts IS NULL AND NOT (q.finishes > 0 AND coalesce(q.strategy, '') <> 'cascade')
               AND s.ts < now() - INTERVAL {MAX_OPEN_S} SECOND AS abandoned,
           q.first_finish,
           CASE WHEN s.attempt > 1 THEN 'retry' WHEN s.n = 1 THEN 'first'
                WHEN list_contains(q.hedges, s.provider) THEN 'hedge'
                WHEN list_contains(q.failovers, s.provider) THEN 'failover'
                WHEN list_contains(q.fallbacks, s.provider) THEN 'fallback'
                WHEN q.strategy = 'cascade' THEN 'cascade' ELSE 'fallback' END AS attempt_kind
    FROM started s JOIN rq q USING (rid)
    LEFT JOIN ended e ON e.rid = s.rid AND e.provider = s.provider AND e.attempt = s.attempt AND e.k = 1),
attempts AS (
    SELECT a.trace_id, a.span_id, a.parent_id, 'chat ' || a.model AS name, 'attempt' AS kind, a.start_ts,
           CASE WHEN a.ended_ts IS NOT NULL THEN a.ended_ts
                WHEN a.cancelled THEN greatest(a.first_finish, a.start_ts)
                WHEN a.abandoned THEN a.start_ts END AS end_ts,
           CASE WHEN a.ended_ts IS NULL THEN 'unset' WHEN a.ok THEN 'ok' ELSE 'error' END AS status,
           a.source, a.request_id, a.provider, a.model, a.attempt, a.attempt_kind, a.strategy,
           coalesce(b.state, 'closed') AS breaker_state, a.stream, a.input_tokens, a.output_tokens, a.cost_usd,
           a.latency_s, a.ttft_s, a.error_type, a.error, a.principal, a.project,
           CASE WHEN a.cancelled THEN '{{"lumina.outcome":"cancelled"}}'
                WHEN a.abandoned THEN '{{"lumina.outcome":"abandoned"}}'
                WHEN a.retryable = false THEN '{{"lumina.retryable":false}}' END AS attributes,
           NULL::VARCHAR AS events
    FROM att a ASOF LEFT JOIN brk b ON b.provider = a.provider AND a.start_ts >= b.ts),
open_calls AS (SELECT request_id, count(*) FILTER (WHERE end_ts IS NULL) AS n FROM attempts GROUP BY request_id),
routes AS (
    SELECT coalesce(q.ctx_trace, q.own_trace) AS trace_id, q.route_id AS span_id,
           CASE WHEN q.ctx_trace IS NOT NULL THEN q.ctx_span END AS parent_id,
           CASE WHEN q.strategy IS NOT NULL THEN 'route ' || q.strategy WHEN q.streamed THEN 'route stream'
                ELSE 'route' END AS name,
           'route' AS kind, q.start_ts, q.last_ts, q.finishes, q.failures,
           coalesce(o.n, 0) > 0 OR (q.last_type IN {_CONTINUE} AND q.last_ts + to_microseconds(
               CAST((coalesce((q.last_payload->>'$.delay_s')::DOUBLE, 0) + {PENDING_GRACE_S}) * 1e6 AS BIGINT)) > now())
               AS pending,
           q.source, q.rid AS request_id, q.strategy, q.routed->>'$.principal' AS principal,
           q.routed->>'$.project' AS project, q.last_failure, q.last_failure_type,
           CASE WHEN q.routed IS NOT NULL THEN json_object(
               'lumina.chosen', q.routed->'$.chosen', 'lumina.candidates', q.routed->'$.candidates',
               'lumina.excluded', q.routed->'$.excluded',
               'lumina.predicted_cost_usd', q.routed->'$.predicted_cost_usd')::VARCHAR END AS attributes,
           q.events
    FROM rq q LEFT JOIN open_calls o ON o.request_id = q.rid),
routes_final AS (
    SELECT trace_id, span_id, parent_id, name, kind, start_ts,
           CASE WHEN pending THEN NULL ELSE greatest(last_ts, start_ts) END AS end_ts,
           CASE WHEN pending THEN 'unset' WHEN finishes > 0 THEN 'ok' WHEN failures > 0 THEN 'error' ELSE 'unset' END
               AS status,
           source, request_id, strategy, principal, project, attributes, events,
           CASE WHEN NOT pending AND finishes = 0 AND failures > 0 THEN
               CASE WHEN last_failure_type = 'budget.exceeded' THEN 'BudgetExceeded'
                    ELSE last_failure->>'$.error_type' END END AS error_type,
           CASE WHEN NOT pending AND finishes = 0 AND failures > 0 THEN
               CASE WHEN last_failure_type = 'budget.exceeded' THEN last_failure->>'$.error'
                    ELSE (last_failure->>'$.provider') || ': ' || (last_failure->>'$.error') END END AS error
    FROM routes),
leaf AS (
    SELECT id, type, ts, source, payload, coalesce(ctx_trace, md5(id)) AS trace_id,
           CASE WHEN ctx_trace IS NOT NULL THEN ctx_span END AS parent_id, substr(md5(id), 1, 16) AS span_id,
           (payload->>'$.ms')::DOUBLE AS ms
    FROM ev WHERE (type LIKE 'memory.%' AND payload->>'$.ms' IS NOT NULL) OR type = 'policy.decided'),
leaves AS (
    SELECT trace_id, span_id, parent_id,
           CASE WHEN type = 'policy.decided' THEN 'policy ' || (payload->>'$.action')
                ELSE CASE type WHEN 'memory.written' THEN 'memory.' || coalesce(payload->>'$.op', 'write')
                               WHEN 'memory.searched' THEN 'memory.search' ELSE type END
                     || coalesce(' ' || (payload->>'$.collection'), '') END AS name,
           CASE WHEN type = 'policy.decided' THEN 'policy' ELSE 'memory' END AS kind,
           ts - to_microseconds(CAST(round(coalesce(ms, 0) * 1000) AS BIGINT)) AS start_ts, ts AS end_ts,
           CASE WHEN type = 'policy.decided' AND json_array_length(payload->'$.errors') > 0 THEN 'error' ELSE 'ok' END
               AS status,
           source, ms / 1000.0 AS latency_s, payload->>'$.principal' AS principal, payload::VARCHAR AS attributes,
           CASE WHEN type = 'policy.decided' AND json_array_length(payload->'$.errors') > 0 THEN 'PolicyError' END
               AS error_type
    FROM leaf),
rs AS (SELECT ctx_trace AS t, ctx_span AS s, ts, source, payload FROM ev WHERE type = 'span.started'),
re AS (SELECT ctx_trace AS t, ctx_span AS s, ts, source, payload FROM ev WHERE type = 'span.ended'),
run AS MATERIALIZED (
    SELECT coalesce(rs.t, re.t) AS trace_id, coalesce(rs.s, re.s) AS span_id,
           coalesce(rs.payload->>'$.parent_id', re.payload->>'$.parent_id') AS parent_id,
           coalesce(re.payload->>'$.name', rs.payload->>'$.name') AS name,
           coalesce(rs.payload->>'$.kind', re.payload->>'$.kind') AS kind,
           coalesce(rs.ts, re.ts - to_microseconds(CAST(round((re.payload->>'$.duration_s')::DOUBLE * 1e6) AS BIGINT)))
               AS start_ts,
           re.ts AS end_ts, coalesce(re.payload->>'$.status', 'unset') AS status,
           coalesce(rs.source, re.source) AS source, rs.payload->>'$.session' AS run_session,
           re.payload->>'$.error' AS error,
           json_merge_patch(coalesce(rs.payload->'$.attributes', '{{}}'), coalesce(re.payload->'$.attributes', '{{}}'))
               AS attrs
    FROM rs FULL OUTER JOIN re ON rs.t = re.t AND rs.s = re.s),
runs AS (
    SELECT trace_id, span_id, parent_id, name, kind, start_ts, end_ts, status, source, error,
           CASE WHEN error IS NOT NULL THEN split_part(error, ':', 1) END AS error_type,
           coalesce(attrs->>'$."lumina.provider_id"', attrs->>'$."gen_ai.provider.name"', attrs->>'$."gen_ai.system"')
               AS provider,
           coalesce(attrs->>'$."gen_ai.response.model"', attrs->>'$."gen_ai.request.model"') AS model,
           (attrs->>'$."gen_ai.usage.input_tokens"')::BIGINT AS input_tokens,
           (attrs->>'$."gen_ai.usage.output_tokens"')::BIGINT AS output_tokens,
           (attrs->>'$."lumina.cost_usd"')::DOUBLE AS cost_usd,
           (attrs->>'$."gen_ai.response.time_to_first_chunk"')::DOUBLE AS ttft_s,
           CASE WHEN attrs::VARCHAR <> '{{}}' THEN attrs::VARCHAR END AS attributes
    FROM run),
tsess AS (SELECT trace_id, arg_min(run_session, start_ts) FILTER (WHERE run_session IS NOT NULL) AS session
          FROM run GROUP BY trace_id),
spans0 AS (
    SELECT * FROM routes_final
    UNION ALL BY NAME SELECT * FROM attempts
    UNION ALL BY NAME SELECT * FROM leaves
    UNION ALL BY NAME SELECT * FROM runs),
spans AS MATERIALIZED (
    SELECT s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.start_ts, s.end_ts, s.status, s.source,
           coalesce(t.session, s.source) AS session, s.request_id, s.provider, s.model, s.attempt::INTEGER AS attempt,
           s.attempt_kind, s.strategy, s.breaker_state, s.stream, s.input_tokens::BIGINT AS input_tokens,
           s.output_tokens::BIGINT AS output_tokens, s.cost_usd::DOUBLE AS cost_usd, s.latency_s::DOUBLE AS latency_s,
           s.ttft_s::DOUBLE AS ttft_s, s.error_type, s.error, s.principal, s.project, s.attributes, s.events,
           s.end_ts IS NULL AS in_progress, date_diff('microsecond', s.start_ts, s.end_ts) / 1000.0 AS duration_ms
    FROM spans0 s LEFT JOIN tsess t USING (trace_id))
"""

_TRACES = """
traces AS MATERIALIZED (
    WITH roots AS (
        SELECT s.trace_id, s.name, s.kind, s.status,
               row_number() OVER (PARTITION BY s.trace_id ORDER BY s.start_ts, s.span_id) AS rn
        FROM spans s LEFT JOIN spans p ON p.trace_id = s.trace_id AND p.span_id = s.parent_id
        WHERE p.span_id IS NULL),
    agg AS (
        SELECT trace_id,
               min(start_ts) AS start_ts,
               CASE WHEN bool_or(end_ts IS NULL) THEN NULL ELSE max(end_ts) END AS end_ts,
               count(*) AS spans,
               count(*) FILTER (WHERE end_ts IS NULL) AS open_spans,
               count(*) FILTER (WHERE kind = 'route') AS requests,
               count(*) FILTER (WHERE kind = 'attempt') AS calls,
               count(*) FILTER (WHERE kind = 'attempt' AND status = 'error') AS failed_calls,
               count(*) FILTER (WHERE status = 'error') AS errors,
               coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
               coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
               coalesce(sum(cost_usd), 0.0) AS cost_usd,
               coalesce(list_sort(list(DISTINCT model) FILTER (WHERE model IS NOT NULL)), []) AS models,
               coalesce(list_sort(list(DISTINCT provider) FILTER (WHERE provider IS NOT NULL)), []) AS providers,
               arg_min(session, start_ts) AS session,
               arg_min(project, start_ts) FILTER (WHERE project IS NOT NULL) AS project,
               arg_min(source, start_ts) AS source
        FROM spans GROUP BY trace_id)
    SELECT a.trace_id, r.name AS root, r.kind AS root_kind,
           CASE WHEN a.open_spans > 0 THEN 'in_progress' ELSE coalesce(r.status, 'unset') END AS status,
           a.start_ts, a.end_ts, date_diff('microsecond', a.start_ts, a.end_ts) / 1000.0 AS duration_ms,
           a.open_spans > 0 AS in_progress,
           a.spans, a.open_spans, a.requests, a.calls, a.failed_calls, a.errors,
           a.input_tokens, a.output_tokens, a.cost_usd, a.models, a.providers, a.session, a.project, a.source
    FROM agg a LEFT JOIN roots r ON r.trace_id = a.trace_id AND r.rn = 1)
"""

_ROLLUP = """
up(trace_id, span_id, anc, depth) AS (
    SELECT trace_id, span_id, span_id, 0 FROM sp
    UNION ALL
    SELECT up.trace_id, up.span_id, p.parent_id, up.depth + 1
    FROM up JOIN sp p ON p.trace_id = up.trace_id AND p.span_id = up.anc
    WHERE p.parent_id IS NOT NULL AND up.depth < 64),
inside AS (SELECT up.* FROM up JOIN sp a ON a.trace_id = up.trace_id AND a.span_id = up.anc),
tot AS (
    SELECT i.trace_id, i.anc AS span_id,
           coalesce(sum(c.cost_usd), 0.0) AS total_cost_usd,
           coalesce(sum(c.input_tokens), 0)::BIGINT AS total_input_tokens,
           coalesce(sum(c.output_tokens), 0)::BIGINT AS total_output_tokens,
           count(*) - 1 AS descendants
    FROM inside i JOIN sp c ON c.trace_id = i.trace_id AND c.span_id = i.span_id
    GROUP BY i.trace_id, i.anc),
dep AS (SELECT trace_id, span_id, count(*) - 1 AS depth FROM inside GROUP BY trace_id, span_id)
SELECT sp.*, tot.total_cost_usd, tot.total_input_tokens, tot.total_output_tokens, tot.descendants, dep.depth
FROM sp JOIN tot USING (trace_id, span_id) JOIN dep USING (trace_id, span_id)
ORDER BY sp.trace_id, sp.start_ts, sp.span_id
"""


class SpanStore:
    """Spans, traces and their roll-ups, derived from an event store's log with DuckDB.

    Args:
        events: an event store (:class:`~lumina_lab.events.store.FileEventStore` — every process on the
            machine — or :class:`~lumina_lab.events.store.MemoryEventStore`).

    Tables for :meth:`sql`: ``spans`` (one row per span: see :data:`SPAN_COLUMNS`) and ``traces``
    (one row per trace, cost and tokens rolled up).

    >>> from lumina_lab.events.store import MemoryEventStore
    >>> SpanStore(MemoryEventStore()).traces().empty
    True
    """

    def __init__(self, events: Any) -> None:
        self.events = events

    # ------------------------------------------------------------------ SQL
    def _query(
        self, tail: str, params: list[Any], *, since: Any = None, traces: bool = True, records: bool = False
    ) -> Any:
        from ..events.store.base import _as_time

        where, pre = "", []
        t = _as_time(since, "since")
        if t is not None:  # scan events from a margin before `since`: a trace started then is seen whole
            where, pre = "AND ts >= ?", [t - timedelta(seconds=SCAN_MARGIN_S)]
        ctes = _DERIVE.replace("{where}", where) + ("," + _TRACES if traces else "")
        run = self.events.records if records else self.events.sql
        return run(f"WITH RECURSIVE {ctes}\n{tail}", pre + params)

    def sql(self, query: str, params: Sequence[Any] | None = None, *, since: Any = None) -> pd.DataFrame:
        """Run a SELECT over ``spans`` and ``traces`` (``since`` narrows the events scanned).

        >>> store.sql("SELECT model, sum(cost_usd) AS usd FROM spans GROUP BY model")  # doctest: +SKIP
        """
        q = query.strip()
        m = re.match(r"(?is)^with\s+(recursive\s+)?", q)
        if m:  # the caller's own CTEs follow ours
            q = ", " + q[m.end() :]
        return self._query(q, list(params or []), since=since)

    def records(self, query: str, params: Sequence[Any] | None = None, *, since: Any = None) -> list[dict[str, Any]]:
        """Like :meth:`sql`, as dicts of Python values (``None`` for NULL, UTC datetimes)."""
        q = query.strip()
        m = re.match(r"(?is)^with\s+(recursive\s+)?", q)
        if m:
            q = ", " + q[m.end() :]
        return self._query(q, list(params or []), since=since, records=True)

    # ------------------------------------------------------------------ filters
    @staticmethod
    def _filters(
        since: Any = None,
        until: Any = None,
        *,
        model: str | None = None,
        provider: str | None = None,
        session: str | None = None,
        status: str | None = None,
        name: str | None = None,
        project: str | None = None,
        min_cost: float | None = None,
        max_cost: float | None = None,
        in_progress: bool | None = None,
        trace_id: str | Sequence[str] | None = None,
        where: str | None = None,
    ) -> tuple[str, list[Any]]:
        """A WHERE clause over ``traces t``; the same filters serve traces, spans and statistics."""
        from ..events.store.base import _as_time

        clauses: list[str] = []
        params: list[Any] = []
        for value, label, cond in ((since, "since", "t.start_ts >= ?"), (until, "until", "t.start_ts < ?")):
            t = _as_time(value, label)
            if t is not None:
                clauses.append(cond)
                params.append(t)
        if model is not None:
            clauses.append("list_contains(t.models, ?)")
            params.append(model)
        if provider is not None:
            clauses.append("list_contains(t.providers, ?)")
            params.append(provider)
        for value, col in ((session, "session"), (status, "status"), (project, "project")):
            if value is not None:
                clauses.append(f"t.{col} = ?")
                params.append(value)
        if name is not None:
            clauses.append("t.root GLOB ?")
            params.append(name)
        if min_cost is not None:
            clauses.append("t.cost_usd >= ?")
            params.append(float(min_cost))
        if max_cost is not None:
            clauses.append("t.cost_usd <= ?")
            params.append(float(max_cost))
        if in_progress is not None:
            clauses.append("t.in_progress = ?")
            params.append(bool(in_progress))
        if trace_id is not None:
            ids = [trace_id] if isinstance(trace_id, str) else list(trace_id)
            clauses.append(f"t.trace_id IN ({', '.join('?' for _ in ids) or 'NULL'})")
            params.extend(ids)
        if where:
            clauses.append(f"({where})")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    # ------------------------------------------------------------------ queries
    def traces(
        self,
        since: Any = None,
        until: Any = None,
        *,
        limit: int | None = 100,
        order: str = "start_ts DESC",
        **filters: Any,
    ) -> pd.DataFrame:
        """One row per trace with cost and tokens rolled up from its leaves, newest first.

        Args:
            since, until: bounds on the trace's start (datetimes, ISO text, timedeltas or ``"15m"``-style ages).
            model, provider: traces with a call to this model / provider.
            session, status (``ok``, ``error``, ``in_progress``, ``unset``), project, name (glob over the root
            span's name), min_cost, max_cost, in_progress, trace_id: more filters.
            where: SQL over the ``traces`` columns (alias ``t``), e.g. ``"t.calls > 1"``.
            limit: at most this many rows; order: e.g. ``"cost_usd DESC"``.
        """
        limit = check_limit(limit)
        clause, params = self._filters(since, until, **filters)
        lim = f" LIMIT {limit}" if limit is not None else ""
        return self._query(f"SELECT t.* FROM traces t{clause} ORDER BY {_order(order)}{lim}", params, since=since)

    def spans(
        self, trace_id: str | Sequence[str] | None = None, *, rollup: bool = False, **filters: Any
    ) -> pd.DataFrame:
        """Spans (oldest first) of the traces matching the filters of :meth:`traces`.

        With ``rollup``, each span also has ``total_cost_usd``, ``total_input_tokens``,
        ``total_output_tokens`` (itself and everything under it), ``descendants`` and ``depth``.
        """
        if trace_id is not None:
            filters["trace_id"] = trace_id
        since = filters.get("since")
        clause, params = self._filters(**filters)
        chosen = f"SELECT t.trace_id FROM traces t{clause}"
        if not rollup:
            return self._query(
                f"SELECT s.* FROM spans s WHERE s.trace_id IN ({chosen}) ORDER BY s.trace_id, s.start_ts, s.span_id",
                params,
                since=since,
            )
        return self._query(
            f", sp AS (SELECT * FROM spans WHERE trace_id IN ({chosen})),\n{_ROLLUP}", params, since=since
        )

    def trace(self, trace_id: str) -> Trace:
        """One trace with per-span roll-ups; shows a waterfall in a notebook."""
        from .trace import Trace

        frame = self.spans(trace_id, rollup=True)
        if frame.empty:
            raise ValidationError(
                f"no trace {trace_id!r} in the event log",
                input=trace_id,
                hint="list traces with lab.traces(); events reach the store within its flush interval",
            )
        return Trace(trace_id, frame)

    def stats(self, by: str | Sequence[str] = "model", **filters: Any) -> pd.DataFrame:
        """Provider-call statistics of the traces matching the filters of :meth:`traces`, grouped ``by``.

        Columns: calls, errors, error_rate, p50/p95 latency (ms), mean time to first token (ms), input/output
        tokens and cost.  ``by``: one or more span columns (model, provider, session, project, attempt_kind ...).
        """
        keys = [by] if isinstance(by, str) else list(by)
        for k in keys:
            if k not in SPAN_COLUMNS:
                raise ValidationError(f"stats(by={k!r}): not a span column", input=k, hint=f"use one of {SPAN_COLUMNS}")
        cols = ", ".join(f"s.{k}" for k in keys)
        clause, params = self._filters(**filters)
        return self._query(
            f"""SELECT {cols}, count(*) AS calls,
                   count(*) FILTER (WHERE s.status = 'error') AS errors,
                   errors / calls AS error_rate,
                   quantile_cont(s.duration_ms, 0.5) AS p50_ms,
                   quantile_cont(s.duration_ms, 0.95) AS p95_ms,
                   avg(s.ttft_s) * 1000 AS ttft_ms,
                   coalesce(sum(s.input_tokens), 0) AS input_tokens,
                   coalesce(sum(s.output_tokens), 0) AS output_tokens,
                   coalesce(sum(s.cost_usd), 0) AS cost_usd
                FROM spans s WHERE s.kind = 'attempt' AND s.trace_id IN (SELECT t.trace_id FROM traces t{clause})
                GROUP BY {cols} ORDER BY cost_usd DESC, calls DESC""",
            params,
            since=filters.get("since"),
        )

    def sessions(self, **filters: Any) -> pd.DataFrame:
        """Cost, tokens and traces per session (``lab.run(..., session=...)``; otherwise the process)."""
        clause, params = self._filters(**filters)
        return self._query(
            f"""SELECT t.session, count(*) AS traces, sum(t.requests) AS requests, sum(t.calls) AS calls,
                   sum(t.input_tokens) AS input_tokens, sum(t.output_tokens) AS output_tokens,
                   sum(t.cost_usd) AS cost_usd, min(t.start_ts) AS first_ts, max(t.start_ts) AS last_ts
                FROM traces t{clause} GROUP BY t.session ORDER BY cost_usd DESC""",
            params,
            since=filters.get("since"),
        )

    def count(self, since: Any = None) -> int:
        """Number of spans."""
        return int(self._query("SELECT count(*) AS n FROM spans", [], since=since, traces=False)["n"].iloc[0])

    def __repr__(self) -> str:
        return f"SpanStore(events={self.events!r})"


def _order(order: str) -> str:
    parts = []
    for item in order.split(","):
        words = item.split()
        if (
            not words
            or words[0] not in _TRACE_COLUMNS
            or len(words) > 2
            or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC"))
        ):
            raise ValidationError(
                f"order={order!r} is not an order over trace columns",
                input=order,
                hint=f"e.g. 'cost_usd DESC'; columns: {', '.join(_TRACE_COLUMNS)}",
            )
        parts.append(" ".join(["t." + words[0], *words[1:]]))
    return ", ".join(parts)
