"""The routing lab's engine replays workloads through the live router's own steps, in simulated time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lumina_lab.clock import ManualClock
from lumina_lab.errors import ValidationError
from lumina_lab.providers import Budget, ProviderRegistry, RetryPolicy, Router, SimulatedProvider
from lumina_lab.sim.engine import Degradation, Outage, RoutingLab
from lumina_lab.sim.workloads import Task, Workload, poisson

CHAT = {"chat": Task(1.0, frozenset(), 200, 0.5, 64)}


def fleet(**overrides):
    common = {"ttft_sigma": 0.0, **overrides}
    return [
        SimulatedProvider("gpt-4.1-mini", id="mini", ttft_s=0.5, tokens_per_s=100, **common),
        SimulatedProvider("gemini-2.5-flash", id="flash", ttft_s=0.3, tokens_per_s=200, **common),
        SimulatedProvider("gpt-4.1", id="large", ttft_s=0.8, tokens_per_s=50, capabilities={"code": 1}, **common),
    ]


def spaced(n: int, gap: float = 100.0) -> Workload:
    """Requests far enough apart that each finishes before the next arrives."""
    return poisson(1.0, n=n, seed=3, tasks={"chat": Task(1.0, frozenset(), 200, 0.0, 64)})._replace_arrivals(gap)


def _replace_arrivals(self: Workload, gap: float) -> Workload:
    self.arrival_s = np.arange(len(self), dtype=float) * gap
    return self


Workload._replace_arrivals = _replace_arrivals  # type: ignore[attr-defined]


def test_same_seed_same_result() -> None:
    lab = RoutingLab(fleet(error_rate=0.1), retry=RetryPolicy(attempts=2, base_s=0.1))
    wl = poisson(20, n=3000, seed=1)
    a = lab.run(wl, "least_busy", seed=7).frame
    b = lab.run(wl, "least_busy", seed=7).frame
    assert a.equals(b)
    c = lab.run(wl, "least_busy", seed=8).frame
    assert not a.equals(c)


def test_runs_do_not_share_state_with_the_fleet_or_each_other() -> None:
    providers = fleet()
    lab = RoutingLab(providers)
    lab.run(poisson(10, n=200, seed=1), "cheapest")
    assert all(p.calls == 0 for p in providers)


@pytest.mark.parametrize("strategy", ["cheapest", "round_robin", "least_busy", "fastest", "bandit", "weighted"])
def test_simulator_and_live_router_agree_on_decisions(strategy: str) -> None:
    """Same requests, same arrival times, same fleet and seed: the same provider answers each request,
    through an outage of one provider and a slow, failing patch of another, with speeds drawn per call."""
    wl = spaced(60)
    outage = Outage("flash", 1000.0, 3000.0)
    slow = Degradation("mini", 2500.0, 4500.0, latency_factor=3.0, error_rate=0.4)
    lab = RoutingLab(
        fleet(error_rate=0.15, tokens_per_s_sigma=0.3),
        breaker={"min_calls": 2, "open_s": 500.0},
        retry=RetryPolicy(attempts=1),
    )
    simulated = lab.run(wl, strategy, seed=5, outages=[outage, slow]).frame
    router, clock = lab.build(strategy, seed=5)

    async def live() -> list[str | None]:
        chosen: list[str | None] = []
        for i in range(len(wl)):
            clock.set(float(wl.arrival_s[i]))
            for p in router.registry:
                p.provider.down = p.id == outage.provider and outage.start_s <= clock.now() < outage.end_s
                if p.id == slow.provider and slow.start_s <= clock.now() < slow.end_s:
                    p.provider.degrade(slow.latency_factor, slow.error_rate)
                else:
                    p.provider.restore()
            task = asyncio.ensure_future(router.ainvoke(wl.request(i)))
            while not task.done():  # drive simulated time until this request finishes
                for _ in range(50):  # let everything runnable run before time moves
                    await asyncio.sleep(0)
                    if task.done():
                        break
                if not task.done() and clock.sleepers:
                    clock.set(min(t for t, _, f in clock._sleepers if not f.done()))
            try:
                chosen.append(task.result().provider)
            except Exception:
                chosen.append(None)
        return chosen

    live_chosen = asyncio.run(live())
    sim_chosen = [None if not ok else p for ok, p in zip(simulated["ok"], simulated["provider"], strict=True)]
    assert live_chosen == sim_chosen


def test_outage_opens_the_breaker_and_traffic_moves() -> None:
    lab = RoutingLab(fleet(), breaker={"min_calls": 3, "open_s": 30.0}, retry=RetryPolicy(attempts=1))
    wl = poisson(5, n=3000, seed=2, tasks=CHAT)
    result = lab.run(wl, "cheapest", outages=[Outage("flash", 100.0, 300.0)])
    f = result.frame
    during = f[(f["arrival_s"] > 110) & (f["arrival_s"] < 290)]
    after = f[f["arrival_s"] > 340]
    assert (during["provider"] != "flash").all()
    assert (after["provider"] == "flash").mean() > 0.9  # recovered through a half-open probe
    assert f["ok"].mean() > 0.99  # fallbacks kept answering


def test_max_concurrency_queues_requests_fifo() -> None:
    solo = [SimulatedProvider("gpt-4.1-mini", id="solo", ttft_s=1.0, ttft_sigma=0.0, limits={"max_concurrency": 2})]
    wl = poisson(1.0, n=6, seed=0, tasks=CHAT)
    wl.arrival_s = np.zeros(6)
    result = RoutingLab(solo, timeout_s=None).run(wl, "cheapest")
    ends = sorted(result.frame["end_s"].round(6))
    assert ends[:2] == ends[1:2] * 2 and ends[2] > ends[0] and ends[4] > ends[2]  # two at a time


def test_budgets_stop_requests_in_simulated_time() -> None:
    lab = RoutingLab(fleet(), budgets=[Budget(0.05, scope="project", key="search", period="day")])
    wl = poisson(2, n=2000, seed=4, tenants={"search": 1.0}, tasks=CHAT)
    result = lab.run(wl, "cheapest")
    s = result.summary()
    assert s["budget_stopped"] > 0
    assert s["cost_usd"] <= 0.05 + 1e-9


def test_daily_budget_resets_with_simulated_days() -> None:
    lab = RoutingLab(fleet(), budgets=[Budget(0.01, scope="global", period="day")])
    wl = poisson(1 / 600, n=400, seed=5, tasks=CHAT)  # about 2.8 days
    f = lab.run(wl, "cheapest").frame
    f["day"] = (f["arrival_s"] // 86_400).astype(int)
    per_day = f.groupby("day")["cost_usd"].sum()
    assert len(per_day) >= 2 and (per_day <= 0.01 + 1e-9).all()
    assert (f.groupby("day")["ok"].sum() > 0).all()


def test_timeouts_and_retries_in_simulated_time() -> None:
    hanging = [SimulatedProvider("gpt-4.1-mini", id="slow", timeout_rate=1.0, hang_s=100.0)]
    lab = RoutingLab(hanging, timeout_s=5.0, retry=RetryPolicy(attempts=2, base_s=1.0, jitter=False))
    f = lab.run(poisson(0.01, n=3, seed=0, tasks=CHAT), "cheapest").frame
    assert not f["ok"].any()
    assert np.allclose(f["latency_s"], 5.0 + 1.0 + 5.0)  # timeout, backoff, timeout


def test_compare_puts_strategies_side_by_side() -> None:
    table = RoutingLab(fleet()).compare(["cheapest", "round_robin"], poisson(10, n=500, seed=1))
    assert list(table.index) == ["cheapest", "round_robin"]
    assert table.loc["cheapest", "cost_usd"] < table.loc["round_robin", "cost_usd"]


def test_the_lab_refuses_live_providers_and_unknown_outages() -> None:
    with pytest.raises(ValidationError, match="SimulatedProvider"):
        RoutingLab([object()])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="unknown provider"):
        RoutingLab(fleet()).run(poisson(1, n=5), outages=[Outage("nope", 0, 1)])
    with pytest.raises(ValidationError, match="workload is a list, not a Workload"):
        RoutingLab(fleet()).run([0.1, 0.2], "cheapest")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"outage 'flash' is not an Outage"):
        RoutingLab(fleet()).run(poisson(1, n=5), outages=["flash"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match=r"Outage ends \(end_s=1\) before it starts \(start_s=5\)"):
        Outage("flash", 5, 1)
    with pytest.raises(ValidationError, match=r"Outage start_s=-1 must be a number of simulated seconds >= 0"):
        Outage("flash", -1, 1)


def test_outages_may_be_given_as_tuples() -> None:
    wl = poisson(20, n=400, seed=3)
    lab = RoutingLab(fleet())
    as_tuple = lab.run(wl, "cheapest", outages=[("flash", 2.0, 12.0)]).frame
    as_outage = lab.run(wl, "cheapest", outages=[Outage("flash", 2.0, 12.0)]).frame
    assert as_tuple.equals(as_outage)
    assert not as_tuple.equals(lab.run(wl, "cheapest").frame)  # the outage changed where requests went


def test_live_router_and_lab_build_use_one_clock() -> None:
    router, clock = RoutingLab(fleet()).build("cheapest")
    assert isinstance(clock, ManualClock)
    assert router.clock is clock and all(s.provider.clock is clock for s in router.registry)
    assert isinstance(router, Router) and isinstance(router.registry, ProviderRegistry)
