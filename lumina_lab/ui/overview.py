"""The live overview: requests/s, latency percentiles, TTFT, error rate, cost burn against budgets, breakers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from .base import LiveView, bus_of, card, esc, lab_of
from .metrics import SERIES_COLUMNS, LiveMetrics

__all__ = ["Overview"]

_BREAKER_COLORS = {"closed": "#1a7f37", "half_open": "#bf8700", "half-open": "#bf8700", "open": "#cf222e"}


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


def _empty_series() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in SERIES_COLUMNS})
    frame["time"] = pd.Series(dtype="datetime64[ns]")
    return frame


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
            budgets = lab.budgets.budgets if lab is not None else ()
            breakers = {s.id: s.breaker.state for s in lab.providers} if lab is not None else None
            metrics = LiveMetrics(window_s=self.window_s, history_s=self.history_s, budgets=budgets, breakers=breakers)
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
        self.buffer = hv.streams.Buffer(_empty_series(), length=self.history_s, index=False)
        throughput = hv.DynamicMap(self._throughput, streams=[self.buffer])
        latency = hv.DynamicMap(self._latency, streams=[self.buffer])
        self.plots = pn.Row(
            pn.pane.HoloViews(throughput, sizing_mode="stretch_width", height=240, backend="bokeh"),
            pn.pane.HoloViews(latency, sizing_mode="stretch_width", height=240, backend="bokeh"),
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

    # ------------------------------------------------------------------ plots
    @staticmethod
    def _throughput(data: pd.DataFrame) -> Any:
        opts = {"responsive": True, "height": 220, "tools": ["hover"], "xlabel": "", "show_grid": True}
        return (
            hv.Curve(data, "time", ("requests", "per second"), label="requests").opts(**opts)
            * hv.Curve(data, "time", ("answered", "per second"), label="answered").opts(**opts)
            * hv.Curve(data, "time", ("failed", "per second"), label="failed").opts(color="#cf222e", **opts)
        ).opts(title="Throughput", legend_position="top_left")

    @staticmethod
    def _latency(data: pd.DataFrame) -> Any:
        opts = {"responsive": True, "height": 220, "tools": ["hover"], "xlabel": "", "show_grid": True}
        return (
            hv.Curve(data, "time", ("p50_ms", "ms"), label="p50").opts(**opts)
            * hv.Curve(data, "time", ("p95_ms", "ms"), label="p95").opts(**opts)
            * hv.Curve(data, "time", ("ttft_ms", "ms"), label="TTFT p50").opts(line_dash="dashed", **opts)
        ).opts(title="Latency", legend_position="top_left")

    # ------------------------------------------------------------------ render
    def snapshot(self) -> dict[str, Any]:
        """The figures shown (see :meth:`LiveMetrics.snapshot`)."""
        return self.metrics.snapshot()

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
            frame = pd.DataFrame(rows, columns=list(SERIES_COLUMNS))
            frame["time"] = pd.to_datetime(frame["t"], unit="s")
            self._last_t = int(frame["t"].iloc[-1])
            self.buffer.send(frame)

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
