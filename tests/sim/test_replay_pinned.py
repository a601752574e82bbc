"""Speed work on the replay hot path must not change a single decision.

The hashes below were recorded from the engine *before* the throughput work of issue 4
(router/registry/stats/cost fast paths, the slimmer completion path).  A seeded run's
first 10,000 rows (the original columns) must hash the same.  If a change deliberately
alters the random draws or a decision, update a hash here and say why in the commit.
"""

from __future__ import annotations

import hashlib

import pytest

from lumina_lab.providers import Budget, RetryPolicy, SimulatedProvider
from lumina_lab.sim.engine import Outage, RoutingLab
from lumina_lab.sim.workloads import Task, poisson

#: The columns the engine produced before hedging, cascades and streams were simulated.
PINNED_COLUMNS = [
    "request",
    "arrival_s",
    "end_s",
    "latency_s",
    "ttft_s",
    "ok",
    "provider",
    "attempts",
    "tried",
    "error",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "quality_ok",
    "tenant",
    "task",
]

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
TENANTS = {"search": 2, "agents": 1, "eval": 1}


def benchmark_lab(*, budget: float = 500.0, error_rate: float = 0.02) -> RoutingLab:
    """The fleet of ``benchmarks/replay_throughput.py`` (10 providers, breakers, daily budgets)."""
    fleet = [
        SimulatedProvider(
            m,
            id=f"p{i}",
            ttft_s=0.2 + 0.05 * i,
            tokens_per_s=60 + 10 * i,
            error_rate=error_rate,
            timeout_rate=0.002,
            hang_s=120.0,
            capabilities={"code": 0.5 + 0.05 * i},
            limits={"max_concurrency": 256 if i % 3 else 4},
            quality=0.9,
        )
        for i, m in enumerate(MODELS)
    ]
    return RoutingLab(
        fleet,
        breaker={"min_calls": 10, "open_s": 30.0},
        retry=RetryPolicy(attempts=2),
        budgets=[Budget(budget, scope="project", period="day")],
        timeout_s=30.0,
    )


def rpm_lab() -> RoutingLab:
    """Rate limits (declared and simulated), a tiny global budget and fast-tripping breakers."""
    fleet = [
        SimulatedProvider("gpt-4.1-mini", id="a", ttft_s=0.3, tokens_per_s=90, error_rate=0.05, rpm=300),
        SimulatedProvider("gemini-2.5-flash", id="b", ttft_s=0.2, tokens_per_s=150, limits={"rpm": 600, "tpm": 400_000}),
        SimulatedProvider("gpt-4.1", id="c", ttft_s=0.6, tokens_per_s=60, capabilities={"code": 1}, timeout_rate=0.01),
    ]
    return RoutingLab(
        fleet,
        breaker={"min_calls": 3, "open_s": 5.0},
        retry=RetryPolicy(attempts=3, base_s=0.1),
        budgets=[Budget(6.0, scope="global", period="day"), Budget(0.8, scope="principal", key="eval")],
        timeout_s=10.0,
    )


def frame_hash(frame) -> str:
    text = frame[PINNED_COLUMNS].head(10_000).to_csv(index=False, float_format=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


SCENARIOS = {
    "least_busy": (lambda: benchmark_lab(), "least_busy", 300.0, ()),
    "cheapest_outage": (lambda: benchmark_lab(), "cheapest", 300.0, (Outage("p1", 5.0, 15.0),)),
    "round_robin": (lambda: benchmark_lab(error_rate=0.1), "round_robin", 300.0, ()),
    "bandit": (lambda: benchmark_lab(), "bandit", 300.0, ()),
    "fastest_budget": (lambda: benchmark_lab(budget=0.5), "fastest", 300.0, ()),
    "weighted_rpm": (rpm_lab, "weighted", 40.0, (Outage("b", 30.0, 90.0),)),
}

PINNED = {
    "least_busy": "199196ae2792dd47",
    "cheapest_outage": "72f9eb38e1cf7eed",
    "round_robin": "f5c3c3f854e5b57c",
    "bandit": "d8c13525574806d5",
    "fastest_budget": "2712aff98b9da06c",
    "weighted_rpm": "da7cf42deaaa6156",
}


def run_scenario(name: str):
    make_lab, strategy, rate, outages = SCENARIOS[name]
    wl = poisson(rate, n=10_000, seed=1, tasks=TASKS, tenants=TENANTS)
    return make_lab().run(wl, strategy, seed=3, outages=list(outages)).frame


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_seeded_replay_is_unchanged_by_the_speed_work(name: str) -> None:
    assert frame_hash(run_scenario(name)) == PINNED[name]


if __name__ == "__main__":  # print the current hashes (to record them deliberately)
    for scenario in SCENARIOS:
        print(f'    "{scenario}": "{frame_hash(run_scenario(scenario))}",')
