"""CPU time added per routed request by tracing, in the same run as the same wiring with tracing off.

Tracing is built on the event spine.  The router publishes typed events for every step
(``provider.request.routed``, ``provider.call.started`` / ``finished`` ...) whenever the bus has
a subscriber — in a ``Lab`` always, since the event store subscribes to everything — and the
span store derives spans from that event log with DuckDB when it is queried.  So:

* ``off``: the Lab's wiring without observability: router, in-process bus, file event store;
* ``on``: the same with tracing on to the local store (``Observability(bus, events)``: span
  views over the event log, ``lab.run`` spans); nothing is added to the publish path;
* ``metrics``: ``on`` plus Prometheus metrics folded from the events (the ``dev`` profile default);
* ``export``: ``metrics`` plus live OTLP-style export (spans built by the Python ``SpanBuilder``,
  converted to SDK ``ReadableSpan``s and handed to a ``BatchSpanProcessor`` with the SDK's in-memory
  exporter — the network is left out);
* ``bare``: the router without any bus (the event spine's own cost is ``off - bare``).

Each configuration runs in the same process, interleaved over several rounds, and is measured in
CPU time (``time.process_time``: every thread, including the stores' writers) per request, each timed
window ending when the bus is drained and the event store has written everything.  ``overhead_*``
figures are medians over rounds of the difference with ``off`` in the same round (the machine is
shared, so single runs vary by +-20 us); ``overhead_min_us`` compares the best runs.  The read side is measured too: ``query_ms`` is the CPU time of deriving all spans and
traces of one round's requests (``SpanStore.traces``).

Prints one JSON line; ``overhead_us`` = on - off (target <= 15).  The per-mode figures are medians.

Usage: python benchmarks/tracing_overhead.py [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

from lumina_lab.events import InProcessBus
from lumina_lab.events.store import FileEventStore
from lumina_lab.observability import Observability, SpanStore
from lumina_lab.providers import ChatRequest, ProviderRegistry, Router, SimulatedProvider

MODELS = ["gpt-4.1-mini", "gpt-4.1", "gpt-4o-mini", "gemini-2.5-flash"]
PROMPT = "Summarise the tracing overhead benchmark in one sentence."
MODES = ("bare", "off", "on", "metrics", "export")


def one_run(mode: str, n: int, root: Path, deployments: int) -> tuple[float, float | None, int]:
    """CPU µs per request for ``mode``; CPU ms of deriving the traces (``on`` only); traces found."""
    providers = [SimulatedProvider(MODELS[i % len(MODELS)], id=f"d{i}", output_tokens=16) for i in range(deployments)]
    bus = None if mode == "bare" else InProcessBus()
    store = obs = None
    if bus is not None:
        store = FileEventStore(root / mode / "events")
        store.attach(bus)
    if mode in ("on", "metrics", "export"):
        exporter = "none"
        if mode == "export":
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            exporter = InMemorySpanExporter()
        obs = Observability(bus, store, metrics=mode != "on", exporter=exporter)
    router = Router(ProviderRegistry(providers), "least_busy", bus=bus)

    async def settle() -> None:
        if bus is not None:
            await bus.drain()
        if store is not None:
            await asyncio.to_thread(store.flush)
        if obs is not None:
            await asyncio.to_thread(obs._settle_and_write)

    async def go() -> float:
        for _ in range(300):  # warm up: caches, first segment files, lazy imports
            await router.ainvoke(ChatRequest(PROMPT, max_tokens=16))
        await settle()
        gc.collect()  # start every window with the same heap state
        t0 = time.process_time()
        for _ in range(n):
            await router.ainvoke(ChatRequest(PROMPT, max_tokens=16))
        await settle()
        return (time.process_time() - t0) / n * 1e6

    us = asyncio.run(go())
    query_ms, traces = None, 0
    if mode == "on":
        t0 = time.process_time()
        frame = SpanStore(store).traces(limit=None)
        query_ms = (time.process_time() - t0) * 1000
        traces = len(frame)
    if obs is not None:
        obs.close()
    if store is not None:
        store.close()
    return us, query_ms, traces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--deployments", type=int, default=4)
    args = ap.parse_args()
    results: dict[str, list[float]] = {m: [] for m in MODES}
    queries: list[float] = []
    traces = 0
    with tempfile.TemporaryDirectory(prefix="lumina-tracing-bench-") as tmp:
        for r in range(args.rounds):
            for mode in MODES:
                us, query_ms, found = one_run(mode, args.requests, Path(tmp) / f"r{r}", args.deployments)
                results[mode].append(us)
                if query_ms is not None:
                    queries.append(query_ms)
                    traces = found
    med = {k: statistics.median(v) for k, v in results.items()}

    def added(mode: str) -> float:  # median over rounds of the paired difference (same round, adjacent runs)
        return round(statistics.median(a - b for a, b in zip(results[mode], results["off"], strict=True)), 2)

    total = args.requests + 300
    out = {
        "benchmark": "tracing_overhead",
        "requests": args.requests,
        "rounds": args.rounds,
        "deployments": args.deployments,
        "overhead_us": added("on"),
        "target_us": 15,
        "overhead_min_us": round(min(results["on"]) - min(results["off"]), 2),
        "overhead_with_metrics_us": added("metrics"),
        "overhead_with_export_us": added("export"),
        "tracing_off_us": round(med["off"], 2),
        "tracing_on_us": round(med["on"], 2),
        "metrics_us": round(med["metrics"], 2),
        "export_us": round(med["export"], 2),
        "router_bare_us": round(med["bare"], 2),
        "event_spine_us": round(med["off"] - med["bare"], 2),
        "query_ms": round(statistics.median(queries), 1),
        "query_traces": traces,
        "query_us_per_trace": round(statistics.median(queries) * 1000 / max(traces, 1), 2),
        "traces_expected": total,
        "rounds_us": {k: [round(x, 1) for x in v] for k, v in results.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
