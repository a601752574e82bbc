"""FileEventStore specifics: segment files, merging, compaction, and the listing logic."""

from __future__ import annotations

import errno
import itertools
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from _events import Tick

from lumina_lab.errors import StoreError
from lumina_lab.events.store import FileEventStore
from lumina_lab.events.store import file as file_mod
from lumina_lab.events.store import segments as seg_mod
from lumina_lab.events.store.segments import SegmentFile, list_segments, read_rows_after

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_child.py"


def ticks(k: int, *, who: str = "", start: int = 0) -> list[Tick]:
    return [Tick(n=i, who=who) for i in range(start, start + k)]


def parquet_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".parquet"))


def parsed(directory: Path) -> list[SegmentFile]:
    return [s for s in (SegmentFile.parse(p) for p in parquet_files(directory)) if s is not None]


def assert_exact(store: FileEventStore, expected_ids: set[str]) -> None:
    frame = store.sql("SELECT id FROM events")
    assert len(frame) == len(expected_ids)
    assert frame["id"].is_unique
    assert set(frame["id"]) == expected_ids


def touch(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).touch()


def name(writer: str, level: int, lo: int, hi: int) -> str:
    return f"{writer}~{level}~{lo:010d}~{hi:010d}.parquet"


def spans(files: list[SegmentFile]) -> list[tuple[str, int, int, int]]:
    return [(f.writer, f.level, f.lo, f.hi) for f in files]


# --------------------------------------------------------------------------- writing and merging


def test_each_flush_writes_one_named_segment(file_root):
    with FileEventStore(file_root) as store:
        for k in range(3):
            store.append(ticks(10, start=10 * k))
            store.flush()
        segs = parsed(file_root / "log")
        assert len(segs) == 3
        writer = store._log("events").writer
        assert spans(segs) == [(writer, 0, 1, 1), (writer, 0, 2, 2), (writer, 0, 3, 3)]
        assert store.segments() == [s.path for s in segs]
        table = pq.read_table(segs[1].path)
        assert table.num_rows == 10
        assert set(table.column("seg").to_pylist()) == {2}
        assert not list((file_root / "log").glob("*.tmp")) and not list((file_root / "log").glob(".*.tmp"))


def test_writer_merges_its_small_files(file_root):
    expected: set[str] = set()
    with FileEventStore(file_root, merge_grace_s=0, merge_at=4) as store:
        for k in range(20):
            batch = ticks(25, who="m", start=25 * k)
            expected |= {e.id for e in batch}
            store.append(batch)
            store.flush()
        live = store.segments()
        # 20 flushes with merge_at=4: five level-1 files instead of twenty small ones
        # (merged-away files linger for a grace period, skipped by readers)
        assert len(live) <= 8, [f.name for f in live]
        segs = parsed(file_root / "log")
        assert {s.level for s in segs} >= {1}
        covered = sorted((s.lo, s.hi) for s in segs)
        assert covered[0][0] == 1 and covered[-1][1] == 20
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(covered))  # no overlap, no gap
        assert store.count() == 500
        assert_exact(store, expected)
        ns = store.sql("SELECT CAST(payload->>'$.n' AS INTEGER) AS n FROM events ORDER BY n")["n"]
        assert list(ns) == list(range(500))
    with FileEventStore(file_root) as reader:
        assert_exact(reader, expected)
        assert len(list(reader.tail())) == 500


def test_merges_cascade_to_higher_levels(file_root):
    with FileEventStore(file_root, merge_grace_s=0, merge_at=2) as store:
        log = store._log("events")
        assert log.fanout == 8
        for k in range(40):
            store.append(ticks(3, start=3 * k))
            store.flush()
        segs = parsed(file_root / "log")
        assert max(s.level for s in segs) >= 2
        assert len(segs) < 10
        assert store.count() == 120
        assert store.sql("SELECT count(DISTINCT id) AS n FROM events")["n"].iloc[0] == 120


def test_readers_ignore_tmp_and_foreign_files(file_root):
    with FileEventStore(file_root) as store:
        store.append(ticks(7))
        store.flush()
        log = file_root / "log"
        writer = store._log("events").writer
        # what a crash mid-write leaves behind, and files that are not segments
        (log / f".{name(writer, 0, 2, 2)}.abc123.tmp").write_bytes(b"PAR1 half a file")
        (log / f"{name(writer, 0, 3, 3)}.tmp").write_bytes(b"garbage")
        (log / "garbage.parquet").write_bytes(b"not parquet at all")
        (log / "w~0~1~1.parquet").write_bytes(b"short numbers: not a segment name")
        (log / "notes.txt").write_text("hello")
        assert store.count() == 7
        assert len(store.segments()) == 1
        assert len(list(store.tail())) == 7
        store.append(ticks(3, start=7))
        store.flush()
        assert store.count() == 10
    with FileEventStore(file_root) as reader:
        assert reader.count() == 10


def test_stores_in_one_process_are_separate_writers(file_root):
    a = FileEventStore(file_root)
    b = FileEventStore(file_root)
    try:
        a.append(ticks(5, who="a"))
        b.append(ticks(6, who="b"))
        a.flush()
        b.flush()
        assert a._log("events").writer != b._log("events").writer
        assert a.count() == b.count() == 11
        assert a.count("payload->>'$.who' = 'b'") == 6
        assert a.compact() == 0  # b is alive: its files are not touched
        assert len(parsed(file_root / "log")) == 2
    finally:
        a.close()
        b.close()


def test_open_on_unwritable_root_fails_early(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the event log"):
        FileEventStore(blocker / "events")


# --------------------------------------------------------------------------- compaction of dead writers


def run_child(root: Path, who: str, count: int, batch: int, merge_at: int, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(root), who, str(count), str(batch), str(merge_at), *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], word: str) -> list[str]:
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith(word):
            return lines
    raise AssertionError(f"child ended before {word!r}: {lines[-3:]}, rc={proc.wait()}")


@pytest.mark.slow
def test_compact_merges_files_of_dead_writers_only(file_root):
    dead = run_child(file_root, "dead", 50, 10, 1000)  # five flushes, no merging
    out, _ = dead.communicate(timeout=30)
    assert dead.returncode == 0, out
    dead_writer = out.splitlines()[0].split()[1]

    alive = run_child(file_root, "alive", 30, 10, 1000, "--wait")
    try:
        alive_writer = read_until(alive, "done")[0].split()[1]
        with FileEventStore(file_root, merge_grace_s=0) as store:
            store.append(ticks(4, who="me"))
            store.flush()

            def by_writer(w: str) -> list[SegmentFile]:
                return [s for s in parsed(file_root / "log") if s.writer == w]

            assert len(by_writer(dead_writer)) == 5
            assert len(by_writer(alive_writer)) == 3
            before = set(store.query()["id"])
            assert len(before) == 84

            assert store.compact() == 4  # the dead writer's five files become one
            merged = by_writer(dead_writer)
            assert [(s.lo, s.hi) for s in merged] == [(1, 5)]
            assert len(by_writer(alive_writer)) == 3  # alive: untouched
            assert len(by_writer(store._log("events").writer)) == 1  # ours: untouched
            assert_exact(store, before)
            assert store.count("payload->>'$.who' = 'dead'") == 50
            assert store.compact() == 0  # nothing more to do

            assert alive.stdin is not None
            alive.stdin.write("\n")
            alive.stdin.flush()
            assert alive.wait(30) == 0
            assert store.compact() == 2
            assert [(s.lo, s.hi) for s in by_writer(alive_writer)] == [(1, 3)]
            assert_exact(store, before)
            assert len(list(store.tail())) == 84
    finally:
        if alive.poll() is None:
            alive.kill()
        alive.wait()


@pytest.mark.slow
def test_compact_after_dead_writer_merged_partly(file_root):
    proc = run_child(file_root, "dead", 90, 10, 4)  # nine flushes, merge_at=4: two level-1 files + one small
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    # a crash between a merge and the deletion of the merged small files leaves covered files behind
    log = file_root / "log"
    writer = out.splitlines()[0].split()[1]
    segs = list_segments(log)  # the merged-away small files linger (grace period) but are not live
    assert sorted((s.level, s.lo, s.hi) for s in segs) == [(0, 9, 9), (1, 1, 4), (1, 5, 8)]
    assert len(parsed(log)) == 3 + 8
    level1 = next(s for s in segs if (s.lo, s.hi) == (1, 4))
    left_over = log / name(writer, 0, 2, 2)
    tbl = pq.read_table(level1.path)
    pq.write_table(tbl.filter(pc.equal(tbl.column("seg"), 2)), left_over)
    with FileEventStore(file_root, merge_grace_s=0) as store:
        assert store.count() == 90  # the covered file is skipped
        assert store.compact() == 8 + 2  # the eight covered files, and three live files merged into one
        assert [(s.level, s.lo, s.hi) for s in parsed(log)] == [(2, 1, 9)]
        assert store.count() == 90
        assert store.sql("SELECT count(DISTINCT id) AS n FROM events")["n"].iloc[0] == 90


# --------------------------------------------------------------------------- listing logic (names only)


def test_list_segments_missing_directory(tmp_path):
    assert list_segments(tmp_path / "nope") == []


def test_list_segments_contiguous_and_foreign_names(tmp_path):
    touch(
        tmp_path,
        name("w1", 0, 1, 1),
        name("w1", 0, 2, 2),
        name("w1", 0, 3, 3),
        "w1~0~1~1.parquet",
        "garbage.parquet",
        f".{name('w1', 0, 4, 4)}.abcdef.tmp",
        "w1~x~0000000004~0000000004.parquet",
        "bad writer~0~0000000004~0000000004.parquet",
    )
    assert spans(list_segments(tmp_path)) == [("w1", 0, 1, 1), ("w1", 0, 2, 2), ("w1", 0, 3, 3)]


def test_list_segments_prefers_merged_file_over_covered_ones(tmp_path):
    # mid-merge: the merged file is in place, the small ones not deleted yet
    touch(tmp_path, *(name("w1", 0, i, i) for i in range(1, 6)), name("w1", 1, 1, 4))
    assert spans(list_segments(tmp_path)) == [("w1", 1, 1, 4), ("w1", 0, 5, 5)]
    # some small ones deleted already
    (tmp_path / name("w1", 0, 1, 1)).unlink()
    (tmp_path / name("w1", 0, 2, 2)).unlink()
    assert spans(list_segments(tmp_path)) == [("w1", 1, 1, 4), ("w1", 0, 5, 5)]
    # nested merges
    touch(tmp_path, name("w1", 2, 1, 32), *(name("w1", 1, lo, lo + 3) for lo in range(5, 33, 4)))
    touch(tmp_path, name("w1", 0, 33, 33))
    assert spans(list_segments(tmp_path)) == [("w1", 2, 1, 32), ("w1", 0, 33, 33)]


def test_list_segments_writers_are_independent(tmp_path):
    touch(
        tmp_path,
        name("host-1-aaaaaa", 0, 1, 1),
        name("host-1-aaaaaa", 0, 2, 2),
        name("host-2-bbbbbb", 1, 1, 4),
        name("host-2-bbbbbb", 0, 5, 5),
        name("h.o_s-t", 0, 1, 1),
    )
    assert spans(list_segments(tmp_path)) == [
        ("h.o_s-t", 0, 1, 1),
        ("host-1-aaaaaa", 0, 1, 1),
        ("host-1-aaaaaa", 0, 2, 2),
        ("host-2-bbbbbb", 1, 1, 4),
        ("host-2-bbbbbb", 0, 5, 5),
    ]


def test_list_segments_gap_is_listed_again(tmp_path):
    # a listing with a gap (taken while a merge moved files) is retried until it is complete
    touch(tmp_path, name("w1", 0, 1, 1), name("w1", 0, 3, 3))
    timer = threading.Timer(0.02, touch, args=(tmp_path, name("w1", 0, 2, 2)))
    timer.start()
    try:
        files = list_segments(tmp_path, attempts=400)
    finally:
        timer.join()
    assert spans(files) == [("w1", 0, 1, 1), ("w1", 0, 2, 2), ("w1", 0, 3, 3)]


def test_list_segments_gives_up_on_a_lasting_gap(tmp_path):
    touch(tmp_path, name("w1", 0, 1, 1), name("w1", 0, 3, 3), name("w2", 0, 1, 1))
    # after the attempts it returns what it has, so a reader still sees every stored row
    assert spans(list_segments(tmp_path, attempts=2)) == [("w1", 0, 1, 1), ("w1", 0, 3, 3), ("w2", 0, 1, 1)]


def test_list_segments_gap_at_start(tmp_path):
    # files 1..4 merged into (1-4) but the listing saw neither it nor 1..2 (only 3, 4 and 5)
    touch(tmp_path, name("w1", 0, 3, 3), name("w1", 0, 4, 4))
    assert spans(list_segments(tmp_path, attempts=1)) == [("w1", 0, 3, 3), ("w1", 0, 4, 4)]
    assert seg_mod._live_cover(list_segments(tmp_path, attempts=1))[1] is False


def files_of(tmp_path: Path) -> list[SegmentFile]:
    return [s for s in (SegmentFile.parse(p) for p in sorted(tmp_path.iterdir())) if s is not None]


def test_read_rows_after_plans_unseen_ranges(tmp_path):
    touch(tmp_path, name("a", 0, 1, 1), name("a", 0, 2, 2), name("a", 0, 3, 3), name("b", 1, 1, 4), name("b", 0, 5, 5))
    files = files_of(tmp_path)
    plan, marks = read_rows_after(files, {})
    assert sorted((f.writer, f.lo, f.hi, lo, hi) for f, lo, hi in plan) == [
        ("a", 1, 1, 1, 1),
        ("a", 2, 2, 2, 2),
        ("a", 3, 3, 3, 3),
        ("b", 1, 4, 1, 4),
        ("b", 5, 5, 5, 5),
    ]
    assert marks == {"a": 3, "b": 5}
    # nothing new: empty plan, same marks
    assert read_rows_after(files, marks) == ([], marks)
    # part of a merged file already seen: read only the rest of it
    plan, marks2 = read_rows_after(files, {"a": 3, "b": 2})
    assert [(f.writer, f.lo, f.hi, lo, hi) for f, lo, hi in plan] == [("b", 1, 4, 3, 4), ("b", 5, 5, 5, 5)]
    assert marks2 == {"a": 3, "b": 5}


def test_read_rows_after_merged_and_covered_files(tmp_path):
    # raw listing mid-merge: the merged file and the small files it covers
    touch(tmp_path, *(name("w", 0, i, i) for i in range(1, 5)), name("w", 1, 1, 4), name("w", 0, 5, 5))
    plan, marks = read_rows_after(files_of(tmp_path), {"w": 1})
    assert [(f.level, f.lo, f.hi, lo, hi) for f, lo, hi in plan] == [(1, 1, 4, 2, 4), (0, 5, 5, 5, 5)]
    assert marks == {"w": 5}


def test_read_rows_after_stops_at_a_gap(tmp_path):
    touch(tmp_path, name("w", 0, 1, 1), name("w", 0, 3, 3), name("v", 0, 1, 1))
    plan, marks = read_rows_after(files_of(tmp_path), {"gone": 7})
    assert sorted((f.writer, lo, hi) for f, lo, hi in plan) == [("v", 1, 1), ("w", 1, 1)]
    assert marks == {"gone": 7, "v": 1, "w": 1}  # seg 3 waits: nothing is skipped
    touch(tmp_path, name("w", 0, 2, 2))
    plan, marks = read_rows_after(files_of(tmp_path), marks)
    assert [(f.writer, lo, hi) for f, lo, hi in plan] == [("w", 2, 2), ("w", 3, 3)]
    assert marks == {"gone": 7, "v": 1, "w": 3}


def test_read_rows_after_gap_before_the_first_file(tmp_path):
    touch(tmp_path, name("w", 0, 2, 2))
    plan, marks = read_rows_after(files_of(tmp_path), {})
    assert plan == []
    assert marks == {"w": 0}


# --------------------------------------------------------------------------- bugs


def test_failed_write_leaves_no_sequence_gap(file_root, monkeypatch):
    real_write = seg_mod.pq.write_table
    failures = []

    def flaky_write(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    with FileEventStore(file_root) as store:
        store.append(ticks(5))
        store.flush()
        monkeypatch.setattr(seg_mod.pq, "write_table", flaky_write)
        store.append(ticks(5, start=5))
        assert store.flush(timeout=10) == 10  # retried after the failure
        monkeypatch.undo()
        assert failures == [1]
        assert store.count() == 10
        store.append(ticks(5, start=10))
        store.flush()
        with FileEventStore(file_root) as reader:
            assert len(list(reader.tail())) == 15
        segs = parsed(file_root / "log")
        assert [(s.lo, s.hi) for s in segs] == [(1, 1), (2, 2), (3, 3)]


def test_failed_write_is_retried_and_counted(file_root, monkeypatch):
    real_write = seg_mod.pq.write_table
    failures = []

    def flaky_write(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    with FileEventStore(file_root) as store:
        monkeypatch.setattr(seg_mod.pq, "write_table", flaky_write)
        store.append(ticks(5))
        assert store.flush(timeout=10) == 5
        monkeypatch.undo()
        assert len(failures) == 2
        assert store.stats()["last_error"] is None
        assert store.count() == 5
        assert not [p for p in (file_root / "log").iterdir() if p.name.endswith(".tmp")]


def racing_listing(monkeypatch, writer: FileEventStore, batch: list[Tick]) -> list[int]:
    """Make the next listing of ``log`` stale: right after it, ``writer`` flushes and merges."""
    real = file_mod.list_segments
    fired: list[int] = []

    def listing(root, **kwargs):
        files = real(root, **kwargs)
        if Path(root).name == "log" and not fired:
            fired.append(1)
            writer.append(batch)
            writer.flush()  # the fourth file: the writer merges and deletes the three listed ones
        return files

    monkeypatch.setattr(file_mod, "list_segments", listing)
    return fired


def three_small_files(file_root: Path) -> tuple[FileEventStore, FileEventStore]:
    writer = FileEventStore(file_root, merge_grace_s=0, merge_at=4)
    for k in range(3):
        writer.append(ticks(10, start=10 * k))
        writer.flush()
    reader = FileEventStore(file_root)
    assert len(reader.segments()) == 3
    return writer, reader


def test_query_survives_files_merged_after_listing(file_root, monkeypatch):
    writer, reader = three_small_files(file_root)
    try:
        fired = racing_listing(monkeypatch, writer, ticks(10, start=30))
        n = reader.count()
        assert fired == [1]
        assert n in (30, 40)
        assert reader.count() == 40
    finally:
        monkeypatch.undo()
        writer.close()
        reader.close()


def test_tail_survives_files_merged_after_listing(file_root, monkeypatch):
    writer, reader = three_small_files(file_root)
    try:
        fired = racing_listing(monkeypatch, writer, ticks(10, start=30))
        gen = reader.tail(follow=True, poll_s=0.01)
        rows = [next(gen) for _ in range(40)]
        gen.close()
        assert fired == [1]
        assert len({r["id"] for r in rows}) == 40
    finally:
        monkeypatch.undo()
        writer.close()
        reader.close()


def merging_writer(file_root: Path) -> tuple[FileEventStore, FileEventStore]:
    """A writer (merge_at=2) whose next flush merges away a file a reader lists now, and a reader."""
    writer = FileEventStore(file_root, merge_grace_s=0, merge_at=2)
    for k in range(3):  # level 1 (1-2) and a pending level 0 (3)
        writer.append(ticks(10, start=10 * k))
        writer.flush()
    reader = FileEventStore(file_root)
    assert [(s.level, s.lo, s.hi) for s in list_segments(file_root / "log")] == [(1, 1, 2), (0, 3, 3)]
    return writer, reader


@pytest.mark.parametrize(
    "races",
    [1, 5],
)
def test_query_survives_files_merged_during_execution(file_root, monkeypatch, races):
    """Files vanish after the view was created, before DuckDB reads them: sql() lists again."""
    writer, reader = merging_writer(file_root)
    real_prepare = file_mod.FileEventStore._prepare_views
    fired: list[int] = []

    def prepare(self, con):
        real_prepare(self, con)
        if self is reader and len(fired) < races:
            fired.append(1)
            for _ in range(2):  # the first flush merges a listed file away, the second leaves one pending
                writer.append(ticks(10))
                writer.flush()

    try:
        monkeypatch.setattr(file_mod.FileEventStore, "_prepare_views", prepare)
        n = reader.count()
        assert fired == [1] * races
        assert 30 <= n <= 30 + 20 * races and n % 10 == 0
        monkeypatch.undo()
        assert reader.count() == 30 + 20 * races
    finally:
        monkeypatch.undo()
        writer.close()
        reader.close()


def test_an_idle_tail_poll_reads_only_the_directory(file_root, monkeypatch):
    """A follower polling a log with nothing new lists the files and stops there: no DuckDB query (a served
    dashboard polls every 50 ms); once a segment lands, the next poll reads exactly its rows."""
    writer, reader = three_small_files(file_root)
    try:
        rows, state = reader._tail_rows(None, None, None)
        assert len(rows) == 30
        queried: list[int] = []
        real = file_mod.FileEventStore._run_query

        def counting(self, run, query):
            queried.append(1)
            return real(self, run, query)

        monkeypatch.setattr(file_mod.FileEventStore, "_run_query", counting)
        for _ in range(20):
            rows, state = reader._tail_rows(state, None, None)
            assert rows == []
        assert queried == []
        writer.append(ticks(5, start=30))
        writer.flush()
        rows, state = reader._tail_rows(state, None, None)
        assert len(rows) == 5 and queried == [1]
    finally:
        monkeypatch.undo()
        writer.close()
        reader.close()
