"""What Lumina is doing on this machine right now, as plain dicts: for the JupyterLab sidebar and dashboards.

A :class:`StatusReader` opens the same settings, event store and stores as the notebooks do
(``LUMINA_HOME``, ``lumina.toml``, ``LUMINA_*``) and answers from the *shared* event store, so it sees every
process on the machine — each notebook kernel, ``lumina serve``, scripts — not only its own:

* provider health and breaker state come from ``provider.call.*`` and ``provider.breaker.changed`` events
  (breakers live in each process; the picture is the worst state among processes active recently);
* spend against budget is summed from ``provider.call.finished`` events of every process, per configured
  budget and period (each process's own :class:`~lumina_lab.providers.BudgetManager` only knows its calls);
* memory collections are listed from the configured vector store, policy versions from the policy store.

Every answer is JSON-ready (ISO times, no NaN).  :class:`EventFeed` yields events stored after it was
created, from any process: the Jupyter server extension pushes them over a WebSocket.

>>> reader = StatusReader()                       # doctest: +SKIP
>>> reader.providers()[0]["health"]               # doctest: +SKIP
'healthy'
>>> feed = reader.feed(type="provider.*"); feed.poll()   # doctest: +SKIP
[]
"""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LuminaError, ValidationError

if TYPE_CHECKING:
    from .config import Settings
    from .events.store import BufferedEventStore
    from .lab import Lab

__all__ = ["EventFeed", "StatusReader", "classify_health", "event_record", "summarize_event"]

#: Columns of an event record, in order.
_COLUMNS = "id, type, schema_version, ts, source, trace_id, span_id, payload"
#: Most events one :meth:`StatusReader.events` call returns.
MAX_EVENTS = 1000
#: Error rate (over at least ``_MIN_ATTEMPTS`` attempts in the window) from which a provider is degraded.
DEGRADED_ERROR_RATE = 0.25
_MIN_ATTEMPTS = 4
_BREAKER_RANK = {"closed": 0, "half_open": 1, "open": 2}


# ---------------------------------------------------------------------------------------- helpers
def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return str(value)


def _num(value: Any, digits: int | None = None) -> float | None:
    """A float for JSON: ``None`` for NULL/NaN/inf, optionally rounded."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f):
        return None
    return round(f, digits) if digits is not None else f


def _payload(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return {"raw": str(value)}
    return data if isinstance(data, dict) else {"value": data}


def summarize_event(type: str, payload: dict[str, Any]) -> str:
    """One short line for an event, for feeds and tooltips.

    >>> summarize_event("provider.call.finished", {"provider": "p1", "output_tokens": 20, "cost_usd": 0.00002,
    ...                                             "latency_s": 0.034})
    'p1 · 20 tok · $0.000020 · 34 ms'
    >>> summarize_event("provider.breaker.changed", {"provider": "p1", "old": "closed", "new": "open"})
    'p1 breaker closed → open'
    """
    p = payload
    try:
        if type == "provider.call.finished":
            return f"{p['provider']} · {p.get('output_tokens', 0)} tok · ${p.get('cost_usd', 0):.6f} · {p.get('latency_s', 0) * 1000:.0f} ms"
        if type == "provider.call.failed":
            return f"{p['provider']} · {p.get('error_type', 'error')}: {str(p.get('error', ''))[:80]}"
        if type == "provider.call.started":
            return f"{p['provider']} · attempt {p.get('attempt', 1)}"
        if type == "provider.request.routed":
            return f"→ {p['chosen']} ({p.get('strategy', '?')}, ${p.get('predicted_cost_usd', 0):.6f} predicted)"
        if type == "provider.breaker.changed":
            return f"{p['provider']} breaker {p.get('old', '?')} → {p.get('new', '?')}"
        if type == "provider.fallback.used":
            return f"{p['failed']} failed, falling back to {p.get('next', '?')}"
        if type == "provider.retry.scheduled":
            return f"{p['provider']} retry {p.get('attempt', '?')} in {p.get('delay_s', 0):.2f} s"
        if type == "budget.warning":
            return f"{p['budget']}: ${p.get('spent_usd', 0):.4f} of ${p.get('limit_usd', 0):.4f}"
        if type == "budget.exceeded":
            return str(p.get("error", "budget exceeded")).splitlines()[0][:100]
        if type.startswith("memory."):
            hits = p.get("hits", 0)
            extra = f"{hits} hit{'' if hits == 1 else 's'}" if type == "memory.searched" else f"{p.get('op', '')} {p.get('count', 0)}"
            return f"{p['collection']} · {extra} · {p.get('ms', 0):.1f} ms"
        if type in ("policy.decided", "policy.denied"):
            verdict = p.get("decision", "DENY" if type == "policy.denied" else "?")
            return f"{verdict} {p['principal']} {p.get('action', '')} {p.get('resource', '')}"
        if type == "policy.version.published":
            n = p.get("policies", 0)
            return f"v{p['version']} published ({n} polic{'y' if n == 1 else 'ies'}) {p.get('message', '')}".rstrip()
    except (KeyError, TypeError, ValueError):
        pass
    keys = [f"{k}={v}" for k, v in list(p.items())[:3] if not isinstance(v, (dict, list))]
    return " · ".join(keys)[:120]


def event_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event row as a JSON-ready dict (ISO ``ts``, parsed ``payload``, one-line ``summary``)."""
    payload = _payload(row.get("payload"))
    return {
        "id": row.get("id"),
        "type": row.get("type"),
        "schema_version": row.get("schema_version"),
        "ts": _iso(row.get("ts")),
        "source": row.get("source"),
        "trace_id": row.get("trace_id"),
        "span_id": row.get("span_id"),
        "payload": payload,
        "summary": summarize_event(str(row.get("type")), payload),
    }


def classify_health(*, breaker: str, attempts: int, failures: int) -> str:
    """``down`` (breaker open), ``degraded`` (half-open, or many failures), ``healthy`` or ``idle`` (no calls).

    >>> classify_health(breaker="closed", attempts=10, failures=1)
    'healthy'
    >>> classify_health(breaker="closed", attempts=10, failures=5)
    'degraded'
    >>> classify_health(breaker="open", attempts=0, failures=0)
    'down'
    """
    if breaker == "open":
        return "down"
    if breaker == "half_open":
        return "degraded"
    if attempts == 0:
        return "idle"
    if attempts >= _MIN_ATTEMPTS and failures / attempts >= DEGRADED_ERROR_RATE:
        return "degraded"
    return "healthy"


def _display_path(path: str | Path) -> str:
    """``~/.lumina`` for a path under the user's home, else the path."""
    p = Path(path)
    try:
        return "~/" + p.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(p)


def _window(value: str | timedelta | None, default: str = "15m") -> tuple[datetime, str]:
    from .events.store.base import _as_time

    text = value if isinstance(value, str) and value.strip() else default
    if isinstance(value, timedelta):
        return datetime.now(UTC) - value, f"{value.total_seconds():g}s"
    start = _as_time(text, "window")
    assert start is not None
    return start, text.strip()


def _period_start(period: str, now: datetime) -> datetime | None:
    if period == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == "month":
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    return None


def _budget_state(spent: float, limit: float, soft_ratio: float) -> str:
    """``exceeded`` at or over the limit (with something spent), ``warning`` from the soft ratio, else ``ok``.

    >>> _budget_state(1.0, 1.0, 0.8), _budget_state(0.85, 1.0, 0.8), _budget_state(0.1, 1.0, 0.8)
    ('exceeded', 'warning', 'ok')
    """
    if spent > 0 and spent >= limit:
        return "exceeded"
    if limit > 0 and spent / limit >= soft_ratio:
        return "warning"
    return "ok"


def _period_key(period: str, now: datetime) -> str:
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    return "-"


# ---------------------------------------------------------------------------------------- feed
class EventFeed:
    """Events stored *after* the feed was created, by any process, in the order they land.

    ``poll()`` returns the new ones since the previous call (at most ``max_batch``, the rest next time).
    Cheap when nothing is new: one directory listing of the file store.

    Args:
        store: the event store (the file store sees every process; the memory store only this one).
        type: glob over event types (``"provider.*"``); ``None`` for all.
    """

    def __init__(self, store: BufferedEventStore, *, type: str | None = None, max_batch: int = 500) -> None:
        self.store = store
        self.type = type or None
        self.max_batch = max_batch
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # where "now" is: rows already stored are skipped (read with an impossible time filter)
        _, self._state = store._tail_rows(None, self.type, datetime.now(UTC) + timedelta(days=36500))

    def poll(self) -> list[dict[str, Any]]:
        """New events as :func:`event_record` dicts, oldest first."""
        with self._lock:
            if len(self._pending) < self.max_batch:
                rows, self._state = self.store._tail_rows(self._state, self.type, None)
                self._pending.extend(rows)
            out, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        return [event_record(r) for r in out]

    def matches(self, event_type: str) -> bool:
        return self.type is None or fnmatchcase(event_type, self.type)


# ---------------------------------------------------------------------------------------- reader
class StatusReader:
    """Read-only answers about Lumina on this machine, as JSON-ready dicts.

    Args:
        settings: as the notebooks load them (default: :func:`~lumina_lab.config.load_settings`).
        lab: an existing :class:`~lumina_lab.Lab` to read through instead (its store and settings).
        window: default look-back for statistics (``"15m"``).
    """

    def __init__(self, settings: Settings | None = None, *, lab: Lab | None = None, window: str = "15m") -> None:
        from .config import load_settings
        from .lab import Lab

        self._own_lab = lab is None
        if lab is None:
            settings = settings or load_settings()
            reading = settings.model_copy(deep=True)
            reading.memory.embedder = "hashing"  # listing collections never needs the configured model
            lab = Lab(settings=reading)
        else:
            settings = lab.settings
        self.lab = lab
        self.settings = settings
        self.window = window
        self._lock = threading.Lock()
        self._policy_cache: tuple[Any, dict[str, Any]] | None = None
        self._memory_store: Any = None
        self._started = datetime.now(UTC)

    @property
    def store(self) -> BufferedEventStore:
        return self.lab.store

    @property
    def shared(self) -> bool:
        """Whether the event store is shared by every process (``file``) or only this one's (``memory``)."""
        return self.store.kind == "file"

    def _records(self, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return self.store.records(query, params or None)

    # ---------------------------------------------------------------------------------- status
    def status(self, window: str | None = None) -> dict[str, Any]:
        """Version, home, store and bus settings, and activity: events and the processes that wrote them."""
        from ._version import __version__

        start, label = _window(window or "5m", "5m")
        s = self.settings
        ev = s.events
        rows = self._records(
            "SELECT source, count(*) AS n, max(ts) AS last_ts FROM events WHERE ts >= ? GROUP BY source "
            "ORDER BY last_ts DESC LIMIT 50",
            [start],
        )
        total = self._records("SELECT count(*) AS n, max(ts) AS last_ts FROM events")[0]
        return {
            "version": __version__,
            "time": _iso(datetime.now(UTC)),
            "home": str(s.home),
            "home_display": _display_path(s.home),
            "profile": s.profile,
            "store": {
                "kind": self.store.kind,
                "path": str(getattr(self.store, "root", "")) or None,
                "shared": self.shared,
                "hint": None
                if self.shared
                else "events.store = 'memory' keeps events inside each process: set events.store = 'file' "
                "(or profile dev/prod) to see other processes",
            },
            "bus": {
                "kind": "in-process",
                "queue_size": ev.queue_size,
                "overflow": ev.overflow,
                "flush_interval_s": ev.flush_interval_s,
            },
            "routing": {"strategy": s.routing.strategy},
            "events": {
                "total": int(total["n"]),
                "last_ts": _iso(total["last_ts"]),
                "window": label,
                "in_window": sum(int(r["n"]) for r in rows),
            },
            "sources": [{"source": r["source"], "events": int(r["n"]), "last_ts": _iso(r["last_ts"])} for r in rows],
            "providers": len(s.providers),
            "budgets": len(s.budgets),
        }

    # ---------------------------------------------------------------------------------- providers
    def providers(self, window: str | None = None) -> dict[str, Any]:
        """Configured providers (and any seen in events) with breaker state, health and window statistics."""
        start, label = _window(window, self.window)
        stats = {
            r["provider"]: r
            for r in self._records(
                """
                SELECT payload->>'$.provider' AS provider,
                  count(*) FILTER (WHERE type = 'provider.call.finished') AS calls,
                  count(*) FILTER (WHERE type = 'provider.call.failed') AS failures,
                  quantile_cont(CAST(payload->>'$.latency_s' AS DOUBLE), 0.5)
                    FILTER (WHERE type = 'provider.call.finished') AS p50_s,
                  quantile_cont(CAST(payload->>'$.latency_s' AS DOUBLE), 0.95)
                    FILTER (WHERE type = 'provider.call.finished') AS p95_s,
                  avg(CAST(payload->>'$.ttft_s' AS DOUBLE)) FILTER (WHERE type = 'provider.call.finished') AS ttft_s,
                  sum(CAST(payload->>'$.cost_usd' AS DOUBLE)) FILTER (WHERE type = 'provider.call.finished') AS cost_usd,
                  sum(CAST(payload->>'$.output_tokens' AS BIGINT)) FILTER (WHERE type = 'provider.call.finished')
                    AS output_tokens,
                  max(ts) AS last_call
                FROM events
                WHERE type IN ('provider.call.finished', 'provider.call.failed') AND ts >= ?
                GROUP BY 1
                """,
                [start],
            )
        }
        # latest breaker change per (provider, process); processes silent in the window are left out,
        # except for an open breaker changed in the window
        active = {r["source"] for r in self._records("SELECT DISTINCT source FROM events WHERE ts >= ?", [start])}
        breakers: dict[str, list[dict[str, Any]]] = {}
        for r in self._records(
            """
            SELECT provider, source, old, new, failure_rate, ts FROM (
              SELECT payload->>'$.provider' AS provider, source, payload->>'$.old' AS old, payload->>'$.new' AS new,
                CAST(payload->>'$.failure_rate' AS DOUBLE) AS failure_rate, ts,
                row_number() OVER (PARTITION BY payload->>'$.provider', source ORDER BY ts DESC, id DESC) AS rn
              FROM events WHERE type = 'provider.breaker.changed')
            WHERE rn = 1 ORDER BY ts DESC
            """
        ):
            if r["source"] in active:
                breakers.setdefault(r["provider"], []).append(
                    {
                        "source": r["source"],
                        "state": r["new"],
                        "previous": r["old"],
                        "failure_rate": _num(r["failure_rate"], 4),
                        "since": _iso(r["ts"]),
                    }
                )
        configured = self._configured_providers()
        ids = list(configured) + sorted((set(stats) | set(breakers)) - set(configured))
        out = []
        for pid in ids:
            st = stats.get(pid, {})
            calls, failures = int(st.get("calls") or 0), int(st.get("failures") or 0)
            procs = breakers.get(pid, [])
            state = max((b["state"] for b in procs), key=lambda x: _BREAKER_RANK.get(x, 0), default="closed")
            attempts = calls + failures
            base = configured.get(pid, {"id": pid, "model": None, "configured": False})
            out.append(
                {
                    **base,
                    "breaker": state,
                    "breakers": procs,
                    "health": classify_health(breaker=state, attempts=attempts, failures=failures),
                    "calls": calls,
                    "failures": failures,
                    "error_rate": _num(failures / attempts, 4) if attempts else None,
                    "p50_latency_ms": _num((st.get("p50_s") or math.nan) * 1000, 1),
                    "p95_latency_ms": _num((st.get("p95_s") or math.nan) * 1000, 1),
                    "ttft_ms": _num((st.get("ttft_s") or math.nan) * 1000, 1),
                    "cost_usd": _num(st.get("cost_usd") or 0.0, 8),
                    "output_tokens": int(st.get("output_tokens") or 0),
                    "last_call": _iso(st.get("last_call")),
                }
            )
        return {"window": label, "providers": out}

    def _configured_providers(self) -> dict[str, dict[str, Any]]:
        from .providers.types import CAPABILITIES

        with self._lock:
            registry = self.lab.providers
        out = {}
        for state in registry:
            p = state.provider
            caps = p.capabilities
            out[p.id] = {
                "id": p.id,
                "model": p.model,
                "configured": True,
                "kind": type(p).__name__,
                "capabilities": [c for c in CAPABILITIES if caps.level(c) > 0],
                "context_window": caps.context_window,
                "input_usd_per_m": _num(p.pricing.input_per_m),
                "output_usd_per_m": _num(p.pricing.output_per_m),
            }
        return out

    # ---------------------------------------------------------------------------------- budgets
    def budgets(self) -> dict[str, Any]:
        """Spend of every process against each configured budget (current period), and spend today/this month."""
        from .providers import Budget

        now = datetime.now(UTC)
        cost = "CAST(payload->>'$.cost_usd' AS DOUBLE)"
        fin = "type = 'provider.call.finished'"
        rows: list[dict[str, Any]] = []
        for i, entry in enumerate(self.settings.budgets):
            try:
                b = Budget(**entry)
            except (TypeError, LuminaError) as exc:
                rows.append({"budget": f"budgets[{i}]", "error": str(exc)})
                continue
            start = _period_start(b.period, now)
            clauses, params = [fin], []
            if start is not None:
                clauses.append("ts >= ?")
                params.append(start)
            when = _period_key(b.period, now)
            if b.scope == "global":
                query = f"SELECT '*' AS who, coalesce(sum({cost}), 0) AS spent FROM events WHERE {' AND '.join(clauses)}"
            else:
                field = f"payload->>'$.{b.scope}'"
                clauses.append(f"{field} IS NOT NULL")
                if b.key is not None:
                    clauses.append(f"{field} = ?")
                    params.append(b.key)
                query = (
                    f"SELECT {field} AS who, sum({cost}) AS spent FROM events WHERE {' AND '.join(clauses)} "
                    "GROUP BY 1 ORDER BY spent DESC LIMIT 50"
                )
            found = self._records(query, params)
            if not found and b.key is not None:
                found = [{"who": b.key, "spent": 0.0}]
            for r in found:
                spent = float(r["spent"] or 0.0)
                ratio = spent / b.limit_usd if b.limit_usd > 0 else (math.inf if spent > 0 else 0.0)
                rows.append(
                    {
                        "budget": b.label,
                        "bucket": f"{r['who']}|{when}",
                        "scope": b.scope,
                        "key": r["who"],
                        "period": b.period,
                        "spent_usd": _num(spent, 8),
                        "limit_usd": _num(b.limit_usd),
                        "remaining_usd": _num(b.limit_usd - spent, 8),
                        "ratio": _num(ratio, 4),
                        "soft_ratio": b.soft_ratio,
                        "state": _budget_state(spent, b.limit_usd, b.soft_ratio),
                    }
                )
        day, month = _period_start("day", now), _period_start("month", now)
        spend = self._records(
            f"SELECT coalesce(sum({cost}) FILTER (WHERE ts >= ?), 0) AS today, "
            f"coalesce(sum({cost}) FILTER (WHERE ts >= ?), 0) AS month FROM events WHERE {fin} AND ts >= ?",
            [day, month, month],
        )[0]
        by_project = self._records(
            f"SELECT coalesce(payload->>'$.project', '(none)') AS project, sum({cost}) AS spent FROM events "
            f"WHERE {fin} AND ts >= ? GROUP BY 1 ORDER BY spent DESC LIMIT 10",
            [day],
        )
        alerts = self._records(
            "SELECT type, count(*) AS n FROM events WHERE type IN ('budget.warning', 'budget.exceeded') AND ts >= ? "
            "GROUP BY 1",
            [day],
        )
        return {
            "budgets": rows,
            "spend": {
                "today_usd": _num(spend["today"], 8),
                "month_usd": _num(spend["month"], 8),
                "by_project_today": [{"project": r["project"], "spent_usd": _num(r["spent"], 8)} for r in by_project],
            },
            "alerts_today": {r["type"]: int(r["n"]) for r in alerts},
        }

    # ---------------------------------------------------------------------------------- events
    def events(
        self,
        *,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
        source: str | None = None,
        trace_id: str | None = None,
        contains: str | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Stored events matching the filters (globs for ``type`` and ``source``; ``contains``: text anywhere)."""
        try:
            limit = int(limit)
        except (TypeError, ValueError):
            raise ValidationError(f"limit={limit!r} is not a number", input=limit, hint="e.g. limit=100") from None
        if not 1 <= limit <= MAX_EVENTS:
            raise ValidationError(f"limit={limit} is out of range", input=limit, hint=f"use 1..{MAX_EVENTS}")
        extra, extra_params = [], []
        if source:
            extra.append("source GLOB ?")
            extra_params.append(source)
        if contains:
            extra.append("(type ILIKE ? OR source ILIKE ? OR CAST(payload AS VARCHAR) ILIKE ?)")
            extra_params += [f"%{contains}%"] * 3
        clause, params = self.store._where(" AND ".join(extra) or None, type or None, since or None, until or None,
                                           trace_id or None)
        order = "DESC" if newest_first else "ASC"
        rows = self._records(
            f"SELECT {_COLUMNS} FROM events{clause} ORDER BY ts {order}, id {order} LIMIT {limit}",
            extra_params + params,
        )
        return [event_record(r) for r in rows]

    def feed(self, *, type: str | None = None) -> EventFeed:
        """An :class:`EventFeed` of events stored from now on (every process, with the file store)."""
        return EventFeed(self.store, type=type)

    # ---------------------------------------------------------------------------------- memory
    def memory(self, window: str | None = None) -> dict[str, Any]:
        """Collections of the configured vector store (name, dimension, metric) and their recent activity."""
        start, label = _window(window, self.window)
        m = self.settings.memory
        info: dict[str, Any] = {"backend": m.backend, "embedder": m.embedder, "shards": m.shards, "window": label}
        activity = {
            r["collection"]: r
            for r in self._records(
                """
                SELECT payload->>'$.collection' AS collection,
                  count(*) FILTER (WHERE type = 'memory.written') AS writes,
                  coalesce(sum(CAST(payload->>'$.count' AS BIGINT)) FILTER (WHERE type = 'memory.written'), 0)
                    AS items_written,
                  count(*) FILTER (WHERE type = 'memory.searched') AS searches,
                  avg(CAST(payload->>'$.ms' AS DOUBLE)) FILTER (WHERE type = 'memory.searched') AS search_ms,
                  max(ts) AS last_ts
                FROM events WHERE type IN ('memory.written', 'memory.searched') AND ts >= ? GROUP BY 1
                """,
                [start],
            )
        }
        collections: dict[str, dict[str, Any]] = {}
        error = None
        if m.backend == "memory":
            info["note"] = "the 'memory' backend keeps collections inside each process; the list shows recent activity"
        else:
            try:
                store = self._open_memory()
                if store is None:
                    info["note"] = "nothing stored yet"
                else:
                    for c in store.collections():
                        collections[c.name] = {"name": c.name, "dim": c.dim, "metric": c.metric}
            except Exception as exc:  # an unreachable server must not break the status
                error = f"{type(exc).__name__}: {exc}"
        for name, act in activity.items():
            entry = collections.setdefault(name, {"name": name, "dim": None, "metric": None})
            entry.update(
                {
                    "writes": int(act["writes"]),
                    "items_written": int(act["items_written"]),
                    "searches": int(act["searches"]),
                    "search_ms": _num(act["search_ms"], 2),
                    "last_ts": _iso(act["last_ts"]),
                }
            )
        for entry in collections.values():
            entry.setdefault("writes", 0)
            entry.setdefault("items_written", 0)
            entry.setdefault("searches", 0)
            entry.setdefault("search_ms", None)
            entry.setdefault("last_ts", None)
        return {**info, "error": error, "collections": sorted(collections.values(), key=lambda c: c["name"])}

    def _open_memory(self) -> Any:
        """The vector store the notebooks use, or ``None`` when the default DuckDB file does not exist yet."""
        if self._memory_store is not None:
            return self._memory_store
        m = self.settings.memory
        if m.backend == "duckdb":
            path = Path(m.options.get("path") or Path(self.settings.home) / "memory" / "vectors.duckdb")
            candidates = [path] if m.shards == 1 else list(path.parent.glob(f"vectors-*-of-{m.shards}.duckdb"))
            if not any(p.exists() for p in candidates):
                return None
        with self._lock:
            self._memory_store = self.lab.memory.store
        return self._memory_store

    # ---------------------------------------------------------------------------------- policy
    def policy(self) -> dict[str, Any]:
        """Policy versions in ``LUMINA_HOME/policies`` (newest first) and recent decisions."""
        path = Path(self.settings.home) / "policies"
        versions: list[dict[str, Any]] = []
        live = None
        error = None
        if path.is_dir():
            stamp = (path.stat().st_mtime_ns, (path / "LIVE").stat().st_mtime_ns if (path / "LIVE").exists() else 0)
            if self._policy_cache is not None and self._policy_cache[0] == stamp:
                cached = self._policy_cache[1]
                versions, live, error = cached["versions"], cached["live"], cached["error"]
            else:
                try:
                    from .policy import PolicyStore

                    history = PolicyStore(path).history()
                    for rec in history.to_dict("records"):
                        versions.append(
                            {
                                "version": int(rec["version"]),
                                "created": _iso(rec["created"]),
                                "digest": rec["digest"],
                                "policies": int(rec["policies"]),
                                "templates": int(rec["templates"]),
                                "links": int(rec["links"]),
                                "message": rec["message"],
                                "author": rec["author"],
                                "live": bool(rec["live"]),
                            }
                        )
                    versions.sort(key=lambda v: v["version"], reverse=True)
                    live = next((v["version"] for v in versions if v["live"]), None)
                except Exception as exc:  # a damaged folder or a policy package still landing
                    error = f"{type(exc).__name__}: {exc}"
                self._policy_cache = (stamp, {"versions": versions, "live": live, "error": error})
        start, label = _window(None, self.window)
        decisions = self._records(
            "SELECT coalesce(payload->>'$.decision', 'DENY') AS decision, count(*) AS n FROM events "
            "WHERE type IN ('policy.decided', 'policy.denied') AND ts >= ? GROUP BY 1",
            [start],
        )
        return {
            "path": str(path),
            "live": live,
            "versions": versions,
            "error": error,
            "decisions": {"window": label, **{str(r["decision"]): int(r["n"]) for r in decisions}},
        }

    # ---------------------------------------------------------------------------------- all
    def snapshot(self, *, window: str | None = None, events: int = 50) -> dict[str, Any]:
        """Everything the sidebar shows in one answer: status, providers, budgets, memory, policy, recent events."""
        t0 = time.perf_counter()
        out: dict[str, Any] = {
            "status": self.status(),
            "providers": self.providers(window),
            "budgets": self.budgets(),
            "memory": self.memory(window),
            "policy": self.policy(),
            "events": self.events(limit=max(1, min(events, MAX_EVENTS))) if events else [],
        }
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    def close(self) -> None:
        """Release the stores this reader opened."""
        self._memory_store = None
        if self._own_lab:
            self.lab.close()

    def __enter__(self) -> StatusReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StatusReader(home={str(self.settings.home)!r}, store={self.store.kind})"
