"""Conversation memory for agents and notebooks: remember turns and documents, recall them, build context.

:class:`ConversationMemory` keeps every item in a :class:`~lumina_lab.memory.collection.VectorMemory`
collection (so it works on every backend: ``memory``, ``duckdb``, ``milvus``, ``weaviate``,
sharded), and beside it the structure recall needs:

* **levels** — *working*: the most recent ``working_size`` turns; *episodic*: every item, with
  speaker, session, time and turn id; *semantic*: topics (a
  :class:`~lumina_lab.memory.topics.TopicModel` over the item vectors) and consolidated facts and
  summaries (:meth:`ConversationMemory.consolidate`).
* a **semantic graph** (:attr:`ConversationMemory.graph`): items, the names, places and dates
  they mention, and topics, linked by mention, similarity, time order and topic membership.
* a :class:`~lumina_lab.memory.retrieval.Retriever` running the recall pipeline (hybrid
  keyword + vector, expansion through feedback terms, graph entities and topics, dates in the
  question, neighbouring turns, sessions, speaker, answer-type rerank; see
  :class:`~lumina_lab.memory.retrieval.RecallConfig`).

>>> from lumina_lab.memory import VectorMemory
>>> mem = ConversationMemory(backend="memory")
>>> _ = mem.remember_many([
...     {"speaker": "Ann", "text": "I adopted a beagle called Rex last Saturday!"},
...     {"speaker": "Bob", "text": "Congrats! How old is he?"},
...     {"speaker": "Ann", "text": "Two years old, and he loves the beach."},
... ], session="s1", ts="2023-05-08")
>>> best = mem.recall("How old is Ann's dog?", k=2)
>>> best[0].text
'Ann: Two years old, and he loves the beach.'
>>> best[0].level, best[0].provenance["session"]
('working', 's1')
>>> print(mem.context("Rex", budget_tokens=30))
## Session s1 (2023-05-08)
Ann: I adopted a beagle called Rex last Saturday!
Bob: Congrats! How old is he?
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError
from .chunking import estimate_tokens
from .conversation_events import MemoryRecalled, MemoryRemembered, emit
from .entities import extract_entities, to_datetime
from .filters import parse_filter
from .graph import SemanticGraph
from .retrieval import RecallConfig, Retriever, Scored
from .sentence_vectors import SentenceVectors, sentence_collection

if TYPE_CHECKING:
    import pandas as pd

    from ..events.bus import InProcessBus
    from .base import Where
    from .collection import Collection, VectorMemory
    from .embeddings import Embedder

__all__ = ["ITEM_KINDS", "LEVELS", "ConversationMemory", "Recall", "Recalled"]

LEVELS: tuple[str, ...] = ("working", "episodic", "semantic")
"""Memory levels: recent turns, every item, distilled topics/facts."""
ITEM_KINDS: tuple[str, ...] = ("turn", "document", "fact", "summary")
_CAPTION_KEYS = ("blip_caption", "caption", "image_caption")
_TEXT_KEYS = ("text", "content", "message")
_TURN_ID_KEYS = ("turn_id", "dia_id", "id")
_RESERVED = {"speaker", "session", "ts", "turn_id", "level", "kind", "seq", "source", "chunk"}
_SPEAKER_PREFIX = re.compile(r"^[^:\n]{1,40}:\s+")  # as retrieval.sentences drops it


# ---------------------------------------------------------------------- results
@dataclass(slots=True)
class Recalled:
    """One recalled item.

    Attributes:
        id: the item id.
        text: its text.
        score: the final recall score (higher is better; comparable within one recall only).
        level: ``"working"``, ``"episodic"`` or ``"semantic"``.
        provenance: ``session``, ``speaker``, ``ts`` (epoch seconds), ``turn_id``, ``kind`` and
            ``via`` (the recall steps that surfaced or raised it), plus ``parts`` (each step's share).
        metadata: the item's stored metadata.
        trimmed: whether ``text`` is the item's text cut to its sentences most relevant to the
            query (the ``trim`` step of a recall within a token budget); its id, metadata and
            provenance are those of the whole item.
    """

    id: str
    text: str
    score: float
    level: str
    provenance: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    trimmed: bool = False

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 50 else self.text[:47] + "..."
        cut = ", trimmed" if self.trimmed else ""
        return f"Recalled({self.id!r}, score={self.score:.3f}, {self.level}{cut}, {text!r})"


@dataclass
class Recall(Sequence[Recalled]):
    """The items one :meth:`ConversationMemory.recall` returned, best first; a table in notebooks."""

    items: list[Recalled]
    query: str
    k: int
    ms: float
    steps: list[str]
    budget_tokens: int | None = None
    _query_vector: Any = field(default=None, repr=False, compare=False)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.items]

    @property
    def tokens(self) -> int:
        """Estimated tokens of all the items' texts."""
        return sum(r.tokens for r in self.items)

    def df(self) -> pd.DataFrame:
        """rank, id, score, level, session, speaker, time, turn_id, via, text."""
        import pandas as pd

        rows = []
        for rank, r in enumerate(self.items, 1):
            p = r.provenance
            ts = p.get("ts")
            rows.append(
                {
                    "rank": rank,
                    "id": r.id,
                    "score": r.score,
                    "level": r.level,
                    "session": p.get("session"),
                    "speaker": p.get("speaker"),
                    "time": datetime.fromtimestamp(ts, UTC) if isinstance(ts, int | float) else None,
                    "turn_id": p.get("turn_id"),
                    "via": ",".join(p.get("via", [])),
                    "text": r.text,
                }
            )
        cols = ["rank", "id", "score", "level", "session", "speaker", "time", "turn_id", "via", "text"]
        return pd.DataFrame(rows, columns=cols)

    def __repr__(self) -> str:
        head = f"Recall({len(self.items)} items for {self.query[:60]!r}, {self.tokens} tokens, {self.ms:.1f} ms)"
        return "\n".join([head, *(f"  {n}. {r!r}" for n, r in enumerate(self.items, 1))])

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{n}</td><td><code>{html.escape(r.id)}</code></td><td>{r.score:.3f}</td><td>{r.level}</td>"
            f"<td>{html.escape(str(r.provenance.get('session') or ''))}</td>"
            f"<td>{html.escape(_day(r.provenance.get('ts')))}</td>"
            f"<td>{html.escape(', '.join(r.provenance.get('via', [])))}</td><td>{html.escape(r.text[:200])}</td></tr>"
            for n, r in enumerate(self.items, 1)
        )
        budget = f", budget {self.budget_tokens}" if self.budget_tokens is not None else ""
        return (
            f"<div><p>recall “{html.escape(self.query[:80])}” — {len(self.items)} items, {self.tokens} tokens{budget}, "
            f"{self.ms:.1f} ms; steps: {html.escape(', '.join(self.steps))}</p><table><thead><tr><th>#</th><th>id</th>"
            f"<th>score</th><th>level</th><th>session</th><th>date</th><th>via</th><th>text</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


def _day(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


# ---------------------------------------------------------------------- input checks
def _check_text(text: Any, what: str = "text") -> str:
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a str, not {type(text).__name__}", input=text)
    if not text.strip():
        raise ValidationError(f"{what} is empty", input=text, hint="remember something with at least one word")
    return text


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValidationError(
            f"{name}={value!r} must be a positive integer",
            input=value,
            hint=f"e.g. {name}=10" if name != "budget_tokens" else "e.g. budget_tokens=800",
        )
    return int(value)


def _check_level(level: Any) -> str | None:
    if level is not None and level not in LEVELS:
        raise ValidationError(
            f"level={level!r} is not a memory level", input=level, hint=f"use one of {LEVELS} or None"
        )
    return level


def _ts_or_none(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        return to_datetime(value).timestamp()
    except ValidationError as e:
        raise ValidationError(f"{what}={value!r} is not a time", input=value, hint=e.hint) from None


# ---------------------------------------------------------------------- the memory
class ConversationMemory:
    """Remember turns and documents; recall them with scores, levels and provenance; build prompt context.

    Args:
        memory: the :class:`~lumina_lab.memory.collection.VectorMemory` to keep items in (default: a new one
            on ``backend`` with ``embedder``, ``bus`` and ``options``).
        name: the collection name (one conversation memory per collection).
        backend: store backend when ``memory`` is not given (``"duckdb"`` default, ``"memory"``...).
        embedder: embedder when ``memory`` is not given (default ``HashingEmbedder``).
        bus: where ``memory.remembered`` / ``memory.recalled`` (and consolidation, compression) events go.
        config: the default :class:`~lumina_lab.memory.retrieval.RecallConfig`.
        working_size: turns in the working level (the most recent ones).
        topics: keep a topic model (``True``), pass one, or ``False`` for none.
        contextual: embed each turn together with the turn before it (the stored vector is the mean
            of the turn's own vector and that of ``previous + turn``): a reply like "Two years old!"
            then carries what it answers.  Costs a second embedding per turn.
        sentence_vectors: also embed each item's sentences (speaker prefix dropped), so that recall's
            ``sentences`` step can match a question against the best sentence of a long turn, not
            only against the turn's mean-pooled vector.  Costs one embedding per sentence.
        similar_threshold: least cosine for a ``similar`` graph edge between items (each new item is
            linked to at most ``similar_k`` earlier ones).
        graph_path: where the semantic graph and topics persist (JSON); default beside a persistent
            store under ``LUMINA_HOME/memory/graphs/<name>.json``; ``False``: never persisted.
    """

    def __init__(
        self,
        memory: VectorMemory | None = None,
        *,
        name: str = "conversation",
        backend: str = "duckdb",
        embedder: Embedder | None = None,
        bus: InProcessBus | None = None,
        config: RecallConfig | None = None,
        working_size: int = 12,
        topics: Any = True,
        contextual: bool = True,
        sentence_vectors: bool = True,
        similar_threshold: float = 0.6,
        similar_k: int = 3,
        graph_path: str | os.PathLike[str] | bool | None = None,
        **options: Any,
    ) -> None:
        from .collection import VectorMemory

        if memory is None:
            memory = VectorMemory(backend=backend, embedder=embedder, bus=bus, **options)
            if embedder is not None:  # an embedder with a len() may be falsy (an empty DiskCachedEmbedder)
                memory.embedder = embedder
        elif embedder is not None or options:
            raise ValidationError(
                "pass either memory= or backend/embedder/options, not both",
                hint="the VectorMemory already has its store and embedder",
            )
        if config is not None and not isinstance(config, RecallConfig):
            raise ValidationError(f"config must be a RecallConfig, not {type(config).__name__}", input=config)
        self.memory = memory
        self.name = name
        self.bus = bus if bus is not None else memory.bus
        self.config = config or RecallConfig()
        self.working_size = int(_check_positive("working_size", working_size))  # type: ignore[arg-type]
        self.contextual = bool(contextual)
        self.sentence_vectors = bool(sentence_vectors)
        if not -1.0 <= float(similar_threshold) <= 1.0:
            raise ValidationError(
                f"similar_threshold={similar_threshold!r} must be in [-1, 1]", input=similar_threshold
            )
        self.similar_threshold = float(similar_threshold)
        self.similar_k = int(_check_positive("similar_k", similar_k))  # type: ignore[arg-type]
        self.collection: Collection = memory.collection(name)
        self._lock = threading.RLock()
        self._topics = self._make_topics(topics)
        self.graph = SemanticGraph()
        self.retriever = Retriever(
            self._dense,
            self._embed_query,
            vectors=self._vectors,
            graph=self.graph,
            topic_of=self._topics.topic_of if self._topics is not None else None,
        )
        self._last_text: dict[str, str] = {}  # session -> text of its latest turn (contextual embedding)
        self._graph_file = self._graph_location(graph_path)
        self._kept_sentences = self._sentence_keeper()
        if self.collection.count():
            self._reopen()

    # ---- setup
    def _make_topics(self, topics: Any) -> Any:
        if topics is False or topics is None:
            return None
        if topics is True:
            from .topics import TopicModel

            identity = str(getattr(self.memory.embedder, "identity", type(self.memory.embedder).__name__))
            threshold = 0.18 if "hash" in identity.lower() else 0.3
            return TopicModel(self.memory.embedder.dim, threshold=threshold)
        if not callable(getattr(topics, "update", None)) or not callable(getattr(topics, "topic_of", None)):
            raise ValidationError("topics must be True, False or a TopicModel", input=type(topics).__name__)
        return topics

    def _sentence_keeper(self) -> SentenceVectors | None:
        """Where sentence vectors are kept across sessions: a sibling collection of a persistent store
        (none for the in-memory store, for a store that cannot list its items, as a reopen needs, or
        when the memory's name leaves no room for the suffix)."""
        store = self.memory.store
        if not self.sentence_vectors or store.name == "memory" or sentence_collection(self.name) is None:
            return None
        if getattr(store, "scan", None) is None:
            return None
        embedder = self.memory.embedder
        identity = str(getattr(embedder, "identity", type(embedder).__name__))
        return SentenceVectors(self.memory.store, self.name, embedder.dim, identity)

    def _graph_location(self, graph_path: Any) -> Path | None:
        if graph_path is False:
            return None
        if graph_path not in (None, True):
            return Path(graph_path)
        if self.memory.store.name in ("memory",) and graph_path is None:
            return None
        from ..config import load_settings

        return load_settings().home / "memory" / "graphs" / f"{self.name}.json"

    def _reopen(self) -> None:
        """Rebuild the in-process indexes from what the store holds (another session wrote them)."""
        from .collection import _scan

        records = [r for batch in _scan(self.collection.store, self.name) for r in batch]
        records.sort(key=lambda r: (r.metadata.get("seq", 0), r.id))
        self.retriever.add([r.id for r in records], [r.text for r in records], [r.metadata for r in records])
        self._embed_sentences([r.id for r in records], [r.text for r in records], stored=True)
        for r in records:
            s = r.metadata.get("session")
            if s is not None:
                self._last_text[str(s)] = r.text
        loaded = False
        if self._graph_file is not None and self._graph_file.exists():
            try:
                import json

                raw = self._graph_file.read_text(encoding="utf-8")
                sealer = _store_sealer(self.memory.store)
                if sealer is not None:  # sealed when written (a plain file from before encryption opens as is)
                    raw = sealer.open(raw, context=f"graph/{self.name}")
                data = json.loads(raw)
                graph = SemanticGraph.from_dict(data["graph"])
                if sum(1 for _ in graph.items()) == len(records):
                    self._replace_graph(graph)
                    if self._topics is not None and data.get("topics"):
                        from .topics import TopicModel

                        self._topics = TopicModel.from_dict(data["topics"])
                        self.retriever.topic_of = self._topics.topic_of
                    loaded = True
            except Exception:  # a stale or damaged file is rebuilt below
                loaded = False
        if not loaded:
            ids = [r.id for r in records]
            vecs = self._vectors(ids) if ids else np.zeros((0, self.memory.embedder.dim))
            for r in records:
                self._graph_item(r.id, r.text, r.metadata)
            self._link_similar(ids, vecs)
            self._link_next(ids)
            if self._topics is not None and ids:
                self._topics.update(ids, vecs, [r.text for r in records])
                self._sync_topic_nodes()

    def _replace_graph(self, graph: SemanticGraph) -> None:
        self.graph = graph
        self.retriever.graph = graph

    # ---- store access for the retriever
    def _embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.memory.embedder.embed_one(text), dtype=np.float32)

    def _dense(self, vector: np.ndarray, k: int, allowed: set[str] | None) -> list[tuple[str, float]]:
        store = self.collection.store
        if allowed is None:
            hits = store.search(self.name, vector, min(k, max(1, len(self.retriever))))
            return [(h.id, float(h.score)) for h in hits]
        ids = sorted(allowed)
        mat = self._vectors(ids)
        if not len(ids):
            return []
        q = vector / (np.linalg.norm(vector) or 1.0)
        sims = mat @ q
        order = np.argsort(-sims, kind="stable")[:k]
        return [(ids[j], float(sims[j])) for j in order]

    def _vectors(self, ids: list[str]) -> np.ndarray:
        recs = {r.id: r for r in self.collection.store.get(self.name, ids, with_vectors=True)}
        dim = self.memory.embedder.dim
        out = np.zeros((len(ids), dim), dtype=np.float32)
        for j, i in enumerate(ids):
            r = recs.get(i)
            if r is not None and r.vector is not None:
                out[j] = r.vector
        return out

    # ---- writes
    def remember(
        self,
        item: str | Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        *,
        speaker: str | None = None,
        session: str | int | None = None,
        ts: Any = None,
        turn_id: str | None = None,
        kind: str | None = None,
        level: str = "episodic",
        chunk_size: int = 256,
    ) -> list[str]:
        """Remember one turn, document or fact; returns the ids written (a long document gives several).

        Args:
            item: the text, or a turn mapping with ``text`` (or ``content``), and optionally ``speaker``,
                ``dia_id``/``turn_id``, ``session``, ``ts`` and an image ``blip_caption``/``caption``
                (kept as ``"Speaker: text [caption]"``).
            metadata: extra scalar metadata to store (filterable in :meth:`recall` with ``where=``).
            speaker: who said it (the text is stored as ``"Speaker: text"``).
            session: the conversation session (recall uses sessions to find neighbours and group context).
            ts: when it was said: a datetime, epoch seconds or a date string (default: now).
            turn_id: a stable id (remembering the same ``turn_id`` again replaces the item).
            kind: ``"turn"`` (default with a speaker), ``"document"`` (cut into chunks of ``chunk_size``
                tokens, one session per document), ``"fact"`` or ``"summary"``.
            level: ``"episodic"`` (default) or ``"semantic"`` (a distilled fact).

        Raises:
            ValidationError: empty or non-string text, an unknown level or kind, bad metadata or time.
        """
        return self.remember_many(
            [item],
            [metadata] if metadata is not None else None,
            speaker=speaker,
            session=session,
            ts=ts,
            turn_id=turn_id,
            kind=kind,
            level=level,
            chunk_size=chunk_size,
        )

    def remember_many(
        self,
        items: Sequence[str | Mapping[str, Any]],
        metadata: Sequence[Mapping[str, Any] | None] | Mapping[str, Any] | None = None,
        *,
        speaker: str | None = None,
        session: str | int | None = None,
        ts: Any = None,
        turn_id: str | None = None,
        kind: str | None = None,
        level: str = "episodic",
        chunk_size: int = 256,
    ) -> list[str]:
        """Remember several items in one batch (one embedding call); arguments as :meth:`remember`,
        applying to every item that does not say otherwise.  Turns of one call keep their order."""
        t0 = time.perf_counter()
        if isinstance(items, str | Mapping):
            raise ValidationError(
                "remember_many takes a list of items",
                input=type(items).__name__,
                hint="use remember(item) for one item, or wrap it in a list",
            )
        items = list(items)
        if not items:
            raise ValidationError("nothing to remember: the list of items is empty", input=items)
        if level not in ("episodic", "semantic"):
            raise ValidationError(
                f"level={level!r} cannot be written",
                input=level,
                hint="remember at 'episodic' (default) or 'semantic'; 'working' is the recent episodic turns",
            )
        if kind is not None and kind not in ITEM_KINDS:
            raise ValidationError(f"kind={kind!r} is unknown", input=kind, hint=f"use one of {ITEM_KINDS}")
        metas: list[Mapping[str, Any] | None]
        if metadata is None or isinstance(metadata, Mapping):
            metas = [metadata] * len(items)
        else:
            if isinstance(metadata, str) or not isinstance(metadata, Iterable):
                raise ValidationError(
                    f"metadata is a {type(metadata).__name__}, not a dict",
                    input=metadata,
                    hint="pass a dict such as {'topic': 'travel'} (or one dict per item)",
                )
            metas = list(metadata)
            if len(metas) != len(items):
                raise ValidationError(
                    f"{len(items)} items but {len(metas)} metadata", hint="pass one metadata dict per item"
                )
            for m in metas:
                if m is not None and not isinstance(m, Mapping):
                    raise ValidationError(
                        f"metadata is a {type(m).__name__}, not a dict",
                        input=m,
                        hint="pass a dict such as {'topic': 'travel'} (or one dict per item)",
                    )
        if turn_id is not None and len(items) > 1:
            raise ValidationError("turn_id= names one item; give each turn its own 'turn_id' in its mapping")
        default_ts = _ts_or_none(ts, "ts")
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for n, (item, extra) in enumerate(zip(items, metas, strict=True)):
            rows.extend(
                self._prepare(
                    item,
                    extra,
                    n,
                    speaker=speaker,
                    session=session,
                    ts=default_ts,
                    turn_id=turn_id,
                    kind=kind,
                    level=level,
                    chunk_size=chunk_size,
                )
            )
        with self._lock:
            ids = [r[0] for r in rows]
            if len(set(ids)) != len(ids):
                dup = next(i for i in ids if ids.count(i) > 1)
                raise ValidationError(f"turn id {dup!r} appears twice in one batch", input=dup)
            texts = [r[1] for r in rows]
            metas_out = [r[2] for r in rows]
            vectors = self._embed_items(texts, metas_out)
            self.collection.upsert(ids, vectors, texts, metas_out)
            self.retriever.add(ids, texts, metas_out)
            self._embed_sentences(ids, texts)
            mentions = 0
            for i, t, m in rows:
                node = self._graph_item(i, t, m)
                mentions += len(self.graph.neighbours(node.id, edge="mention"))
            self._link_similar(ids, vectors)
            self._link_next(ids)
            if self._topics is not None:
                self._topics.update(ids, vectors, texts)
                self._sync_topic_nodes()
            self._save()
        emit(
            self.bus,
            MemoryRemembered,
            memory=self.name,
            count=len(ids),
            level=level,
            kinds=dict(Counter(m["kind"] for m in metas_out)),
            entities=mentions,
            ms=(time.perf_counter() - t0) * 1000,
            backend=self.collection.store.name,
        )
        return ids

    def _prepare(
        self,
        item: Any,
        extra: Mapping[str, Any] | None,
        n: int,
        *,
        speaker: str | None,
        session: Any,
        ts: float | None,
        turn_id: str | None,
        kind: str | None,
        level: str,
        chunk_size: int,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, stored text, metadata) rows of one item (several for a chunked document)."""
        caption = None
        if isinstance(item, Mapping):
            text = next((item[k] for k in _TEXT_KEYS if k in item), None)
            if text is None:
                raise ValidationError(f"item {n} has no 'text'", input=dict(item), hint="give each turn a 'text' key")
            speaker = item.get("speaker", speaker)
            session = item.get("session", session)
            turn_id = next((item[k] for k in _TURN_ID_KEYS if k in item), turn_id)
            caption = next((item[k] for k in _CAPTION_KEYS if item.get(k)), None)
            kind = item.get("kind", kind)
            if "ts" in item:
                ts = _ts_or_none(item["ts"], f"ts of item {n}")
        elif isinstance(item, str):
            text = item
        else:
            raise ValidationError(
                f"item {n} is a {type(item).__name__}",
                input=item,
                hint="remember a str or a mapping with 'text' (and 'speaker', 'dia_id'...)",
            )
        _check_text(text, f"text of item {n}")
        if speaker is not None and (not isinstance(speaker, str) or not speaker.strip()):
            raise ValidationError(f"speaker={speaker!r} must be a non-empty str", input=speaker)
        if turn_id is not None and (not isinstance(turn_id, str) or not turn_id):
            raise ValidationError(f"turn id {turn_id!r} must be a non-empty str", input=turn_id)
        if kind is not None and kind not in ITEM_KINDS:
            raise ValidationError(f"kind={kind!r} is unknown", input=kind, hint=f"use one of {ITEM_KINDS}")
        kind = kind or ("fact" if level == "semantic" else "turn")
        when = ts if ts is not None else time.time()
        meta: dict[str, Any] = {}
        for key, value in (extra or {}).items():
            if key in _RESERVED:
                raise ValidationError(
                    f"metadata key {key!r} is set by the memory",
                    input=key,
                    hint=f"pass it as remember({key}=...) instead",
                )
            meta[key] = value
        from .filters import check_metadata

        check_metadata(turn_id or f"item {n}", meta)
        body = f"{speaker}: {text}" if speaker else text
        if caption:
            body += f" [{caption}]"
        base: dict[str, Any] = {"ts": float(when), "level": level, "kind": kind}
        if speaker:
            base["speaker"] = speaker
        if session is not None:
            base["session"] = str(session)
        pieces = [body]
        if kind == "document":
            from .chunking import chunk

            pieces = [c.text for c in chunk(body, size=chunk_size, overlap=min(32, chunk_size // 8))] or [body]
            doc = turn_id or _hash_id(body)
            base.setdefault("session", f"doc:{doc}")
            base["source"] = doc
        out = []
        for j, piece in enumerate(pieces):
            seq = self.retriever._seq
            self.retriever._seq += 1
            meta_j = {**meta, **base, "seq": seq}
            if kind == "document" and len(pieces) > 1:
                meta_j["chunk"] = j
            if turn_id is not None:
                item_id = turn_id if len(pieces) == 1 else f"{turn_id}#{j}"
                meta_j["turn_id"] = item_id
            else:
                item_id = _hash_id(f"{piece}\0{meta_j.get('session')}\0{when}\0{seq}")
            out.append((item_id, piece, meta_j))
        return out

    def _embed_items(self, texts: list[str], metas: list[dict[str, Any]]) -> np.ndarray:
        from .embeddings import embed_batched

        own = np.asarray(embed_batched(self.memory.embedder, texts), dtype=np.float32)
        if not self.contextual:
            return own
        paired, rows = [], []
        last = dict(self._last_text)
        for j, (t, m) in enumerate(zip(texts, metas, strict=True)):
            s = m.get("session")
            if m.get("kind") == "turn" and s is not None and s in last:
                paired.append(f"{last[s]}\n{t}")
                rows.append(j)
            if s is not None:
                last[s] = t
        self._last_text = last
        if paired:
            ctx = np.asarray(embed_batched(self.memory.embedder, paired), dtype=np.float32)
            own = own.copy()
            own[rows] = own[rows] + ctx
            norms = np.linalg.norm(own[rows], axis=1, keepdims=True)
            own[rows] = own[rows] / np.where(norms > 0, norms, 1.0)
        return own

    def _embed_sentences(self, ids: list[str], texts: list[str], *, stored: bool = False) -> None:
        """Embed the sentences of each item (one batch) for the retriever's ``sentences`` step, and keep
        them in the store; with ``stored``, first take what the store kept for the same texts."""
        if not self.sentence_vectors or not ids:
            return
        from .embeddings import embed_batched
        from .retrieval import sentences

        kept = self._kept_sentences
        per_item = {i: sentences(t) for i, t in zip(ids, texts, strict=True)}
        found: dict[str, np.ndarray] = {}
        if stored and kept is not None:
            found, _ = kept.load(dict(zip(ids, texts, strict=True)))
            # vectors split another way (an older sentence splitter) are made again
            found = {i: m for i, m in found.items() if len(m) == len(per_item[i])}
        todo = [i for i in ids if i not in found and per_item[i]]
        out: dict[str, np.ndarray] = {}
        if todo:
            flat = [x for i in todo for x in per_item[i]]
            mat = np.asarray(embed_batched(self.memory.embedder, flat), dtype=np.float32)
            at = 0
            for item_id in todo:
                n = len(per_item[item_id])
                out[item_id] = mat[at : at + n]
                at += n
            if kept is not None:
                kept.save(dict(zip(ids, texts, strict=True)), out)
        self.retriever.add_sentence_vectors(found | out)

    def _graph_item(self, item_id: str, text: str, meta: Mapping[str, Any]) -> Any:
        return self.graph.add_item(
            item_id,
            text,
            ts=meta.get("ts"),
            session=meta.get("session"),
            level=meta.get("level"),
            entities=[e for e in extract_entities(text, meta.get("ts")) if e.kind != "number"],
        )

    def _link_similar(self, ids: list[str], vectors: np.ndarray) -> None:
        if not len(ids) or self.similar_k < 1:
            return
        store = self.collection.store
        k = min(self.similar_k + 1, len(self.retriever))
        for i, v in zip(ids, vectors, strict=True):
            for h in store.search(self.name, v, k):
                if h.id != i and h.score >= self.similar_threshold and h.id in self.retriever:
                    self.graph.link(i, h.id, "similar", round(float(h.score), 4))

    def _link_next(self, ids: list[str]) -> None:
        for i in ids:
            prev, nxt = self.retriever.adjacent(i)
            if prev is not None:
                self.graph.link(prev, i, "next")
            if nxt is not None:
                self.graph.link(i, nxt, "next")

    def _sync_topic_nodes(self) -> None:
        if self._topics is None:
            return
        self.graph.clear_kind("topic")
        for t in self._topics.topics():
            node = self.graph.add_node("topic", str(t.id), t.label, size=t.size, terms=list(t.terms))
            for m in t.members:
                if f"item:{m}" in self.graph.nodes:
                    self.graph.link(m, node.id, "topic")

    def _save(self) -> None:
        if self._graph_file is None:
            return
        import json

        data = {"graph": self.graph.to_dict(), "topics": self._topics.to_dict() if self._topics is not None else None}
        text = json.dumps(data, separators=(",", ":"))
        sealer = _store_sealer(self.memory.store)
        if sealer is not None:  # the graph holds the items' texts, entities and topic terms: sealed like the store
            text = sealer.seal(text, context=f"graph/{self.name}")
        tmp = self._graph_file.with_name(f".{self._graph_file.name}.{os.getpid()}.tmp")
        self._graph_file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self._graph_file)

    def forget(self, ids: str | Iterable[str]) -> int:
        """Delete items (from the store, the indexes, the graph and the topics); returns how many existed."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        with self._lock:
            n = self.collection.delete(ids)
            if self._kept_sentences is not None:
                self._kept_sentences.delete(ids)
            self.retriever.remove(ids)
            for i in ids:
                self.graph.remove(f"item:{i}")
            if self._topics is not None:
                self._topics.remove(ids)
                self._sync_topic_nodes()
            self._save()
        return n

    # ---- reads
    def __len__(self) -> int:
        return len(self.retriever)

    def count(self, level: str | None = None) -> int:
        """Items at ``level`` (all by default)."""
        return len(self._ids_at(_check_level(level))) if level else len(self.retriever)

    def __repr__(self) -> str:
        return (
            f"ConversationMemory({self.name!r}, {len(self)} items, {len(self.retriever.sessions)} sessions, "
            f"store={self.collection.store.name}, embedder={type(self.memory.embedder).__name__})"
        )

    def _repr_html_(self) -> str:
        topics = ", ".join(html.escape(t.label) for t in self.topics()[:8])
        return (
            f"<div><b>{html.escape(repr(self))}</b><br>graph: {html.escape(repr(self.graph))}<br>"
            f"topics: {topics or '—'}</div>"
        )

    def working(self) -> list[str]:
        """Ids of the working level: the ``working_size`` most recent episodic turns, oldest first."""
        rows = [r for r in self.retriever.rows.values() if r.metadata.get("level") != "semantic"]
        rows.sort(key=lambda r: (r.ts if r.ts is not None else -math.inf, r.seq))
        return [r.id for r in rows[-self.working_size :]]

    def _ids_at(self, level: str | None) -> set[str]:
        if level is None:
            return set(self.retriever.rows)
        if level == "working":
            return set(self.working())
        if level == "semantic":
            return {i for i, r in self.retriever.rows.items() if r.metadata.get("level") == "semantic"}
        return {i for i, r in self.retriever.rows.items() if r.metadata.get("level") != "semantic"}

    def _level_of(self, item_id: str, working: set[str]) -> str:
        if self.retriever.rows[item_id].metadata.get("level") == "semantic":
            return "semantic"
        return "working" if item_id in working else "episodic"

    def recall(
        self,
        query: str,
        k: int = 10,
        *,
        budget_tokens: int | None = None,
        level: str | None = None,
        where: Where = None,
        since: Any = None,
        until: Any = None,
        session: str | int | None = None,
        speaker: str | None = None,
        config: RecallConfig | None = None,
        now: Any = None,
        _context: bool = False,
    ) -> Recall:
        """The ``k`` items that best answer ``query``, best first, with score, level and provenance.

        Args:
            query: the question or cue.
            k: most items returned.
            budget_tokens: if given, items are kept in rank order while their texts fit this many
                tokens together (an item that does not fit is skipped, smaller ones may still fit).
                With the config's ``trim`` step, the ``k`` best are cut as little as needed to fit
                together: none if they fit whole, else the longest first, each to its
                ``trim_sentences`` sentences most relevant to the query and only as far as the
                excess asks (``Recalled.trimmed``); when even that is not enough, items are packed
                in rank order, one that does not fit whole (or, with ``trim_share``, is longer than
                its share of the tokens left) cut the same way.
            level: only ``"working"``, ``"episodic"`` or ``"semantic"`` items (``None``: all).
            where: a metadata filter (``F.speaker == "Ann"`` or a dict), as in ``Collection.search``.
            since, until: only items said in this time range (datetimes, epoch seconds or dates).
            session, speaker: only this session's / speaker's items.
            config: the recall steps and weights (default: the memory's ``config``).
            now: the reference time for relative dates in the query (default: the latest item's time).

        Raises:
            ValidationError: an empty query, a bad ``k``, budget, level, filter or time.
        """
        t0 = time.perf_counter()
        _check_text(query, "query")
        k = int(_check_positive("k", k))  # type: ignore[arg-type]
        budget = _check_positive("budget_tokens", budget_tokens, allow_none=True)
        _check_level(level)
        if config is not None and not isinstance(config, RecallConfig):
            raise ValidationError(f"config must be a RecallConfig, not {type(config).__name__}", input=config)
        cfg = config or self.config
        lo, hi, ref = _ts_or_none(since, "since"), _ts_or_none(until, "until"), _ts_or_none(now, "now")
        f = parse_filter(where)
        allowed: set[str] | None = None
        if (
            level is not None
            or f is not None
            or lo is not None
            or hi is not None
            or session is not None
            or speaker is not None
        ):
            pool = self._ids_at(level)
            rows = self.retriever.rows
            allowed = {
                i
                for i in pool
                if (f is None or f.matches(rows[i].metadata))
                and (lo is None or (rows[i].ts is not None and rows[i].ts >= lo))
                and (hi is None or (rows[i].ts is not None and rows[i].ts <= hi))
                and (session is None or rows[i].session == str(session))
                and (speaker is None or rows[i].speaker == speaker)
            }
        trim = cfg.trim and (budget is not None or _context)
        with self._lock:
            qv = self._embed_query(query) if trim and self.retriever.dense is not None else None
            scored = self.retriever.search(
                query, k if budget is None else max(k, 4 * k), cfg, allowed=allowed, now=ref, query_vector=qv
            )
        working = set(self.working())
        items: list[Recalled] = []
        used = 0
        packed = self._pack(scored[:k], budget, query, qv, cfg) if trim and budget is not None else None
        if packed is not None:
            items = [self._recalled(s, working, text, cut) for s, text, cut in packed]
            scored = []  # done: the greedy packing below is the fallback
        for s in scored:
            if len(items) >= k:
                break
            text, cut = s.text, False
            if budget is not None:
                t = estimate_tokens(text)
                left = budget - used
                if trim:
                    share = int(cfg.trim_share * left / (k - len(items)))
                    short = None
                    if cfg.trim_share > 0 and t > share:
                        short = self._trim(s.id, text, query, qv, share, cfg.trim_sentences, cfg.trim_lexical)
                    if short is None and t > left:
                        short = self._trim(s.id, text, query, qv, left, cfg.trim_sentences, cfg.trim_lexical)
                    if short is not None:
                        text, cut, t = short, True, estimate_tokens(short)
                if t > left:
                    continue
                used += t
            items.append(self._recalled(s, working, text, cut))
        out = Recall(items, query, k, (time.perf_counter() - t0) * 1000, cfg.steps, budget)
        out._query_vector = qv
        if not _context:
            emit(
                self.bus,
                MemoryRecalled,
                memory=self.name,
                k=k,
                hits=len(items),
                level=level,
                steps=cfg.steps,
                tokens=out.tokens,
                budget_tokens=budget,
                context=False,
                ms=out.ms,
            )
        return out

    def _pack(
        self, top: list[Scored], budget: int, query: str, qv: np.ndarray | None, cfg: RecallConfig
    ) -> list[tuple[Scored, str, bool]] | None:
        """The ``top`` items within ``budget`` tokens, trimmed as little as needed: whole if they fit;
        else the longest is cut first, only as far as the excess asks (never below an even share of
        the budget), then the next longest, until they fit.  ``None`` when cutting every long one is
        not enough (then :meth:`recall` packs greedily, skipping what does not fit)."""
        texts = [s.text for s in top]
        tokens = [estimate_tokens(t) for t in texts]
        cut = [False] * len(top)
        total = sum(tokens)
        fair = budget // max(1, len(top))
        tried: set[int] = set()
        while total > budget:
            long_ones = [j for j in range(len(top)) if j not in tried and tokens[j] > fair]
            if not long_ones:
                return None
            j = max(long_ones, key=lambda j: (tokens[j], -j))  # the longest; on a tie the better ranked
            tried.add(j)
            limit = max(fair, tokens[j] - (total - budget))
            short = self._trim(top[j].id, texts[j], query, qv, limit, cfg.trim_sentences, cfg.trim_lexical)
            if short is None:
                continue
            t = estimate_tokens(short)
            total += t - tokens[j]
            texts[j], tokens[j], cut[j] = short, t, True
        return list(zip(top, texts, cut, strict=True))

    def _trim(
        self,
        item_id: str,
        text: str,
        query: str,
        qv: np.ndarray | None,
        max_tokens: int,
        max_sentences: int,
        lexical: float = 1.0,
    ) -> str | None:
        """``text`` cut to its (at most ``max_sentences``) sentences most relevant to ``query``, in text
        order after its speaker prefix, within ``max_tokens``; ``None`` when its best sentence does not
        fit or nothing would be cut."""
        full = estimate_tokens(text)
        if max_tokens < 1 or full <= 1:
            return None
        scored = self.retriever.sentence_relevance(item_id, text, query, qv, lexical)
        if len(scored) < 2:
            return None
        m = _SPEAKER_PREFIX.match(text)
        prefix = m.group(0) if m else ""
        keep: list[int] = []
        for j in sorted(range(len(scored)), key=lambda j: (-scored[j][1], j)):
            if len(keep) >= max_sentences:
                break
            trial = sorted([*keep, j])
            if estimate_tokens(prefix + " ".join(scored[x][0] for x in trial)) <= max_tokens:
                keep = trial
            elif not keep:
                return None  # the most relevant sentence alone does not fit
        short = prefix + " ".join(scored[x][0] for x in keep)
        return short if estimate_tokens(short) < full else None

    def _recalled(self, s: Scored, working: set[str], text: str | None = None, trimmed: bool = False) -> Recalled:
        m = s.metadata
        prov = {
            "session": m.get("session"),
            "speaker": m.get("speaker"),
            "ts": m.get("ts"),
            "turn_id": m.get("turn_id"),
            "kind": m.get("kind"),
            "via": s.via,
            "parts": {k: round(v, 4) for k, v in s.parts.items()},
        }
        if self._topics is not None:
            prov["topic"] = self._topics.topic_of(s.id)
        return Recalled(
            s.id, s.text if text is None else text, s.score, self._level_of(s.id, working), prov, dict(m), trimmed
        )

    def context(
        self,
        query: str,
        budget_tokens: int = 800,
        *,
        k: int = 20,
        compress: bool = True,
        **recall_options: Any,
    ) -> str:
        """A prompt block of what memory knows about ``query``, never above ``budget_tokens`` tokens.

        Items are recalled (``k`` of them, ``recall_options`` as in :meth:`recall`), taken best first
        while they fit, then laid out grouped by session in time order, each session under a
        ``## Session <id> (<date>)`` line (facts and summaries under ``## Known facts``).  With the
        recall config's ``trim`` step, an item that does not fit whole is taken cut to its
        ``trim_sentences`` sentences most similar to the query when those fit.  With
        ``compress`` (and the :mod:`~lumina_lab.memory.compression` module), the best item that
        does not fit whole is compressed to the tokens left.  Tokens are counted with
        :func:`~lumina_lab.memory.chunking.estimate_tokens` over the whole block, headers included.
        Returns ``""`` when nothing fits or memory is empty.

        Raises:
            ValidationError: a bad query, budget, ``k`` or recall option.
        """
        t0 = time.perf_counter()
        budget = int(_check_positive("budget_tokens", budget_tokens))  # type: ignore[arg-type]
        rec = self.recall(query, k, _context=True, **recall_options)
        cfg = recall_options.get("config") or self.config
        chosen: list[tuple[Recalled, str]] = []
        skipped: list[Recalled] = []
        for r in rec:
            trial = self._layout([*chosen, (r, r.text)])
            if estimate_tokens(trial) <= budget:
                chosen.append((r, r.text))
                continue
            if cfg.trim:
                # the tokens left, less a session header and a line break the item may bring
                room = budget - estimate_tokens(self._layout(chosen)) - 12
                short = self._trim(r.id, r.text, query, rec._query_vector, room, cfg.trim_sentences, cfg.trim_lexical)
                if short is not None and estimate_tokens(self._layout([*chosen, (r, short)])) <= budget:
                    chosen.append((r, short))
                    continue
            skipped.append(r)
        if compress and skipped:
            chosen = self._compress_into(query, chosen, skipped[0], budget)
        block = self._layout(chosen)
        if estimate_tokens(block) > budget:  # cannot happen by construction; the guarantee is kept anyway
            block = block[: budget * 4]
        emit(
            self.bus,
            MemoryRecalled,
            memory=self.name,
            k=k,
            hits=len(chosen),
            level=recall_options.get("level"),
            steps=rec.steps,
            tokens=estimate_tokens(block) if block else 0,
            budget_tokens=budget,
            context=True,
            ms=(time.perf_counter() - t0) * 1000,
        )
        return block

    def _compress_into(
        self, query: str, chosen: list[tuple[Recalled, str]], item: Recalled, budget: int
    ) -> list[tuple[Recalled, str]]:
        try:
            from .compression import compress
        except ImportError:  # the compression module is optional
            return chosen
        left = budget - estimate_tokens(self._layout(chosen))
        for attempt in range(4):
            room = left - 12 - 4 * attempt  # a header line and separators may come with the item
            if room < 8:
                return chosen
            try:
                short = compress([item.text], query=query, budget_tokens=room, bus=self.bus).text
            except ValidationError:
                return chosen
            if not short.strip():
                return chosen
            trial = [*chosen, (item, short)]
            if estimate_tokens(self._layout(trial)) <= budget:
                return trial
        return chosen

    def _layout(self, chosen: Sequence[tuple[Recalled, str]]) -> str:
        facts = [(r, t) for r, t in chosen if r.level == "semantic"]
        episodes: dict[str, list[tuple[Recalled, str]]] = {}
        for r, t in chosen:
            if r.level != "semantic":
                episodes.setdefault(str(r.provenance.get("session") or ""), []).append((r, t))
        lines: list[str] = []
        if facts:
            lines.append("## Known facts")
            lines += [f"- {t}" for _, t in facts]

        def when(group: list[tuple[Recalled, str]]) -> float:
            ts = [r.provenance.get("ts") for r, _ in group if isinstance(r.provenance.get("ts"), int | float)]
            return min(ts) if ts else math.inf

        for sess, group in sorted(episodes.items(), key=lambda kv: (when(kv[1]), kv[0])):
            group.sort(key=lambda p: (p[0].provenance.get("ts") or 0.0, p[0].metadata.get("seq", 0)))
            day = _day(when(group)) if when(group) != math.inf else ""
            title = f"Session {sess}" if sess else "Other"
            lines.append(f"## {title} ({day})" if day else f"## {title}")
            lines += [t for _, t in group]
        return "\n".join(lines)

    # ---- semantic level
    def topics(self) -> list[Any]:
        """The topics of the memory (:class:`~lumina_lab.memory.topics.Topic`), or ``[]`` without a topic model."""
        return self._topics.topics() if self._topics is not None else []

    @property
    def topic_model(self) -> Any:
        return self._topics

    def consolidate(self, *, apply: bool = True, now: Any = None, **options: Any) -> Any:
        """Consolidate the memory with :func:`~lumina_lab.memory.consolidation.consolidate`; returns its report.

        With ``apply``, the report's new summaries are remembered at the semantic level (with
        ``source_ids``), and items merged away or superseded are *marked* (``merged_into`` /
        ``superseded_by`` in their metadata), not deleted: the episodes stay recallable.
        """
        from .consolidation import MemoryItem, consolidate

        ids = list(self.retriever.rows)
        if not ids:
            from .consolidation import ConsolidationReport

            return ConsolidationReport(items=[])
        vecs = self._vectors(ids)
        items = []
        for i, v in zip(ids, vecs, strict=True):
            r = self.retriever.rows[i]
            level = "semantic" if r.metadata.get("level") == "semantic" else "episodic"
            meta = {k: v2 for k, v2 in r.metadata.items() if k in ("speaker", "session", "turn_id", "kind")}
            items.append(MemoryItem(i, r.text, vector=v, ts=r.ts or 0.0, metadata=meta, level=level))
        ref = _ts_or_none(now, "now")
        report = consolidate(
            items,
            now=ref if ref is not None else (self.retriever.latest_ts() or time.time()),
            embedder=self.memory.embedder,
            bus=self.bus,
            **options,
        )
        if apply:
            new = [s for s in report.summaries if s.id not in self.retriever.rows]
            if new:
                metas = [
                    {
                        "source_ids": ",".join(s.metadata.get("source_ids", []))
                        if isinstance(s.metadata.get("source_ids"), list)
                        else str(s.metadata.get("source_ids", ""))
                    }
                    for s in new
                ]
                self.remember_many(
                    [{"text": s.text, "turn_id": s.id, "ts": s.ts or None, "kind": "summary"} for s in new],
                    metas,
                    level="semantic",
                )
            marks: dict[str, dict[str, Any]] = {}
            for m in report.merges:
                for gone in m.merged_ids:
                    marks.setdefault(gone, {})["merged_into"] = m.kept_id
            for s in report.supersessions:
                marks.setdefault(s.old_id, {})["superseded_by"] = s.new_id
            self._mark(marks)
        return report

    def _mark(self, marks: Mapping[str, Mapping[str, Any]]) -> None:
        if not marks:
            return
        ids = [i for i in marks if i in self.retriever.rows]
        recs = self.collection.store.get(self.name, ids, with_vectors=True)
        if not recs:
            return
        metas = [{**r.metadata, **marks[r.id]} for r in recs]
        self.collection.upsert([r.id for r in recs], np.stack([r.vector for r in recs]), [r.text for r in recs], metas)
        for r, m in zip(recs, metas, strict=True):
            self.retriever.rows[r.id].metadata.update(m)

    def compress(self, query: str, budget_tokens: int = 800, *, k: int = 20, **options: Any) -> Any:
        """Recall ``k`` items and compress them to ``budget_tokens`` with
        :func:`~lumina_lab.memory.compression.compress` (a :class:`~lumina_lab.memory.compression.Compressed`)."""
        from .compression import compress

        rec = self.recall(query, k)
        items = [{"id": r.id, "text": r.text, "score": r.score, "ts": r.provenance.get("ts")} for r in rec]
        if not items:
            raise ValidationError("nothing recalled to compress: the memory is empty or nothing matched", input=query)
        return compress(items, query, budget_tokens, bus=self.bus, **options)

    # ---- explorer
    def items(self, level: str | None = None) -> pd.DataFrame:
        """Every item (at ``level``): id, level, kind, session, speaker, time, turn_id, topic, text; in time order."""
        import pandas as pd

        ids = self._ids_at(_check_level(level))
        working = set(self.working())
        rows = []
        for r in sorted((self.retriever.rows[i] for i in ids), key=lambda r: (r.ts or 0.0, r.seq)):
            rows.append(
                {
                    "id": r.id,
                    "level": self._level_of(r.id, working),
                    "kind": r.metadata.get("kind"),
                    "session": r.session or None,
                    "speaker": r.speaker,
                    "time": datetime.fromtimestamp(r.ts, UTC) if r.ts is not None else None,
                    "turn_id": r.metadata.get("turn_id"),
                    "topic": self._topics.topic_of(r.id) if self._topics is not None else None,
                    "text": r.text,
                }
            )
        cols = ["id", "level", "kind", "session", "speaker", "time", "turn_id", "topic", "text"]
        return pd.DataFrame(rows, columns=cols)

    def projection(self, method: str = "pca", *, level: str | None = None) -> pd.DataFrame:
        """A 2-D map of the item vectors: DataFrame ``x, y, id, level, topic, session, speaker, text``.

        ``method="pca"``: the first two principal components (numpy SVD of the centred vectors).

        Raises:
            ValidationError: an unknown method or level.
        """
        import pandas as pd

        if method != "pca":
            raise ValidationError(f"projection method {method!r} is unknown", input=method, hint="use method='pca'")
        df = self.items(level)
        if df.empty:
            return pd.DataFrame(columns=["x", "y", "id", "level", "topic", "session", "speaker", "text"])
        mat = self._vectors(list(df["id"])).astype(np.float64)
        centred = mat - mat.mean(axis=0, keepdims=True)
        if len(df) >= 2 and np.any(centred):
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            comps = np.zeros((2, mat.shape[1]))
            comps[: min(2, len(vt))] = vt[:2]
            xy = centred @ comps.T
        else:
            xy = np.zeros((len(df), 2))
        out = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
        for c in ("id", "level", "topic", "session", "speaker", "text"):
            out[c] = df[c].to_numpy()
        return out

    def save(self) -> Path | None:
        """Write the graph and topics to their file now (they are also written after every change)."""
        with self._lock:
            self._save()
        return self._graph_file


def _store_sealer(store: Any) -> Any:
    """The sealer of a store with encryption at rest (the first shard's for a sharded store), else ``None``."""
    shards = getattr(store, "shards", None)
    if shards:
        store = shards[0]
    sealing = getattr(store, "sealing", None)
    return sealing.sealer if sealing is not None else None


def _hash_id(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()
