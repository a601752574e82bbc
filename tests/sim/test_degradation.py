"""Scheduled degradations: a provider slower, or failing more, for a window of simulated time."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import ChatRequest, RetryPolicy, SimulatedProvider
from lumina_lab.sim import Degradation, Outage, RoutingLab, Task, poisson

CHAT = {"chat": Task(1.0, frozenset(), 200, 0.0, 64)}


def fleet(**overrides):
    common = {"ttft_s": 0.5, "ttft_sigma": 0.0, "tokens_per_s": 100, **overrides}
    return [
        SimulatedProvider("gpt-4.1-mini", id="a", **common),
        SimulatedProvider("gemini-2.5-flash", id="b", **common),
    ]


WORKLOAD = poisson(5, duration_s=300, seed=1, tasks=CHAT)


def by_request(frame):
    """Rows in request order (a replay writes them as requests finish)."""
    return frame.sort_values("request", kind="stable").reset_index(drop=True)


def test_a_slow_patch_multiplies_its_providers_latency_in_its_window_only() -> None:
    """Round-robin does not look at latency, so both runs send every request to the same provider and
    draw the same answer; inside the window ``a``'s answers take exactly ``latency_factor`` times as long."""
    lab = RoutingLab(fleet(), timeout_s=None)
    base = by_request(lab.run(WORKLOAD, "round_robin").frame)
    slow = by_request(lab.run(WORKLOAD, "round_robin", outages=[Degradation("a", 100, 200, latency_factor=4)]).frame)
    assert (base["provider"] == slow["provider"]).all()
    hit = (slow["provider"] == "a") & (slow["arrival_s"] >= 100) & (slow["arrival_s"] < 200)
    assert hit.sum() > 100
    np.testing.assert_allclose(slow.loc[hit, "latency_s"], 4 * base.loc[hit, "latency_s"], rtol=1e-9)
    np.testing.assert_allclose(slow.loc[~hit, "latency_s"], base.loc[~hit, "latency_s"], rtol=1e-9)


def test_overlapping_degradations_multiply_and_the_profile_comes_back() -> None:
    lab = RoutingLab(fleet(), timeout_s=None)
    base = by_request(lab.run(WORKLOAD, "round_robin").frame)
    slow = by_request(
        lab.run(
            WORKLOAD,
            "round_robin",
            outages=[Degradation("a", 50, 150, latency_factor=2), Degradation("a", 100, 200, latency_factor=3)],
        ).frame
    )
    on_a = slow["provider"] == "a"
    ratio = slow["latency_s"] / base["latency_s"]
    t = slow["arrival_s"]
    for lo, hi, factor in ((0, 50, 1), (50, 100, 2), (100, 150, 6), (150, 200, 3), (200, 300, 1)):
        window = on_a & (t >= lo) & (t < hi)
        assert window.sum() > 10
        np.testing.assert_allclose(ratio[window], factor, rtol=1e-9, err_msg=f"{lo}-{hi}s")


def test_failing_more_opens_the_breaker_and_traffic_moves_back_after() -> None:
    lab = RoutingLab(fleet(), breaker={"min_calls": 5, "open_s": 10.0}, retry=RetryPolicy(attempts=1))
    run = lab.run(WORKLOAD, "least_busy", outages=[Degradation("a", 100, 200, error_rate=1.0)])
    f = run.frame
    during = f[(f["arrival_s"] >= 120) & (f["arrival_s"] < 200)]
    after = f[f["arrival_s"] >= 230]
    assert (during["provider"] == "a").mean() < 0.1  # its breaker is open most of the window
    assert 0.3 < (after["provider"] == "a").mean() < 0.7  # and it takes its share again after
    assert f["ok"].mean() > 0.99  # the others answered what it failed (fallbacks)


def test_degradations_and_outages_share_one_schedule() -> None:
    lab = RoutingLab(fleet(), breaker={"min_calls": 5, "open_s": 10.0})
    f = lab.run(
        WORKLOAD,
        "least_busy",
        outages=[Outage("b", 0, 100), ("b", 150, 160), Degradation("a", 0, 100, latency_factor=2)],
    ).frame
    first = f[(f["arrival_s"] >= 20) & (f["arrival_s"] < 100) & f["ok"]]
    assert (first["provider"] == "a").all()
    assert first["latency_s"].min() > 2 * 0.5  # a answered, at half speed


def test_the_provider_degrades_live_too_and_restores_to_its_profile() -> None:
    request = ChatRequest("hello", max_tokens=64)
    twin, slow = (SimulatedProvider("gpt-4.1-mini", ttft_s=0.5, tokens_per_s=80, seed=3) for _ in range(2))
    slow.degrade(3.0)
    assert slow.degraded and slow.ttft_s == 1.5
    for _ in range(20):
        a, b = twin.sample(request), slow.sample(request)
        assert b.duration_s == pytest.approx(3 * a.duration_s)
    copy = slow.clone(slow.clock)
    slow.restore()
    assert not slow.degraded and (slow.ttft_s, slow.tokens_per_s, slow.error_rate) == (0.5, 80, 0.0)
    assert copy.degraded and copy.ttft_s == 1.5  # a copy keeps the degradation and its profile
    copy.degrade(2.0)  # relative to the profile, not stacked
    assert copy.ttft_s == 1.0
    copy.restore()
    assert copy.ttft_s == 0.5


def test_a_degradation_pickles_for_a_dask_sweep() -> None:
    d = Degradation("a", 1, 2, latency_factor=3, error_rate=0.5)
    assert pickle.loads(pickle.dumps(d)) == d


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Degradation("a", 10, 5), "ends"),
        (lambda: Degradation("a", -1, 5), "start_s=-1"),
        (lambda: Degradation("a", 0, 5, latency_factor=0), "latency_factor=0 must be a number > 0"),
        (lambda: Degradation("a", 0, 5, error_rate=1.5), "error_rate=1.5 must be a share"),
        (lambda: SimulatedProvider("m").degrade(float("nan")), "latency_factor=nan"),
    ],
)
def test_bad_degradations_are_refused_with_the_input_named(make, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make()


def test_a_degradation_of_an_unknown_provider_or_past_the_profiles_timeouts_is_refused() -> None:
    lab = RoutingLab(fleet(timeout_rate=0.2))
    with pytest.raises(ValidationError, match="degradation names unknown provider 'zz'"):
        lab.run(WORKLOAD, outages=[Degradation("zz", 0, 1)])
    with pytest.raises(ValidationError, match=r"timeout_rate 0\.2 > 1"):
        lab.run(WORKLOAD, outages=[Degradation("a", 0, 1, error_rate=0.9)])
