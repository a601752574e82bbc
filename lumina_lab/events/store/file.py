"""The default event store: Parquet segments under ``LUMINA_HOME/events``, read with DuckDB.

Many processes write at once (one segment writer each) while others read live;
see :mod:`lumina_lab.events.store.segments` for why and how.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model import Event
from .arrow import DEAD_LETTERS, DEAD_MARKS, EVENTS, events_table
from .base import _COLUMNS, BufferedEventStore, _dicts
from .segments import SegmentLog, list_segments, read_rows_after

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["FileEventStore"]

_PARTS = {"events": ("log", EVENTS), "dead_letters": ("dead", DEAD_LETTERS), "dead_marks": ("marks", DEAD_MARKS)}


class FileEventStore(BufferedEventStore):
    """Durable, multi-process event log in a directory.

    Args:
        root: directory (``LUMINA_HOME/events`` by default through :func:`open_store`).
        fsync: fsync each segment (an acknowledged event survives power loss).
        merge_at: small segments of this process merged once this many exist.
        merge_grace_s: merged-away segments are deleted this long after the merge
            (readers skip them; one that listed them just before can still open them).
        **kwargs: ``batch_size``, ``flush_interval_s``, ``max_buffered``, ``registry``.

    >>> store = FileEventStore(tmp_path)                   # doctest: +SKIP
    >>> store.append(events); store.flush()               # doctest: +SKIP
    >>> store.query("type LIKE 'provider.%'", since="1h")  # doctest: +SKIP
    """

    kind = "file"

    def __init__(
        self,
        root: str | Path,
        *,
        fsync: bool = True,
        merge_at: int = 32,
        merge_grace_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        self.root = Path(root).expanduser()
        self.fsync = fsync
        self.merge_at = merge_at
        self.merge_grace_s = merge_grace_s
        self._logs: dict[str, SegmentLog] = {}
        self._log("events")  # take the writer lock now: fail early on a read-only home
        super().__init__(**kwargs)

    def _log(self, part: str) -> SegmentLog:
        log = self._logs.get(part)
        if log is None:
            sub, schema = _PARTS[part]
            log = self._logs[part] = SegmentLog(
                self.root / sub, schema, fsync=self.fsync, merge_at=self.merge_at, grace_s=self.merge_grace_s
            )
        return log

    def _write_events(self, events: list[Event]) -> None:
        self._log("events").write(events_table(events))

    def _write_dead(self, table: pa.Table) -> None:
        self._log("dead_letters").write(table)

    def _write_marks(self, table: pa.Table) -> None:
        self._log("dead_marks").write(table)

    def _prepare_views(self, con: duckdb.DuckDBPyConnection) -> None:
        for view, (sub, schema) in _PARTS.items():
            files = [str(s.path) for s in list_segments(self.root / sub)]
            cols = ", ".join(schema.names)
            if files:
                src = f"read_parquet({files!r})"
            else:
                con.register(f"_empty_{view}", schema.empty_table())
                src = f"_empty_{view}"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {cols} FROM {src}")

    def segments(self) -> list[Path]:
        """The event segment files a reader sees now."""
        return [s.path for s in list_segments(self.root / "log")]

    def compact(self) -> int:
        """Merge the segments of processes that have exited; return files removed."""
        self.flush()
        return sum(self._log(part).compact_orphans() for part in _PARTS)

    def _tail_rows(self, state: Any, type: str | None, since: datetime | None) -> tuple[list[dict[str, Any]], Any]:
        marks: dict[str, int] = state or {}
        # the usual poll finds nothing new: answer it from a directory listing, without DuckDB
        self._flush_own()
        plan, new_marks = read_rows_after(list_segments(self.root / "log"), marks)
        if not plan:
            return [], new_marks

        first = [(plan, new_marks)]

        def run(con: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
            # the first attempt reads the plan just made; a retry (a file merged away after that
            # listing) lists again
            plan, new_marks = first.pop() if first else read_rows_after(list_segments(self.root / "log"), marks)
            if not plan:
                return [], new_marks
            query, params = self._tail_query(plan, type, since)
            return _dicts(con.execute(query, params)), new_marks

        return self._run_query(run, "tail of the event log")

    @staticmethod
    def _tail_query(plan: list[Any], type: str | None, since: datetime | None) -> tuple[str, list[Any]]:
        parts, params = [], []
        for seg, lo, hi in plan:
            parts.append(f"SELECT {_COLUMNS} FROM read_parquet(?) WHERE seg BETWEEN ? AND ?")
            params += [str(seg.path), lo, hi]
        query = f"SELECT * FROM ({' UNION ALL '.join(parts)})"
        conds = []
        if type:
            conds.append("type GLOB ?")
            params.append(type)
        if since is not None:
            conds.append("ts >= ?")
            params.append(since)
        if conds:
            query += " WHERE " + " AND ".join(conds)
        return query + " ORDER BY ts, id", params

    def _release(self) -> None:
        for log in self._logs.values():
            log.close()

    def __repr__(self) -> str:
        return f"FileEventStore({str(self.root)!r}, acked={self.acked}, buffered={len(self._buf)})"
