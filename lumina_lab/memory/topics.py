"""Topics: online clustering of memory vectors, labelled by their most distinctive terms.

:class:`TopicModel` clusters unit vectors *incrementally*, as memory grows, with
no fitting pass and no randomness (a leader / streaming k-means scheme):

1. each new item joins the topic whose centroid is most similar to it (cosine),
   if that similarity is at least ``threshold``; otherwise it founds a new topic
   (when ``max_topics`` topics exist already, it joins the nearest one instead);
2. a topic's centroid is the normalised mean of its members' vectors, updated
   as members join and leave;
3. after every :meth:`~TopicModel.update`, topics whose centroids have moved
   within ``merge_threshold`` of each other are merged (the older topic, with
   the smaller id, absorbs the younger), repeatedly, until no pair is that close.

Labels are the topic's top terms by class-based TF-IDF (c-TF-IDF, as in
BERTopic): all texts of a topic form one document, and a term weighs
``tf(t, topic) / |topic| * ln(1 + A / f(t))`` where ``|topic|`` counts the
topic's terms, ``A`` is the mean number of terms per topic and ``f(t)`` the
frequency of ``t`` over all topics.  Terms are lowercase words of two or more
characters, English stopwords and bare numbers removed (see :func:`terms_of`).

Same items in the same order give the same topics, ids and labels.

>>> import numpy as np
>>> tm = TopicModel(dim=2, threshold=0.8)
>>> tm.update(["a", "b", "c"], np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]),
...           ["cheap flights to Rome", "Rome hotels and Rome flights", "python code review"])
[0, 0, 1]
>>> [(t.id, t.label, t.size) for t in tm.topics()]
[(0, 'rome, flights, cheap', 2), (1, 'code, python, review', 1)]
>>> tm.assign(np.array([0.0, 1.0]))
(1, 1.0)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["STOPWORDS", "Topic", "TopicModel", "terms_of"]

_FORMAT = "lumina_lab.topic_model"
_FORMAT_VERSION = 1


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


#: English stopwords removed from topic terms (and used by consolidation and compression).
STOPWORDS: frozenset[str] = _wordset(
    """
    a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each even ever every few for from further get gets getting got had hadn't has hasn't have haven't
    having he he'd he'll he's her here here's hers herself him himself his how how's however i i'd i'll i'm
    i've if in into is isn't it it's its itself just let's like lot lots made make many may me might more
    most much must mustn't my myself need no nor not now of off oh ok okay on once one only or other ought
    our ours ourselves out over own per quite rather really said same say says see shall shan't she she'd
    she'll she's should shouldn't so some such sure than that that's the their theirs them themselves then
    there there's these they they'd they'll they're they've thing things think this those though through to
    too under until up upon us very want was wasn't way we we'd we'll we're we've well went were weren't what
    what's when when's where where's whether which while who who's whom why why's will with won't would
    wouldn't yeah yes yet you you'd you'll you're you've your yours yourself yourselves
    """
)

_TERM = re.compile(r"[^\W\d_][\w'-]*[^\W_]|[^\W\d_]{2,}")


def terms_of(text: str) -> list[str]:
    """The topic terms of ``text``, in order: lowercase words of at least two characters that
    start and end with a letter or digit (inner ``'`` and ``-`` kept), stopwords removed.

    >>> terms_of("The Zürich café's menu: 3 soups, well-made!")
    ['zürich', "café's", 'menu', 'soups', 'well-made']
    """
    return [t for t in (m.group(0).lower() for m in _TERM.finditer(text)) if t not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic of a :class:`TopicModel` (a snapshot: later updates do not change it).

    Attributes:
        id: stable topic id (ids are never reused within one model).
        label: its top terms joined by ``", "`` (``"topic <id>"`` when it has no terms).
        size: number of members.
        terms: its most distinctive terms, best first.
        centroid: unit-norm mean direction of its members' vectors (float32).
        members: member ids in the order they joined.
        weights: c-TF-IDF weight of each of ``terms``.
    """

    id: int
    label: str
    size: int
    terms: list[str]
    centroid: np.ndarray = field(repr=False)
    members: list[str] = field(repr=False)
    weights: list[float] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return f"Topic(id={self.id}, label={self.label!r}, size={self.size})"


class _Cluster:
    __slots__ = ("count", "members", "sum", "tf")

    def __init__(self, dim: int) -> None:
        self.sum = np.zeros(dim, dtype=np.float64)
        self.count = 0
        self.members: dict[str, None] = {}  # insertion-ordered set
        self.tf: Counter[str] = Counter()

    def centroid(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.sum))
        return self.sum / norm if norm > 0 else self.sum.copy()


def _check_number(name: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= float(value) <= hi:
        raise ValidationError(f"{name}={value!r} must be a number in [{lo:g}, {hi:g}]", input=value)
    return float(value)


class TopicModel:
    """Incremental topic clustering of unit vectors, with c-TF-IDF labels.

    Args:
        dim: dimension of the vectors (that of the embedder that made them).
        threshold: least cosine similarity between an item and a topic centroid for the
            item to join that topic (in ``[-1, 1]``).  It depends on the embedder: 0.25-0.35
            suits MiniLM sentence vectors; :class:`~lumina_lab.memory.embeddings.HashingEmbedder`
            vectors also carry stopwords and character n-grams, so same-topic sentences are
            less similar under them (about 0.15-0.2 works there; topics are coarser).
            Higher makes more, tighter topics.
        max_topics: most topics at once (``None``: unbounded).  At the limit, an item that
            would found a topic joins the nearest one instead.
        merge_threshold: centroids at least this similar are merged after each update
            (default: ``(1 + threshold) / 2``, never below ``threshold``).
        n_terms: terms kept per topic (labels use the first three).

    Raises:
        ValidationError: a bad ``dim``, threshold, ``max_topics`` or ``n_terms``.
    """

    def __init__(
        self,
        dim: int,
        *,
        threshold: float = 0.3,
        max_topics: int | None = None,
        merge_threshold: float | None = None,
        n_terms: int = 8,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValidationError(f"dim={dim!r} must be a positive integer", input=dim)
        self.dim = dim
        self.threshold = _check_number("threshold", threshold, -1.0, 1.0)
        if max_topics is not None and (
            isinstance(max_topics, bool) or not isinstance(max_topics, int) or max_topics < 1
        ):
            raise ValidationError(f"max_topics={max_topics!r} must be a positive integer or None", input=max_topics)
        self.max_topics = max_topics
        if merge_threshold is None:
            merge_threshold = (1.0 + self.threshold) / 2.0
        self.merge_threshold = _check_number("merge_threshold", merge_threshold, self.threshold, 1.0)
        if isinstance(n_terms, bool) or not isinstance(n_terms, int) or n_terms < 1:
            raise ValidationError(f"n_terms={n_terms!r} must be a positive integer", input=n_terms)
        self.n_terms = n_terms
        self._clusters: dict[int, _Cluster] = {}
        self._item_topic: dict[str, int] = {}
        self._item_vec: dict[str, np.ndarray] = {}
        self._item_terms: dict[str, Counter[str]] = {}
        self._next_id = 0

    # ------------------------------------------------------------------ introspection
    def __repr__(self) -> str:
        return (
            f"TopicModel(dim={self.dim}, threshold={self.threshold:g}, topics={len(self._clusters)}, "
            f"items={len(self._item_topic)})"
        )

    def __len__(self) -> int:
        """Number of topics."""
        return len(self._clusters)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._item_topic

    @property
    def n_items(self) -> int:
        """Number of items clustered."""
        return len(self._item_topic)

    def topic_of(self, item_id: str) -> int | None:
        """The topic id of ``item_id`` (``None`` if it is not in the model)."""
        return self._item_topic.get(item_id)

    # ------------------------------------------------------------------ validation helpers
    def _check_vectors(self, vectors: Any, n: int | None) -> np.ndarray:
        try:
            arr = np.asarray(vectors, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError("vectors must be a numeric (n, dim) array", input=type(vectors).__name__) from None
        if arr.ndim == 1 and n is None:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim or (n is not None and arr.shape[0] != n):
            want = f"({n}, {self.dim})" if n is not None else f"({self.dim},)"
            raise ValidationError(f"vectors have shape {arr.shape}; expected {want}", input=arr.shape)
        if not np.all(np.isfinite(arr)):
            raise ValidationError("vectors contain NaN or infinite values", input="vectors")
        norms = np.linalg.norm(arr, axis=1)
        if np.any(norms == 0):
            bad = int(np.flatnonzero(norms == 0)[0])
            raise ValidationError(f"vector {bad} is all zeros: it has no direction to cluster by", input=bad)
        return arr / norms[:, None]

    # ------------------------------------------------------------------ core
    def _matrix(self) -> tuple[list[int], np.ndarray]:
        ids = list(self._clusters)
        if not ids:
            return ids, np.zeros((0, self.dim))
        return ids, np.stack([self._clusters[t].centroid() for t in ids])

    def _new_topic(self) -> int:
        tid = self._next_id
        self._next_id += 1
        self._clusters[tid] = _Cluster(self.dim)
        return tid

    def _join(self, tid: int, item_id: str, vec: np.ndarray, terms: Counter[str]) -> None:
        c = self._clusters[tid]
        c.sum += vec
        c.count += 1
        c.members[item_id] = None
        c.tf.update(terms)
        self._item_topic[item_id] = tid
        self._item_vec[item_id] = vec
        self._item_terms[item_id] = terms

    def _leave(self, item_id: str) -> int | None:
        tid = self._item_topic.pop(item_id, None)
        if tid is None:
            return None
        vec = self._item_vec.pop(item_id)
        terms = self._item_terms.pop(item_id)
        c = self._clusters[tid]
        c.sum -= vec
        c.count -= 1
        del c.members[item_id]
        c.tf.subtract(terms)
        c.tf = +c.tf  # drop non-positive counts
        if c.count == 0:
            del self._clusters[tid]
        return tid

    def _merge_into(self, keep: int, gone: int) -> None:
        a, b = self._clusters[keep], self._clusters.pop(gone)
        a.sum += b.sum
        a.count += b.count
        for m in b.members:
            a.members[m] = None
            self._item_topic[m] = keep
        a.tf.update(b.tf)

    def _merge_close(self, touched: set[int]) -> None:
        """Merge centroid pairs at least ``merge_threshold`` similar, closest pair first, until none is."""
        touched &= set(self._clusters)
        while touched and len(self._clusters) > 1:
            ids, mat = self._matrix()
            rows = [i for i, t in enumerate(ids) if t in touched]
            sims = mat[rows] @ mat.T
            for r, i in enumerate(rows):
                sims[r, i] = -np.inf
            flat = int(np.argmax(sims))
            r, j = divmod(flat, sims.shape[1])
            if sims[r, j] < self.merge_threshold:
                break
            a, b = ids[rows[r]], ids[j]
            keep, gone = min(a, b), max(a, b)
            self._merge_into(keep, gone)
            touched.discard(gone)
            touched.add(keep)

    def update(self, ids: Sequence[str], vectors: Any, texts: Sequence[str] | None = None) -> list[int]:
        """Cluster new (or changed) items, in order; returns the topic id of each, after merging.

        An id already in the model is moved: it leaves its topic first, then is
        placed like a new item.

        Args:
            ids: item ids (strings, unique within the call).
            vectors: ``(len(ids), dim)`` array; rows are normalised here (no zero rows).
            texts: the items' texts, for the labels (``None``: no terms).

        Raises:
            ValidationError: mismatched lengths, bad vectors, duplicate or non-string ids.
        """
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValidationError("ids must be a list of strings", input=ids, hint="wrap a single id in a list")
        ids = list(ids)
        if not all(isinstance(i, str) for i in ids):
            raise ValidationError("ids must be strings", input=ids)
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValidationError(f"id {dup!r} appears twice in one update", input=dup)
        if texts is None:
            texts = [""] * len(ids)
        elif isinstance(texts, str) or len(texts) != len(ids) or not all(isinstance(t, str) for t in texts):
            raise ValidationError(f"texts must be {len(ids)} strings, one per id (or None)", input=type(texts).__name__)
        if not ids:
            return []
        arr = self._check_vectors(vectors, len(ids))
        touched: set[int] = set()
        for item_id in ids:
            old = self._leave(item_id)
            if old is not None and old in self._clusters:
                touched.add(old)
        tids, mat = self._matrix()
        for item_id, vec, text in zip(ids, arr, texts, strict=True):
            terms = Counter(terms_of(text))
            if tids:
                sims = mat @ vec
                best = int(np.argmax(sims))
                at_limit = self.max_topics is not None and len(self._clusters) >= self.max_topics
                if sims[best] >= self.threshold or at_limit:
                    tid = tids[best]
                    self._join(tid, item_id, vec, terms)
                    mat[best] = self._clusters[tid].centroid()
                    touched.add(tid)
                    continue
            tid = self._new_topic()
            self._join(tid, item_id, vec, terms)
            tids.append(tid)
            mat = np.vstack([mat, self._clusters[tid].centroid()[None, :]])
            touched.add(tid)
        self._merge_close(touched)
        return [self._item_topic[i] for i in ids]

    def remove(self, ids: Iterable[str]) -> int:
        """Take items out of their topics (empty topics disappear); returns how many were in the model.

        Unknown ids are ignored.  Removing can bring centroids together, so close topics are merged.
        """
        if isinstance(ids, str):
            raise ValidationError("ids must be a list of strings", input=ids, hint=f"wrap it in a list: [{ids!r}]")
        touched: set[int] = set()
        n = 0
        for item_id in ids:
            tid = self._leave(item_id)
            if tid is not None:
                n += 1
                if tid in self._clusters:
                    touched.add(tid)
        self._merge_close(touched)
        return n

    def refine(self, passes: int = 1) -> int:
        """Move every item to its nearest centroid (k-means passes over what is stored); returns moves.

        Online clustering depends on arrival order; a refinement pass undoes the worst of that.
        Topics that lose every member disappear.  Deterministic.
        """
        moved = 0
        for _ in range(max(0, int(passes))):
            tids, mat = self._matrix()
            if len(tids) < 2:
                break
            changes = 0
            for item_id in list(self._item_topic):
                vec = self._item_vec[item_id]
                best = tids[int(np.argmax(mat @ vec))]
                if best != self._item_topic[item_id] and best in self._clusters:
                    terms = self._item_terms[item_id]
                    self._leave(item_id)
                    self._join(best, item_id, vec, terms)
                    changes += 1
            moved += changes
            if not changes:
                break
        self._merge_close(set(self._clusters))
        return moved

    def assign(self, vector: Any) -> tuple[int | None, float]:
        """The topic a vector would join and its cosine similarity to that topic's centroid.

        Returns ``(None, similarity)`` when the best similarity is below ``threshold``
        (``(None, 0.0)`` when there are no topics).  The model does not change.
        """
        vec = self._check_vectors(vector, None)[0]
        tids, mat = self._matrix()
        if not tids:
            return None, 0.0
        sims = mat @ vec
        best = int(np.argmax(sims))
        sim = round(float(sims[best]), 6)
        return (tids[best] if sim >= self.threshold else None), sim

    # ------------------------------------------------------------------ labels
    def _weights(self) -> dict[int, list[tuple[str, float]]]:
        clusters = self._clusters
        if not clusters:
            return {}
        total: Counter[str] = Counter()
        for c in clusters.values():
            total.update(c.tf)
        avg = sum(total.values()) / len(clusters)
        out: dict[int, list[tuple[str, float]]] = {}
        for tid, c in clusters.items():
            size = sum(c.tf.values())
            if size == 0 or avg == 0:
                out[tid] = []
                continue
            scored = [(t, n / size * math.log(1.0 + avg / total[t])) for t, n in c.tf.items()]
            scored.sort(key=lambda p: (-p[1], p[0]))
            out[tid] = scored[: self.n_terms]
        return out

    def topics(self) -> list[Topic]:
        """Every topic, by id (oldest first), with its label, size, terms, centroid and members."""
        weights = self._weights()
        out = []
        for tid, c in self._clusters.items():
            terms = [t for t, _ in weights[tid]]
            label = ", ".join(terms[:3]) if terms else f"topic {tid}"
            out.append(
                Topic(
                    id=tid,
                    label=label,
                    size=c.count,
                    terms=terms,
                    centroid=c.centroid().astype(np.float32),
                    members=list(c.members),
                    weights=[round(w, 6) for _, w in weights[tid]],
                )
            )
        return sorted(out, key=lambda t: t.id)

    def labels(self) -> dict[int, str]:
        """``{topic id: label}``."""
        return {t.id: t.label for t in self.topics()}

    def df(self) -> Any:
        """The topics as a pandas DataFrame (id, label, size, terms)."""
        import pandas as pd

        return pd.DataFrame(
            [{"id": t.id, "label": t.label, "size": t.size, "terms": t.terms} for t in self.topics()],
            columns=["id", "label", "size", "terms"],
        )

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{t.id}</td><td>{escape(t.label)}</td><td>{t.size}</td></tr>" for t in self.topics()[:50]
        )
        return (
            f"<b>TopicModel</b>: {len(self)} topics over {self.n_items} items "
            f"(threshold {self.threshold:g})<table><tr><th>id</th><th>label</th><th>size</th></tr>{rows}</table>"
        )

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to continue later, as JSON-compatible data (vectors as float lists)."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "dim": self.dim,
            "threshold": self.threshold,
            "max_topics": self.max_topics,
            "merge_threshold": self.merge_threshold,
            "n_terms": self.n_terms,
            "next_id": self._next_id,
            "topics": [
                {
                    "id": tid,
                    "members": [
                        {"id": m, "vector": self._item_vec[m].tolist(), "terms": dict(self._item_terms[m])}
                        for m in c.members
                    ],
                }
                for tid, c in self._clusters.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicModel:
        """Rebuild a model saved by :meth:`to_dict` (same topics, ids and labels).

        Raises:
            ValidationError: the data is not a saved topic model.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValidationError("not a saved TopicModel (missing format marker)", input=type(data).__name__)
        if data.get("version") != _FORMAT_VERSION:
            raise ValidationError(f"TopicModel format version {data.get('version')!r} is not supported", input=data)
        try:
            model = cls(
                data["dim"],
                threshold=data["threshold"],
                max_topics=data["max_topics"],
                merge_threshold=data["merge_threshold"],
                n_terms=data["n_terms"],
            )
            for topic in data["topics"]:
                tid = int(topic["id"])
                model._clusters[tid] = _Cluster(model.dim)
                for m in topic["members"]:
                    vec = np.asarray(m["vector"], dtype=np.float64)
                    model._join(tid, str(m["id"]), vec, Counter({str(k): int(v) for k, v in m["terms"].items()}))
            model._next_id = int(data["next_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"saved TopicModel is malformed: {exc!r}", input=type(data).__name__) from None
        return model
