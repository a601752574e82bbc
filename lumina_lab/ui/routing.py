"""The routing lab view: strategies side by side, the cost-quality Pareto front, latency CDFs, provider share,
spend over time. The plots are :mod:`lumina_lab.sim.plots` (the same ones a notebook draws)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter
from panel.viewable import Viewer

from ..errors import ValidationError
from ..sim.plots import cost_over_time, latency_cdf, pareto_front, pareto_mask, provider_share
from .base import card, esc

__all__ = ["RoutingLabView", "cost_over_time", "latency_cdf", "pareto_front", "pareto_mask", "provider_share"]

STRATEGIES = ("cheapest", "fastest", "weighted", "least_busy", "round_robin", "bandit")


def _results(results: Any) -> dict[str, Any]:
    if results is None:
        return {}
    if isinstance(results, Mapping):
        return dict(results)
    if isinstance(results, Sequence):
        return {r.strategy: r for r in results}
    raise ValidationError(
        f"results must be SimResults (a dict by name or a list), got {type(results).__name__}", input=results
    )


def summary_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per strategy: :meth:`SimResult.summary` (what :meth:`RoutingLab.compare` returns)."""
    rows = []
    for name, r in results.items():
        s = r.summary()
        s["strategy"] = name
        rows.append(s)
    return pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()


class RoutingLabView(Viewer):
    """Results of routing-lab replays, side by side (a :class:`RoutingLab` run offline in simulated time, so
    this view is fed by results, not by the bus).

    Args:
        results: ``SimResult`` objects, as ``{name: result}`` or a list (named by their strategy).
        lab: a :class:`~lumina_lab.sim.engine.RoutingLab`; with ``workload`` the view gets a *Run* control.
        workload: the workload to replay.
        strategies: strategies offered (and run first when ``results`` is empty).
        seed: the replay seed.
        outages: outages applied to every run.
        replay: a :class:`~lumina_lab.lab.Lab` whose recorded traffic (``provider.request.routed`` events in its
            store, the last ``since``) is replayed against its simulated providers when *Run* is pressed: "how
            would the other strategies have done on today's traffic?"
        since: with ``replay``, how far back the recorded traffic goes (SQL interval, e.g. ``"1 day"``).

    >>> RoutingLabView(lab=routing_lab, workload=poisson(40, n=5_000)).run()     # doctest: +SKIP
    >>> RoutingLabView(replay=lab)                                                # in a served dashboard  # doctest: +SKIP
    """

    def __init__(
        self,
        results: Any = None,
        *,
        lab: Any = None,
        workload: Any = None,
        strategies: Sequence[str] = ("cheapest", "least_busy", "round_robin", "bandit"),
        seed: int = 0,
        outages: Sequence[Any] = (),
        replay: Any = None,
        since: str = "1 day",
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.lab = lab
        self.workload = workload
        self.replay = replay
        self.since = since
        self.outages = list(outages)
        self.results: dict[str, Any] = _results(results)
        options = list(dict.fromkeys([*strategies, *STRATEGIES]))
        self.choice = pn.widgets.MultiChoice(label="Strategies", value=list(strategies), options=options, width=420)
        self.seed = pn.widgets.IntInput(label="Seed", value=seed, width=90)
        self.button = pn.widgets.Button(label="Run", color="primary", width=90, align="end")
        self.button.on_click(lambda _e: self.run())
        self.note = pn.pane.HTML("", margin=(15, 10))
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=True,
            disabled=True,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            formatters={
                "success_rate": NumberFormatter(format="0.00%"),
                "quality": NumberFormatter(format="0.000"),
                "cost_usd": NumberFormatter(format="$0,0.00"),
                "cost_per_1k_usd": NumberFormatter(format="$0,0.000"),
                **{c: NumberFormatter(format="0.000") for c in ("p50_s", "p95_s", "p99_s", "ttft_mean_s")},
            },
        )
        self.pareto = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=320, backend="bokeh")
        self.cdf = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=320, backend="bokeh")
        self.share = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=320, backend="bokeh")
        self.spend = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=320, backend="bokeh")
        runnable = (lab is not None and workload is not None) or replay is not None
        controls = [self.choice, self.seed, self.button, self.note] if runnable else [self.note]
        self._layout = card(
            "Routing lab",
            pn.Row(*controls),
            self.table,
            pn.Row(self.pareto, self.cdf, sizing_mode="stretch_width"),
            pn.Row(self.share, self.spend, sizing_mode="stretch_width"),
        )
        self._render()

    def _from_replay(self) -> tuple[Any, Any]:
        """A RoutingLab over the replayed lab's simulated providers, and its recorded traffic as the workload."""
        import re

        from ..providers import SimulatedProvider
        from ..sim import RoutingLab
        from ..sim.traffic import workload_from_store

        fleet = [s.provider for s in self.replay.providers if isinstance(s.provider, SimulatedProvider)]
        if not fleet:
            raise ValidationError(
                "the lab has no simulated providers to replay its traffic against",
                hint="describe the real providers with SimulatedProvider(...) in a RoutingLab",
            )
        if not re.fullmatch(r"\d+ (second|minute|hour|day)s?", self.since):
            raise ValidationError(f"since={self.since!r} is not an interval", hint="e.g. '2 hours' or '1 day'")
        self.replay.sync()
        workload = workload_from_store(self.replay.store, where=f"ts >= now() - INTERVAL {self.since}")
        return RoutingLab(fleet), workload

    def run(self) -> RoutingLabView:
        """Replay the workload through the chosen strategies; return self (the reason is shown if it cannot)."""
        if self.replay is not None and (self.lab is None or self.workload is None):
            try:
                self.lab, self.workload = self._from_replay()
            except ValidationError as exc:
                self.note.object = f"<span style='color:#cf222e'>{esc(exc)}</span>"
                return self
        if self.lab is None or self.workload is None:
            raise ValidationError(
                "this view has no RoutingLab and workload to run", hint="RoutingLabView(lab=..., workload=...)"
            )
        self.button.disabled = True
        try:
            self.results = {
                s: self.lab.run(self.workload, s, seed=int(self.seed.value), outages=self.outages)
                for s in self.choice.value
            }
        finally:
            self.button.disabled = False
        self._render()
        return self

    @property
    def summary(self) -> pd.DataFrame:
        """The comparison table (one row per strategy)."""
        return summary_table(self.results)

    def _render(self) -> None:
        table = self.summary
        self.table.value = table.round(6) if not table.empty else table
        if table.empty:
            hint = " — press Run to replay the recorded traffic" if self.replay is not None else ""
            self.note.object = f"<span style='opacity:.6'>no results yet{hint}</span>"
            return
        n = int(table["requests"].iloc[0])
        self.note.object = f"<span style='opacity:.75'>{len(table)} strategies · {n:,} requests each</span>"
        self.pareto.object = pareto_front(table)
        self.cdf.object = latency_cdf(self.results)
        self.share.object = provider_share(self.results)
        self.spend.object = cost_over_time(self.results, by="strategy")

    def __panel__(self) -> Any:
        return self._layout

    def ipywidget(self) -> Any:
        """This view as an ipywidget."""
        return pn.ipywidget(self)

    def __repr__(self) -> str:
        return f"RoutingLabView({list(self.results)})"
