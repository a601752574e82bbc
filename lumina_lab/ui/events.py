"""The event and trace browser: the live event stream, one event in full, and one request's story."""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections import Counter, deque
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from .base import LiveView, bus_of, card, esc, lab_of

__all__ = ["EventBrowser"]

COLUMNS = ("time", "type", "source", "request", "summary", "id")
_SAFE_ID = re.compile(r"^[0-9A-Za-z._:-]{1,128}$")


def _request_key(ev: Any) -> str:
    return str(getattr(ev, "request_id", None) or ev.trace_id or "")


def _summary(payload: dict[str, Any], limit: int = 140) -> str:
    parts = []
    for k, v in payload.items():
        if k == "request_id" or v in (None, "", [], {}):
            continue
        if isinstance(v, float):
            v = f"{v:.4g}"
        parts.append(f"{k}={v}")
    text = " ".join(map(str, parts))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _row(ev: Any) -> dict[str, Any]:
    return {
        "time": ev.ts.strftime("%H:%M:%S.%f")[:-3],
        "type": ev.type,
        "source": ev.source,
        "request": _request_key(ev),
        "summary": _summary(ev.payload()),
        "id": ev.id,
    }


class EventBrowser(LiveView):
    """Recent events (a bounded buffer fed by a ``*`` subscription), filterable by type; click one to see it
    whole and the timeline of its request (``request_id``, else ``trace_id``): attempts per provider,
    retries, fallbacks, breaker changes.

    Args:
        lab: a :class:`~lumina_lab.lab.Lab`; its store completes a request's timeline with stored events.
        bus: the bus to subscribe to (default: ``lab.bus``).
        pattern: glob of event types to keep.
        max_events: events kept (oldest dropped).
    """

    pattern = param.String(default="*")
    max_events = param.Integer(default=1_000, bounds=(10, 100_000))

    def __init__(self, lab: Any = None, *, bus: Any = None, **params: Any) -> None:
        super().__init__(**params)
        self.lab = lab_of(lab)
        self._events: deque[Any] = deque(maxlen=self.max_events)
        self._by_id: dict[str, Any] = {}
        self._rows: dict[str, dict[str, Any]] = {}  # rendered rows, by event id (built once, on the UI side)
        self._lock = threading.Lock()
        self._received = 0
        self._shown = -1
        self.counts: Counter[str] = Counter()
        self._listen(bus_of(lab, bus), self.pattern, self._take, batch=512, maxsize=20_000)
        self.filter = pn.widgets.TextInput(label="Type filter (glob)", value="*", width=220)
        self.pause = pn.widgets.Toggle(label="Pause", value=False, width=90, align="end")
        self.info = pn.pane.HTML("", margin=(15, 10), sizing_mode="stretch_width")  # wraps instead of overflowing
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(COLUMNS)),
            show_index=False,
            disabled=True,
            selectable=1,
            sizing_mode="stretch_width",
            height=320,
            layout="fit_data_stretch",
            hidden_columns=["id"],
            pagination=None,
        )
        self.detail = pn.pane.JSON(
            {"select": "an event in the table"}, depth=2, sizing_mode="stretch_width", min_height=120
        )
        self.timeline = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=220, backend="bokeh")
        self.trace_title = pn.pane.HTML("<span style='opacity:.6'>select an event to see its request</span>")
        self.filter.param.watch(lambda _e: self._force(), "value")
        self.pause.param.watch(lambda e: None if e.new else self._force(), "value")
        self.table.param.watch(self._selected, "selection")
        self._layout = card(
            "Events and traces",
            pn.Row(self.filter, self.pause, self.info),
            self.table,
            pn.Row(
                pn.Column("#### Event", self.detail, width=380),
                pn.Column("#### Request timeline", self.trace_title, self.timeline, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
        )

    # ------------------------------------------------------------------ bus thread
    def _take(self, events: list[Any]) -> None:
        with self._lock:
            for ev in events:
                if len(self._events) == self._events.maxlen:
                    old = self._events[0]
                    self._by_id.pop(old.id, None)
                    self._rows.pop(old.id, None)
                self._events.append(ev)
                self._by_id[ev.id] = ev
                self.counts[ev.type] += 1
            self._received += len(events)

    # ------------------------------------------------------------------ document thread
    def _force(self) -> None:
        self._shown = -1
        self.refresh()

    def events(self) -> list[Any]:
        """The buffered events matching the filter, newest first."""
        glob = self.filter.value.strip() or "*"
        with self._lock:
            evs = list(self._events)
        return [ev for ev in reversed(evs) if fnmatch.fnmatchcase(ev.type, glob)]

    def frame(self) -> pd.DataFrame:
        """The table shown (newest first)."""
        rows = []
        for ev in self.events():
            row = self._rows.get(ev.id)
            if row is None:
                row = self._rows[ev.id] = _row(ev)
            rows.append(row)
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def refresh(self) -> None:
        if self.pause.value or self._received == self._shown:
            return
        self._shown = self._received
        self.table.value = self.frame()
        top = ", ".join(f"{esc(t)} {n:,}" for t, n in self.counts.most_common(4))
        self.info.object = f"<span style='opacity:.75'>{self._received:,} events received · {top}</span>"

    def _selected(self, event: Any) -> None:
        if not event.new:
            return
        self.pause.value = True  # keep the table still while the user reads (un-pause to follow again)
        row = self.table.value.iloc[event.new[0]]
        with self._lock:
            ev = self._by_id.get(row["id"])
        if ev is None:
            return
        self.show(ev)

    def show(self, ev: Any) -> None:
        """Show ``ev`` in full and the timeline of its request."""
        self.detail.object = json.loads(json.dumps(ev.to_envelope(), default=str))
        key = _request_key(ev)
        if not key:
            self.trace_title.object = "<span style='opacity:.6'>this event belongs to no request</span>"
            self.timeline.object = hv.Div("")
            return
        evs = self.request_events(key)
        self.trace_title.object = f"request <code>{esc(key)}</code> — {len(evs)} events"
        self.timeline.object = self.timeline_plot(evs)

    def request_events(self, key: str) -> list[Any]:
        """Events of one request (``request_id`` or ``trace_id``): buffered, plus stored ones when a lab is given."""
        with self._lock:
            found = {ev.id: ev for ev in self._events if _request_key(ev) == key}
        if self.lab is not None and _SAFE_ID.match(key):
            try:
                store = self.lab.store
                for stored in store.events(f"payload->>'$.request_id' = '{key}' OR trace_id = '{key}'"):
                    found.setdefault(stored.id, stored)
            except Exception:  # a store without SQL, or still flushing: the buffer is enough
                pass
        return sorted(found.values(), key=lambda e: (e.ts, e.id))

    @staticmethod
    def timeline_plot(evs: list[Any]) -> Any:
        """A waterfall of a request: one bar per call attempt (by provider), points for the other events."""
        if not evs:
            return hv.Div("")
        t0 = evs[0].ts
        ms = lambda ev: (ev.ts - t0).total_seconds() * 1000  # noqa: E731
        bars, points = [], []
        open_calls: dict[tuple[str, int], float] = {}
        for ev in evs:
            p = ev.payload()
            if ev.type == "provider.call.started":
                open_calls[(p["provider"], p["attempt"])] = ms(ev)
            elif ev.type in ("provider.call.finished", "provider.call.failed"):
                end = ms(ev)
                start = open_calls.pop((p["provider"], p["attempt"]), end - p.get("latency_s", 0) * 1000)
                ok = ev.type.endswith("finished")
                bars.append(
                    {
                        "lane": f"{p['provider']} #{p['attempt']}",
                        "start": start,
                        "end": end,
                        "outcome": "answered" if ok else "failed",
                        "what": p.get("error_type", "ok"),
                    }
                )
            else:
                lane = (
                    p.get("provider") or p.get("failed") or p.get("primary") or p.get("chosen") or ev.type.split(".")[0]
                )
                points.append({"lane": str(lane), "t": ms(ev), "type": ev.type})
        lanes = list(dict.fromkeys([b["lane"] for b in bars] + [q["lane"] for q in points]))
        plot = hv.Overlay([])
        if bars:
            frame = pd.DataFrame(bars)
            plot *= hv.Segments(frame, ["start", "lane", "end", "lane"], ["outcome", "what"]).opts(
                color="outcome", cmap={"answered": "#1a7f37", "failed": "#cf222e"}, line_width=12, tools=["hover"]
            )
        if points:
            plot *= hv.Scatter(pd.DataFrame(points), "t", ["lane", "type"]).opts(
                size=9, marker="diamond", color="#6e40c9", tools=["hover"]
            )
        return plot.opts(
            responsive=True, height=200, xlabel="ms since the request was routed", ylabel="", show_legend=False
        ).redim.values(lane=lanes)

    def __repr__(self) -> str:
        return f"EventBrowser({len(self._events)} buffered of {self._received} received, pattern={self.pattern!r})"
