"""Workloads for the routing lab: request arrival times with tenants, tasks and token sizes.

A :class:`Workload` is columnar (numpy arrays), so a million requests cost a
few tens of megabytes; :class:`~lumina_lab.providers.ChatRequest` objects are
made one at a time as the engine replays them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from ..providers import ChatRequest

__all__ = ["DEFAULT_TASKS", "Task", "Workload", "bursty", "diurnal", "poisson", "read_workload"]


@dataclass(frozen=True)
class Task:
    """A request category: its share, needed capabilities and token-length distributions (lognormal medians)."""

    weight: float = 1.0
    needs: frozenset[str] = frozenset()
    input_tokens: float = 400.0
    input_sigma: float = 0.8
    max_tokens: int = 512


DEFAULT_TASKS: dict[str, Task] = {
    "chat": Task(0.5, frozenset(), 300, 0.8, 256),
    "code": Task(0.25, frozenset({"code"}), 900, 0.7, 512),
    "summarize": Task(0.15, frozenset(), 2500, 0.6, 256),
    "extract": Task(0.10, frozenset({"json_mode"}), 1200, 0.6, 128),
}


@dataclass
class Workload:
    """Arrivals (seconds from the start, ascending) and per-request attributes."""

    arrival_s: np.ndarray
    tenant: np.ndarray  # int codes into tenants
    task: np.ndarray  # int codes into tasks
    input_tokens: np.ndarray
    max_tokens: np.ndarray
    tenants: list[str] = field(default_factory=lambda: ["default"])
    tasks: dict[str, Task] = field(default_factory=lambda: dict(DEFAULT_TASKS))
    name: str = "workload"

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        for col in ("tenant", "task", "input_tokens", "max_tokens"):
            if len(getattr(self, col)) != n:
                raise ValidationError(f"workload column {col!r} has {len(getattr(self, col))} rows, not {n}")
        if n and np.any(np.diff(self.arrival_s) < 0):
            order = np.argsort(self.arrival_s, kind="stable")
            for col in ("arrival_s", "tenant", "task", "input_tokens", "max_tokens"):
                setattr(self, col, getattr(self, col)[order])
        self._task_names = list(self.tasks)
        self._needs = [self.tasks[t].needs for t in self._task_names]

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    def request(self, i: int) -> ChatRequest:
        """The ``i``-th request (a placeholder prompt carrying the workload's input token count)."""
        from ..providers import ChatRequest

        n_in = int(self.input_tokens[i])
        tenant = self.tenants[int(self.tenant[i])]
        task = int(self.task[i])
        return ChatRequest(
            "(simulated prompt)",
            input_tokens=n_in,
            needs=self._needs[task],
            max_tokens=int(self.max_tokens[i]),
            project=tenant,
            principal=tenant,
            task=self._task_names[task],
            id=f"{self.name}#{i}",
        )

    def request_factory(self) -> Callable[[int], ChatRequest]:
        """A function ``i -> ChatRequest`` equal to :meth:`request`, made for replaying many requests.

        It reads plain-Python snapshots of the columns, taken once here: indexing a
        numpy array and converting the scalar with ``int()`` costs several times more
        than indexing a list, and the engine builds one request per arrival (passing the
        message list ready-made also skips the string-to-message step of ``ChatRequest``).
        Columns changed afterwards are not seen by an existing factory.
        """
        from .request_factory import RequestFactory

        tenants = self.tenants
        return RequestFactory(
            self.input_tokens.tolist(),
            self.max_tokens.tolist(),
            [tenants[c] for c in self.tenant.tolist()],
            self.task.tolist(),
            list(self._needs),
            list(self._task_names),
            f"{self.name}#",
        )

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "arrival_s": self.arrival_s,
                "tenant": np.asarray(self.tenants, dtype=object)[self.tenant],
                "task": np.asarray(self._task_names, dtype=object)[self.task],
                "input_tokens": self.input_tokens,
                "max_tokens": self.max_tokens,
            }
        )

    def write(self, path: str | Path) -> Path:
        """Save as Parquet, CSV or JSON Lines (by extension)."""
        path = Path(path)
        frame = self.frame()
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix in (".jsonl", ".ndjson"):
            frame.to_json(path, orient="records", lines=True)
        else:
            raise ValidationError(f"cannot write a workload to {path.name!r}", hint="use .parquet, .csv or .jsonl")
        return path

    def __repr__(self) -> str:
        rate = f"{len(self) / self.duration_s:,.1f}/s" if self.duration_s else "n/a"
        return f"Workload({self.name!r}, requests={len(self):,}, duration={self.duration_s:,.1f}s, mean rate={rate})"


def _attributes(
    n: int, rng: np.random.Generator, tenants: Mapping[str, float] | None, tasks: Mapping[str, Task] | None
) -> dict[str, Any]:
    tenants = dict(tenants or {"default": 1.0})
    tasks = dict(tasks or DEFAULT_TASKS)
    if not tenants or not tasks:
        raise ValidationError("a workload needs at least one tenant and one task")
    tw = np.array(list(tenants.values()), float)
    kw = np.array([t.weight for t in tasks.values()], float)
    task_codes = rng.choice(len(kw), size=n, p=kw / kw.sum())
    mu = np.log(np.array([t.input_tokens for t in tasks.values()]))[task_codes]
    sigma = np.array([t.input_sigma for t in tasks.values()])[task_codes]
    input_tokens = np.maximum(8, rng.lognormal(mu, sigma)).astype(np.int32)
    max_tokens = np.array([t.max_tokens for t in tasks.values()], np.int32)[task_codes]
    return {
        "tenant": rng.choice(len(tw), size=n, p=tw / tw.sum()).astype(np.int32),
        "task": task_codes.astype(np.int32),
        "input_tokens": input_tokens,
        "max_tokens": max_tokens,
        "tenants": list(tenants),
        "tasks": tasks,
    }


def _check_rate(name: str, value: float) -> None:
    """A rate, duration or period: a finite number > 0 (numpy numbers too, not bools)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not (value > 0 and math.isfinite(value)):
        raise ValidationError(f"{name}={value!r} must be a positive number", input=value)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValidationError(f"{name}={value!r} must be a whole number >= 0", input=value, hint=f"e.g. {name}=1000")


def poisson(
    rate_per_s: float,
    *,
    n: int | None = None,
    duration_s: float | None = None,
    tenants: Mapping[str, float] | None = None,
    tasks: Mapping[str, Task] | None = None,
    seed: int = 0,
) -> Workload:
    """Poisson arrivals at ``rate_per_s``: ``n`` requests, or as many as fit in ``duration_s``."""
    _check_rate("rate_per_s", rate_per_s)
    if n is not None:
        _check_count("n", n)
    if duration_s is not None:
        _check_rate("duration_s", duration_s)
    rng = np.random.default_rng(seed)
    if n is None:
        if duration_s is None:
            raise ValidationError("poisson() needs n= or duration_s=", hint="e.g. poisson(50, n=10_000)")
        n = int(rng.poisson(rate_per_s * duration_s))
    arrivals = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
    if duration_s is not None:
        arrivals = arrivals[arrivals < duration_s]
    return Workload(arrivals, **_attributes(len(arrivals), rng, tenants, tasks), name=f"poisson({rate_per_s}/s)")


def _thinned(rate_fn: Any, peak: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson arrivals by thinning (Lewis and Shedler)."""
    n = int(rng.poisson(peak * duration_s * 1.05)) + 16
    candidates = np.cumsum(rng.exponential(1.0 / peak, size=n))
    candidates = candidates[candidates < duration_s]
    keep = rng.random(len(candidates)) < rate_fn(candidates) / peak
    return candidates[keep]


def bursty(
    base_rate: float,
    burst_rate: float,
    *,
    duration_s: float,
    burst_every_s: float = 60.0,
    burst_len_s: float = 5.0,
    tenants: Mapping[str, float] | None = None,
    tasks: Mapping[str, Task] | None = None,
    seed: int = 0,
) -> Workload:
    """``base_rate`` with bursts of ``burst_rate`` lasting ``burst_len_s`` every ``burst_every_s``."""
    for name, value in (
        ("base_rate", base_rate),
        ("burst_rate", burst_rate),
        ("duration_s", duration_s),
        ("burst_every_s", burst_every_s),
        ("burst_len_s", burst_len_s),
    ):
        _check_rate(name, value)
    rng = np.random.default_rng(seed)

    def rate(t: np.ndarray) -> np.ndarray:
        return np.where((t % burst_every_s) < burst_len_s, burst_rate, base_rate)

    arrivals = _thinned(rate, max(base_rate, burst_rate), duration_s, rng)
    return Workload(arrivals, **_attributes(len(arrivals), rng, tenants, tasks), name="bursty")


def diurnal(
    mean_rate: float,
    *,
    duration_s: float,
    period_s: float = 86_400.0,
    amplitude: float = 0.6,
    peak_at_s: float | None = None,
    tenants: Mapping[str, float] | None = None,
    tasks: Mapping[str, Task] | None = None,
    seed: int = 0,
) -> Workload:
    """A daily cycle: rate = mean · (1 + amplitude · cos(2 pi (t - peak) / period))."""
    for name, value in (("mean_rate", mean_rate), ("duration_s", duration_s), ("period_s", period_s)):
        _check_rate(name, value)
    if isinstance(amplitude, bool) or not isinstance(amplitude, Real) or not 0 <= amplitude < 1:
        raise ValidationError(f"amplitude={amplitude!r} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    peak = period_s / 2 if peak_at_s is None else peak_at_s

    def rate(t: np.ndarray) -> np.ndarray:
        return mean_rate * (1 + amplitude * np.cos(2 * np.pi * (t - peak) / period_s))

    arrivals = _thinned(rate, mean_rate * (1 + amplitude), duration_s, rng)
    return Workload(arrivals, **_attributes(len(arrivals), rng, tenants, tasks), name="diurnal")


def read_workload(path: str | Path, *, tasks: Mapping[str, Task] | None = None) -> Workload:
    """Read a trace (Parquet, CSV or JSON Lines) with columns ``arrival_s``, ``tenant``, ``task``,
    ``input_tokens`` and ``max_tokens`` (the last four optional)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ValidationError(f"no workload file {str(path)!r}")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    elif path.suffix in (".jsonl", ".ndjson"):
        frame = pd.read_json(path, lines=True)
    else:
        raise ValidationError(f"cannot read a workload from {path.name!r}", hint="use .parquet, .csv or .jsonl")
    if "arrival_s" not in frame:
        raise ValidationError(f"{path.name} has no 'arrival_s' column", hint=f"columns: {list(frame.columns)}")
    tasks = dict(tasks or DEFAULT_TASKS)
    task_names = frame["task"].astype(str) if "task" in frame else pd.Series(["chat"] * len(frame))
    unknown = sorted(set(task_names) - set(tasks))
    for name in unknown:
        tasks[name] = Task()
    codes = {name: i for i, name in enumerate(tasks)}
    tenant_names = frame["tenant"].astype(str) if "tenant" in frame else pd.Series(["default"] * len(frame))
    tenants = list(dict.fromkeys(tenant_names))
    tcode = {name: i for i, name in enumerate(tenants)}
    default_max = np.array([tasks[t].max_tokens for t in task_names], np.int32)
    return Workload(
        frame["arrival_s"].to_numpy(float),
        tenant_names.map(tcode).to_numpy(np.int32),
        task_names.map(codes).to_numpy(np.int32),
        (frame["input_tokens"] if "input_tokens" in frame else pd.Series([400] * len(frame))).to_numpy(np.int32),
        frame["max_tokens"].to_numpy(np.int32) if "max_tokens" in frame else default_max,
        tenants=tenants,
        tasks=tasks,
        name=path.stem,
    )
