"""Append-only logs made of immutable Parquet segment files, one writer per process.

A DuckDB database file admits one writing process, and while it is open for
writing no other process may read it.  Lumina Lab runs many processes at once
(notebook kernels, ``lumina serve``, the Jupyter server), so the embedded event
store keeps one *writer* per process, each writing its own segment files:

* A flush writes one file ``{writer}~{level}~{lo}~{hi}.parquet`` (``lo..hi``:
  the writer's flush sequence numbers it holds) to a temporary name, fsyncs it
  and renames it into place.  Once the rename is done the batch is
  *acknowledged*: a ``kill -9`` cannot take it back, and a temporary file left
  by a crash is never read.
* A writer merges its own small files into larger ones (level 0 → 1 → 2 ...)
  and then deletes the small ones; only the owner touches its files, so
  writers never contend.  Files of writers that died are merged by
  :meth:`SegmentLog.compact_orphans` (a writer holds an ``flock`` for life, so
  a free lock means a dead writer).
* Readers list the directory and let DuckDB read the files.  A file covered
  by a larger merged file of the same writer is skipped, and a listing with a
  gap in a writer's sequence (taken mid-merge) is taken again, so a reader
  never sees a row twice or misses one that was acknowledged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import StoreError

__all__ = ["SegmentFile", "SegmentLog", "list_segments"]

_NAME = re.compile(r"^(?P<writer>[A-Za-z0-9_.-]+)~(?P<level>\d+)~(?P<lo>\d{10})~(?P<hi>\d{10})\.parquet$")
_LOCKS = ".writers"
log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class SegmentFile:
    """One segment file, parsed from its name."""

    writer: str
    lo: int
    hi: int
    level: int
    path: Path

    @classmethod
    def parse(cls, path: Path) -> SegmentFile | None:
        m = _NAME.match(path.name)
        if m is None:
            return None
        return cls(m["writer"], int(m["lo"]), int(m["hi"]), int(m["level"]), path)


def _scan(root: Path) -> list[SegmentFile]:
    out = []
    try:
        with os.scandir(root) as it:
            for entry in it:
                if entry.name.endswith(".parquet"):
                    seg = SegmentFile.parse(Path(entry.path))
                    if seg is not None:
                        out.append(seg)
    except FileNotFoundError:
        return []
    return out


def _live_cover(files: list[SegmentFile]) -> tuple[list[SegmentFile], bool]:
    """Drop files covered by merged ones; report whether every writer is gap-free."""
    by_writer: dict[str, list[SegmentFile]] = {}
    for f in files:
        by_writer.setdefault(f.writer, []).append(f)
    keep: list[SegmentFile] = []
    complete = True
    for segs in by_writer.values():
        segs.sort(key=lambda s: (s.lo, -s.hi))
        chosen: list[SegmentFile] = []
        reach = 0
        for s in segs:
            if s.hi <= reach:  # inside a merged file already chosen
                continue
            if s.lo != reach + 1:
                complete = False  # gap (or overlap): a merge was in progress
            chosen.append(s)
            reach = s.hi
        keep.extend(chosen)
    keep.sort(key=lambda s: (s.writer, s.lo))
    return keep, complete


def list_segments(root: Path, *, attempts: int = 20) -> list[SegmentFile]:
    """The files a reader should read now: complete, without duplicates."""
    files: list[SegmentFile] = []
    for _ in range(attempts):
        files, complete = _live_cover(_scan(root))
        if complete:
            return files
        threading.Event().wait(0.005)
    return files


class SegmentLog:
    """The writing side of a segment log in ``root``, owned by this process.

    Args:
        root: directory of the log (shared by all processes).
        schema: Arrow schema of every segment; a ``seg`` column (the flush
            sequence number) is added to each row.
        fsync: fsync files and the directory on every write.
        merge_at: merge a level's files into one when this many exist (level 0).
        fanout: the same for higher levels.
        grace_s: merged-away files stay this long (skipped by readers) so that a
            reader that listed them just before the merge can still open them.
    """

    def __init__(
        self,
        root: Path,
        schema: pa.Schema,
        *,
        fsync: bool = True,
        merge_at: int = 32,
        fanout: int = 8,
        grace_s: float = 10.0,
    ) -> None:
        self.root = Path(root)
        self.schema = schema.append(pa.field("seg", pa.int64()))
        self.fsync = fsync
        self.merge_at = merge_at
        self.fanout = fanout
        host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]
        self.writer = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = 0
        self._mine: dict[int, list[SegmentFile]] = {}
        self.grace_s = grace_s
        self._doomed: list[tuple[float, Path]] = []
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()
        try:
            (self.root / _LOCKS).mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / _LOCKS / f"{self.writer}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StoreError(
                f"cannot create the event log in {self.root}: {exc}",
                hint="check that LUMINA_HOME points to a writable directory",
            ) from exc

    def write(self, table: pa.Table) -> SegmentFile:
        """Durably write ``table`` as the next segment and return it (acknowledged on return)."""
        with self._mutex:
            seq = self._seq + 1  # taken only once written: a failed write leaves no gap
            table = table.append_column("seg", pa.array([seq] * table.num_rows, pa.int64()))
            seg = self._write_file(table, 0, seq, seq)
            self._seq = seq
            self._mine.setdefault(0, []).append(seg)
            self._reap()
            try:
                self._maybe_merge()
            except StoreError as exc:  # the batch is stored; merging can wait for the next write
                log.warning("segment merge postponed: %s", exc)
            return seg

    def _write_file(self, table: pa.Table, level: int, lo: int, hi: int, writer: str | None = None) -> SegmentFile:
        name = f"{writer or self.writer}~{level}~{lo:010d}~{hi:010d}.parquet"
        path = self.root / name
        tmp = self.root / f".{name}.{secrets.token_hex(3)}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd", row_group_size=max(1, table.num_rows))
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
            if self.fsync:
                dfd = os.open(self.root, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise StoreError(f"cannot write segment {path}: {exc}", hint="free disk space or fix permissions") from exc
        return SegmentFile(writer or self.writer, lo, hi, level, path)

    def _maybe_merge(self) -> None:
        level = 0
        while True:
            segs = self._mine.get(level, [])
            limit = self.merge_at if level == 0 else self.fanout
            if len(segs) < limit:
                return
            merged = self._merge(segs, level + 1)
            self._mine[level] = []
            self._mine.setdefault(level + 1, []).append(merged)
            self._reap()
            level += 1

    def _merge(self, segs: list[SegmentFile], level: int, writer: str | None = None) -> SegmentFile:
        segs = sorted(segs, key=lambda s: s.lo)
        table = pa.concat_tables([pq.read_table(s.path, schema=self.schema) for s in segs])
        merged = self._write_file(table, level, segs[0].lo, segs[-1].hi, writer=writer)
        # Readers skip covered files, but one may have listed them a moment ago: delete them later.
        due = time.monotonic() + self.grace_s
        self._doomed.extend((due, s.path) for s in segs)
        return merged

    def _reap(self, *, everything: bool = False) -> None:
        """Delete merged-away files whose grace period is over."""
        now = time.monotonic()
        keep = []
        for due, path in self._doomed:
            if everything or due <= now:
                path.unlink(missing_ok=True)
            else:
                keep.append((due, path))
        self._doomed = keep

    def compact_orphans(self) -> int:
        """Merge the files of writers that are no longer alive; return files removed."""
        removed = 0
        lock_dir = self.root / _LOCKS
        for lock_path in sorted(lock_dir.glob("*.lock")):
            writer = lock_path.stem
            if writer == self.writer:
                continue
            fd = os.open(lock_path, os.O_RDWR)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
                for tmp in self.root.glob(f".{writer}~*.tmp"):
                    tmp.unlink(missing_ok=True)
                segs = [s for s in _scan(self.root) if s.writer == writer]
                live, _ = _live_cover(segs)
                for s in segs:  # files covered by a merged one, once it is older than the grace period
                    if s in live:
                        continue
                    cover = next(c for c in live if c.lo <= s.lo and s.hi <= c.hi)
                    try:
                        old_enough = time.time() - cover.path.stat().st_mtime >= self.grace_s
                    except FileNotFoundError:
                        continue
                    if old_enough:
                        s.path.unlink(missing_ok=True)
                        removed += 1
                if len(live) > 1:
                    self._merge(live, max(s.level for s in live) + 1, writer=writer)
                    removed += len(live) - 1
                    self._reap()
            finally:
                os.close(fd)
        return removed

    def close(self) -> None:
        """Release the writer lock (files stay; a later process may merge them).

        Merged-away files still in their grace period are left for
        :meth:`compact_orphans`, which removes covered files.
        """
        with self._mutex:
            self._reap()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def read_rows_after(
    files: Iterable[SegmentFile], after: dict[str, int]
) -> tuple[list[tuple[SegmentFile, int, int]], dict[str, int]]:
    """Plan reading rows not seen yet: per writer, contiguous ``seg`` ranges after ``after[writer]``.

    Returns ``[(file, from_seg, to_seg)]`` and the new high-water marks.  A gap
    stops a writer's plan until the next call, so nothing is skipped.
    """
    by_writer: dict[str, list[SegmentFile]] = {}
    for f in files:
        by_writer.setdefault(f.writer, []).append(f)
    plan: list[tuple[SegmentFile, int, int]] = []
    marks = dict(after)
    for writer, segs in by_writer.items():
        nxt = marks.get(writer, 0) + 1
        for s in sorted(segs, key=lambda s: (s.lo, -s.hi)):
            if s.hi < nxt:
                continue
            if s.lo > nxt:
                break
            plan.append((s, nxt, s.hi))
            nxt = s.hi + 1
        marks[writer] = nxt - 1
    return plan, marks
