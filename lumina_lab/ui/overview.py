"""The live overview: requests/s, latency percentiles, TTFT, error rate, cost burn against budgets, breakers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from .base import LiveView, bus_of, card, esc, lab_of
from .metrics import SERIES_COLUMNS, LiveMetrics

__all__ = ["Overview"]

_BREAKER_COLORS = {"closed": "#1a7f37", "half_open": "#bf8700", "half-open": "#bf8700", "open": "#cf222e"}
_COLORS = ("#30a2da", "#fc4f30", "#e5ae38")  # HoloViews' default cycle, as the other components' plots
#: (title, unit, [(column, label, color, dash)]) of the two time-series plots
_PLOTS = (
    (
        "Throughput",
        "per second",
        [
            ("requests", "requests", _COLORS[0], "solid"),
            ("answered", "answered", "#6d904f", "solid"),
            ("failed", "failed", "#cf222e", "solid"),
        ],
    ),
    (
        "Latency",
        "ms",
        [
            ("p50_ms", "p50", _COLORS[0], "solid"),
            ("p95_ms", "p95", _COLORS[1], "solid"),
            ("ttft_ms", "TTFT p50", _COLORS[2], "dashed"),
        ],
    ),
)


def _number(name: str, fmt: str, colors: list[tuple[float, str]] | None = None) -> Any:
    return pn.indicators.Number(
        label=name,
        value=float("nan"),
        format=fmt,
        nan_format="\u2013",
        colors=colors,
        font_size="26pt",
        title_size="10pt",
        margin=(5, 18),
        css_classes=["lumina-number"],
    )


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 100 else f"${value:,.4f}" if value >= 0.01 else f"${value:.6f}"


def _series_figure(source: ColumnDataSource, title: str, unit: str, lines: list[tuple[str, str, str, str]]) -> Any:
    """A streaming Bokeh time series: new points are appended to ``source`` (``stream``), never redrawn."""
    fig = figure(
        title=title,
        x_axis_type="datetime",
        height=220,
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        toolbar_location="right",
    )
    for column, label, color, dash in lines:
        fig.line("time", column, source=source, legend_label=label, color=color, line_dash=dash, line_width=2)
    fig.yaxis.axis_label = unit
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    fig.add_tools(
        HoverTool(
            tooltips=[("time", "@time{%H:%M:%S}"), *[(label, f"@{{{col}}}{{0,0.0}}") for col, label, _, _ in lines]],
            formatters={"@time": "datetime"},
            mode="vline",
        )
    )
    return fig


class Overview(LiveView):
    """Live figures of the provider runtime, from ``provider.*`` and ``budget.*`` events.

    Args:
        lab: a :class:`~lumina_lab.lab.Lab` (its bus, budgets and providers' initial breaker states), or None.
        bus: the bus to subscribe to (default: ``lab.bus``); ``lumina serve`` passes a bus fed by the event log.
        metrics: a shared :class:`LiveMetrics` (the dashboard shares one between components); else one is made.
        window_s: rates and percentiles over this many seconds.
        history_s: seconds of history in the time-series plots (a bounded buffer).

    >>> ov = Overview(lab)          # doctest: +SKIP
    >>> ov                          # renders inline; ov.ipywidget() for any ipywidgets front end  # doctest: +SKIP
    """

    window_s = param.Number(default=60.0, bounds=(1, None))
    history_s = param.Integer(default=300, bounds=(10, None))
    live_clock = param.Boolean(
        default=True,
        doc="Rates over the window ending now (wall clock); False: ending at the newest event (replays, tests).",
    )

    def __init__(
        self,
        lab: Any = None,
        *,
        bus: Any = None,
        metrics: LiveMetrics | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        lab = lab_of(lab)
        if metrics is None:
            metrics = LiveMetrics.of(lab, window_s=self.window_s, history_s=self.history_s)
            self._subs.extend(metrics.subscribe(bus_of(lab, bus)))
        self.metrics = metrics
        self._seen_version = -1
        self._last_t: int | None = None
        self.numbers = {
            "requests_per_s": _number("Requests/s", "{value:,.1f}"),
            "p50_ms": _number("Latency p50 (ms)", "{value:,.0f}"),
            "p95_ms": _number("Latency p95 (ms)", "{value:,.0f}"),
            "ttft_p50_ms": _number("TTFT p50 (ms)", "{value:,.0f}"),
            "error_rate": _number(
                "Error rate", "{value:.1%}", [(0.02, "#1a7f37"), (0.1, "#bf8700"), (1.01, "#cf222e")]
            ),
            "cost_per_min_usd": _number("Cost burn ($/min)", "${value:,.4f}"),
            "cost_usd": _number("Spent ($)", "${value:,.4f}"),
            "calls": _number("Calls", "{value:,.0f}"),
        }
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self.breakers = pn.pane.HTML("", sizing_mode="stretch_width", min_height=30)
        self.budgets = pn.pane.HTML("", sizing_mode="stretch_width", min_height=30)
        # the time series: one point per second appended to a bounded source (Bokeh streams only the new rows,
        # so a point costs ~1 ms, not a redraw; see benchmarks/dashboard_latency.py)
        self.source = ColumnDataSource({c: np.zeros(0) for c in (*SERIES_COLUMNS, "time")})
        self.plots = pn.Row(
            *[
                pn.pane.Bokeh(_series_figure(self.source, *spec), sizing_mode="stretch_width", height=240)
                for spec in _PLOTS
            ],
            sizing_mode="stretch_width",
        )
        self._layout = card(
            "Live overview",
            self.status,
            pn.FlexBox(*self.numbers.values(), sizing_mode="stretch_width"),
            self.plots,
            pn.Row(
                pn.Column("#### Circuit breakers", self.breakers, sizing_mode="stretch_width"),
                pn.Column("#### Cost burn vs budget", self.budgets, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
        )

    # ------------------------------------------------------------------ render
    def snapshot(self) -> dict[str, Any]:
        """The figures shown (see :meth:`LiveMetrics.snapshot`)."""
        return self.metrics.snapshot()

    def _change_sources(self) -> list[Any]:
        return [self.metrics]

    def refresh(self) -> None:
        if self.live_clock:
            self.metrics.tick()  # idle seconds still move the plots along
        version = self.metrics.version
        if version == self._seen_version and not self.live_clock:
            return
        self._seen_version = version
        snap = self.metrics.snapshot(now=self.metrics.clock() if self.live_clock else None)
        for key, widget in self.numbers.items():
            widget.value = float(snap[key])
        last = snap["last_ts"]
        when = datetime.fromtimestamp(last, UTC).strftime("%H:%M:%S UTC") if last else "no events yet"
        self.status.object = (
            f"<span style='opacity:.75'>{snap['events']:,} events · {snap['requests']:,} requests · "
            f"{snap['failed']:,} failed calls · last event {esc(when)} · window {self.metrics.window_s:.0f}s</span>"
        )
        self.breakers.object = self._breakers_html(snap["breakers"])
        self.budgets.object = self._budgets_html(snap["budgets"])
        rows = self.metrics.series(since=self._last_t)
        if rows:
            rows = rows[-self.history_s :]
            new = {c: np.array([r[c] for r in rows], dtype=float) for c in SERIES_COLUMNS}
            new["time"] = new["t"] * 1000.0  # Bokeh datetimes: ms since the epoch
            self._last_t = int(rows[-1]["t"])
            self.source.stream(new, rollover=self.history_s)

    @staticmethod
    def _breakers_html(breakers: dict[str, str]) -> str:
        if not breakers:
            return "<span style='opacity:.6'>no providers seen yet</span>"
        pills = []
        for pid, state in breakers.items():
            color = _BREAKER_COLORS.get(state, "#6e7781")
            pills.append(
                f"<span class='lumina-breaker' data-provider='{esc(pid)}' data-state='{esc(state)}' "
                f"style='display:inline-block;margin:2px 4px;padding:2px 10px;border-radius:12px;"
                f"border:1px solid {color};color:{color};font-size:12px'>"
                f"<b>{esc(pid)}</b> · {esc(state.replace('_', '-'))}</span>"
            )
        return "".join(pills)

    @staticmethod
    def _budgets_html(budgets: list[dict[str, Any]]) -> str:
        if not budgets:
            return "<span style='opacity:.6'>no spend against a budget yet</span>"
        out = []
        for b in budgets[:8]:
            ratio = b["ratio"]
            pct = min(100.0, ratio * 100) if ratio == ratio else 0.0
            color = (
                "#cf222e" if ratio >= 1 or b["refused"] else ("#bf8700" if b["warned"] or ratio >= 0.8 else "#1a7f37")
            )
            who = b["bucket"].split("|")[1:] if "|" in b["bucket"] else [b["bucket"]]
            label = f"{b['budget']} ({' · '.join(who)})"
            refused = f" · {b['refused']} refused" if b["refused"] else ""
            out.append(
                f"<div class='lumina-budget' style='margin:4px 0;font-size:12px'>"
                f"<div>{esc(label)} — {_usd(b['spent_usd'])} of {_usd(b['limit_usd'])} ({ratio:.0%}){esc(refused)}</div>"
                f"<div style='height:8px;border-radius:4px;background:rgba(127,127,127,.25)'>"
                f"<div style='height:8px;border-radius:4px;width:{pct:.1f}%;background:{color}'></div></div></div>"
            )
        return "".join(out)

    def __repr__(self) -> str:
        return f"Overview({self.metrics!r})"
