"""In-process event store: a DuckDB in-memory database (the ``test`` profile's default)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..model import Event
from .arrow import DEAD_LETTERS, DEAD_MARKS, EVENTS, events_table
from .base import _COLUMNS, BufferedEventStore, _dicts

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["MemoryEventStore"]


class MemoryEventStore(BufferedEventStore):
    """Events in an in-memory DuckDB table: same API as :class:`FileEventStore`, nothing on disk."""

    kind = "memory"
    persistent = False

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("flush_interval_s", 0.05)
        super().__init__(**kwargs)
        with self._qlock:
            con = self._connection()
            for name, schema in (("events", EVENTS), ("dead_letters", DEAD_LETTERS), ("dead_marks", DEAD_MARKS)):
                con.register("_schema", schema.empty_table())
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM _schema")
                con.unregister("_schema")
            con.execute("CREATE SEQUENCE events_seq")
            con.execute("ALTER TABLE events ADD COLUMN seq BIGINT DEFAULT nextval('events_seq')")

    def _insert(self, name: str, table: pa.Table) -> None:
        with self._qlock:
            con = self._connection()
            con.register("_batch", table)
            try:
                cols = ", ".join(table.schema.names)
                con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM _batch")
            finally:
                con.unregister("_batch")

    def _write_events(self, events: list[Event]) -> None:
        self._insert("events", events_table(events))

    def _write_dead(self, table: pa.Table) -> None:
        self._insert("dead_letters", table)

    def _write_marks(self, table: pa.Table) -> None:
        self._insert("dead_marks", table)

    def _prepare_views(self, con: duckdb.DuckDBPyConnection) -> None:
        pass

    def _tail_rows(self, state: Any, type: str | None, since: datetime | None) -> tuple[list[dict[str, Any]], Any]:
        last = state or 0
        query = f"SELECT {_COLUMNS}, seq FROM events WHERE seq > ?"
        params: list[Any] = [last]
        if type:
            query += " AND type GLOB ?"
            params.append(type)
        if since is not None:
            query += " AND ts >= ?"
            params.append(since)
        with self._qlock:
            rows = _dicts(self._connection().execute(query + " ORDER BY seq", params))
            top = self._connection().execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0]
        for r in rows:
            r.pop("seq")
        return rows, max(last, int(top))

    def __repr__(self) -> str:
        return f"MemoryEventStore(acked={self.acked}, buffered={len(self._buf)})"
