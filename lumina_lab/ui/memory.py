"""The memory explorer: search a collection, read hits with scores and provenance, see the neighbourhood of a
hit, the collection's topics and a 2-D map of its embeddings; memory activity arrives by subscription.

When the collection is a conversation memory (:class:`~lumina_lab.memory.ConversationMemory`: passed in, or
found by its persisted graph ``LUMINA_HOME/memory/graphs/<name>.json``), the neighbourhood is its semantic
graph (the entities, dates, topics, similar and next items linked to the hit) and the topics are its own
incremental topic model. Any other collection gets an approximation: the nearest neighbours by vector search,
and topics fitted on the items drawn.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

from ..errors import LuminaError, ValidationError
from .base import LiveView, bus_of, card, esc, lab_of

__all__ = ["MemoryExplorer", "project_2d"]

log = logging.getLogger(__name__)

_MODES = ["vector", "keyword", "hybrid"]
_NODE_COLORS = {"selected": "#cf222e", "item": "#0969da", "entity": "#1a7f37", "date": "#bf8700", "topic": "#8250df"}


def _is_conversation(obj: Any) -> bool:
    return obj is not None and hasattr(obj, "graph") and hasattr(obj, "topics") and hasattr(obj, "recall")


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to two dimensions (deterministic: signs fixed so the largest loading is positive)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) == 0:
        return np.zeros((0, 2))
    x = x - x.mean(axis=0)
    if len(x) == 1:
        return np.zeros((1, 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    out = x @ (comps * signs[:, None]).T
    if out.shape[1] == 1:
        out = np.hstack([out, np.zeros((len(out), 1))])
    return out


def _filter(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError(
            f"the filter is not JSON: {exc}", input=text, hint='e.g. {"team": "search"} or {"year": {"$gte": 2024}}'
        ) from None


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


class MemoryExplorer(LiveView):
    """Search box, results with scores and provenance, neighbourhood graph, topics and a 2-D embedding map.

    Args:
        lab: a :class:`~lumina_lab.lab.Lab` (its ``lab.memory``) — or pass ``memory=`` directly.
        memory: a :class:`~lumina_lab.memory.VectorMemory`, or a :class:`~lumina_lab.memory.ConversationMemory`
            (its vector memory, shown on its collection).
        conversations: conversation memories whose collections get their graph and topics (also found by their
            persisted graph files under the lab's home).
        bus: where ``memory.*`` events are read from (default: ``lab.bus`` or ``memory.bus``).
        collection: the collection shown first.
        map_limit: items drawn on the map (the first ones stored).
    """

    map_limit = param.Integer(default=2_000, bounds=(10, 50_000))

    def __init__(
        self,
        lab: Any = None,
        *,
        memory: Any = None,
        conversations: Any = (),
        bus: Any = None,
        collection: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        lab = lab_of(lab)
        self.conversations: dict[str, Any] = {c.name: c for c in conversations}
        if _is_conversation(memory):
            self.conversations[memory.name] = memory
            collection = memory.name if collection is None else collection
            memory = memory.memory
        self._home = lab.settings.home if lab is not None else None
        self._opened: dict[str, Any] = {}  # collection -> ConversationMemory opened from its graph file (or None)
        self.memory = memory if memory is not None else (lab.memory if lab is not None else None)
        if self.memory is None:
            raise LuminaError(
                "the memory explorer needs a Lab or a VectorMemory", hint="MemoryExplorer(lab) or memory="
            )
        source_bus = bus if bus is not None else (lab.bus if lab is not None else self.memory.bus)
        self._activity: deque[dict[str, Any]] = deque(maxlen=50)
        self._lock = threading.Lock()
        self._received = 0
        self._shown = -1
        self._stale_map = True
        self.searches = 0
        self.writes = 0
        if source_bus is not None:
            self._listen(bus_of(None, source_bus), "memory.*", self._take, batch=256)
        names = self.memory.collections()
        first = collection if collection is not None else (names[0] if names else "default")
        self.collection = pn.widgets.Select(label="Collection", options=sorted({*names, first}), value=first, width=180)
        self.query = pn.widgets.TextInput(label="Search", placeholder="what are you looking for?", width=300)
        self.mode = pn.widgets.RadioButtonGroup(label="Mode", options=_MODES, value="hybrid", align="end")
        self.k = pn.widgets.IntInput(label="k", value=10, start=1, end=100, width=70)
        self.where = pn.widgets.TextInput(label="Filter (JSON)", placeholder='{"team": "search"}', width=200)
        self.button = pn.widgets.Button(label="Search", color="primary", width=90, align="end")
        self.status = pn.pane.HTML("", margin=(5, 10))
        self.results = pn.widgets.Tabulator(
            pd.DataFrame(columns=["rank", "score", "text", "id"]),
            show_index=False,
            disabled=True,
            selectable=1,
            sizing_mode="stretch_width",
            height=300,
            layout="fit_data_stretch",
            formatters={"score": NumberFormatter(format="0.0000"), "text": {"type": "textarea"}},
            widths={"text": 520},
        )
        self.map = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=380, backend="bokeh")
        self.neighbours = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=300, backend="bokeh")
        self.topics = pn.widgets.Tabulator(
            pd.DataFrame(columns=["topic", "label", "size"]),
            show_index=False,
            disabled=True,
            height=220,
            sizing_mode="stretch_width",
        )
        self.activity = pn.pane.HTML("", sizing_mode="stretch_width")
        self.button.on_click(lambda _e: self._search())
        self._quiet = False
        self.query.param.watch(lambda _e: None if self._quiet else self._search(), "value")
        self.collection.param.watch(lambda _e: self._collection_changed(), "value")
        self.results.param.watch(self._selected, "selection")
        self.last: Any = None
        self._points: pd.DataFrame | None = None
        self._layout = card(
            "Memory explorer",
            pn.FlexBox(self.collection, self.query, self.mode, self.k, self.where, self.button),
            self.status,
            self.results,
            pn.Row(
                pn.Column("#### Embedding map", self.map, sizing_mode="stretch_width"),
                pn.Column("#### Neighbourhood of the selected hit", self.neighbours, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column("#### Topics", self.topics, sizing_mode="stretch_width"),
                pn.Column("#### Activity", self.activity, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
        )

    # ------------------------------------------------------------------ bus thread
    def _take(self, events: list[Any]) -> None:
        with self._lock:
            for ev in events:
                self._received += 1
                if ev.type == "memory.searched":
                    self.searches += 1
                    what = f"{ev.mode} search, {ev.hits} hits in {ev.ms:.1f} ms" + (" (cached)" if ev.cache_hit else "")
                else:
                    self.writes += 1
                    what = f"{ev.op} of {ev.count} item(s) in {ev.ms:.1f} ms"
                    if ev.collection == self.collection.value:
                        self._stale_map = True
                self._activity.appendleft(
                    {"time": ev.ts.strftime("%H:%M:%S"), "collection": ev.collection, "what": what}
                )

    # ------------------------------------------------------------------ document thread
    def refresh(self) -> None:
        if self._stale_map:
            self._stale_map = False
            names = self.memory.collections()
            self.collection.options = sorted({*names, self.collection.value})
            self._draw_map()
        if self._received == self._shown:
            return
        self._shown = self._received
        with self._lock:
            rows = list(self._activity)[:12]
        body = "".join(
            f"<tr><td>{esc(r['time'])}</td><td>{esc(r['collection'])}</td><td>{esc(r['what'])}</td></tr>" for r in rows
        )
        self.activity.object = (
            f"<div style='font-size:12px'>{self.searches:,} searches · {self.writes:,} writes seen"
            f"<table style='margin-top:4px'>{body}</table></div>"
        )

    def _collection_changed(self) -> None:
        self._stale_map = True
        self.refresh()
        if self.query.value:
            self.search()

    def search(self, query: str | None = None) -> Any:
        """Run the search in the box (or put ``query`` there first); show and return the :class:`SearchResults`
        (None, with the reason shown, when the search is refused)."""
        if query is not None and query != self.query.value:
            self._quiet = True  # the box's watcher would search too
            try:
                self.query.value = query
            finally:
                self._quiet = False
        return self._search()

    def _search(self) -> Any:
        text = self.query.value.strip()
        if not text:
            return None
        try:
            where = _filter(self.where.value)
            res = self.memory.collection(self.collection.value).search(
                text, k=int(self.k.value), mode=self.mode.value, where=where
            )
        except (LuminaError, ValueError) as exc:
            self.status.object = f"<span style='color:#cf222e'>{esc(exc)}</span>"
            return None
        self.last = res
        frame = res.df()
        if "text" in frame:
            cols = [
                "rank",
                "score",
                "text",
                *[c for c in frame.columns if c not in ("rank", "score", "text", "id")],
                "id",
            ]
            frame = frame[cols]
        self.results.value = frame
        cached = " (cached)" if res.cache_hit else ""
        denied = f", {res.denied} withheld by policy" if res.denied else ""
        self.status.object = (
            f"<span style='opacity:.8'>{len(res)} hits for “{esc(_short(text, 60))}” — {esc(res.mode)} search of "
            f"<b>{esc(res.collection)}</b> in {res.ms:.1f} ms{cached}{esc(denied)}</span>"
        )
        self._draw_map()
        return res

    def _selected(self, event: Any) -> None:
        if event.new and self.last is not None and event.new[0] < len(self.last):
            self.neighbours.object = self.neighbourhood(self.last[event.new[0]].id)

    # ------------------------------------------------------------------ pictures
    def _items(self) -> tuple[list[Any], np.ndarray]:
        """Up to ``map_limit`` items of the collection and their vectors."""
        name = self.collection.value
        store = self.memory.store
        records: list[Any] = []
        scan = getattr(store, "scan", None)
        if scan is None or name not in self.memory.collections():
            return [], np.zeros((0, 2))
        for batch in scan(name):
            records.extend(batch)
            if len(records) >= self.map_limit:
                records = records[: self.map_limit]
                break
        if not records:
            return [], np.zeros((0, 2))
        try:
            full = store.get(name, [r.id for r in records], with_vectors=True)
            by_id = {r.id: r.vector for r in full}
            vectors = np.stack([by_id[r.id] for r in records])
        except Exception:  # a backend that cannot return vectors: embed the texts again
            vectors = np.asarray(self.memory.embedder.embed([r.text for r in records]))
        return records, vectors

    def conversation(self, name: str | None = None) -> Any:
        """The :class:`ConversationMemory` of collection ``name`` (default: the one shown), or None.

        Given ones first; else one whose semantic graph was persisted under the lab's home is opened (once).
        """
        name = self.collection.value if name is None else name
        if name in self.conversations:
            return self.conversations[name]
        if name not in self._opened:
            self._opened[name] = None
            if self._home is not None and (Path(self._home) / "memory" / "graphs" / f"{name}.json").is_file():
                try:
                    from ..memory.conversation import ConversationMemory

                    self._opened[name] = ConversationMemory(self.memory, name=name)
                except Exception as exc:  # an unreadable graph: the explorer still works without it
                    log.warning("could not open conversation memory %r: %s", name, exc)
        return self._opened[name]

    def topic_table(self, records: list[Any], vectors: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
        """Topics of the items and each item's label: the conversation memory's own topic model when the
        collection is one, else a ``TopicModel`` fitted on these items."""
        conv = self.conversation()
        if conv is not None and conv.topic_model is not None:
            topics = conv.topics()
            labels = {t.id: t.label for t in topics}
            table = pd.DataFrame(
                [{"topic": t.id, "label": t.label, "size": t.size} for t in topics], columns=["topic", "label", "size"]
            )
            of = conv.topic_model.topic_of
            return table.sort_values("size", ascending=False), [labels.get(of(r.id), "") for r in records]
        try:
            from ..memory.topics import TopicModel

            tm = TopicModel(dim=vectors.shape[1])
            ids = tm.update([r.id for r in records], vectors, [r.text for r in records])
            labels = tm.labels()
            table = pd.DataFrame([{"topic": t.id, "label": t.label, "size": t.size} for t in tm.topics()])
            return table.sort_values("size", ascending=False), [labels.get(i, "") for i in ids]
        except Exception:  # no topic model (yet), or it refused these vectors: the map stays one colour
            return pd.DataFrame(columns=["topic", "label", "size"]), ["" for _ in records]

    def _draw_map(self) -> None:
        records, vectors = self._items()
        if not records:
            self.map.object = hv.Div("<i style='opacity:.6'>this collection is empty</i>")
            self.topics.value = pd.DataFrame(columns=["topic", "label", "size"])
            return
        xy = project_2d(vectors)
        topics, labels = self.topic_table(records, vectors)
        self.topics.value = topics
        hits = (
            {h.id: r for r, h in enumerate(self.last, 1)}
            if self.last is not None and self.last.collection == self.collection.value
            else {}
        )
        frame = pd.DataFrame(
            {
                "x": xy[:, 0],
                "y": xy[:, 1],
                "id": [r.id for r in records],
                "text": [_short(r.text) for r in records],
                "topic": labels,
                "hit": [hits.get(r.id, 0) for r in records],
            }
        )
        self._points = frame
        base = hv.Points(frame, ["x", "y"], ["id", "text", "topic", "hit"]).opts(
            color="topic" if any(labels) else "#8c959f",
            cmap="Category20",
            size=6,
            alpha=0.55,
            tools=["hover"],
            show_legend=False,
            responsive=True,
        )
        marked = frame[frame["hit"] > 0]
        overlay = base * hv.Points(marked, ["x", "y"], ["id", "text", "hit"]).opts(
            color="#cf222e", size=11, marker="circle", line_color="white", tools=["hover"], responsive=True
        )
        self.map.object = overlay.opts(
            responsive=True, height=360, xaxis=None, yaxis=None, title=f"{len(frame):,} items (PCA of the embeddings)"
        )

    def neighbourhood(self, item_id: str, k: int = 8) -> Any:
        """A small graph around the item: in a conversation memory, its semantic-graph neighbours (entities,
        dates, topics, similar and next items; the ``2k`` heaviest edges); elsewhere its ``k`` nearest
        neighbours by vector search (edge width = cosine)."""
        conv = self.conversation()
        if conv is not None and f"item:{item_id}" in conv.graph.nodes:
            return self._graph_neighbourhood(conv.graph, item_id, 2 * k)
        coll = self.memory.collection(self.collection.value)
        rec = coll.get([item_id])
        if not rec:
            return hv.Div("")
        res = coll.search(rec[0].text, k=k + 1, mode="vector", cache=True)
        hits = [h for h in res if h.id != item_id][:k]
        nodes = [(item_id, rec[0].text, 1.0), *[(h.id, h.text, h.score) for h in hits]]
        n = len(nodes)
        angle = np.linspace(0, 2 * np.pi, max(n - 1, 1), endpoint=False)
        xs = np.concatenate([[0.0], np.cos(angle)[: n - 1]])
        ys = np.concatenate([[0.0], np.sin(angle)[: n - 1]])
        node_frame = pd.DataFrame(
            {
                "x": xs,
                "y": ys,
                "index": [i for i, _, _ in nodes],
                "text": [_short(t, 70) for _, t, _ in nodes],
                "score": [s for _, _, s in nodes],
                "role": ["selected"] + ["neighbour"] * (n - 1),
            }
        )
        edges = pd.DataFrame(
            [{"source": item_id, "target": h.id, "cosine": round(h.score, 4)} for h in hits],
            columns=["source", "target", "cosine"],
        )
        graph = hv.Graph((edges, hv.Nodes(node_frame, ["x", "y", "index"], ["text", "score", "role"])), vdims="cosine")
        return graph.opts(
            node_color="role",
            cmap={"selected": "#cf222e", "neighbour": "#0969da"},
            node_size=14,
            edge_line_width=hv.dim("cosine") * 6,
            edge_alpha=0.6,
            tools=["hover"],
            responsive=True,
            height=280,
            xaxis=None,
            yaxis=None,
        )

    def _graph_neighbourhood(self, graph: Any, item_id: str, limit: int) -> Any:
        centre = graph.node(f"item:{item_id}")
        edges = graph.neighbours(centre.id)[:limit]
        n = len(edges)
        angle = np.linspace(0, 2 * np.pi, max(n, 1), endpoint=False)
        node_frame = pd.DataFrame(
            {
                "x": np.concatenate([[0.0], np.cos(angle)[:n]]),
                "y": np.concatenate([[0.0], np.sin(angle)[:n]]),
                "index": [centre.id, *[e.node.id for e in edges]],
                "text": [_short(centre.label, 70), *[_short(e.node.label, 70) for e in edges]],
                "kind": ["selected", *[e.node.kind for e in edges]],
            }
        )
        top = max((e.weight for e in edges), default=1.0) or 1.0
        edge_frame = pd.DataFrame(
            [
                {
                    "source": centre.id,
                    "target": e.node.id,
                    "edge": e.kind,
                    "weight": round(e.weight, 4),
                    "width": 1.0 + 5.0 * e.weight / top,
                }
                for e in edges
            ],
            columns=["source", "target", "edge", "weight", "width"],
        )
        nodes = hv.Nodes(node_frame, ["x", "y", "index"], ["text", "kind"])
        graph_el = hv.Graph((edge_frame, nodes), vdims=["edge", "weight", "width"])
        labels = hv.Labels(node_frame.assign(y=node_frame["y"] - 0.12), ["x", "y"], "text").opts(
            text_font_size="8pt", text_alpha=0.8
        )
        return (
            graph_el.opts(
                node_color="kind",
                cmap=_NODE_COLORS,
                node_size=14,
                edge_line_width=hv.dim("width"),
                edge_alpha=0.6,
                tools=["hover"],
                responsive=True,
                height=280,
                xaxis=None,
                yaxis=None,
                title=f"semantic graph: {n} of {len(graph.neighbours(centre.id))} links",
            )
            * labels
        )

    def __repr__(self) -> str:
        return f"MemoryExplorer({self.collection.value!r}, {self.searches} searches, {self.writes} writes seen)"
