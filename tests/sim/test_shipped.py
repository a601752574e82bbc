"""The workloads shipped in ``datasets/workloads/`` are their recipes' output, and replay as the traffic they name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import SimulatedProvider
from lumina_lab.sim import RoutingLab, read_workload, shipped_workload, shipped_workloads
from lumina_lab.sim.shipped import RECIPES, make, write_all


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_shipped_file_is_its_recipe_output(name: str) -> None:
    shipped = shipped_workload(name).frame()
    made = make(name).frame()
    assert len(shipped) == len(made) > 1000
    np.testing.assert_allclose(shipped["arrival_s"], made["arrival_s"], atol=5e-4, rtol=0)  # rounded to the ms
    for col in ("tenant", "task", "input_tokens", "max_tokens"):
        assert shipped[col].tolist() == made[col].tolist(), col


def test_the_three_files_are_the_three_formats_read_workload_reads() -> None:
    assert sorted(RECIPES[n][0].rsplit(".", 1)[1] for n in shipped_workloads()) == ["csv", "jsonl", "parquet"]


def test_write_all_writes_what_is_shipped(tmp_path) -> None:
    for path in write_all(tmp_path):
        name = path.stem
        pd.testing.assert_frame_equal(read_workload(path).frame(), shipped_workload(name).frame())


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ValidationError, match="no shipped workload named 'nope'") as info:
        shipped_workload("nope")
    assert "launch_burst" in str(info.value.hint)


def test_the_agents_day_peaks_in_the_afternoon_and_is_quiet_at_night() -> None:
    hours = (shipped_workload("agents_day").arrival_s // 3600).astype(int)
    per_hour = np.bincount(hours, minlength=24)
    assert 12 <= int(np.argmax(per_hour)) <= 16
    assert per_hour[1:4].mean() < per_hour[13:16].mean() / 2


def test_the_launch_bursts_queue_at_a_small_fleet() -> None:
    """Ten-second bursts of 25/s over two providers of 8 slots: requests that arrive in a burst wait,
    those that arrive between bursts do not."""
    fleet = [
        SimulatedProvider(
            m,
            id=m,
            ttft_s=0.4,
            ttft_sigma=0.0,
            tokens_per_s=80,
            error_rate=0.0,
            timeout_rate=0.0,
            capabilities={"json_mode": 1.0},
            limits={"max_concurrency": 8},
        )
        for m in ("gpt-4.1-mini", "gemini-2.5-flash")
    ]
    f = RoutingLab(fleet, timeout_s=None).run(shipped_workload("launch_burst"), "least_busy").frame
    in_burst = (f["arrival_s"] % 120.0) < 10.0
    assert f["ok"].all()
    assert f.loc[in_burst, "latency_s"].median() > 2 * f.loc[~in_burst, "latency_s"].median()
