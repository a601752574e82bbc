"""Simulated requests per second: the routing lab's engine vs driving the live async path with a fast clock.

Both replay the same Poisson workload over 10 simulated providers with circuit
breakers and per-tenant budgets on.  The engine runs the router's synchronous
steps from a heap of timed events; the live path runs ``Router.ainvoke`` as
asyncio tasks on a :class:`ManualClock` that jumps to the next sleeper whenever
the loop is idle.  Prints one JSON line with ``sim_requests_per_s`` and
``live_path_requests_per_s`` (target for the engine: >= 200,000/s).

Both are measured twice: on the source as it is (interpreted) and on the compiled build of the hot
path (:mod:`lumina_lab.compiled`: the same modules compiled with mypyc, in a cache folder; built on
the first run when mypy is installed), each in its own process.  ``sim_requests_per_s`` and
``live_path_requests_per_s`` are those of the fastest build (``build`` says which); the others are
printed as ``interpreted`` and ``compiled``.  The two builds must replay to the same results
(``same_results``).  ``--build interpreted`` measures only the source.  ``python_loop_ns`` is the
machine's speed at plain Python (ns per iteration of a counting loop): rates from different machines
compare only with it beside them.  The engine's rate is the best of ``--repeat`` replays (default 3,
each listed in ``sim_runs``); they must all end with the same results.

Usage: python benchmarks/replay_throughput.py [--requests 1000000] [--live-requests 50000] [--repeat 3]
       [--build auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
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


def python_loop_ns() -> float:
    """This machine's speed at plain Python: ns per iteration of ``for i in range(n): s += i`` (best of 3).

    Timings here vary between machines (and sessions of a shared one) by 2-3x; this figure, printed
    beside the rates, says which kind of machine they were measured on."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        s = 0
        for i in range(2_000_000):
            s += i
        best = min(best, time.perf_counter() - t0)
    return best / 2_000_000 * 1e9


def measure(requests: int, live_requests: int, rate: float, repeat: int) -> dict:
    """Engine and live-path rates in this process (whatever build ``lumina_lab`` is here).

    The engine replays the workload ``repeat`` times, each on a fresh lab; its rate is the best run's
    (as ``timeit`` reports the minimum: on a shared machine other work only ever slows a run down), and
    every run must end with the same results."""
    from lumina_lab.compiled import is_compiled

    wl = poisson(rate, n=requests, seed=1, tasks=TASKS, tenants={"search": 2, "agents": 1, "eval": 1})
    runs = []
    summary: dict = {}
    for _ in range(repeat):
        result = lab().run(wl, "least_busy")
        again = result.summary()
        if summary and again != summary:
            raise SystemExit(f"replays of one workload differ: {summary} then {again}")
        summary = again
        runs.append(round(result.requests_per_wall_s))
        del result  # its rows: the next run starts with the memory this one had
    live = live_path(live_requests, rate)
    return {
        "build": "mypyc" if is_compiled() else "interpreted",
        "simulated_hours": round(wl.duration_s / 3600, 2),
        "sim_requests_per_s": max(runs),
        "sim_runs": runs,
        "live_path_requests_per_s": round(live),
        "success_rate": round(summary["success_rate"], 4),
        "p95_s": round(summary["p95_s"], 3),
        "cost_usd": round(summary["cost_usd"], 2),
    }


def compiled_run(args: argparse.Namespace) -> dict | None:
    """The same measurement on the compiled build, in a child process (None if it cannot be built)."""
    try:
        from lumina_lab.compiled import build

        root = build()
    except Exception as exc:  # no mypy or no compiler: say so in the output instead of failing
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--build",
        "interpreted",
        "--child",
        "--requests",
        str(args.requests),
        "--live-requests",
        str(args.live_requests),
        "--rate",
        str(args.rate),
        "--repeat",
        str(args.repeat),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=os.path.dirname(root))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--live-requests", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=300.0, help="arrivals per simulated second")
    ap.add_argument("--repeat", type=int, default=3, help="engine replays per build; the best counts")
    ap.add_argument(
        "--build",
        choices=["auto", "interpreted"],
        default="auto",
        help="auto: also measure the compiled build (lumina_lab.compiled)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    here = measure(args.requests, args.live_requests, args.rate, args.repeat)
    if args.child:
        print(json.dumps(here))
        return
    compiled = compiled_run(args) if args.build == "auto" else None
    builds = [here] + ([compiled] if compiled and "error" not in compiled else [])
    best = max(builds, key=lambda b: b["sim_requests_per_s"])
    same = None
    if len(builds) == 2:
        keys = ("success_rate", "p95_s", "cost_usd", "simulated_hours")
        same = all(builds[0][k] == builds[1][k] for k in keys)
    print(
        json.dumps(
            {
                "benchmark": "replay_throughput",
                "requests": args.requests,
                "providers": len(MODELS),
                "simulated_hours": best["simulated_hours"],
                "build": best["build"],
                "sim_requests_per_s": best["sim_requests_per_s"],
                "live_requests": args.live_requests,
                "live_path_requests_per_s": best["live_path_requests_per_s"],
                "speedup": round(best["sim_requests_per_s"] / best["live_path_requests_per_s"], 1),
                "success_rate": best["success_rate"],
                "p95_s": best["p95_s"],
                "cost_usd": best["cost_usd"],
                "interpreted": {k: here[k] for k in ("sim_requests_per_s", "sim_runs", "live_path_requests_per_s")},
                "compiled": (
                    {k: compiled[k] for k in ("sim_requests_per_s", "sim_runs", "live_path_requests_per_s")}
                    if compiled and "error" not in compiled
                    else compiled
                ),
                "same_results": same,
                "python_loop_ns": round(python_loop_ns(), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
