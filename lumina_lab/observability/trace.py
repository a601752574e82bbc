"""One trace as a notebook object: its spans, its roll-ups, and a compact waterfall."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Trace"]

_COLORS = {
    "run": "#6b7280",
    "span": "#6b7280",
    "route": "#2563eb",
    "attempt": "#16a34a",
    "memory": "#9333ea",
    "policy": "#d97706",
}
_ERROR = "#dc2626"
_CANCELLED = "#9ca3af"


class Trace:
    """The spans of one trace (from :meth:`SpanStore.trace` / ``lab.trace(trace_id)``).

    Attributes:
        trace_id: 32 hex digits.
        spans: DataFrame, oldest first, with per-span roll-ups (``total_cost_usd``, ``total_input_tokens``,
            ``total_output_tokens``, ``descendants``) and ``depth``.
    """

    def __init__(self, trace_id: str, spans: pd.DataFrame) -> None:
        self.trace_id = trace_id
        self.spans = spans.reset_index(drop=True)

    # ------------------------------------------------------------------ summary
    @property
    def root(self) -> dict[str, Any]:
        """The root span (no parent in this trace) as a dict."""
        frame = self.spans
        roots = frame[frame["depth"] == 0]
        return (roots if not roots.empty else frame).iloc[0].to_dict()

    @property
    def cost_usd(self) -> float:
        return float(self.spans["cost_usd"].fillna(0).sum())

    @property
    def input_tokens(self) -> int:
        return int(self.spans["input_tokens"].fillna(0).sum())

    @property
    def output_tokens(self) -> int:
        return int(self.spans["output_tokens"].fillna(0).sum())

    @property
    def in_progress(self) -> bool:
        return bool(self.spans["in_progress"].any())

    @property
    def start(self) -> datetime:
        return _dt(self.spans["start_ts"].min())

    @property
    def duration_ms(self) -> float | None:
        if self.in_progress:
            return None
        return (_dt(self.spans["end_ts"].max()) - self.start).total_seconds() * 1000

    def children(self, span_id: str) -> pd.DataFrame:
        return self.spans[self.spans["parent_id"] == span_id]

    def tree(self) -> str:
        """An indented text outline: name, kind, status, duration, cost."""
        lines = []
        for row in self._ordered():
            dur = "open" if row["in_progress"] else f"{row['duration_ms']:.1f} ms"
            extra = f" ${row['total_cost_usd']:.6f}" if row["total_cost_usd"] else ""
            tag = f" [{row['attempt_kind']}]" if _present(row.get("attempt_kind")) else ""
            outcome = _outcome(row)
            tag += f" ({outcome})" if outcome else ""
            lines.append(f"{'  ' * int(row['depth'])}{row['name']}{tag} ({row['kind']}, {row['status']}, {dur}){extra}")
        return "\n".join(lines)

    def _ordered(self) -> list[dict[str, Any]]:
        """Rows depth-first (parents before children, siblings by start)."""
        rows = self.spans.to_dict("records")
        ids = {r["span_id"] for r in rows}
        kids: dict[str | None, list[dict[str, Any]]] = {}
        for r in rows:
            parent = r["parent_id"] if r["parent_id"] in ids else None
            kids.setdefault(parent, []).append(r)
        out: list[dict[str, Any]] = []

        def walk(parent: str | None) -> None:
            for r in sorted(kids.get(parent, []), key=lambda r: (_dt(r["start_ts"]), r["span_id"])):
                out.append(r)
                walk(r["span_id"])

        walk(None)
        return out

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        state = "in progress" if self.in_progress else f"{self.duration_ms:.1f} ms"
        return f"Trace({self.trace_id}, spans={len(self.spans)}, {state}, cost=${self.cost_usd:.6f})"

    def _repr_html_(self) -> str:
        rows = self._ordered()
        t0 = self.start
        ends = [_dt(r["end_ts"]) for r in rows if not r["in_progress"]]
        t1 = max(ends + [_dt(r["start_ts"]) for r in rows]) if rows else t0
        total = max((t1 - t0).total_seconds(), 1e-9)
        out = [
            "<div style='font-family:ui-monospace,monospace;font-size:12px'>",
            f"<div><b>trace</b> {self.trace_id} · {len(rows)} spans · "
            f"{'in progress' if self.in_progress else f'{total * 1000:.1f} ms'} · "
            f"${self.cost_usd:.6f} · {self.input_tokens}+{self.output_tokens} tokens</div>",
            "<table style='border-collapse:collapse;width:100%'>",
        ]
        for r in rows:
            start = (_dt(r["start_ts"]) - t0).total_seconds()
            width_s = total - start if r["in_progress"] else (_dt(r["end_ts"]) - _dt(r["start_ts"])).total_seconds()
            left = 100 * start / total
            width = max(100 * width_s / total, 0.4)
            outcome = _outcome(r)
            color = _ERROR if r["status"] == "error" else _CANCELLED if outcome else _COLORS.get(r["kind"], "#6b7280")
            style = f"position:absolute;left:{left:.2f}%;width:{min(width, 100 - left):.2f}%;height:10px;top:3px;background:{color}"
            if r["in_progress"]:
                style += ";opacity:.5;background-image:repeating-linear-gradient(45deg,transparent 0 4px,#fff8 4px 8px)"
            marks = "".join(
                f"<div title='{html.escape(e['name'])}' style='position:absolute;left:{100 * ((_dt(e['ts']) - t0).total_seconds()) / total:.2f}%;"
                f"top:0;width:2px;height:16px;background:#111'></div>"
                for e in _events(r)
            )
            label = html.escape(str(r["name"]))
            if _present(r.get("attempt_kind")):
                label += f" <i>[{html.escape(str(r['attempt_kind']))}]</i>"
            if outcome:
                label += f" <i>({html.escape(outcome)})</i>"
            dur = "…" if r["in_progress"] else f"{width_s * 1000:.1f} ms"
            cost = f"${r['total_cost_usd']:.6f}" if r["total_cost_usd"] else ""
            tip = html.escape(_tooltip(r), quote=True)
            out.append(
                f"<tr title='{tip}'><td style='white-space:nowrap;padding:1px 6px 1px {4 + 14 * int(r['depth'])}px'>{label}</td>"
                f"<td style='width:55%;padding:1px 0'><div style='position:relative;height:16px;background:#f3f4f6'>"
                f"<div style='{style}'></div>{marks}</div></td>"
                f"<td style='text-align:right;padding:1px 6px;white-space:nowrap'>{dur}</td>"
                f"<td style='text-align:right;padding:1px 6px;white-space:nowrap'>{cost}</td></tr>"
            )
        out.append("</table></div>")
        return "".join(out)


def _dt(value: Any) -> datetime:
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _events(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Span events: stored ones, plus the first token (at start + ``ttft_s``)."""
    raw = row.get("events")
    out = json.loads(raw) if raw and isinstance(raw, str) else []
    ttft = row.get("ttft_s")
    if _present(ttft):
        ts = _dt(row["start_ts"]) + timedelta(seconds=float(ttft))
        out.insert(0, {"name": "first_token", "ts": ts.isoformat(), "attributes": {"ttft_s": ttft}})
    return out


def _outcome(row: dict[str, Any]) -> str | None:
    raw = row.get("attributes")
    if not raw or not isinstance(raw, str):
        return None
    return json.loads(raw).get("lumina.outcome")


def _tooltip(row: dict[str, Any]) -> str:
    keys = (
        "kind",
        "status",
        "provider",
        "model",
        "attempt",
        "breaker_state",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "ttft_s",
        "error_type",
        "error",
        "span_id",
        "parent_id",
    )
    parts = []
    for k in keys:
        v = row.get(k)
        if not _present(v):
            continue
        parts.append(f"{k}={v}")
    return "\n".join(parts)
