"""The provider table: capabilities, prices and health, with live call statistics from the bus."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

from .base import LiveView, bus_of, card, lab_of
from .metrics import LiveMetrics

__all__ = ["ProviderTable"]

_STATIC = ("id", "model", "capabilities", "context", "in_usd_per_m", "out_usd_per_m", "healthy")
_LIVE = ("calls", "success_rate", "p50_ms", "p95_ms", "cost_usd", "breaker", "last_error")
COLUMNS = (*_STATIC, *_LIVE)
_BREAKER_STYLE = {
    "closed": "color: #1a7f37",
    "half_open": "color: #bf8700",
    "open": "color: #cf222e; font-weight: bold",
}


def _capabilities(provider: Any) -> str:
    from ..providers.types import CAPABILITIES

    caps = provider.capabilities
    return ", ".join(f"{c} {caps.level(c):.1f}" if caps.level(c) < 1 else c for c in CAPABILITIES if caps.level(c) > 0)


class ProviderTable(LiveView):
    """One row per provider: what it can do and costs (from the registry, read once) and how it is doing
    (calls, success rate, p50/p95 latency, spend, breaker state, last error: from ``provider.*`` events).

    Args:
        lab: a :class:`~lumina_lab.lab.Lab` (its provider registry), or None (then rows appear as events name providers).
        bus: the bus to subscribe to (default: ``lab.bus``).
        metrics: a shared :class:`LiveMetrics`.
    """

    push_ms = param.Integer(
        default=500, bounds=(0, None), doc="Served: re-render on events at most this often (a whole table)."
    )

    def __init__(self, lab: Any = None, *, bus: Any = None, metrics: LiveMetrics | None = None, **params: Any) -> None:
        super().__init__(**params)
        lab = lab_of(lab)
        self._static: dict[str, dict[str, Any]] = {}
        breakers: dict[str, str] = {}
        if lab is not None:
            for state in lab.providers:
                p = state.provider
                self._static[p.id] = {
                    "id": p.id,
                    "model": p.model,
                    "capabilities": _capabilities(p),
                    "context": p.capabilities.context_window,
                    "in_usd_per_m": p.pricing.input_per_m,
                    "out_usd_per_m": p.pricing.output_per_m,
                    "healthy": state.healthy,
                }
                breakers[p.id] = state.breaker.state
        if metrics is None:
            metrics = LiveMetrics(budgets=(), breakers=breakers)
            self._subs.extend(metrics.subscribe(bus_of(lab, bus)))
        self.metrics = metrics
        self._seen_version = -1
        self.table = pn.widgets.Tabulator(
            self.frame(),
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            max_height=420,
            formatters={
                "in_usd_per_m": NumberFormatter(format="$0,0.00"),
                "out_usd_per_m": NumberFormatter(format="$0,0.00"),
                "context": NumberFormatter(format="0,0"),
                "calls": NumberFormatter(format="0,0"),
                "success_rate": NumberFormatter(format="0.0%"),
                "p50_ms": NumberFormatter(format="0,0"),
                "p95_ms": NumberFormatter(format="0,0"),
                "cost_usd": NumberFormatter(format="$0,0.0000"),
                "last_error": {"type": "textarea"},
                "capabilities": {"type": "textarea"},
            },
            widths={"capabilities": 230, "last_error": 240},
            titles={
                "in_usd_per_m": "$ in/M",
                "out_usd_per_m": "$ out/M",
                "success_rate": "success",
                "p50_ms": "p50 ms",
                "p95_ms": "p95 ms",
                "cost_usd": "spent $",
                "last_error": "last error",
            },
        )
        self.table.style.map(lambda v: _BREAKER_STYLE.get(v, ""), subset=["breaker"])
        self._layout = card("Providers", self.table)

    def frame(self) -> pd.DataFrame:
        """The table shown: registry columns joined with live statistics."""
        live = {r["id"]: r for r in self.metrics.provider_rows()}
        rows = []
        for pid in [*self._static, *(p for p in live if p not in self._static)]:
            row = dict.fromkeys(COLUMNS)
            row.update(self._static.get(pid, {"id": pid}))
            stats = live.get(pid)
            if stats is not None:
                row.update({k: stats[k] for k in _LIVE})
            else:
                row.update({"calls": 0, "breaker": "closed", "last_error": ""})
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame["last_error"] = frame["last_error"].fillna("")
        return frame

    def _change_sources(self) -> list[Any]:
        return [self.metrics]

    def refresh(self) -> None:
        version = self.metrics.version
        if version == self._seen_version:
            return
        self._seen_version = version
        self.table.value = self.frame()

    def __repr__(self) -> str:
        return f"ProviderTable({len(self.table.value)} providers)"
