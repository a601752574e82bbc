"""Workload generators and trace files for the routing lab."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.sim.workloads import DEFAULT_TASKS, Task, bursty, diurnal, poisson, read_workload


def test_poisson_rate_and_determinism() -> None:
    a = poisson(50, n=20_000, seed=1)
    b = poisson(50, n=20_000, seed=1)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert len(a) == 20_000
    assert 47 < len(a) / a.duration_s < 53
    assert np.all(np.diff(a.arrival_s) >= 0)


def test_poisson_by_duration() -> None:
    wl = poisson(10, duration_s=100, seed=2)
    assert wl.duration_s < 100 and 850 < len(wl) < 1150


def test_tenant_and_task_mix_follow_weights() -> None:
    wl = poisson(100, n=40_000, tenants={"a": 3, "b": 1}, seed=3)
    frame = wl.frame()
    share = frame["tenant"].value_counts(normalize=True)
    assert abs(share["a"] - 0.75) < 0.02
    task_share = frame["task"].value_counts(normalize=True)
    assert abs(task_share["chat"] - DEFAULT_TASKS["chat"].weight) < 0.02


def test_requests_carry_needs_tokens_and_tenant() -> None:
    from lumina_lab.providers import estimate_tokens

    wl = poisson(1, n=50, tenants={"search": 1}, seed=4)
    for i in range(50):
        req = wl.request(i)
        assert req.project == "search" and req.task in DEFAULT_TASKS
        assert req.needs == DEFAULT_TASKS[req.task].needs
        assert abs(estimate_tokens(req) - int(wl.input_tokens[i])) <= 2


def test_the_request_factory_makes_the_same_requests_as_request() -> None:
    wl = poisson(1, n=30, tenants={"search": 1, "chat": 2}, seed=4)
    make = wl.request_factory()
    for i in range(30):
        assert make(i) == wl.request(i)


def test_bursty_concentrates_arrivals_in_bursts() -> None:
    wl = bursty(2, 50, duration_s=600, burst_every_s=60, burst_len_s=5, seed=5)
    in_burst = (wl.arrival_s % 60) < 5
    assert in_burst.mean() > 0.6  # 5/60 of the time, most of the traffic


def test_diurnal_peaks_where_asked() -> None:
    wl = diurnal(5, duration_s=86_400, amplitude=0.8, peak_at_s=43_200, seed=6)
    hours = (wl.arrival_s // 3600).astype(int)
    counts = np.bincount(hours, minlength=24)
    assert counts[11:13].mean() > 3 * counts[0:2].mean()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_traces_round_trip_through_files(tmp_path: Path, suffix: str) -> None:
    wl = poisson(5, n=300, tenants={"x": 1, "y": 1}, seed=7)
    back = read_workload(wl.write(tmp_path / f"trace{suffix}"))
    assert np.allclose(back.arrival_s, wl.arrival_s)
    assert list(back.frame()["tenant"]) == list(wl.frame()["tenant"])
    assert list(back.frame()["task"]) == list(wl.frame()["task"])


def test_a_minimal_trace_needs_only_arrivals(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_s\n0.5\n0.1\n2.0\n")
    wl = read_workload(path)
    assert list(wl.arrival_s) == [0.1, 0.5, 2.0]  # sorted
    assert wl.request(0).task == "chat"


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="rate_per_s"):
        poisson(0, n=10)
    with pytest.raises(ValidationError, match=r"n= or duration_s="):
        poisson(1)
    with pytest.raises(ValidationError, match="amplitude"):
        diurnal(1, duration_s=10, amplitude=1.5)
    (tmp_path / "t.csv").write_text("when\n1\n")
    with pytest.raises(ValidationError, match="arrival_s"):
        read_workload(tmp_path / "t.csv")
    with pytest.raises(ValidationError, match="no workload file"):
        read_workload(tmp_path / "missing.csv")
    with pytest.raises(ValidationError, match=r"\.parquet, \.csv or \.jsonl"):
        poisson(1, n=3).write(tmp_path / "x.txt")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: poisson(5, n=-1), r"n=-1 must be a whole number >= 0"),
        (lambda: poisson(5, n=2.5), r"n=2.5 must be a whole number >= 0"),
        (lambda: poisson(5, duration_s=-3), r"duration_s=-3 must be a positive number"),
        (lambda: poisson(True, n=3), r"rate_per_s=True must be a positive number"),
        (lambda: diurnal(5, duration_s=-3), r"duration_s=-3 must be a positive number"),  # was numpy's "lam < 0"
        (lambda: diurnal(5, duration_s=60, period_s=0), r"period_s=0 must be a positive number"),
        (lambda: diurnal(5, duration_s=60, amplitude="big"), r"amplitude='big' must be in \[0, 1\)"),
        (lambda: bursty(1, 5, duration_s=float("inf")), r"duration_s=inf must be a positive number"),
        (lambda: bursty(1, 5, duration_s=60, burst_every_s=0), r"burst_every_s=0 must be a positive number"),
    ],
)
def test_generator_arguments_are_checked(make, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make()


def test_generators_take_numpy_numbers() -> None:
    assert len(poisson(np.float64(5.0), n=np.int64(7))) == 7
    assert repr(poisson(5, n=0)).endswith("mean rate=n/a)")


def test_custom_tasks() -> None:
    wl = poisson(1, n=100, tasks={"vision": Task(1.0, frozenset({"vision"}), 50, 0.1, 32)}, seed=8)
    assert wl.request(0).needs == frozenset({"vision"}) and wl.request(0).max_tokens == 32
