"""Simulated requests per second: the routing lab's engine vs driving the live async path with a fast clock.

Both replay the same Poisson workload over 10 simulated providers with circuit
breakers and per-tenant budgets on.  The engine runs the router's synchronous
steps from a heap of timed events; the live path runs ``Router.ainvoke`` as
asyncio tasks on a :class:`ManualClock` that jumps to the next sleeper whenever
the loop is idle.  Prints one JSON line with ``sim_requests_per_s`` and
``live_path_requests_per_s`` (target for the engine: >= 200,000/s).

Usage: python benchmarks/replay_throughput.py [--requests 1000000] [--live-requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from lumina_lab.providers import Budget, RetryPolicy, SimulatedProvider
from lumina_lab.sim.engine import RoutingLab
from lumina_lab.sim.workloads import Task, poisson

MODELS = [
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gemini-2.5-flash",
    "gpt-4o-mini",
    "claude-3-haiku-20240307",
    "gpt-4.1",
    "gpt-4o",
    "mistral-small-latest",
    "open-mistral-nemo",
    "claude-3-7-sonnet-20250219",
]
TASKS = {"chat": Task(0.7, frozenset(), 300, 0.8, 256), "code": Task(0.3, frozenset({"code"}), 900, 0.7, 512)}


def lab() -> RoutingLab:
    fleet = [
        SimulatedProvider(
            m,
            id=f"p{i}",
            ttft_s=0.2 + 0.05 * i,
            tokens_per_s=60 + 10 * i,
            error_rate=0.02,
            timeout_rate=0.002,
            hang_s=120.0,
            capabilities={"code": 0.5 + 0.05 * i},
            limits={"max_concurrency": 256},
        )
        for i, m in enumerate(MODELS)
    ]
    budgets = [Budget(500.0, scope="project", period="day")]
    return RoutingLab(
        fleet, breaker={"min_calls": 10, "open_s": 30.0}, retry=RetryPolicy(attempts=2), budgets=budgets, timeout_s=30.0
    )


def live_path(n: int, rate: float) -> float:
    """Requests/s replaying through Router.ainvoke with asyncio tasks on a fast-forwarding clock."""
    the_lab = lab()
    router, clock = the_lab.build("least_busy", seed=0)
    wl = poisson(rate, n=n, seed=2, tasks=TASKS, tenants={"search": 2, "agents": 1, "eval": 1})

    async def run() -> None:
        tasks = []
        i = 0
        inf = float("inf")
        t0 = time.perf_counter()
        while True:
            wake = clock.next_wakeup()
            nxt_sleep = inf if wake is None else wake
            nxt_arrival = float(wl.arrival_s[i]) if i < n else inf
            if nxt_arrival == inf and nxt_sleep == inf:
                break
            if nxt_arrival <= nxt_sleep:
                clock.set(max(nxt_arrival, clock.now()))
                tasks.append(asyncio.ensure_future(router.ainvoke(wl.request(i))))
                i += 1
            else:
                clock.set(nxt_sleep)
            await asyncio.sleep(0)  # let what became runnable run before time moves again
            await asyncio.sleep(0)
        await asyncio.gather(*tasks, return_exceptions=True)
        run.elapsed = time.perf_counter() - t0  # type: ignore[attr-defined]

    asyncio.run(run())
    return n / run.elapsed  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--live-requests", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=300.0, help="arrivals per simulated second")
    args = ap.parse_args()
    wl = poisson(args.rate, n=args.requests, seed=1, tasks=TASKS, tenants={"search": 2, "agents": 1, "eval": 1})
    result = lab().run(wl, "least_busy")
    summary = result.summary()
    live = live_path(args.live_requests, args.rate)
    print(
        json.dumps(
            {
                "benchmark": "replay_throughput",
                "requests": args.requests,
                "providers": len(MODELS),
                "simulated_hours": round(wl.duration_s / 3600, 2),
                "sim_requests_per_s": round(result.requests_per_wall_s),
                "live_requests": args.live_requests,
                "live_path_requests_per_s": round(live),
                "speedup": round(result.requests_per_wall_s / live, 1),
                "success_rate": round(summary["success_rate"], 4),
                "p95_s": round(summary["p95_s"], 3),
                "cost_usd": round(summary["cost_usd"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
