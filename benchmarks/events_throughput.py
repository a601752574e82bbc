"""Events published through the bus into the event store per second, and import time.

Prints one JSON line.  Figures:

* ``events_per_s`` — events created, published on the in-process bus and
  acknowledged (fsynced) by the default file store, end to end (target >= 50,000).
* ``events_per_s_memory`` — the same into the in-memory store.
* ``anchor_duckdb_executemany_per_s`` — the anchor: the same events inserted
  into a DuckDB database file with ``executemany`` (what one writes without an
  event store), committed per batch of the same size.
* ``import_ms`` — ``import lumina_lab`` in a fresh interpreter (median of 7; target <= 300);
  ``import_events_ms`` and ``import_lab_ms`` for the event spine and :class:`Lab`;
  ``anchor_import_litellm_ms`` — ``import litellm`` (null when it is not installed:
  ``pip install -e '.[bench]'``).

Usage: python benchmarks/events_throughput.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lumina_lab.events import Event, InProcessBus, event
from lumina_lab.events.store import FileEventStore, MemoryEventStore


@event("bench.request.finished")
class RequestFinished(Event):
    user: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    ok: bool


def _make(i: int) -> RequestFinished:
    return RequestFinished(
        user=f"u{i % 50}",
        model="gpt-4.1-mini",
        input_tokens=400 + i % 300,
        output_tokens=120 + i % 80,
        latency_ms=800.0 + i % 400,
        ok=i % 97 != 0,
    )


def bus_into_store(store_factory, n: int) -> float:
    """Events/s: create + publish + store + acknowledge ``n`` events."""

    async def run() -> float:
        store = store_factory()
        bus = InProcessBus()
        store.attach(bus)
        t0 = time.perf_counter()
        for i in range(n):
            await bus.publish(_make(i))
        await bus.drain()
        await store.aflush()
        dt = time.perf_counter() - t0
        assert store.acked == n, (store.acked, n)
        await bus.close()
        store.close()
        return n / dt

    return asyncio.run(run())


def anchor_duckdb(n: int, path: Path, batch: int = 5_000) -> float:
    """Events/s inserting rows into a DuckDB file with executemany, one commit per batch."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE events (id VARCHAR, type VARCHAR, schema_version SMALLINT, ts TIMESTAMPTZ, "
        "source VARCHAR, trace_id VARCHAR, span_id VARCHAR, payload VARCHAR)"
    )
    t0 = time.perf_counter()
    rows = []
    for i in range(n):
        e = _make(i)
        rows.append((e.id, e.type, e.schema_version, e.ts, e.source, e.trace_id, e.span_id, e.payload_json()))
        if len(rows) == batch:
            con.execute("BEGIN")
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
            rows = []
    if rows:
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    dt = time.perf_counter() - t0
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == n
    con.close()
    return n / dt


def import_ms(stmt: str, runs: int = 7) -> float | None:
    code = f"import time; t=time.perf_counter(); {stmt}; print((time.perf_counter()-t)*1000)"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    times = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return None
        times.append(float(proc.stdout.strip().splitlines()[-1]))
    return round(statistics.median(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--anchor-events", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        file_rate = bus_into_store(lambda: FileEventStore(Path(tmp) / "events"), args.events)
        mem_rate = bus_into_store(MemoryEventStore, args.events)
        anchor = anchor_duckdb(args.anchor_events, Path(tmp) / "anchor.duckdb")
    figures = {
        "benchmark": "events_throughput",
        "events": args.events,
        "events_per_s": round(file_rate),
        "events_per_s_memory": round(mem_rate),
        "anchor_duckdb_executemany_per_s": round(anchor),
        "speedup_vs_anchor": round(file_rate / anchor, 1),
        "import_ms": import_ms("import lumina_lab"),
        "import_events_ms": import_ms("import lumina_lab.events"),
        "import_lab_ms": import_ms("from lumina_lab import Lab"),
        "anchor_import_litellm_ms": import_ms("import litellm", runs=3),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
