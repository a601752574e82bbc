"""Parameter sweeps of the routing lab, serial or on Dask (a local cluster by default, any scheduler by address).

Each point of a sweep is an independent, seeded replay, so a Dask run returns
exactly what the serial run returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from .engine import Incident, RoutingLab
from .workloads import Workload

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["grid", "sweep"]

_LAB_PARAMETERS = ("timeout_s", "hedge_after_s", "slo_s", "retry", "breaker")


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Cartesian product of parameter axes: ``grid(strategy=["cheapest", "bandit"], seed=range(3))``; an axis
    given one value (``strategy="cheapest"``) holds just that value."""
    if not axes:
        raise ValidationError("grid() needs at least one axis, e.g. grid(strategy=[...], seed=[...])")
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(_axis(axes[n]) for n in names))]


def _axis(values: Any) -> list[Any]:
    """An axis's values: a string, a mapping (one ``options`` dict) or a scalar is one value, not its
    letters or keys; any other iterable is its items."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        return [values]
    return list(values)


def _one(lab: RoutingLab, workload: Workload, point: Mapping[str, Any], outages: Sequence[Incident]) -> dict[str, Any]:
    from ..providers.strategies import strategy_from_name

    point = dict(point)
    strategy = point.pop("strategy", "cheapest")
    seed = point.pop("seed", 0)
    options = point.pop("options", {}) or {}
    stream = point.pop("stream", False)
    lab_overrides = {k: point.pop(k) for k in list(point) if k in _LAB_PARAMETERS}
    if point:
        raise ValidationError(
            f"unknown sweep parameter(s) {sorted(point)}",
            hint="use strategy, seed, options (strategy keyword arguments), stream, " + ", ".join(_LAB_PARAMETERS),
        )
    if lab_overrides:
        lab = RoutingLab(
            lab.providers,
            breaker=lab_overrides.get("breaker", lab.breaker),
            retry=lab_overrides.get("retry", lab.retry),
            budgets=lab.budgets,
            timeout_s=lab_overrides.get("timeout_s", lab.timeout_s),
            hedge_after_s=lab_overrides.get("hedge_after_s", lab.hedge_after_s),
            slo_s=lab_overrides.get("slo_s", lab.slo_s),
            policy=lab.policy,
            start_wall=lab.start_wall,
        )
    strat = strategy_from_name(strategy, **options) if isinstance(strategy, str) else strategy
    summary = lab.run(workload, strat, seed=seed, outages=outages, stream=stream).summary()
    label = strategy if isinstance(strategy, str) else type(strategy).__name__
    return {
        "strategy": label,
        "seed": seed,
        **({"stream": stream} if stream is not False else {}),
        **{f"opt_{k}": v for k, v in options.items()},
        **{k: v for k, v in lab_overrides.items() if not isinstance(v, (dict, list))},
        **_drop(summary),
    }


def _drop(summary: dict[str, Any]) -> dict[str, Any]:
    summary = dict(summary)
    summary.pop("strategy", None)
    return summary


def sweep(
    lab: RoutingLab,
    workload: Workload,
    points: Sequence[Mapping[str, Any]],
    *,
    outages: Sequence[Incident] = (),
    dask: bool | str | Any = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Replay ``workload`` once per point and return one summary row per point, in order.

    Args:
        points: dicts with ``strategy`` (name or instance), ``seed``, ``options`` (strategy
            keyword arguments) and optionally ``stream`` (as in :meth:`RoutingLab.run`),
            ``timeout_s``, ``hedge_after_s``, ``slo_s``, ``retry``, ``breaker``.
        dask: ``False`` (serial), ``True`` (a ``LocalCluster`` on this machine), a scheduler
            address such as ``"tcp://10.0.0.5:8786"``, or a ``distributed.Client``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not points:
        raise ValidationError("sweep() needs at least one point", hint="build them with grid(...)")
    if dask is False:
        rows = [_one(lab, workload, p, outages) for p in tqdm(points, desc="sweep", disable=not progress, leave=False)]
        return pd.DataFrame(rows)
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValidationError(
            "a Dask sweep needs dask.distributed", hint="pip install 'lumina-lab[lab]' (or 'dask[distributed]')"
        ) from None
    own_cluster = None
    if dask is True:
        own_cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(own_cluster)
    elif isinstance(dask, str):
        client = Client(dask)
    else:
        client = dask
    try:
        lab_f, wl_f = client.scatter([lab, workload], broadcast=True)
        futures = [client.submit(_one, lab_f, wl_f, dict(p), list(outages), pure=False) for p in points]
        index = {f.key: i for i, f in enumerate(futures)}
        rows: list[dict[str, Any] | None] = [None] * len(futures)
        with tqdm(total=len(futures), desc="sweep (dask)", disable=not progress, leave=False) as bar:
            for fut in as_completed(futures):
                rows[index[fut.key]] = fut.result()
                bar.update(1)
        return pd.DataFrame(rows)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
        elif isinstance(dask, str):
            client.close()
