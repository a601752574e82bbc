"""kill -9 a writer mid-stream: every acknowledged event survives, nothing is duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _events import Tick

from lumina_lab.events.store import FileEventStore
from lumina_lab.events.store.segments import SegmentFile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHILD = Path(__file__).resolve().parent / "_child.py"
BATCH = 5


def crash_writer(root: Path, who: str, kill_after_acks: int, *, merge_at: int = 4) -> int:
    """Run a writer that acknowledges batches forever; SIGKILL it after ``kill_after_acks``.

    Returns the last acknowledged ``n`` (every ``Tick(n <= it, who=who)`` must be stored).
    """
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(root), who, "0", str(BATCH), str(merge_at), "--forever"],
        stdout=subprocess.PIPE,
        text=True,
    )
    last = -1
    acks = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ack "):
                n = int(line.split()[1])
                assert n == last + BATCH, f"acks out of order: {last} then {n}"
                last = n
                acks += 1
                if acks >= kill_after_acks:
                    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the next batch (or a merge) is under way
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"writer ended by itself (rc={proc.returncode}) after {acks} acks"
    assert acks == kill_after_acks
    return last


def check_survivors(store: FileEventStore, who: str, last_acked: int) -> int:
    """Every acknowledged event is there exactly once; return how many of ``who``'s events are stored."""
    frame = store.sql(
        "SELECT id, CAST(payload->>'$.n' AS INTEGER) AS n FROM events WHERE payload->>'$.who' = ? ORDER BY n", [who]
    )
    assert frame["id"].is_unique, "duplicate event ids after the crash"
    ns = list(frame["n"])
    assert len(ns) == len(set(ns)), "an event was stored twice"
    assert ns[: last_acked + 1] == list(range(last_acked + 1)), "an acknowledged event is missing"
    # anything beyond the last ack is whole batches that were durable but not yet reported
    assert ns == list(range(len(ns)))
    assert len(ns) % BATCH == 0
    return len(ns)


@pytest.mark.parametrize("kill_after", [60, 230, 410])
def test_kill_9_keeps_every_acknowledged_event(tmp_path, kill_after):
    root = tmp_path / "events"
    last = crash_writer(root, "victim", kill_after)
    assert last == kill_after * BATCH - 1

    with FileEventStore(root) as store:  # opens cleanly whatever the crash left behind
        stored = check_survivors(store, "victim", last)
        assert store.count() == stored
        assert len(list(store.tail())) == stored
        # the dead writer's files can be compacted; nothing is lost or doubled
        store.compact()
        dead = {SegmentFile.parse(p).writer for p in store.segments()}  # type: ignore[union-attr]
        assert len(dead) == 1
        assert len(store.segments()) == 1
        assert check_survivors(store, "victim", last) == stored
        assert not [p for p in (root / "log").iterdir() if p.name.endswith(".tmp")]
        # and the log takes new writes
        store.append([Tick(n=i, who="after") for i in range(3)])
        store.flush()
        assert store.count() == stored + 3


def test_repeated_crashes_on_one_root(tmp_path):
    root = tmp_path / "events"
    expected: dict[str, int] = {}
    for round_, kill_after in enumerate((35, 140, 90)):
        who = f"round{round_}"
        expected[who] = crash_writer(root, who, kill_after, merge_at=3)
        with FileEventStore(root) as store:
            total = 0
            for w, last in expected.items():
                total += check_survivors(store, w, last)
            assert store.count() == total
            assert store.sql("SELECT count(DISTINCT id) AS n FROM events")["n"].iloc[0] == total


def test_leftover_tmp_files_do_not_matter(tmp_path):
    root = tmp_path / "events"
    last = crash_writer(root, "victim", 40)
    log = root / "log"
    writer = SegmentFile.parse(next(p for p in log.iterdir() if p.name.endswith(".parquet"))).writer  # type: ignore[union-attr]
    # a crash between open() and rename leaves a partial temporary file
    (log / f".{writer}~0~0000009999~0000009999.parquet.0a1b2c.tmp").write_bytes(b"PAR1\x00\x00partial")
    started = time.monotonic()
    with FileEventStore(root) as store:
        stored = check_survivors(store, "victim", last)
        assert store.count() == stored
        store.compact()  # removes the dead writer's temporary files too
        assert not [p for p in log.iterdir() if p.name.endswith(".tmp")]
        assert check_survivors(store, "victim", last) == stored
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("profile", ["test", "dev"])
def test_a_script_that_never_closes_its_lab_exits_promptly_and_cleanly(tmp_path: Path, profile: str) -> None:
    """At interpreter exit a file store writes what is buffered; an in-memory store only stops (nothing to keep),
    instead of waiting 30 s on a DuckDB connection that already refuses work."""
    script = f"from lumina_lab import Lab\nlab = Lab(profile={profile!r})\nlab.ask('hello', max_tokens=10)\n"
    env = {**os.environ, "LUMINA_HOME": str(tmp_path)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "not yet stored" not in done.stderr
    assert time.monotonic() - started < 20
    if profile == "dev":  # the file store kept the request's events
        with FileEventStore(tmp_path / "events") as store:
            assert store.sql("SELECT count(*) AS n FROM events WHERE type = 'provider.call.finished'").n[0] == 1
