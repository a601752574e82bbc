"""The semantic graph of a memory: items, entities and topics, linked by mention, similarity and time.

Nodes have an id of the form ``kind:key`` and a ``kind``:

* ``item:<id>`` — one memory item (a turn, a chunk, a fact), with its text, ``ts``, session and level;
* ``entity:<key>`` — a name or place found in items (key: :func:`~lumina_lab.memory.entities.entity_key`,
  so ``"Sweden"`` and ``"sweden's"`` are one node), with its display ``label`` and entity ``type``;
* ``date:<label>`` — a date mentioned in items (``date:2023-05-07``, ``date:2023-05``);
* ``topic:<id>`` — a topic of the memory's topic model, with its label.

Edges are undirected, typed and weighted:

* ``mention`` — item ↔ entity or date it mentions (weight: times mentioned);
* ``similar`` — item ↔ item whose vectors have cosine ≥ the memory's threshold (weight: cosine);
* ``next`` — item ↔ the item after it in the same session (time order);
* ``topic`` — item ↔ its topic.

Queries: :meth:`SemanticGraph.neighbours` (optionally by edge kind or node kind),
:meth:`~SemanticGraph.path` (shortest path, breadth first), :meth:`~SemanticGraph.about`
(every item mentioning an entity, optionally between two times, oldest first),
:meth:`~SemanticGraph.entities` (by mention count).  Nodes may be named loosely:
``"Sweden"`` finds ``entity:sweden``, an item id finds ``item:<id>``.

The graph persists as one JSON file (:meth:`~SemanticGraph.save` writes it atomically,
:meth:`~SemanticGraph.load` reads it back); a
:class:`~lumina_lab.memory.conversation.ConversationMemory` on a persistent store keeps
it beside the store under ``LUMINA_HOME/memory/graphs/``.

>>> g = SemanticGraph()
>>> _ = g.add_item("t1", "Caroline: I moved from Sweden 4 years ago.", ts=0.0, session="1")
>>> _ = g.add_item("t2", "Melanie: Sweden must be lovely in summer!", ts=60.0, session="1")
>>> g.link("t1", "t2", "next")
>>> [n.id for n in g.neighbours("Sweden")]
['item:t1', 'item:t2']
>>> g.path("t1", "t2")
['item:t1', 'item:t2']
>>> [n.id for n in g.about("sweden", since=30.0)]
['item:t2']
"""

from __future__ import annotations

import html
import json
import os
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, ValidationError
from .entities import entity_key, extract_entities, to_datetime

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EDGE_KINDS", "NODE_KINDS", "Edge", "Node", "SemanticGraph"]

NODE_KINDS: tuple[str, ...] = ("item", "entity", "date", "topic")
EDGE_KINDS: tuple[str, ...] = ("mention", "similar", "next", "topic")
_FORMAT = "lumina_lab.semantic_graph"
_FORMAT_VERSION = 1


@dataclass(slots=True)
class Node:
    """A node: ``id`` (``kind:key``), ``kind``, display ``label`` and attributes (``ts``, ``session``...)."""

    id: str
    kind: str
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.id.split(":", 1)[1]

    @property
    def ts(self) -> float | None:
        return self.attrs.get("ts")

    def __repr__(self) -> str:
        label = self.label if len(self.label) <= 40 else self.label[:37] + "..."
        return f"Node({self.id!r}, {label!r})"


@dataclass(frozen=True, slots=True)
class Edge:
    """One edge seen from a node: the node at the other end, the edge kind and weight."""

    node: Node
    kind: str
    weight: float

    @property
    def id(self) -> str:
        return self.node.id

    def __repr__(self) -> str:
        return f"Edge({self.kind} -> {self.node.id!r}, weight={self.weight:g})"


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return to_datetime(value).timestamp()


class SemanticGraph:
    """Items, entities, dates and topics as a typed, weighted, undirected graph (see the module docs).

    Args:
        path: JSON file to :meth:`save` to by default, kept as :attr:`file` (``None``: in memory until
            saved somewhere).

    Thread-safe: one lock guards every change and query.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.file = Path(path) if path is not None else None
        self.nodes: dict[str, Node] = {}
        self._adj: dict[str, dict[tuple[str, str], float]] = {}  # node -> {(other, kind): weight}
        self._lock = threading.RLock()

    # ---- introspection
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and self._find(node) is not None

    def __repr__(self) -> str:
        counts = Counter(n.kind for n in self.nodes.values())
        kinds = ", ".join(f"{counts[k]} {k}" for k in NODE_KINDS if counts[k])
        return f"SemanticGraph({kinds or 'empty'}; {self.edge_count()} edges)"

    def edge_count(self, kind: str | None = None) -> int:
        with self._lock:
            n = sum(1 for adj in self._adj.values() for (_, k) in adj if kind is None or k == kind)
        return n // 2

    # ---- writes
    def add_node(self, kind: str, key: str, label: str | None = None, **attrs: Any) -> Node:
        """Add (or update the attributes of) the node ``kind:key``."""
        if kind not in NODE_KINDS:
            raise ValidationError(f"node kind {kind!r} is unknown", input=kind, hint=f"use one of {NODE_KINDS}")
        if not isinstance(key, str) or not key:
            raise ValidationError(f"node key {key!r} must be a non-empty string", input=key)
        node_id = f"{kind}:{key}"
        with self._lock:
            node = self.nodes.get(node_id)
            if node is None:
                node = self.nodes[node_id] = Node(node_id, kind, label if label is not None else key, {})
                self._adj[node_id] = {}
            elif label is not None and kind != "entity":
                node.label = label
            node.attrs.update({k: v for k, v in attrs.items() if v is not None})
            return node

    def add_item(
        self,
        item_id: str,
        text: str,
        *,
        ts: Any = None,
        session: str | None = None,
        level: str | None = None,
        entities: Iterable[Any] | None = None,
    ) -> Node:
        """Add an item and link it to the names, places and dates it mentions.

        ``entities`` are :class:`~lumina_lab.memory.entities.Entity` objects already found
        (default: extracted here from ``text``, dates resolved against ``ts``).
        """
        if not isinstance(text, str):
            raise ValidationError(f"text of item {item_id!r} must be a str", input=text)
        when = _ts(ts)
        with self._lock:
            node = self.add_node("item", item_id, text, ts=when, session=session, level=level)
            found = list(entities) if entities is not None else extract_entities(text, when)
            for e in found:
                if e.kind in ("name", "place"):
                    key = entity_key(e.text)
                    if not key:
                        continue
                    ent = self.add_node("entity", key, str(e.value or e.text))
                    types = ent.attrs.setdefault("types", {})
                    types[e.kind] = types.get(e.kind, 0) + 1
                    self._bump(node.id, ent.id, "mention")
                elif e.kind == "date":
                    d = self.add_node("date", e.value.label, e.value.label, start=e.value.start_ts, end=e.value.end_ts)
                    self._bump(node.id, d.id, "mention")
            return node

    def link(self, a: str, b: str, kind: str, weight: float = 1.0) -> None:
        """Add (or re-weight) the edge ``a — b`` of ``kind``; nodes may be named loosely (see :meth:`node`)."""
        if kind not in EDGE_KINDS:
            raise ValidationError(f"edge kind {kind!r} is unknown", input=kind, hint=f"use one of {EDGE_KINDS}")
        with self._lock:
            na, nb = self.node(a), self.node(b)
            if na.id == nb.id:
                return
            self._adj[na.id][(nb.id, kind)] = float(weight)
            self._adj[nb.id][(na.id, kind)] = float(weight)

    def _bump(self, a: str, b: str, kind: str) -> None:
        w = self._adj[a].get((b, kind), 0.0) + 1.0
        self._adj[a][(b, kind)] = w
        self._adj[b][(a, kind)] = w

    def remove(self, node: str) -> bool:
        """Remove a node and its edges; entities and dates no item mentions any more go too."""
        with self._lock:
            n = self._find(node)
            if n is None:
                return False
            for other, _ in list(self._adj[n.id]):
                self._adj[other] = {k: v for k, v in self._adj[other].items() if k[0] != n.id}
                o = self.nodes[other]
                if o.kind in ("entity", "date") and not self._adj[other]:
                    del self.nodes[other]
                    del self._adj[other]
            del self.nodes[n.id]
            del self._adj[n.id]
            return True

    def clear_kind(self, kind: str) -> None:
        """Remove every node of ``kind`` (used to rebuild topics)."""
        with self._lock:
            for node_id in [i for i, n in self.nodes.items() if n.kind == kind]:
                self.remove(node_id)

    def clear(self) -> None:
        with self._lock:
            self.nodes.clear()
            self._adj.clear()

    # ---- queries
    def _find(self, ref: str) -> Node | None:
        if not isinstance(ref, str):
            return None
        if ref in self.nodes:
            return self.nodes[ref]
        for candidate in (f"item:{ref}", f"entity:{entity_key(ref)}", f"date:{ref}", f"topic:{ref}"):
            if candidate in self.nodes:
                return self.nodes[candidate]
        return None

    def node(self, ref: str) -> Node:
        """The node ``ref`` names: a full id (``entity:sweden``), an item id, an entity name, a date label or a topic id.

        Raises:
            ValidationError: nothing matches (the message lists close entity names).
        """
        with self._lock:
            n = self._find(ref)
            if n is not None:
                return n
            key = entity_key(ref) if isinstance(ref, str) else ""
            close = sorted(x.label for x in self.nodes.values() if x.kind == "entity" and key and key[:3] in x.key)[:5]
        raise ValidationError(
            f"no node {ref!r} in the graph",
            input=ref,
            hint=(
                f"close entities: {', '.join(close)}"
                if close
                else "use an item id, an entity name or a node id like 'entity:sweden'"
            ),
        )

    def neighbours(self, node: str, *, edge: str | None = None, kind: str | None = None) -> list[Edge]:
        """Nodes linked to ``node``, heaviest edge first (then by id); filter by ``edge`` kind and/or node ``kind``."""
        if edge is not None and edge not in EDGE_KINDS:
            raise ValidationError(f"edge kind {edge!r} is unknown", input=edge, hint=f"use one of {EDGE_KINDS}")
        if kind is not None and kind not in NODE_KINDS:
            raise ValidationError(f"node kind {kind!r} is unknown", input=kind, hint=f"use one of {NODE_KINDS}")
        with self._lock:
            n = self.node(node)
            out = [
                Edge(self.nodes[other], k, w)
                for (other, k), w in self._adj[n.id].items()
                if (edge is None or k == edge) and (kind is None or self.nodes[other].kind == kind)
            ]
        out.sort(key=lambda e: (-e.weight, e.node.id))
        return out

    neighbors = neighbours

    def path(self, a: str, b: str, *, max_hops: int = 6, edges: Iterable[str] | None = None) -> list[str] | None:
        """A shortest path of node ids from ``a`` to ``b`` (breadth first), or ``None`` within ``max_hops``."""
        allowed = set(edges) if edges is not None else None
        with self._lock:
            start, goal = self.node(a).id, self.node(b).id
            prev: dict[str, str | None] = {start: None}
            frontier = deque([(start, 0)])
            while frontier:
                cur, hops = frontier.popleft()
                if cur == goal:
                    out = [cur]
                    while prev[out[-1]] is not None:
                        out.append(prev[out[-1]])  # type: ignore[arg-type]
                    return out[::-1]
                if hops >= max_hops:
                    continue
                for other, k in sorted(self._adj[cur]):
                    if other not in prev and (allowed is None or k in allowed):
                        prev[other] = cur
                        frontier.append((other, hops + 1))
        return None

    def about(self, entity: str, *, since: Any = None, until: Any = None) -> list[Node]:
        """Items that mention ``entity`` (a name, place or date), said in ``[since, until]``, oldest first.

        ``since``/``until`` are datetimes, epoch seconds or date strings; items without a time
        are kept only when no bound is given.
        """
        lo, hi = _ts(since), _ts(until)
        with self._lock:
            n = self.node(entity)
            if n.kind == "item":
                raise ValidationError(
                    f"{entity!r} is an item, not an entity", input=entity, hint="name an entity, a date or a topic"
                )
            items = [e.node for e in self.neighbours(n.id, kind="item") if e.kind in ("mention", "topic")]
        keep = []
        for it in items:
            t = it.ts
            if (lo is not None or hi is not None) and t is None:
                continue
            if lo is not None and t < lo:
                continue
            if hi is not None and t > hi:
                continue
            keep.append(it)
        keep.sort(key=lambda x: (x.ts if x.ts is not None else float("-inf"), x.id))
        return keep

    def entities(self, kind: str | None = None) -> list[tuple[Node, int]]:
        """Entities (``kind``: ``"name"`` or ``"place"`` to filter) with the number of items mentioning them, most first."""
        with self._lock:
            out = []
            for n in self.nodes.values():
                if n.kind != "entity":
                    continue
                types = n.attrs.get("types", {})
                if kind is not None and (not types or max(types, key=types.get) != kind):
                    continue
                out.append((n, sum(1 for (o, k) in self._adj[n.id] if k == "mention")))
        out.sort(key=lambda p: (-p[1], p[0].id))
        return out

    def items(self) -> Iterator[Node]:
        with self._lock:
            return iter([n for n in self.nodes.values() if n.kind == "item"])

    def edges(self) -> Iterator[tuple[str, str, str, float]]:
        """Every edge once: ``(a, b, kind, weight)`` with ``a < b``."""
        with self._lock:
            out = [(a, b, k, w) for a, adj in self._adj.items() for (b, k), w in adj.items() if a < b]
        return iter(sorted(out))

    # ---- tables
    def df(self) -> pd.DataFrame:
        """The edges as a DataFrame: source, target, kind, weight."""
        import pandas as pd

        return pd.DataFrame(list(self.edges()), columns=["source", "target", "kind", "weight"])

    def nodes_df(self) -> pd.DataFrame:
        """The nodes as a DataFrame: id, kind, label, degree, ts."""
        import pandas as pd

        with self._lock:
            rows = [
                {"id": n.id, "kind": n.kind, "label": n.label, "degree": len(self._adj[n.id]), "ts": n.attrs.get("ts")}
                for n in self.nodes.values()
            ]
        return pd.DataFrame(rows, columns=["id", "kind", "label", "degree", "ts"])

    def to_networkx(self) -> Any:
        """A ``networkx.MultiGraph`` copy (networkx must be installed)."""
        import networkx as nx

        g = nx.MultiGraph()
        with self._lock:
            for n in self.nodes.values():
                g.add_node(n.id, kind=n.kind, label=n.label, **n.attrs)
            for a, b, k, w in self.edges():
                g.add_edge(a, b, key=k, kind=k, weight=w)
        return g

    def _repr_html_(self) -> str:
        top = ", ".join(f"{html.escape(n.label)} ({c})" for n, c in self.entities()[:10])
        return f"<div><b>{html.escape(repr(self))}</b><br>most mentioned: {top or '—'}</div>"

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": _FORMAT,
                "version": _FORMAT_VERSION,
                "nodes": [[n.id, n.kind, n.label, n.attrs] for n in self.nodes.values()],
                "edges": [[a, b, k, w] for a, b, k, w in self.edges()],
            }

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike[str] | None = None) -> SemanticGraph:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValidationError("not a saved SemanticGraph (missing format marker)", input=type(data).__name__)
        if data.get("version") != _FORMAT_VERSION:
            raise ValidationError(
                f"SemanticGraph format version {data.get('version')!r} is not supported", input=data.get("version")
            )
        g = cls(path)
        try:
            for node_id, kind, label, attrs in data["nodes"]:
                g.nodes[node_id] = Node(node_id, kind, label, dict(attrs))
                g._adj[node_id] = {}
            for a, b, k, w in data["edges"]:
                g._adj[a][(b, k)] = float(w)
                g._adj[b][(a, k)] = float(w)
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError(f"damaged SemanticGraph data: {e}", input=type(data).__name__) from e
        return g

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the graph as JSON, atomically (a reader sees the old file or the new one)."""
        target = Path(path) if path is not None else self.file
        if target is None:
            raise ValidationError(
                "this graph has no path to save to", hint="pass save(path) or SemanticGraph(path=...)"
            )
        data = self.to_dict()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
            os.replace(tmp, target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write the semantic graph to {target}: {e}", input=str(target)) from e
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SemanticGraph:
        """Read a graph written by :meth:`save`.

        Raises:
            StoreError: the file is missing or unreadable.
            ValidationError: it is not a saved graph.
        """
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot read the semantic graph {source}: {e}", input=str(source)) from e
        return cls.from_dict(data, source)
