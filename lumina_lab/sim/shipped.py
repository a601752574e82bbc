"""The small workloads shipped in ``datasets/workloads/``, and the recipes that made them.

Three traces, one per file format :func:`~lumina_lab.sim.workloads.read_workload` reads, each a
shape of traffic a routing decision must survive:

=================  ===========  ==========================================================================
name               file         what
=================  ===========  ==========================================================================
``support_chat``   CSV          a support desk's steady Poisson traffic, 4 requests/s for 15 minutes,
                                two tenants, chat and summaries
``launch_burst``   JSON Lines   a launch: 2 requests/s with a 10-second burst of 25/s every 2 minutes,
                                for 10 minutes (what queueing, rate limits and breakers are tested on)
``agents_day``     Parquet      a day of an agent platform: a daily cycle around 0.2 requests/s (peak at
                                14:00), three tenants, chat, code, summaries and extraction
=================  ===========  ==========================================================================

>>> from lumina_lab.sim import shipped_workload
>>> wl = shipped_workload("launch_burst")      # doctest: +SKIP

Each file is its recipe's output with arrival times rounded to the millisecond
(``tests/sim/test_shipped.py`` makes them again and compares); ``python -m lumina_lab.sim.shipped``
writes them again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ValidationError
from .workloads import DEFAULT_TASKS, Workload, bursty, diurnal, poisson, read_workload

__all__ = ["RECIPES", "shipped_workload", "shipped_workloads"]

#: name -> (file in ``datasets/workloads/``, the recipe that made it)
RECIPES: dict[str, tuple[str, Callable[[], Workload]]] = {
    "support_chat": (
        "support_chat.csv",
        lambda: poisson(
            4.0,
            duration_s=900.0,
            tenants={"support": 3, "docs": 1},
            tasks={k: DEFAULT_TASKS[k] for k in ("chat", "summarize")},
            seed=11,
        ),
    ),
    "launch_burst": (
        "launch_burst.jsonl",
        lambda: bursty(
            2.0,
            25.0,
            duration_s=600.0,
            burst_every_s=120.0,
            burst_len_s=10.0,
            tenants={"web": 3, "mobile": 2},
            tasks={k: DEFAULT_TASKS[k] for k in ("chat", "extract")},
            seed=12,
        ),
    ),
    "agents_day": (
        "agents_day.parquet",
        lambda: diurnal(
            0.2,
            duration_s=86_400.0,
            peak_at_s=14 * 3600.0,
            tenants={"search": 2, "agents": 1, "eval": 1},
            seed=13,
        ),
    ),
}


def shipped_workloads() -> list[str]:
    """Names of the shipped workloads (see the module's table)."""
    return list(RECIPES)


def _check(name: str) -> tuple[str, Callable[[], Workload]]:
    if name not in RECIPES:
        raise ValidationError(f"no shipped workload named {name!r}", input=name, hint=f"one of {shipped_workloads()}")
    return RECIPES[name]


def shipped_workload(name: str) -> Workload:
    """The shipped workload ``name``, read from its file (tasks as in :data:`~lumina_lab.sim.workloads.DEFAULT_TASKS`)."""
    from ..data import dataset_path

    file, _ = _check(name)
    return read_workload(dataset_path(f"workloads/{file}"))


def make(name: str) -> Workload:
    """The workload ``name`` made again by its recipe (arrival times not rounded)."""
    return _check(name)[1]()


def write_all(folder: str | Path) -> list[Path]:
    """Write every shipped workload into ``folder`` (arrival times rounded to the millisecond)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (file, recipe) in RECIPES.items():
        wl = recipe()
        wl.arrival_s = wl.arrival_s.round(3)
        wl.name = name
        written.append(wl.write(folder / file))
    return written


if __name__ == "__main__":  # python -m lumina_lab.sim.shipped [folder]
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "datasets" / "workloads"
    for path in write_all(target):
        print(path)
