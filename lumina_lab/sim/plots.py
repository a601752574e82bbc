"""Plots of routing-lab results (HoloViews, Bokeh backend): they render inline in a notebook and in Panel.

Every plot is a function of what the lab already returns, and returns a HoloViews object::

    from lumina_lab.sim import plots

    table, results, _ = lab.compare(["cheapest", "least_busy", "bandit"], workload, plot=True)
    plots.pareto_front(table)                # cost per 1,000 answers vs quality; the non-dominated strategies joined
    plots.latency_cdf(results)               # one CDF per strategy, with the p95 line (and the SLO)
    plots.cost_over_time(results)            # cumulative spend per strategy (one result: spend per provider)
    plots.provider_share(results)            # share of answers per provider, one stacked bar per strategy
    plots.provider_share(run, over_time=True)   # ... or over simulated time (e.g. around an outage)
    plots.quality_cost({"knn": evaluate(knn, ...), "logreg": evaluate(logreg, ...)})   # learned routers
    plots.overview(table, results)           # the first four in one layout

``results`` is a :class:`~lumina_lab.sim.engine.SimResult` (``lab.run(...)``), a ``{name: SimResult}`` dict
(``lab.compare(..., plot=True)``) or a list of them (named by their strategy). ``pareto_front`` also takes
the ``compare()`` table or a :func:`~lumina_lab.sim.sweep` frame. ``quality_cost`` takes what
:func:`~lumina_lab.sim.learned.evaluate` returns, one or ``{name: ...}``. Each plot's numbers are available
as a DataFrame (:func:`pareto_table`, :func:`latency_cdf_table`, :func:`cost_table`, :func:`share_table`,
:func:`quality_cost_table`), and keyword arguments of a plot function are HoloViews options of the
result (e.g. ``width=700`` for a fixed size; plots stretch to their container's width by default).
``SimResult.plot_latency_cdf()``, ``plot_cost_over_time()`` and ``plot_provider_share()`` call these.

Time is simulated time, bucketed by when requests *arrived* (the moment the router decided). HoloViews,
Bokeh and pandas are imported when a plot is made, never by ``import lumina_lab``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from .engine import SimResult

__all__ = [
    "PALETTE",
    "as_results",
    "cost_over_time",
    "cost_table",
    "latency_cdf",
    "latency_cdf_table",
    "overview",
    "pareto_front",
    "pareto_mask",
    "pareto_table",
    "provider_share",
    "quality_cost",
    "quality_cost_table",
    "share_table",
]

#: Categorical colours (Tableau 10): strategies in the order given, providers in sorted order.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
ACCENT, MUTED, INK = "#0969da", "#8c959f", "#57606a"
HEIGHT = 320
_RESULTS_HINT = "pass lab.run(workload, 'cheapest'), or the results of lab.compare([...], workload, plot=True)"
_NICE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


# ---------------------------------------------------------------------- inputs


def _hv() -> Any:
    """HoloViews with its Bokeh renderer registered (the current backend is left as the user chose it)."""
    try:
        import holoviews as hv
    except ImportError:
        raise ConfigError(
            "the routing-lab plots need holoviews and bokeh, which are not installed",
            key="ui",
            hint="pip install 'lumina-lab[ui]'   (or: pip install holoviews hvplot bokeh)",
        ) from None
    if "bokeh" not in hv.Store.renderers:
        import holoviews.plotting.bokeh  # registers the renderer (no notebook output)
    return hv


def as_results(results: Any, *, arg: str = "results") -> dict[str, SimResult]:
    """``results`` as ``{name: SimResult}``: from one result, a dict, or a list (named by strategy)."""
    from .engine import SimResult

    if isinstance(results, SimResult):
        return {results.strategy: results}
    if isinstance(results, Mapping):
        out = dict(results)
    elif isinstance(results, Sequence) and not isinstance(results, str | bytes):
        out = {}
        for r in results:
            if isinstance(r, SimResult) and r.strategy in out:
                raise ValidationError(
                    f"{arg}: two results of strategy {r.strategy!r} in the list",
                    input=results,
                    hint="name them with a dict: {'bandit seed 1': r1, 'bandit seed 2': r2}",
                )
            out[getattr(r, "strategy", len(out))] = r
    else:
        raise ValidationError(
            f"{arg} must be a SimResult, a {{name: SimResult}} dict or a list of SimResults, "
            f"got {type(results).__name__}",
            input=results,
            hint=_RESULTS_HINT,
        )
    if not out:
        raise ValidationError(f"{arg} is empty: nothing to plot", input=results, hint=_RESULTS_HINT)
    bad = {str(k): type(v).__name__ for k, v in out.items() if not isinstance(v, SimResult)}
    if bad:
        name, kind = next(iter(bad.items()))
        raise ValidationError(f"{arg}[{name!r}] is a {kind}, not a SimResult", input=results, hint=_RESULTS_HINT)
    return {str(k): v for k, v in out.items()}


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _providers(results: Mapping[str, SimResult]) -> list[str]:
    """Provider ids in the fleet's order (so a provider keeps its colour in every plot of one lab), then any
    other provider that answered, sorted."""
    order: dict[str, None] = {}
    for r in results.values():
        registry = getattr(getattr(r, "router", None), "registry", None)
        for state in registry if registry is not None else ():
            order.setdefault(str(state.id))
    seen: set[str] = set()
    for r in results.values():
        seen.update(str(p) for p in r.frame["provider"].dropna().unique())
    return [*order, *sorted(seen - set(order))]


def _check_bucket(bucket_s: Any) -> None:
    if bucket_s is not None and (
        isinstance(bucket_s, bool) or not isinstance(bucket_s, int | float) or not bucket_s > 0
    ):
        raise ValidationError(
            f"bucket_s={bucket_s!r} must be a positive number of simulated seconds",
            input=bucket_s,
            hint="e.g. bucket_s=60, or None to choose one from the workload's span",
        )


def _bucket(results: Mapping[str, SimResult], bucket_s: float | None) -> float:
    """``bucket_s``, or a round bucket giving about 60 of them over the workload's span."""
    _check_bucket(bucket_s)
    if bucket_s is not None:
        return float(bucket_s)
    span = max((float(r.frame["arrival_s"].max()) for r in results.values() if len(r.frame)), default=0.0)
    want = span / 60 if span > 0 else 1.0
    return float(next((b for b in _NICE_BUCKETS if b >= want), _NICE_BUCKETS[-1]))


def _time_unit(span_s: float) -> tuple[float, str]:
    """Divisor and name of the unit that reads best for a span of simulated time."""
    if span_s >= 3 * 3600:
        return 3600.0, "h"
    if span_s >= 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _per(bucket_s: float) -> str:
    for size, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if bucket_s == size:
            return word
    for size, unit in ((3600, "h"), (60, "min")):
        if bucket_s >= size and bucket_s % size == 0:
            return f"{bucket_s / size:g} {unit}"
    return f"{bucket_s:g} s"


def _finish(obj: Any, base: Mapping[str, Any], opts: Mapping[str, Any]) -> Any:
    """Apply the plot's Bokeh options, then the caller's (a fixed ``width`` turns responsiveness off)."""
    merged = {**base, **opts}
    if "width" in opts and "responsive" not in opts:
        merged.pop("responsive", None)
    return obj.opts(backend="bokeh", **merged)


def _frame_opts(**extra: Any) -> dict[str, Any]:
    return {
        "responsive": True,
        "height": HEIGHT,
        "show_grid": True,
        "toolbar": "right",
        "fontscale": 1.0,
        **extra,
    }


def _message(hv: Any, text: str, title: str) -> Any:
    """What a plot shows when the results hold nothing it can draw (e.g. every request failed)."""
    return hv.Div(f"<div style='padding:2em;color:{INK}'><b>{title}</b><br><i>{text}</i></div>").opts(
        backend="bokeh", height=HEIGHT, sizing_mode="stretch_width"
    )


def _percent() -> Any:
    from bokeh.models import NumeralTickFormatter

    return NumeralTickFormatter(format="0%")


# ---------------------------------------------------------------------- Pareto front


def pareto_mask(cost: Any, quality: Any) -> np.ndarray:
    """Which points are not dominated: no other point has cost <= and quality >=, with one of them strict.

    Equal points are all kept (neither beats the other).
    """
    c = np.asarray(cost, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if c.shape != q.shape or c.ndim != 1:
        raise ValidationError(
            f"cost and quality need the same 1-D shape, got {c.shape} and {q.shape}",
            hint="pass one cost and one quality per point",
        )
    if len(c) == 0:
        return np.zeros(0, dtype=bool)
    no_worse = (c[None, :] <= c[:, None]) & (q[None, :] >= q[:, None])  # [i, j]: j is at least as good as i
    better = (c[None, :] < c[:, None]) | (q[None, :] > q[:, None])
    return ~(no_worse & better).any(axis=1)


def _summary_frame(source: Any, label: str) -> pd.DataFrame:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        frame = source.reset_index() if source.index.name == label or label not in source else source.copy()
        if label not in frame:
            raise ValidationError(
                f"the table has no {label!r} column to name its points (columns: {list(frame.columns)})",
                input=label,
                hint="pass label='column', or the table lab.compare(...) returns (indexed by strategy)",
            )
        return frame
    results = as_results(source, arg="source")
    rows = []
    for name, r in results.items():
        row = r.summary()
        row[label] = name
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_table(
    source: Any, *, cost: str = "cost_per_1k_usd", quality: str | None = None, label: str = "strategy"
) -> pd.DataFrame:
    """One row per point (strategy), with ``cost``, ``quality`` and ``pareto`` (not dominated), cheapest first.

    Args:
        source: the table :meth:`RoutingLab.compare` returns, a :func:`sweep` frame (rows with the same
            ``label`` are averaged, e.g. over seeds), or SimResults (see :func:`as_results`).
        cost: column to minimise (default: USD per 1,000 answered requests).
        quality: column to maximise; default ``"quality"`` (share of good answers, from the providers'
            ``quality``), or ``"success_rate"`` when no provider profile has a quality.
        label: the column naming the points.
    """
    frame = _summary_frame(source, label)
    if quality is None:
        has_quality = "quality" in frame and frame["quality"].notna().any()
        quality = "quality" if has_quality or "success_rate" not in frame else "success_rate"
    for role, col in (("cost", cost), ("quality", quality)):
        if col not in frame:
            raise ValidationError(
                f"{role}={col!r} is not a column of the table (columns: {list(frame.columns)})",
                input=col,
                hint=f"pass {role}= one of the numeric columns, e.g. cost='cost_usd' or quality='success_rate'",
            )
    if frame[label].duplicated().any():
        numeric = frame.select_dtypes("number").columns.difference([label])
        frame = frame.groupby(label, sort=False)[list(numeric)].mean().reset_index()
    frame = frame.dropna(subset=[cost, quality])
    if frame.empty:
        raise ValidationError(
            f"no point has both {cost!r} and {quality!r} (every run failed?)",
            hint="check the results' success_rate; a strategy with no answer has no cost per answer",
        )
    frame = frame.assign(pareto=pareto_mask(frame[cost].to_numpy(float), frame[quality].to_numpy(float)))
    frame = frame.sort_values([cost, quality], ascending=[True, False]).set_index(label)
    frame.attrs.update(cost=cost, quality=quality)
    return frame


_AXIS = {
    "cost_per_1k_usd": "$ per 1,000 answers",
    "cost_usd": "total cost ($)",
    "quality": "quality (share of good answers)",
    "success_rate": "success rate",
    "p95_s": "p95 latency (s)",
}


def _place_labels(x: np.ndarray, y: np.ndarray, xspan: float, yspan: float) -> np.ndarray:
    """Where each point's label goes: right of the point, nudged up or down when it would sit on a label
    already placed (strategies with nearly equal cost and quality)."""
    out = np.empty((len(x), 2))
    done: list[tuple[float, float]] = []
    for i in np.argsort(x, kind="stable"):
        lx = x[i] / xspan + 0.03
        for dy in (0.0, -0.07, 0.07, -0.14, 0.14, -0.21, 0.21):
            ly = y[i] / yspan + dy
            if all(abs(lx - px) > 0.2 or abs(ly - py) > 0.06 for px, py in done):
                break
        done.append((lx, ly))
        out[i] = (lx * xspan, ly * yspan)
    return out


def pareto_front(
    source: Any, *, cost: str = "cost_per_1k_usd", quality: str | None = None, label: str = "strategy", **opts: Any
) -> Any:
    """Cost against quality, one point per strategy; the Pareto-optimal ones (no other is both cheaper and
    better) in colour and joined, the dominated ones grey. Arguments as :func:`pareto_table`."""
    hv = _hv()
    table = pareto_table(source, cost=cost, quality=quality, label=label)
    cost, quality = table.attrs["cost"], table.attrs["quality"]
    frame = table.reset_index()
    frame["status"] = np.where(frame["pareto"], "Pareto-optimal", "dominated")
    hover = [
        c for c in (label, "status", "success_rate", "p95_s", "cost_usd") if c in frame and c not in (cost, quality)
    ]
    front = frame[frame["pareto"]].sort_values(cost)
    xmin, xmax = float(frame[cost].min()), float(frame[cost].max())
    ymin, ymax = float(frame[quality].min()), float(frame[quality].max())
    xspan = (xmax - xmin) or abs(xmax) or 1.0
    yspan = (ymax - ymin) or abs(ymax) * 0.1 or 1.0
    line = hv.Curve(front, cost, quality, label="Pareto front").opts(
        backend="bokeh", color=ACCENT, line_dash="dashed", line_width=2, alpha=0.7
    )
    points = [
        hv.Points(frame[frame["pareto"] == on], [cost, quality], hover, label="" if on else "dominated").opts(
            backend="bokeh", color=ACCENT if on else MUTED, size=12, line_color="white", tools=["hover"]
        )
        for on in (True, False)
        if (frame["pareto"] == on).any()
    ]
    placed = _place_labels(frame[cost].to_numpy(float), frame[quality].to_numpy(float), xspan, yspan)
    spots = frame[[label]].assign(**{cost: placed[:, 0], quality: placed[:, 1]})
    labels = hv.Labels(spots, [cost, quality], label).opts(
        backend="bokeh", text_font_size="9pt", text_color=INK, text_align="left", text_baseline="middle"
    )
    return _finish(
        hv.Overlay([line, *points, labels]),
        _frame_opts(
            title="Cost vs quality · Pareto front",
            xlabel=_AXIS.get(cost, cost.replace("_", " ")),
            ylabel=_AXIS.get(quality, quality.replace("_", " ")),
            xlim=(xmin - 0.08 * xspan, xmax + 0.3 * xspan),  # room on the right for the labels
            ylim=(ymin - 0.12 * yspan, ymax + 0.12 * yspan),
            legend_position="bottom_right",
        ),
        opts,
    )


# ---------------------------------------------------------------------- latency CDF


def latency_cdf_table(results: Any, *, points: int = 300, of: str = "answered") -> pd.DataFrame:
    """The empirical CDF of latency per strategy: ``strategy``, ``latency_s``, ``share`` (at most ``points`` rows
    each, always including the slowest answer).

    ``share`` at ``latency_s`` is the share of answered requests (``of="answered"``: ends at 1) or of all
    requests (``of="requests"``: ends at the success rate) answered within that time.
    """
    import pandas as pd

    runs = as_results(results)
    if of not in ("answered", "requests"):
        raise ValidationError(f"of={of!r}", input=of, hint="of='answered' (ends at 1) or of='requests'")
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValidationError(f"points={points!r} must be an int >= 2", input=points, hint="e.g. points=300")
    parts = []
    for name, r in runs.items():
        f = r.frame
        lat = np.sort(f.loc[f["ok"].astype(bool), "latency_s"].to_numpy(np.float64))
        if not len(lat):
            continue
        idx = np.unique(np.round(np.linspace(0, len(lat) - 1, min(points, len(lat)))).astype(np.int64))
        xs = lat[idx]
        share = np.searchsorted(lat, xs, side="right") / (len(lat) if of == "answered" else len(f))
        parts.append(pd.DataFrame({"strategy": name, "latency_s": xs, "share": share}))
    if not parts:
        return pd.DataFrame({"strategy": pd.Series(dtype=str), "latency_s": [], "share": []})
    return pd.concat(parts, ignore_index=True)


def latency_cdf(
    results: Any, *, points: int = 300, of: str = "answered", logx: bool = False, slo: bool = True, **opts: Any
) -> Any:
    """Latency CDF per strategy (answered requests), with the 95% line, and the lab's SLO when some answers took
    longer (``slo=False``: never).

    ``of="requests"`` counts failed requests as never answered (the curves end at the success rate);
    ``logx=True`` for a log time axis.
    """
    hv = _hv()
    runs = as_results(results)
    table = latency_cdf_table(runs, points=points, of=of)
    title = "Latency CDF" + (" (all requests)" if of == "requests" else "")
    if table.empty:
        return _message(hv, "no answered requests", title)
    colors = _colors(list(runs))
    curves = [
        hv.Curve(
            table[table["strategy"] == name], ("latency_s", "latency (s)"), [("share", "share"), "strategy"], label=name
        ).opts(backend="bokeh", color=colors[name], line_width=2.5, tools=["hover"])
        for name in runs
        if (table["strategy"] == name).any()
    ]
    guides = [hv.HLine(0.95).opts(backend="bokeh", color=MUTED, line_dash="dotted", line_width=1)]
    slos = {r.slo_s for r in runs.values()}
    if slo and len(slos) == 1:
        s = slos.pop()
        if s and math.isfinite(s) and s <= float(table["latency_s"].max()):  # some answers took longer
            guides.append(hv.VLine(s).opts(backend="bokeh", color="#cf222e", line_dash="dashed", line_width=1.5))
            guides.append(
                hv.Text(s, 0.5, f"SLO {s:g} s ", halign="right").opts(
                    backend="bokeh", text_color="#cf222e", text_font_size="9pt"
                )
            )
    ylabel = "share of answered requests" if of == "answered" else "share of requests answered"
    return _finish(
        hv.Overlay([*guides, *curves]),
        _frame_opts(
            title=title,
            xlabel="latency (s)",
            ylabel=ylabel,
            yformatter=_percent(),
            ylim=(0, 1.02),
            logx=logx,
            legend_position="bottom_right",
        ),
        opts,
    )


# ---------------------------------------------------------------------- cost and provider share over time


def _by(runs: Mapping[str, SimResult], by: str | None) -> str:
    if by is None:
        return "provider" if len(runs) == 1 else "strategy"
    if by not in ("provider", "strategy"):
        raise ValidationError(f"by={by!r}", input=by, hint="by='provider' (spend per provider) or by='strategy'")
    return by


def cost_table(
    results: Any, *, bucket_s: float | None = None, by: str | None = None, cumulative: bool = False
) -> pd.DataFrame:
    """Spend per bucket of simulated time: ``time_s`` (bucket start, by arrival), ``strategy``, ``provider``
    (with ``by="provider"``), ``cost_usd`` and ``cumulative_usd``; every bucket present (zeros included).

    ``by``: ``"strategy"`` (default with several results) or ``"provider"`` (default with one).
    """
    import pandas as pd

    runs = as_results(results)
    by = _by(runs, by)
    bucket = _bucket(runs, bucket_s)
    n_buckets = 1 + max((int(r.frame["arrival_s"].max() // bucket) for r in runs.values() if len(r.frame)), default=0)
    times = np.arange(n_buckets) * bucket
    providers = _providers(runs)
    parts = []
    for name, r in runs.items():
        f = r.frame
        b = (f["arrival_s"].to_numpy(np.float64) // bucket).astype(np.int64)
        cost = f["cost_usd"].to_numpy(np.float64)
        if by == "strategy":
            spend = np.bincount(b, weights=cost, minlength=n_buckets)
            parts.append(pd.DataFrame({"time_s": times, "strategy": name, "cost_usd": spend}))
            continue
        prov = f["provider"].astype(object).to_numpy()
        for p in providers:
            sel = prov == p
            spend = np.bincount(b[sel], weights=cost[sel], minlength=n_buckets)
            parts.append(pd.DataFrame({"time_s": times, "strategy": name, "provider": p, "cost_usd": spend}))
    out = pd.concat(parts, ignore_index=True)
    keys = ["strategy"] if by == "strategy" else ["strategy", "provider"]
    out["cumulative_usd"] = out.groupby(keys, sort=False)["cost_usd"].cumsum()
    out.attrs.update(bucket_s=bucket, by=by)
    return out


def _stacked(hv: Any, frame: pd.DataFrame, x: Any, y: Any, stack: str, order: Sequence[str], colors: dict) -> Any:
    areas = [
        hv.Area(frame[frame[stack] == key], x, [y, stack], label=key).opts(
            backend="bokeh", color=colors[key], line_color=colors[key], alpha=0.85, line_alpha=1
        )
        for key in order
        if frame.loc[frame[stack] == key, y[0] if isinstance(y, tuple) else y].any()  # nothing to stack: no band
    ]
    return hv.Area.stack(hv.Overlay(areas))


def cost_over_time(
    results: Any,
    *,
    bucket_s: float | None = None,
    by: str | None = None,
    cumulative: bool | None = None,
    **opts: Any,
) -> Any:
    """Spend over simulated time.

    With several results (``by="strategy"``): cumulative spend per strategy, one line each. With one result
    (``by="provider"``): spend per ``bucket_s`` stacked by provider (``cumulative=True`` for running totals);
    several results by provider give one such plot per strategy. ``bucket_s`` defaults to a round size
    giving about 60 buckets.
    """
    hv = _hv()
    runs = as_results(results)
    by = _by(runs, by)
    cumulative = by == "strategy" if cumulative is None else bool(cumulative)
    table = cost_table(runs, bucket_s=bucket_s, by=by)
    bucket = table.attrs["bucket_s"]
    unit, uname = _time_unit(float(table["time_s"].max()) + bucket)
    table = table.assign(t=table["time_s"] / unit)
    y = "cumulative_usd" if cumulative else "cost_usd"
    ylabel = "cumulative spend ($)" if cumulative else f"$ per {_per(bucket)}"
    xdim = ("t", f"simulated time ({uname})")
    base = _frame_opts(xlabel=f"simulated time ({uname})", ylabel=ylabel, legend_position="top_left", ylim=(0, None))
    if by == "strategy":
        colors = _colors(list(runs))
        step = {} if cumulative else {"interpolation": "steps-post"}
        curves = [
            hv.Curve(table[table["strategy"] == name], xdim, [(y, ylabel), "strategy"], label=name).opts(
                backend="bokeh", color=colors[name], line_width=2.5, tools=["hover"], **step
            )
            for name in runs
        ]
        return _finish(hv.Overlay(curves), {**base, "title": "Spend over time"}, opts)
    providers = _providers(runs)
    colors = _colors(providers)
    plots = []
    for name in runs:
        part = table[table["strategy"] == name]
        title = "Spend over time by provider" + (f" · {name}" if len(runs) > 1 else "")
        if not part[y].any():
            plots.append(_message(hv, "nothing was spent", title))
            continue
        plots.append(
            _finish(
                _stacked(hv, part, xdim, (y, ylabel), "provider", providers, colors), {**base, "title": title}, opts
            )
        )
    return plots[0] if len(plots) == 1 else hv.Layout(plots).cols(1)


def share_table(results: Any, *, over_time: bool = False, bucket_s: float | None = None) -> pd.DataFrame:
    """Answered requests per provider: ``strategy``, ``provider``, ``requests``, ``share`` (sums to 1 per strategy,
    or per strategy and bucket with ``over_time=True``, which adds ``time_s``, the bucket start by arrival).
    Buckets with no answer have no rows."""
    import pandas as pd

    runs = as_results(results)
    bucket = _bucket(runs, bucket_s) if over_time else None
    parts = []
    for name, r in runs.items():
        f = r.frame[r.frame["ok"].astype(bool)]
        keys = ["provider"]
        if over_time:
            f = f.assign(time_s=(f["arrival_s"] // bucket) * bucket)
            keys = ["time_s", "provider"]
        counts = f.groupby(keys).size().rename("requests").reset_index()
        if counts.empty:
            continue
        totals = counts.groupby(keys[:-1])["requests"].transform("sum") if over_time else counts["requests"].sum()
        counts["share"] = counts["requests"] / totals
        counts.insert(0, "strategy", name)
        parts.append(counts)
    cols = ["strategy", *(["time_s"] if over_time else []), "provider", "requests", "share"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)[cols]
    out["provider"] = out["provider"].astype(str)
    out.attrs.update(bucket_s=bucket)
    return out


def provider_share(
    results: Any, *, over_time: bool = False, bucket_s: float | None = None, normalize: bool = True, **opts: Any
) -> Any:
    """Which providers answered: one stacked bar per strategy (share of its answers; ``normalize=False``:
    counts), or with ``over_time=True`` the share per bucket of simulated time as stacked areas (one plot
    per strategy) — where an outage or a breaker shows as a provider's band vanishing."""
    hv = _hv()
    runs = as_results(results)
    table = share_table(runs, over_time=over_time, bucket_s=bucket_s)
    title = "Provider share" + (" over time" if over_time else "")
    if table.empty:
        return _message(hv, "no answered requests", title)
    providers = _providers(runs)
    colors = _colors(providers)
    y, ylabel = ("share", "share of answers") if normalize else ("requests", "answers")
    if not over_time:
        other = "requests" if normalize else "share"
        bars = hv.Bars(table, ["strategy", "provider"], [(y, ylabel), other]).opts(
            backend="bokeh",
            stacked=True,
            cmap={p: colors[p] for p in providers},
            tools=["hover"],
            line_color="white",
        )
        extra = {"yformatter": _percent(), "ylim": (0, 1)} if normalize else {}
        return _finish(bars, _frame_opts(title=title, xlabel="", ylabel=ylabel, legend_position="right", **extra), opts)
    bucket = table.attrs["bucket_s"]
    unit, uname = _time_unit(float(table["time_s"].max()) + bucket)
    table = table.assign(t=table["time_s"] / unit)
    xdim = ("t", f"simulated time ({uname})")
    plots = []
    for name in runs:
        part = table[table["strategy"] == name]
        if part.empty:
            plots.append(_message(hv, "no answered requests", f"{title} · {name}"))
            continue
        wide = part.pivot_table(index="t", columns="provider", values=y, fill_value=0).reset_index()
        long = wide.melt(id_vars="t", var_name="provider", value_name=y)
        extra = {"yformatter": _percent(), "ylim": (0, 1)} if normalize else {}
        plots.append(
            _finish(
                _stacked(hv, long, xdim, (y, ylabel), "provider", providers, colors),
                _frame_opts(
                    title=f"{title} · {name}",
                    xlabel=f"simulated time ({uname})",
                    ylabel=ylabel,
                    legend_position="right",
                    **extra,
                ),
                opts,
            )
        )
    return plots[0] if len(plots) == 1 else hv.Layout(plots).cols(1)


# ---------------------------------------------------------------------- learned routers: quality vs cost

_EVAL_KEYS = (
    "curve",
    "quality_weak",
    "quality_strong",
    "cost_all_weak",
    "cost_all_strong",
    "apgr",
    "cost_saving_at_95",
)
_EVAL_HINT = "pass evaluate(router, prompts, weak_correct, strong_correct), or {name: evaluate(...)} for several"
_X = {
    "cost_ratio": "cost (share of all-strong cost)",
    "strong_share": "share of prompts sent to the strong model",
    "cost": "cost ($)",
}


def _evaluations(evaluations: Any) -> dict[str, dict[str, Any]]:
    import pandas as pd

    if isinstance(evaluations, Mapping) and "curve" in evaluations:
        evaluations = {"router": evaluations}
    if not isinstance(evaluations, Mapping):
        raise ValidationError(
            f"evaluations must be a dict returned by evaluate() or {{name: that dict}}, got {type(evaluations).__name__}",
            input=evaluations,
            hint=_EVAL_HINT,
        )
    if not evaluations:
        raise ValidationError("evaluations is empty: nothing to plot", input=evaluations, hint=_EVAL_HINT)
    for name, e in evaluations.items():
        missing = [k for k in _EVAL_KEYS if not isinstance(e, Mapping) or k not in e]
        if missing:
            raise ValidationError(
                f"evaluations[{name!r}] is not an evaluate() result (missing {', '.join(missing)})",
                input=e,
                hint=_EVAL_HINT,
            )
        curve = e["curve"]
        if not isinstance(curve, pd.DataFrame) or not {"strong_share", "quality", "cost", "cost_ratio"} <= set(curve):
            raise ValidationError(
                f"evaluations[{name!r}]['curve'] is not evaluate()'s curve DataFrame", hint=_EVAL_HINT
            )
    first_name, first = next(iter(evaluations.items()))
    for name, e in evaluations.items():
        same = all(
            math.isclose(float(e[k]), float(first[k]), rel_tol=1e-9, abs_tol=1e-12)
            for k in ("quality_weak", "quality_strong", "cost_all_strong")
        ) and e.get("n") == first.get("n")
        if not same:
            raise ValidationError(
                f"evaluations {first_name!r} and {name!r} were measured on different prompts "
                f"(strong-model quality {float(first['quality_strong']):.3f} vs {float(e['quality_strong']):.3f}); "
                "a quality-cost plot compares routers on one test set",
                input=name,
                hint="plot one test set per call and lay them side by side: quality_cost(gsm8k) + quality_cost(mmlu)",
            )
    return {str(k): dict(v) for k, v in evaluations.items()}


def _thin(curve: pd.DataFrame, points: int, keep: int) -> pd.DataFrame:
    n = len(curve)
    if n <= points:
        return curve
    idx = np.unique(np.concatenate([np.round(np.linspace(0, n - 1, points)).astype(np.int64), [keep]]))
    return curve.iloc[idx]


def quality_cost_table(evaluations: Any, *, points: int | None = 400) -> pd.DataFrame:
    """The routers' quality-cost curves in one frame: ``router`` plus evaluate()'s curve columns (at most
    ``points`` rows per router, ``None`` for all; the 95%-quality point is always kept), and ``at_95``
    marking each router's cheapest point reaching 95% of the strong model's quality."""
    import pandas as pd

    evals = _evaluations(evaluations)
    if points is not None and (isinstance(points, bool) or not isinstance(points, int) or points < 2):
        raise ValidationError(
            f"points={points!r} must be an int >= 2", input=points, hint="e.g. points=400, or None for every point"
        )
    parts = []
    for name, e in evals.items():
        curve = e["curve"].reset_index(drop=True)
        target = 0.95 * float(e["quality_strong"]) - 1e-12
        ok = np.flatnonzero(curve["quality"].to_numpy() >= target)
        best = int(ok[np.argmin(curve["cost"].to_numpy()[ok])]) if len(ok) else len(curve) - 1
        at95 = np.zeros(len(curve), dtype=bool)
        at95[best] = True
        curve = curve.assign(at_95=at95)
        if points is not None:
            curve = _thin(curve, points, best)
        parts.append(curve.assign(router=name))
    out = pd.concat(parts, ignore_index=True)
    return out[["router", *[c for c in out.columns if c != "router"]]]


def quality_cost(
    evaluations: Any, *, x: str = "cost_ratio", points: int | None = 400, random: bool = True, **opts: Any
) -> Any:
    """Quality against cost of learned routers as their threshold sweeps from all-weak to all-strong, on one
    test set (RouteLLM's plot): each router's curve (legend: APGR and cost saving at 95% quality), its
    cheapest point at 95% of the strong model's quality, the 95% line, the all-weak and all-strong points,
    and the random router's expected line (``random=False``: none).

    Args:
        evaluations: :func:`~lumina_lab.sim.learned.evaluate` results, one or ``{name: result}``, on the
            same prompts.
        x: ``"cost_ratio"`` (cost relative to sending everything to the strong model), ``"strong_share"``
            or ``"cost"`` (USD).
    """
    hv = _hv()
    if x not in _X:
        raise ValidationError(f"x={x!r}", input=x, hint=f"one of {', '.join(map(repr, _X))}")
    evals = _evaluations(evaluations)
    table = quality_cost_table(evals, points=points)
    e0 = next(iter(evals.values()))
    qw, qs = float(e0["quality_weak"]), float(e0["quality_strong"])
    cw, cs = float(e0["cost_all_weak"]), float(e0["cost_all_strong"])
    ends = {"cost_ratio": (cw / cs if cs else 0.0, 1.0), "strong_share": (0.0, 1.0), "cost": (cw, cs)}[x]
    colors = _colors(list(evals))
    xdim, ydim = (x, _X[x]), ("quality", "quality (accuracy)")
    layers: list[Any] = [
        hv.HLine(0.95 * qs).opts(backend="bokeh", color=MUTED, line_dash="dotted", line_width=1.5),
        hv.Text(ends[0], 0.95 * qs, " 95% of strong quality", halign="left", valign="bottom").opts(
            backend="bokeh", text_color=INK, text_font_size="9pt"
        ),
    ]
    if random:
        layers.append(
            hv.Curve([(ends[0], qw), (ends[1], qs)], xdim, ydim, label="random (expected)").opts(
                backend="bokeh", color=MUTED, line_dash="dashed", line_width=1.5
            )
        )
    for name, e in evals.items():
        part = table[table["router"] == name]
        legend = f"{name} · APGR {float(e['apgr']):.2f} · saves {float(e['cost_saving_at_95']):.0%} at 95%"
        layers.append(
            hv.Curve(part, xdim, [ydim, "strong_share", "pgr", "threshold"], label=legend).opts(
                backend="bokeh", color=colors[name], line_width=2.5, tools=["hover"]
            )
        )
        layers.append(
            hv.Scatter(part[part["at_95"]], xdim, [ydim, "strong_share", "threshold"]).opts(
                backend="bokeh", color=colors[name], size=11, line_color="white", tools=["hover"]
            )
        )
    anchors = [(ends[0], qw, "all weak"), (ends[1], qs, "all strong")]
    layers.append(
        hv.Scatter([(a, b) for a, b, _ in anchors], xdim, ydim).opts(
            backend="bokeh", color="#24292f", size=8, marker="square"
        )
    )
    dx, dy = 0.012 * (ends[1] - ends[0]), 0.01 * max(qs - qw, 0.05)
    for (a, b, text), ha, va, sx, sy in zip(
        anchors, ("left", "right"), ("top", "bottom"), (1, -1), (-1, 1), strict=True
    ):
        layers.append(
            hv.Text(a + sx * dx, b + sy * dy, text, halign=ha, valign=va).opts(
                backend="bokeh", text_color=INK, text_font_size="9pt"
            )
        )
    extra = {"xformatter": _percent()} if x != "cost" else {}
    return _finish(
        hv.Overlay(layers),
        _frame_opts(
            title="Quality vs cost of learned routers",
            xlabel=_X[x],
            ylabel="quality (accuracy)",
            legend_position="bottom_right",
            padding=(0.04, 0.1),
            **extra,
        ),
        opts,
    )


# ---------------------------------------------------------------------- all at once


def overview(table: Any, results: Any = None, **opts: Any) -> Any:
    """Pareto front, latency CDF, provider share and spend over time in one layout (two columns).

    ``overview(results)``, or ``overview(table, results)`` with the table :meth:`RoutingLab.compare` returned.
    """
    import pandas as pd

    hv = _hv()
    if results is None:
        if isinstance(table, pd.DataFrame):
            raise ValidationError(
                "overview(table) needs the SimResults too, for the latency and provider plots",
                hint="table, results, layout = lab.compare([...], workload, plot=True)",
            )
        table, results = None, table
    runs = as_results(results)
    source = table if table is not None else runs
    return hv.Layout(
        [
            pareto_front(source, **opts),
            latency_cdf(runs, **opts),
            provider_share(runs, **opts),
            cost_over_time(runs, by="strategy", **opts),
        ]
    ).cols(2)
