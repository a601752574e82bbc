"""Parameter sweeps: serial and on a Dask local cluster give the same rows."""

from __future__ import annotations

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import SimulatedProvider
from lumina_lab.sim.engine import Outage, RoutingLab
from lumina_lab.sim.sweep import grid, sweep
from lumina_lab.sim.workloads import Task, poisson

CHAT = {"chat": Task(1.0, frozenset(), 200, 0.5, 64)}


def lab() -> RoutingLab:
    return RoutingLab(
        [
            SimulatedProvider("gpt-4.1-mini", id="mini", ttft_s=0.4, tokens_per_s=100, error_rate=0.05),
            SimulatedProvider("gemini-2.5-flash", id="flash", ttft_s=0.3, tokens_per_s=150, error_rate=0.05),
        ],
        breaker={"min_calls": 3, "open_s": 10},
    )


def test_a_grid_axis_given_one_value_holds_that_value() -> None:
    assert grid(strategy="cheapest", seed=range(2)) == [{"strategy": "cheapest", "seed": 0}, {"strategy": "cheapest", "seed": 1}]
    assert grid(seed=3) == [{"seed": 3}]
    assert grid(options={"cost": 2.0}) == [{"options": {"cost": 2.0}}]  # one options dict, not its keys


def test_the_lab_names_bad_timings() -> None:
    fleet = [SimulatedProvider("gpt-4.1-mini")]
    with pytest.raises(ValidationError, match=r"timeout_s=-1 must be a number of seconds > 0"):
        RoutingLab(fleet, timeout_s=-1)
    with pytest.raises(ValidationError, match=r"hedge_after_s=-1 must be a number of seconds >= 0"):
        RoutingLab(fleet, hedge_after_s=-1)
    with pytest.raises(ValidationError, match=r"slo_s=0 must be a number of seconds > 0"):
        RoutingLab(fleet, slo_s=0)


def test_grid_is_the_cartesian_product() -> None:
    points = grid(strategy=["cheapest", "round_robin"], seed=range(3))
    assert len(points) == 6 and points[0] == {"strategy": "cheapest", "seed": 0}
    with pytest.raises(ValidationError):
        grid()


def test_serial_sweep_has_one_row_per_point() -> None:
    bandit = {"strategy": "bandit", "seed": 0, "options": {"cost_weight": 0.5}}
    points = [*grid(strategy=["cheapest", "least_busy"], seed=[0, 1]), bandit]
    table = sweep(lab(), poisson(20, n=1000, seed=1, tasks=CHAT), points, progress=False)
    assert list(table["strategy"]) == ["cheapest", "cheapest", "least_busy", "least_busy", "bandit"]
    assert table.loc[4, "opt_cost_weight"] == 0.5


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(ValidationError, match="colour"):
        sweep(lab(), poisson(1, n=10, tasks=CHAT), [{"strategy": "cheapest", "colour": "red"}], progress=False)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dask_sweep_equals_the_serial_sweep() -> None:
    wl = poisson(20, n=2000, seed=2, tasks=CHAT)
    points = grid(strategy=["cheapest", "round_robin", "least_busy"], seed=[0, 1])
    outages = [Outage("flash", 20.0, 40.0)]
    serial = sweep(lab(), wl, points, outages=outages, progress=False)
    parallel = sweep(lab(), wl, points, outages=outages, dask=True, progress=False)
    assert serial.equals(parallel)
