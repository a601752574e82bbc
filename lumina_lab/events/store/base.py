"""What every event store shares: batching, acknowledgement, and SQL queries with DuckDB."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from numbers import Integral
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import StoreError, ValidationError
from ..deadletter import DeadLetter
from ..model import Event
from ..registry import SchemaRegistry, default_registry

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from ..bus import InProcessBus, Subscription

__all__ = ["BufferedEventStore", "TimeLike"]

log = logging.getLogger(__name__)
TimeLike = datetime | timedelta | str | None


def check_limit(limit: Any) -> int | None:
    """``limit`` as a row count: a whole number >= 0, or None (no limit); anything else is named."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 0:
        raise ValidationError(
            f"limit={limit!r} must be a whole number >= 0 (or None: no limit)", input=limit, hint="e.g. limit=100"
        )
    return int(limit)


def _check_text_filter(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(
            f"{name}={value!r} must be text",
            input=value,
            hint={
                "type": "a glob over event types, e.g. type='provider.*'",
                "where": "SQL, e.g. \"type LIKE 'provider.%'\"",
            }.get(name, f"e.g. {name}='...'"),
        )


P = TypeVar("P")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_COLUMNS = "id, type, schema_version, ts, source, trace_id, span_id, payload"


def frame(result: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``result.df()`` without the deprecation noise duckdb's pandas conversion emits."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            from pandas.errors import Pandas4Warning

            warnings.simplefilter("ignore", Pandas4Warning)
        except ImportError:
            pass
        return result.df()


def _dicts(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cols = [d[0] for d in result.description]
    return [dict(zip(cols, row, strict=True)) for row in result.fetchall()]


def _as_time(value: TimeLike, name: str) -> datetime | None:
    """``datetime``, ISO text, a ``timedelta`` or ``'15m'``-style text meaning *that long ago*."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, timedelta):
        return datetime.now(UTC) - value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return datetime.now(UTC) - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
        try:
            return _as_time(datetime.fromisoformat(value), name)
        except ValueError:
            pass
    raise ValidationError(
        f"{name}={value!r} is not a time",
        input=value,
        hint="pass a datetime, an ISO time ('2026-11-24T10:00'), a timedelta, or a duration ago ('15m', '2h', '1d')",
    )


class BufferedEventStore:
    """Base of the event stores: buffers appended events and writes them in batches.

    A background thread writes a batch when ``batch_size`` events are waiting
    or ``flush_interval_s`` has passed.  :meth:`flush` returns once everything
    appended before the call is written (*acknowledged*).  A failed write keeps
    the batch in memory and retries it; nothing is dropped.

    Subclasses implement ``_write_events``, ``_write_dead``, ``_write_marks``,
    ``_prepare_views`` and ``_tail_rows``.
    """

    kind = "base"
    #: whether stored events outlive the process (at exit, only such a store writes what is still buffered)
    persistent = True

    def __init__(
        self,
        *,
        batch_size: int = 5_000,
        flush_interval_s: float = 0.2,
        max_buffered: int | None = None,
        registry: SchemaRegistry | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered or max(4 * batch_size, 10_000)
        self.registry = registry or default_registry
        self.appended = 0
        self.acked = 0
        self.batches = 0
        self.last_error: BaseException | None = None
        self._buf: list[Event] = []
        self._cond = threading.Condition()
        self._flush_target = 0
        self._closing = False
        self._closed = False
        self._qlock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"lumina-store-{self.kind}", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: (s := ref()) is not None and s._at_exit())

    # ------------------------------------------------------------------ writing
    def append(self, events: Iterable[Event] | Event) -> None:
        """Queue ``events`` for storage (blocks while ``max_buffered`` events wait)."""
        batch = [events] if isinstance(events, Event) else list(events)
        for ev in batch:
            if not isinstance(ev, Event):
                raise ValidationError(
                    f"the event store takes Event objects, got {type(ev).__name__}",
                    input=ev,
                    hint="publish instances of an @event-decorated Event subclass",
                )
        with self._cond:
            if self._closed or self._closing:
                raise StoreError("the event store is closed", hint="open a new store")
            while len(self._buf) >= self.max_buffered and self._thread.is_alive():
                self._cond.wait(0.5)
            self._buf.extend(batch)
            self.appended += len(batch)
            if len(self._buf) >= self.batch_size:
                self._cond.notify_all()

    async def aappend(self, events: Sequence[Event] | Event) -> None:
        """Async :meth:`append`; waits off the event loop when the buffer is full."""
        n = 1 if isinstance(events, Event) else len(events)
        if len(self._buf) + n <= self.max_buffered:
            self.append(events)
        else:
            await asyncio.to_thread(self.append, events)

    def flush(self, timeout: float | None = 60.0) -> int:
        """Write everything appended so far; return the number of acknowledged events.

        Raises:
            StoreError: the writes keep failing (the events stay buffered and are retried).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self.appended
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            while self.acked < target:
                if not self._thread.is_alive():
                    raise StoreError("the event store's writer thread stopped", hint="reopen the store")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StoreError(
                        f"{target - self.acked} event(s) not yet stored after {timeout}s"
                        + (f": {self.last_error}" if self.last_error else ""),
                        hint="they are kept in memory and retried; fix the cause (disk space, permissions)",
                    )
                self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
        return self.acked

    async def aflush(self, timeout: float | None = 60.0) -> int:
        """Async :meth:`flush`."""
        return await asyncio.to_thread(self.flush, timeout)

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval_s
                while not self._closing and len(self._buf) < self.batch_size and self._flush_target <= self.acked:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if not self._buf:
                    if self._closing:
                        return
                    continue
                batch = self._buf[: self.batch_size]
            try:
                self._write_events(batch)
            except Exception as exc:
                self.last_error = exc
                log.error("event store write failed (%d events kept, retrying): %s", len(batch), exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                if self._closing and backoff >= 2.0:
                    return
                continue
            backoff = 0.05
            with self._cond:
                del self._buf[: len(batch)]
                self.acked += len(batch)
                self.batches += 1
                self.last_error = None
                self._cond.notify_all()

    def _write_events(self, events: list[Event]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ dead letters
    def put_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Store dead letters now (durably, before returning)."""
        if letters:
            from .arrow import dead_letters_table

            self._write_dead(dead_letters_table(letters))

    def dead_letters(self, *, include_replayed: bool = False) -> pd.DataFrame:
        """Dead letters as a DataFrame (newest last), without replayed ones unless asked."""
        where = (
            ""
            if include_replayed
            else ("WHERE id NOT IN (SELECT dead_letter_id FROM dead_marks WHERE action = 'replayed')")
        )
        return self.sql(f"SELECT * FROM dead_letters {where} ORDER BY ts, id")

    async def areplay_dead_letters(self, bus: InProcessBus, ids: Sequence[str] | None = None) -> int:
        """Send dead-lettered events again to the subscribers that failed them.

        Each replayed letter is marked ``replayed``; if the handler fails again
        the event becomes a new dead letter.  Returns the number replayed.
        """
        from .arrow import marks_table

        frame = self.dead_letters()
        if ids is not None:
            wanted = set(ids)
            unknown = wanted - set(frame["id"])
            if unknown:
                raise ValidationError(
                    f"no pending dead letter(s) with id {sorted(unknown)}",
                    hint="list them with store.dead_letters()",
                )
            frame = frame[frame["id"].isin(wanted)]
        done: list[str] = []
        for row in frame.itertuples(index=False):
            letter = DeadLetter(
                id=row.id,
                subscriber=row.subscriber,
                pattern=row.pattern,
                event_id=row.event_id,
                event_type=row.event_type,
                envelope=json.loads(row.envelope),
                error_type=row.error_type,
                error=row.error,
                attempts=int(row.attempts),
            )
            await bus.redeliver(letter, self.registry.load(letter.envelope))
            done.append(letter.id)
        if done:
            self._write_marks(marks_table(done, "replayed"))
        return len(done)

    def replay_dead_letters(self, bus: InProcessBus, ids: Sequence[str] | None = None) -> int:
        """Synchronous :meth:`areplay_dead_letters` (waits until the events are queued)."""
        loop = bus._ensure_loop_sync()
        return asyncio.run_coroutine_threadsafe(self.areplay_dead_letters(bus, ids), loop).result(60)

    def _write_dead(self, table: pa.Table) -> None:
        raise NotImplementedError

    def _write_marks(self, table: pa.Table) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ bus
    def attach(self, bus: InProcessBus, *, name: str = "event-store", pattern: str = "*") -> Subscription:
        """Store every event published on ``bus`` and take its dead letters."""
        bus.dead_letters = self
        return bus.subscribe(pattern, self.aappend, name=name, batch=min(self.batch_size, 4096), overflow="block")

    # ------------------------------------------------------------------ reading
    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            import duckdb

            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            self._con = con
        return self._con

    def _prepare_views(self, con: duckdb.DuckDBPyConnection) -> None:
        raise NotImplementedError

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run SQL over the views ``events``, ``dead_letters`` and ``dead_marks``.

        >>> store.sql("SELECT type, count(*) AS n FROM events GROUP BY type")  # doctest: +SKIP
        """
        return self._run_query(lambda con: frame(con.execute(query, params)), query)

    def records(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Like :meth:`sql`, as a list of dicts with Python values (``None`` for NULL, UTC datetimes)."""
        return self._run_query(lambda con: _dicts(con.execute(query, params)), query)

    def _run_query(self, run: Any, query: str) -> Any:
        import duckdb

        self._flush_own()
        delay = 0.005
        with self._qlock:
            for attempt in range(8):
                con = self._connection()
                try:
                    self._prepare_views(con)
                    return run(con)
                except duckdb.IOException as exc:  # a segment merged away under us: list again
                    if attempt == 7:
                        raise StoreError(f"cannot read the event log: {exc}") from exc
                    time.sleep(delay)
                    delay *= 2
                except duckdb.Error as exc:
                    raise ValidationError(
                        f"query failed: {str(exc).splitlines()[0]}\n  query: {query}",
                        input=query,
                        hint="tables: events(id, type, schema_version, ts, source, trace_id, span_id, "
                        "payload JSON), dead_letters, dead_marks; payload fields: payload->>'$.name'",
                    ) from None
        raise AssertionError("unreachable")

    def _flush_own(self) -> None:
        if self.appended != self.acked and not self._closed:
            self.flush()

    def _where(
        self,
        where: str | None,
        type: str | None,
        since: TimeLike,
        until: TimeLike,
        trace_id: str | None = None,
    ) -> tuple[str, list[Any]]:
        for name, value in (("where", where), ("type", type), ("trace_id", trace_id)):
            _check_text_filter(name, value)
        clauses, params = [], []
        if where:
            clauses.append(f"({where})")
        if type:
            clauses.append("type GLOB ?")
            params.append(type)
        if (t := _as_time(since, "since")) is not None:
            clauses.append("ts >= ?")
            params.append(t)
        if (t := _as_time(until, "until")) is not None:
            clauses.append("ts < ?")
            params.append(t)
        if trace_id:
            clauses.append("trace_id = ?")
            params.append(trace_id)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def query(
        self,
        where: str | None = None,
        *,
        type: str | None = None,
        since: TimeLike = None,
        until: TimeLike = None,
        trace_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> pd.DataFrame:
        """Stored events as a DataFrame, oldest first.

        Args:
            where: SQL condition over the ``events`` columns, e.g.
                ``"type LIKE 'provider.%'"`` or ``"payload->>'$.user' = 'ada'"``.
            type: glob over event types (``"provider.*"``).
            since, until: datetimes, ISO text, timedeltas or ``"15m"``-style ages.
            trace_id: only events of this trace.
            limit: at most this many rows (the newest, with ``newest_first``).
        """
        limit = check_limit(limit)
        clause, params = self._where(where, type, since, until, trace_id)
        order = "DESC" if newest_first else "ASC"
        lim = f" LIMIT {limit}" if limit is not None else ""
        return self.sql(f"SELECT {_COLUMNS} FROM events{clause} ORDER BY ts {order}, id {order}{lim}", params)

    def count(
        self, where: str | None = None, *, type: str | None = None, since: TimeLike = None, until: TimeLike = None
    ) -> int:
        """Number of stored events matching the filters (see :meth:`query`)."""
        clause, params = self._where(where, type, since, until)
        return int(self.sql(f"SELECT count(*) AS n FROM events{clause}", params)["n"].iloc[0])

    def events(
        self, where: str | None = None, *, type: str | None = None, since: TimeLike = None, until: TimeLike = None
    ) -> Iterator[Event]:
        """Stored events as typed models (upgraded to the current schema), oldest first."""
        clause, params = self._where(where, type, since, until)
        for row in self.records(f"SELECT {_COLUMNS} FROM events{clause} ORDER BY ts, id", params):
            yield self.registry.load(row)

    def project(self, projection: P, where: str | None = None, *, type: str | None = None) -> P:
        """Replay stored events into ``projection`` (anything with ``apply(event)``); return it."""
        apply = getattr(projection, "apply", None)
        if not callable(apply):
            raise ValidationError(f"{projection!r} has no apply(event) method", input=projection)
        for ev in self.events(where, type=type):
            apply(ev)
        return projection

    def tail(
        self, *, follow: bool = False, poll_s: float = 0.5, type: str | None = None, since: TimeLike = None
    ) -> Iterator[dict[str, Any]]:
        """Stored events as dicts, oldest first; with ``follow``, keep yielding new ones as they land."""
        since_t = _as_time(since, "since")
        state: Any = None
        while True:
            rows, state = self._tail_rows(state, type, since_t)
            yield from rows
            if not follow:
                return
            time.sleep(poll_s)

    def _tail_rows(self, state: Any, type: str | None, since: datetime | None) -> tuple[list[dict[str, Any]], Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Write what is buffered, stop the writer thread and release files."""
        if self._closed:
            return
        try:
            if self._thread.is_alive():
                self.flush(timeout=30)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(10)
            self._closed = True
            with self._qlock:
                if self._con is not None:
                    self._con.close()
                    self._con = None
            self._release()

    def _release(self) -> None:
        pass

    def _at_exit(self) -> None:
        """Interpreter exit without :meth:`close`: a persistent store writes what is buffered; an in-memory
        one has nothing to keep (its DuckDB connection may already refuse work), so it only stops."""
        if self.persistent:
            self.close()
            return
        with self._cond:
            self._buf.clear()
            self._closing = True
            self._cond.notify_all()
        self._thread.join(1)
        self._closed = True

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters: appended, acknowledged, buffered, batches written, last error."""
        return {
            "kind": self.kind,
            "appended": self.appended,
            "acked": self.acked,
            "buffered": len(self._buf),
            "batches": self.batches,
            "last_error": repr(self.last_error) if self.last_error else None,
        }

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in self.stats().items())
        return f"<table><caption>{self!r}</caption>{rows}</table>"
