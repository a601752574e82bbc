"""Context compression: fit what memory returned into a token budget, keeping what matters most.

:func:`compress` takes items (strings, or objects with ``.text`` and optionally ``.id``,
``.score``, ``.importance``, ``.ts``), cuts them into *units* by content type, scores the
units and selects some whose assembled text fits ``budget_tokens``:

Units (adaptive by content type, see :func:`lumina_lab.memory.chunking.detect_kind`):

=============  ======================================================================
``dialogue``   whole turns (``Name: ...`` with the speaker); never cut inside a turn
``prose``      sentences (and lines)
``markdown``   paragraphs, fenced code blocks kept whole; long paragraphs as sentences
``code``       whole top-level blocks; a block that does not fit can be kept as its
               signature (decorators, comments and the ``def``/``class`` line(s))
``table``      rows; the header row(s) come along with the first row kept
=============  ======================================================================

With ``kind="auto"`` the kind of the whole context is detected once on all texts joined,
and each multi-line item on its own; a one-line item (a single turn, a table row) takes
the kind of the whole context.

Importance of a unit is a weighted sum (``weights=``) of components each scaled to ``[0, 1]``:

* ``relevance`` -- with a query: half cosine similarity with the query under the embedder,
  half a BM25 score of the query terms over the units (stopwords removed); without a
  query: cosine similarity with the centroid of all units (centrality);
* ``score`` -- the item's own ``.score`` (e.g. a retrieval score) or ``.importance``,
  min-max scaled over the items;
* ``position`` -- lead bias inside an item: ``1 / (1 + index of the unit in its item)``
  (prose and markdown only; a paragraph's first sentence says what it is about);
* ``recency`` -- the item's ``.ts`` min-max scaled (newest 1).

Strategies (:data:`STRATEGIES`):

* ``"mmr"`` (default) -- maximal marginal relevance: repeatedly take, among the units that
  still fit, the one maximising ``lambda_ * importance - (1 - lambda_) * max similarity to
  the units already taken`` (novelty: near-repeats are left out);
* ``"importance"`` -- the most important units that fit, no redundancy penalty;
* ``"recent"`` -- truncate the oldest: the newest units (by ``.ts``, else position) while they fit;
* ``"first"`` -- truncate the newest: the first units while they fit;
* ``"random"`` -- random units that fit (``seed``), a baseline.

Kept units are put back in their original order: units of one item joined by a space
(prose) or a newline (other kinds), items by a newline.  The result never has more than
``budget_tokens`` tokens by :func:`~lumina_lab.memory.chunking.estimate_tokens` (or by
``length=``, a tokenizer's count).

>>> c = compress(["The cat sat on the mat. It was a sunny day.", "Dogs bark at night."],
...              query="where did the cat sit?", budget_tokens=8)
>>> c.text, c.tokens <= 8
('The cat sat on the mat.', True)
>>> c.kept
[(0, (0, 23))]

:func:`evaluate_compression` measures how much of the evidence for a question set
survives at each compression ratio, against truncation and random baselines (a
quality-vs-ratio curve), and :func:`plot_compression_curve` draws it.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError
from .chunking import (
    _MD_TABLE_SEP,
    _SENTENCE,
    _TOP_DEF,
    _TURN,
    KINDS,
    _definitions,
    _fences,
    detect_kind,
    estimate_tokens,
)
from .topics import terms_of

if TYPE_CHECKING:
    import pandas as pd

    from ..events.bus import InProcessBus
    from .embeddings import Embedder

__all__ = [
    "BASELINES",
    "DEFAULT_RATIOS",
    "DEFAULT_WEIGHTS",
    "STRATEGIES",
    "Compressed",
    "CompressionEvaluator",
    "compress",
    "evaluate_compression",
    "plot_compression_curve",
]

#: Selection strategies of :func:`compress`.
STRATEGIES: tuple[str, ...] = ("mmr", "importance", "recent", "first", "random")
#: Baselines :class:`CompressionEvaluator` knows, and the strategy each runs.
BASELINES: dict[str, str] = {
    "truncate-oldest": "recent",
    "truncate-newest": "first",
    "random": "random",
    "importance": "importance",
}
#: Compression ratios of the default quality-vs-ratio curve.
DEFAULT_RATIOS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.33, 0.25, 0.1)
#: Default weights of the importance components.
DEFAULT_WEIGHTS: dict[str, float] = {"relevance": 1.0, "score": 0.3, "position": 0.1, "recency": 0.1}

_LINE_BREAK = re.compile(r"\n+")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SIG_END = re.compile(r"(?::|\{|=>|\bdo)\s*(?:#.*|//.*)?$")
_WS = re.compile(r"\s+")
_DEFAULT_EMBEDDER: Embedder | None = None


def _resolve_embedder(embedder: Any) -> Embedder:
    """``embedder`` itself, an embedder built from a spec, or the shared default (``None``)."""
    if embedder is None:
        return _default_embedder()
    from .embeddings import _is_embedder, embedder_from

    return embedder if _is_embedder(embedder) else embedder_from(embedder)


def _default_embedder() -> Embedder:
    global _DEFAULT_EMBEDDER
    if _DEFAULT_EMBEDDER is None:
        from .embeddings import HashingEmbedder

        _DEFAULT_EMBEDDER = HashingEmbedder(dim=512)
    return _DEFAULT_EMBEDDER


# ---------------------------------------------------------------------- result


@dataclass(frozen=True)
class Compressed:
    """The outcome of :func:`compress`.

    Attributes:
        text: the compressed context.
        kept: ``(item_id, (start, end))`` for every unit kept, in output order; ``start:end``
            indexes the item's text.  An item's id is its ``.id`` (or ``["id"]``), else its position.
        tokens: tokens of ``text`` (never more than ``budget_tokens``).
        ratio: ``tokens / original_tokens`` (1.0 when the original is empty).
        dropped: ids of the (non-empty) items of which nothing was kept, in input order.
        budget_tokens: the budget asked for.
        original_tokens: tokens of the whole context assembled the same way (nothing dropped).
        kind: the content kind of the context (detected with ``kind="auto"``).
        strategy: the selection strategy used.
    """

    text: str
    kept: list[tuple[Any, tuple[int, int]]]
    tokens: int
    ratio: float
    dropped: list[Any]
    budget_tokens: int = 0
    original_tokens: int = 0
    kind: str = "prose"
    strategy: str = "mmr"
    _lengths: dict[Any, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kept_ids(self) -> list[Any]:
        """Ids of the items of which something was kept, in output order (each once)."""
        return list(dict.fromkeys(i for i, _ in self.kept))

    def coverage(self, item_id: Any) -> float:
        """Share of the characters of item ``item_id``'s units (whitespace between them aside) that were kept."""
        total = self._lengths.get(item_id, 0)
        if total <= 0:
            return 0.0
        got = sum(e - s for i, (s, e) in self.kept if i == item_id)
        return min(1.0, got / total)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (
            f"Compressed(tokens={self.tokens}/{self.budget_tokens}, ratio={self.ratio:.2f}, kind={self.kind!r}, "
            f"strategy={self.strategy!r}, kept={len(self.kept)} spans, dropped={len(self.dropped)} items, "
            f"text={preview!r})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        return (
            f"<b>Compressed</b> {self.tokens} of {self.original_tokens} tokens "
            f"(budget {self.budget_tokens}, ratio {self.ratio:.2f}, {escape(self.kind)}, {escape(self.strategy)}; "
            f"{len(self.kept_ids)} items kept, {len(self.dropped)} dropped)"
            f"<pre style='white-space:pre-wrap'>{escape(self.text)}</pre>"
        )


# ---------------------------------------------------------------------- input


@dataclass(slots=True)
class _Source:
    id: Any
    text: str
    score: float | None
    ts: float | None
    pos: int


@dataclass(slots=True)
class _Unit:
    item: int
    start: int
    end: int
    text: str
    pos: int
    kind: str
    alt_of: int | None = None  # a code signature: index of the whole block it stands for
    header: tuple[int, int] | None = None  # a table row: the span of its table's header


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(float(value)):
        return float(value)
    return None


def _sources(items: Any) -> list[_Source]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ValidationError(
            "items must be a list of strings or of objects with a .text",
            input=type(items).__name__,
            hint="wrap a single text in a list: [text]",
        )
    out: list[_Source] = []
    for pos, it in enumerate(items):
        if isinstance(it, str):
            out.append(_Source(pos, it, None, None, pos))
            continue
        if isinstance(it, Mapping):
            text, get = it.get("text"), it.get
        else:
            text = getattr(it, "text", None)

            def get(name: str, default: Any = None, _it: Any = it) -> Any:
                return getattr(_it, name, default)

        if not isinstance(text, str):
            raise ValidationError(
                f"item {pos} is a {type(it).__name__} without a string .text",
                input=it,
                hint="pass strings, or objects (or dicts) with a 'text' field",
            )
        item_id = get("id", None)
        score = _number(get("score", None))
        if score is None:
            score = _number(get("importance", None))
        out.append(_Source(pos if item_id is None else item_id, text, score, _number(get("ts", None)), pos))
    if not out:
        raise ValidationError("items is empty: there is nothing to compress", input=[])
    seen: set[Any] = set()
    for s in out:
        try:
            if s.id in seen:
                raise ValidationError(f"item id {s.id!r} appears twice", input=s.id, hint="give every item its own id")
            seen.add(s.id)
        except TypeError:
            raise ValidationError(f"item id {s.id!r} is not hashable", input=s.id) from None
    return out


# ---------------------------------------------------------------------- units


def _stripped(text: str, s: int, e: int) -> tuple[int, int] | None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e) if s < e else None


def _cut(text: str, s: int, e: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    bounds = [s, *sorted(c for c in set(cuts) if s < c < e), e]
    return [sp for a, b in itertools.pairwise(bounds) if (sp := _stripped(text, a, b))]


def _sentences(text: str, s: int, e: int) -> list[tuple[int, int]]:
    cuts = [m.end() for m in _SENTENCE.finditer(text, s, e)] + [m.end() for m in _LINE_BREAK.finditer(text, s, e)]
    return _cut(text, s, e, cuts)


def _turns(text: str) -> list[tuple[int, int]]:
    return _cut(text, 0, len(text), [m.start() for m in _TURN.finditer(text)])


def _code_blocks(text: str) -> list[tuple[int, int, tuple[int, int] | None]]:
    cuts = _definitions(text, 0, len(text))
    if not cuts:
        cuts = [m.end() for m in _PARAGRAPH.finditer(text)]
    out = []
    for s, e in _cut(text, 0, len(text), cuts):
        sig = None
        m = _TOP_DEF.search(text, s, e)
        if m is not None and (m.start() == s or text[m.start() - 1] == "\n"):
            end = text.find("\n", m.start(), e)
            end = e if end < 0 else end
            for _ in range(4):  # a signature over several lines ends with ':' or '{'
                if _SIG_END.search(text[m.start() : end]) or end >= e:
                    break
                nxt = text.find("\n", end + 1, e)
                end = e if nxt < 0 else nxt
            sp = _stripped(text, s, end)
            if sp is not None and sp[1] < e:
                sig = sp
        out.append((s, e, sig))
    return out


def _table(text: str) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    lines: list[tuple[int, int]] = []
    pos = 0
    for ln in text.splitlines(keepends=True):
        sp = _stripped(text, pos, pos + len(ln))
        if sp is not None:
            lines.append(sp)
        pos += len(ln)
    if len(lines) < 2:
        return None, lines
    h = 1
    if _MD_TABLE_SEP.match(text[lines[1][0] : lines[1][1]]):
        h = 2
    if h >= len(lines):
        return None, lines
    return (lines[0][0], lines[h - 1][1]), lines[h:]


def _markdown(text: str) -> list[tuple[int, int]]:
    fences = _fences(text)
    out: list[tuple[int, int]] = []
    pos = 0
    for fs, fe in [*fences, (len(text), len(text))]:
        for s, e in _cut(text, pos, fs, [m.end() for m in _PARAGRAPH.finditer(text, pos, fs)]):
            if estimate_tokens(text[s:e]) > 60:
                out.extend(_sentences(text, s, e))
            else:
                out.append((s, e))
        if fs < fe and (sp := _stripped(text, fs, fe)):
            out.append(sp)
        pos = fe
    return out


def _units_of(src: _Source, index: int, kind: str) -> tuple[list[_Unit], tuple[int, int] | None]:
    """The units of one item and, for a table, its header span."""
    text = src.text
    units: list[_Unit] = []
    header = None
    if kind == "dialogue":
        spans = _turns(text)
    elif kind == "code":
        spans = []
        for s, e, sig in _code_blocks(text):
            units.append(_Unit(index, s, e, text[s:e], len(units), kind))
            if sig is not None:
                units.append(
                    _Unit(index, sig[0], sig[1], text[sig[0] : sig[1]], len(units), kind, alt_of=len(units) - 1)
                )
        return units, None
    elif kind == "table":
        header, spans = _table(text)
    elif kind == "markdown":
        spans = _markdown(text)
    else:
        spans = _sentences(text, 0, len(text))
    for s, e in spans:
        units.append(_Unit(index, s, e, text[s:e], len(units), kind, header=header))
    return units, header


def _kinds(sources: list[_Source], kind: str) -> tuple[str, list[str]]:
    if kind != "auto":
        return kind, [kind] * len(sources)
    overall = detect_kind("\n".join(s.text for s in sources))
    per = []
    for s in sources:
        lines = sum(1 for ln in s.text.splitlines() if ln.strip())
        if lines >= 2:
            per.append(detect_kind(s.text))
        elif overall in ("dialogue", "table", "code"):
            per.append(overall)
        else:
            per.append("prose")
    return overall, per


# ---------------------------------------------------------------------- scoring


def _minmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo <= 1e-12:
        return np.zeros_like(x) if hi <= 0 else np.full_like(x, 0.5)
    return (x - lo) / (hi - lo)


def _bm25(query_terms: list[str], docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    n = len(docs)
    out = np.zeros(n)
    if not query_terms or n == 0:
        return out
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    avg = max(sum(len(d) for d in docs) / n, 1e-9)
    q = Counter(query_terms)
    for i, d in enumerate(docs):
        tf = Counter(d)
        norm = k1 * (1 - b + b * len(d) / avg)
        for t, qn in q.items():
            f = tf.get(t, 0)
            if f:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                out[i] += qn * idf * f * (k1 + 1) / (f + norm)
    return out


def _check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    w = dict(DEFAULT_WEIGHTS)
    if weights is None:
        return w
    if not isinstance(weights, Mapping):
        raise ValidationError(f"weights={weights!r} must be a dict", input=weights)
    for k, v in weights.items():
        if k not in DEFAULT_WEIGHTS:
            raise ValidationError(
                f"weights has an unknown component {k!r}",
                input=k,
                hint="use " + ", ".join(repr(c) for c in DEFAULT_WEIGHTS),
            )
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValidationError(f"weights[{k!r}]={v!r} must be a non-negative number", input=v)
        w[k] = float(v)
    return w


# ---------------------------------------------------------------------- the plan: score once, select per budget


class _Plan:
    """Units and their importance for one context and query; :meth:`select` runs one budget."""

    def __init__(
        self,
        items: Any,
        query: str | None,
        *,
        embedder: Any,
        kind: str,
        weights: Mapping[str, float] | None,
        length: Callable[[str], int] | None,
    ) -> None:
        if query is not None and not isinstance(query, str):
            raise ValidationError(f"query must be a string or None, not {type(query).__name__}", input=query)
        if kind != "auto" and kind not in KINDS:
            raise ValidationError(
                f"kind={kind!r} is not a content kind I know",
                input=kind,
                hint="use 'auto' or one of " + ", ".join(repr(k) for k in KINDS),
            )
        if length is not None and not callable(length):
            raise ValidationError(f"length={length!r} must be a function str -> int", input=length)
        self.weights = _check_weights(weights)
        self.sources = _sources(items)
        self.length = length
        self.kind, kinds = _kinds(self.sources, kind)
        self.units: list[_Unit] = []
        self.headers: dict[int, tuple[int, int]] = {}
        for i, (src, k) in enumerate(zip(self.sources, kinds, strict=True)):
            units, header = _units_of(src, i, k)
            offset = len(self.units)
            for u in units:
                if u.alt_of is not None:
                    u.alt_of += offset
            self.units.extend(units)
            if header is not None and units:
                self.headers[i] = header
        self.seps = [" " if k == "prose" else "\n" for k in kinds]
        self.lengths: dict[Any, int] = {s.id: 0 for s in self.sources}
        for u in self.units:
            if u.alt_of is None:
                self.lengths[self.sources[u.item].id] += u.end - u.start
        for i, (hs, he) in self.headers.items():
            self.lengths[self.sources[i].id] += he - hs
        self.query = query
        self._score(embedder)
        everything = [j for j, u in enumerate(self.units) if u.alt_of is None]
        self.full_text, _ = self._assemble(everything)
        self.original_tokens = self._count(self.full_text)

    # -------------------------------------------------------------- scoring
    def _score(self, embedder: Any) -> None:
        n = len(self.units)
        self.importance = np.zeros(n)
        self.vectors = np.zeros((n, 1), dtype=np.float32)
        if n == 0:
            return
        emb = _resolve_embedder(embedder)
        texts = [u.text for u in self.units]
        if self.query is not None:
            mat = np.asarray(emb.embed([*texts, self.query]), dtype=np.float32)
            vecs, qv = mat[:-1], mat[-1]
            cos = np.clip(vecs @ qv, 0.0, None)
            lex = _bm25(terms_of(self.query), [terms_of(t) for t in texts])
            rel = 0.5 * _minmax(cos) + 0.5 * _minmax(lex) if lex.any() else _minmax(cos)
        else:
            vecs = np.asarray(emb.embed(texts), dtype=np.float32)
            centre = vecs.mean(axis=0)
            norm = float(np.linalg.norm(centre))
            rel = _minmax(vecs @ (centre / norm)) if norm > 0 else np.zeros(n)
        self.vectors = vecs
        scores = np.array([np.nan if s.score is None else s.score for s in self.sources])
        prior = np.zeros(len(self.sources))
        if np.isfinite(scores).any():
            finite = np.isfinite(scores)
            prior[finite] = _minmax(scores[finite])
        ts = np.array([np.nan if s.ts is None else s.ts for s in self.sources])
        recency = np.zeros(len(self.sources))
        if np.isfinite(ts).any():
            finite = np.isfinite(ts)
            recency[finite] = _minmax(ts[finite])
        w = self.weights
        for j, u in enumerate(self.units):
            position = 1.0 / (1.0 + u.pos) if u.kind in ("prose", "markdown") else 0.0
            self.importance[j] = (
                w["relevance"] * rel[j]
                + w["score"] * prior[u.item]
                + w["position"] * position
                + w["recency"] * recency[u.item]
            )
            if u.alt_of is not None:  # a signature says less than its whole block
                self.importance[j] *= 0.6

    # -------------------------------------------------------------- assembly
    def _count(self, text: str) -> int:
        return estimate_tokens(text) if self.length is None else int(self.length(text))

    def _assemble(self, chosen: Iterable[int]) -> tuple[str, list[tuple[Any, tuple[int, int]]]]:
        by_item: dict[int, list[_Unit]] = {}
        for j in sorted(set(chosen), key=lambda j: (self.units[j].item, self.units[j].start, -self.units[j].end)):
            by_item.setdefault(self.units[j].item, []).append(self.units[j])
        parts: list[str] = []
        kept: list[tuple[Any, tuple[int, int]]] = []
        for i, units in by_item.items():
            src = self.sources[i]
            pieces = []
            if i in self.headers:
                hs, he = self.headers[i]
                pieces.append(src.text[hs:he])
                kept.append((src.id, (hs, he)))
            for u in units:
                pieces.append(u.text)
                kept.append((src.id, (u.start, u.end)))
            parts.append(self.seps[i].join(pieces))
        return "\n".join(parts), kept

    def _cost(self, j: int, items_open: set[int]) -> int:
        """Upper bound of the tokens unit ``j`` adds (its text and one separator; a table header once)."""
        u = self.units[j]
        extra = 0
        if u.header is not None and u.item not in items_open:
            hs, he = u.header
            extra = self._unit_cost(self.sources[u.item].text[hs:he])
        return self._unit_cost(u.text) + extra

    def _unit_cost(self, text: str) -> int:
        if self.length is None:
            return len(text) + 1  # characters; tokens are ceil(chars / 4) of the total
        return int(self.length(text + "\n"))

    # -------------------------------------------------------------- selection
    def select(self, budget: int, strategy: str = "mmr", lambda_: float = 0.7, seed: int = 0) -> Compressed:
        units = self.units
        if self._count(self.full_text) <= budget:
            chosen = [j for j, u in enumerate(units) if u.alt_of is None]
        else:
            chosen = self._greedy(budget, strategy, lambda_, seed)
        text, kept = self._assemble(chosen)
        tokens = self._count(text)
        while tokens > budget and chosen:  # only a length function that is not subadditive gets here
            chosen.remove(min(chosen, key=lambda j: (self.importance[j], -j)))
            text, kept = self._assemble(chosen)
            tokens = self._count(text)
        kept_items = {i for i, _ in kept}
        dropped = [s.id for s in self.sources if s.id not in kept_items and s.text.strip()]
        return Compressed(
            text=text,
            kept=kept,
            tokens=tokens,
            ratio=tokens / self.original_tokens if self.original_tokens else 1.0,
            dropped=dropped,
            budget_tokens=budget,
            original_tokens=self.original_tokens,
            kind=self.kind,
            strategy=strategy,
            _lengths=self.lengths,
        )

    def _order(self, strategy: str, seed: int) -> list[int]:
        n = len(self.units)
        if strategy == "first":
            return sorted(range(n), key=lambda j: (self.units[j].item, self.units[j].pos))
        if strategy == "recent":

            def newest(j: int) -> tuple[float, int, int]:
                u = self.units[j]
                ts = self.sources[u.item].ts
                return (-(ts if ts is not None else -math.inf), -u.item, -u.pos)

            return sorted(range(n), key=newest)
        if strategy == "random":
            return [int(j) for j in np.random.default_rng(seed).permutation(n)]
        return sorted(range(n), key=lambda j: (-self.importance[j], j))  # importance

    def _greedy(self, budget: int, strategy: str, lambda_: float, seed: int) -> list[int]:
        units = self.units
        limit = budget if self.length is not None else 4 * budget  # characters, for the default count
        used = -1 if self.length is None else 0  # the first unit has no separator before it
        open_items: set[int] = set()
        chosen: list[int] = []
        taken_block: set[int] = set()  # code blocks taken whole or as signature

        def block(j: int) -> int:
            alt = units[j].alt_of
            return j if alt is None else alt

        def fits(j: int) -> bool:
            return block(j) not in taken_block and used + self._cost(j, open_items) <= limit

        def take(j: int) -> None:
            nonlocal used
            used += self._cost(j, open_items)
            chosen.append(j)
            open_items.add(units[j].item)
            taken_block.add(block(j))

        if strategy != "mmr":
            strict = strategy in ("first", "recent")  # truncation keeps a contiguous run
            for j in self._order(strategy, seed):
                if units[j].alt_of is not None and strategy != "importance":
                    continue
                if fits(j):
                    take(j)
                elif strict and units[j].alt_of is None:
                    break
            return chosen
        n = len(units)
        if n == 0:
            return chosen
        imp = self.importance
        max_sim = np.zeros(n)
        alive = np.ones(n, dtype=bool)
        while True:
            gain = lambda_ * imp - (1.0 - lambda_) * max_sim
            best, best_gain = -1, -math.inf
            for j in np.argsort(-gain, kind="stable"):
                j = int(j)
                if not alive[j]:
                    continue
                if fits(j):
                    best, best_gain = j, gain[j]
                    break
                if units[j].header is None or units[j].item in open_items:
                    alive[j] = False  # it will not fit later either: the budget left only shrinks
            if best < 0 or not math.isfinite(best_gain):
                return chosen
            take(best)
            alive[best] = False
            max_sim = np.maximum(max_sim, np.clip(self.vectors @ self.vectors[best], 0.0, None))


# ---------------------------------------------------------------------- public API


def _check_budget(budget_tokens: Any) -> int:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int | np.integer) or budget_tokens < 0:
        raise ValidationError(
            f"budget_tokens={budget_tokens!r} must be a non-negative integer (tokens)", input=budget_tokens
        )
    return int(budget_tokens)


def _check_strategy(strategy: Any, lambda_: Any) -> None:
    if strategy not in STRATEGIES:
        raise ValidationError(
            f"strategy={strategy!r} is not a compression strategy",
            input=strategy,
            hint="use one of " + ", ".join(repr(s) for s in STRATEGIES),
        )
    if isinstance(lambda_, bool) or not isinstance(lambda_, int | float) or not 0.0 <= float(lambda_) <= 1.0:
        raise ValidationError(f"lambda_={lambda_!r} must be a number in [0, 1]", input=lambda_)


def compress(
    items: Sequence[Any],
    query: str | None = None,
    budget_tokens: int = 512,
    *,
    strategy: str = "mmr",
    lambda_: float = 0.7,
    embedder: Any = None,
    kind: str = "auto",
    weights: Mapping[str, float] | None = None,
    length: Callable[[str], int] | None = None,
    seed: int = 0,
    bus: InProcessBus | None = None,
) -> Compressed:
    """Compress ``items`` into at most ``budget_tokens`` tokens, keeping the most important units.

    Everything is kept, in order, when it fits.  Otherwise units are selected by
    ``strategy`` (see the module docs) and put back in their original order.

    Args:
        items: strings, or objects/dicts with ``text`` and optionally ``id``, ``score``
            (or ``importance``) and ``ts`` (epoch seconds or a datetime).  Ids must be unique.
        query: what the context is for; ``None`` ranks units by centrality instead.
        budget_tokens: most tokens of the result (``>= 0``; 0 keeps nothing).
        strategy: one of :data:`STRATEGIES`.
        lambda_: MMR trade-off in ``[0, 1]``: 1 is importance only, lower penalises
            redundancy more.
        embedder: an :class:`~lumina_lab.memory.embeddings.Embedder` or a spec for
            :func:`~lumina_lab.memory.embeddings.embedder_from` (default: a 512-dimensional
            ``HashingEmbedder``).
        kind: ``"auto"`` or one of :data:`~lumina_lab.memory.chunking.KINDS`: how items are cut into units.
        weights: importance weights by component (``relevance``, ``score``, ``position``,
            ``recency``); missing ones take :data:`DEFAULT_WEIGHTS`.
        length: token counter ``str -> int`` (default :func:`~lumina_lab.memory.chunking.estimate_tokens`).
        seed: seed of the ``"random"`` strategy.
        bus: publishes a ``memory.compressed`` event there when given.

    Raises:
        ValidationError: empty or malformed items, duplicate ids, a negative budget, an unknown
            strategy or kind, a bad ``lambda_`` or weights.
    """
    t0 = time.perf_counter()
    budget = _check_budget(budget_tokens)
    _check_strategy(strategy, lambda_)
    plan = _Plan(items, query, embedder=embedder, kind=kind, weights=weights, length=length)
    out = plan.select(budget, strategy, float(lambda_), seed)
    if bus is not None:
        from .compression_events import MemoryCompressed, emit

        emit(
            bus,
            MemoryCompressed,
            items=len(plan.sources),
            kept_items=len(out.kept_ids),
            units=sum(1 for u in plan.units if u.alt_of is None),
            kept_units=len(out.kept),
            tokens_in=out.original_tokens,
            tokens_out=out.tokens,
            budget_tokens=budget,
            ratio=round(out.ratio, 6),
            strategy=strategy,
            kind=out.kind,
            query=query is not None,
            ms=(time.perf_counter() - t0) * 1000.0,
        )
    return out


# ---------------------------------------------------------------------- evaluation


def _norm_text(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def _example(ex: Any, k: int) -> tuple[str | None, Sequence[Any], list[Any]]:
    if isinstance(ex, Mapping):
        try:
            query, items = ex.get("query"), ex["items"]
        except KeyError:
            raise ValidationError(f"example {k} has no 'items'", input=ex) from None
        evidence = ex.get("evidence", ex.get("evidence_ids", []))
    else:
        try:
            query, items, evidence = ex
        except (TypeError, ValueError):
            raise ValidationError(
                f"example {k} must be (query, items, evidence) or a dict with those keys",
                input=type(ex).__name__,
            ) from None
    if isinstance(evidence, str):
        evidence = [evidence]
    try:
        evidence = list(evidence or [])
    except TypeError:
        raise ValidationError(f"example {k}: evidence must be a list of item ids or strings", input=evidence) from None
    return query, items, evidence


def _check_ratios(ratios: Any) -> tuple[float, ...]:
    try:
        values = tuple(ratios)
    except TypeError:
        raise ValidationError(f"ratios={ratios!r} must be a sequence of numbers in (0, 1]", input=ratios) from None
    if not values:
        raise ValidationError("ratios is empty", input=ratios, hint=f"e.g. ratios={DEFAULT_RATIOS}")
    for r in values:
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 < float(r) <= 1.0:
            raise ValidationError(
                f"ratio {r!r} must be a number in (0, 1] (the share of the tokens kept)",
                input=r,
                hint=f"e.g. ratios={DEFAULT_RATIOS}",
            )
    return tuple(sorted({float(r) for r in values}, reverse=True))


class CompressionEvaluator:
    """How much of the evidence survives compression, at each ratio, for ours and baselines.

    For each example ``(query, items, evidence)`` and each ratio ``r``, the budget is
    ``floor(r * original_tokens)`` and the context is compressed by ``strategy`` and by every
    baseline at that same budget.  Evidence is a list of item ids (an item counts by the
    share of its characters kept, so a whole dialogue turn counts 0 or 1) or of strings
    (1 when the string occurs in the compressed text, case and spacing aside); an
    example's retention is the mean over its evidence.  Examples without evidence are skipped.

    Args:
        ratios: compression ratios in ``(0, 1]``.
        strategy: our strategy (one of :data:`STRATEGIES`).
        baselines: names from :data:`BASELINES` (``truncate-oldest``, ``truncate-newest``,
            ``random``, ``importance``).
        lambda_, embedder, kind, weights: as for :func:`compress`.
        seed: seed of the random baseline (example ``k`` uses ``seed + k``).
    """

    def __init__(
        self,
        ratios: Sequence[float] = DEFAULT_RATIOS,
        *,
        strategy: str = "mmr",
        baselines: Sequence[str] = ("truncate-oldest", "random"),
        lambda_: float = 0.7,
        embedder: Any = None,
        kind: str = "auto",
        weights: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        self.ratios = _check_ratios(ratios)
        _check_strategy(strategy, lambda_)
        if isinstance(baselines, str):
            baselines = [baselines]
        for b in baselines:
            if b not in BASELINES:
                raise ValidationError(
                    f"baseline {b!r} is not one I know",
                    input=b,
                    hint="use any of " + ", ".join(repr(n) for n in BASELINES),
                )
        self.strategy = strategy
        self.baselines = tuple(baselines)
        self.lambda_ = float(lambda_)
        self.embedder = embedder
        self.kind = kind
        self.weights = _check_weights(weights)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return (
            f"CompressionEvaluator(ratios={self.ratios}, strategy={self.strategy!r}, "
            f"baselines={self.baselines}, lambda_={self.lambda_:g})"
        )

    def _methods(self) -> list[tuple[str, str]]:
        return [(self.strategy, self.strategy)] + [(b, BASELINES[b]) for b in self.baselines if b != self.strategy]

    def per_example(self, examples: Iterable[Any]) -> pd.DataFrame:
        """One row per example, ratio and method: ``example``, ``method``, ``ratio``,
        ``evidence_retained``, ``all_evidence`` (1 when all of it survived), ``tokens``,
        ``budget_tokens``, ``original_tokens``."""
        import pandas as pd

        rows = []
        emb = _resolve_embedder(self.embedder)
        for k, ex in enumerate(examples):
            query, items, evidence = _example(ex, k)
            if not evidence:
                continue
            plan = _Plan(items, query, embedder=emb, kind=self.kind, weights=self.weights, length=None)
            ids = {s.id for s in plan.sources}
            for ratio in self.ratios:
                budget = math.floor(ratio * plan.original_tokens + 1e-9)
                for name, strategy in self._methods():
                    out = plan.select(budget, strategy, self.lambda_, self.seed + k)
                    text = _norm_text(out.text) if any(e not in ids for e in evidence) else ""
                    scores = [out.coverage(e) if e in ids else float(_norm_text(str(e)) in text) for e in evidence]
                    rows.append(
                        {
                            "example": k,
                            "method": name,
                            "ratio": ratio,
                            "evidence_retained": float(np.mean(scores)),
                            "all_evidence": float(all(s >= 0.999 for s in scores)),
                            "tokens": out.tokens,
                            "budget_tokens": budget,
                            "original_tokens": plan.original_tokens,
                        }
                    )
        columns = [
            "example",
            "method",
            "ratio",
            "evidence_retained",
            "all_evidence",
            "tokens",
            "budget_tokens",
            "original_tokens",
        ]
        return pd.DataFrame(rows, columns=columns)

    def evaluate(self, examples: Iterable[Any]) -> pd.DataFrame:
        """The curve: one row per method and ratio with the means over examples of
        ``evidence_retained``, ``all_evidence``, ``tokens``, ``budget_tokens``, the achieved
        ``actual_ratio`` (tokens / original tokens) and the number of ``examples``.

        Raises:
            ValidationError: malformed examples, or none with evidence.
        """
        return self.aggregate(self.per_example(examples))

    def aggregate(self, per: pd.DataFrame) -> pd.DataFrame:
        """The curve (as :meth:`evaluate` returns it) from a :meth:`per_example` frame."""
        if per.empty:
            raise ValidationError(
                "no example has evidence: nothing to measure",
                input="examples",
                hint="give each example as (query, items, evidence ids or strings)",
            )
        per = per.assign(actual_ratio=per["tokens"] / per["original_tokens"].clip(lower=1))
        order = {name: i for i, (name, _) in enumerate(self._methods())}
        out = (
            per.groupby(["method", "ratio"], sort=False)
            .agg(
                evidence_retained=("evidence_retained", "mean"),
                all_evidence=("all_evidence", "mean"),
                tokens=("tokens", "mean"),
                budget_tokens=("budget_tokens", "mean"),
                actual_ratio=("actual_ratio", "mean"),
                examples=("example", "nunique"),
            )
            .reset_index()
        )
        out = out.sort_values(["method", "ratio"], key=lambda s: s.map(order) if s.name == "method" else -s)
        return out.reset_index(drop=True)

    def plot(self, df: pd.DataFrame) -> Any:
        """:func:`plot_compression_curve` of ``df``."""
        return plot_compression_curve(df)


def evaluate_compression(
    examples: Iterable[Any],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    *,
    strategy: str = "mmr",
    baselines: Sequence[str] = ("truncate-oldest", "random"),
    lambda_: float = 0.7,
    embedder: Any = None,
    kind: str = "auto",
    weights: Mapping[str, float] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The quality-vs-ratio curve of ``examples`` as a DataFrame (see :meth:`CompressionEvaluator.evaluate`).

    Each example is ``(query, items, evidence)`` (or a dict with those keys), where evidence
    lists item ids or evidence strings.

    >>> ex = [("what colour is the sky?", ["The sky is blue.", "Grass is green.", "Snow is white."], [0])]
    >>> df = evaluate_compression(ex, ratios=(1.0, 0.34), baselines=["truncate-oldest"])
    >>> df[["method", "ratio", "evidence_retained"]].to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'method': 'mmr', 'ratio': 1.0, 'evidence_retained': 1.0},
     {'method': 'mmr', 'ratio': 0.34, 'evidence_retained': 1.0},
     {'method': 'truncate-oldest', 'ratio': 1.0, 'evidence_retained': 1.0},
     {'method': 'truncate-oldest', 'ratio': 0.34, 'evidence_retained': 0.0}]
    """
    ev = CompressionEvaluator(
        ratios,
        strategy=strategy,
        baselines=baselines,
        lambda_=lambda_,
        embedder=embedder,
        kind=kind,
        weights=weights,
        seed=seed,
    )
    return ev.evaluate(examples)


def _plot_backend() -> str | None:
    """The plotting library :func:`plot_compression_curve` will use: hvplot, holoviews, matplotlib or none."""
    from importlib.util import find_spec

    if find_spec("holoviews") is not None:  # hvplot needs holoviews (and would import panel first)
        return "hvplot" if find_spec("hvplot") is not None else "holoviews"
    if find_spec("matplotlib") is not None:
        return "matplotlib"
    return None


def plot_compression_curve(df: pd.DataFrame, *, y: str = "evidence_retained", title: str | None = None) -> Any:
    """Plot evidence retained (``y``) against the compression ratio, one line per method.

    Uses hvplot (or plain holoviews) when installed, else matplotlib (returns the figure),
    else returns ``df`` unchanged: a notebook shows the table instead of a plot.

    Raises:
        ValidationError: ``df`` lacks the ``method``, ``ratio`` or ``y`` columns.
    """
    missing = [c for c in ("method", "ratio", y) if c not in getattr(df, "columns", ())]
    if missing:
        raise ValidationError(
            f"the DataFrame lacks column(s) {missing}", input=missing, hint="pass the output of evaluate_compression()"
        )
    title = title or "Evidence retained vs compression ratio"
    backend = _plot_backend()
    if backend == "hvplot":
        import hvplot.pandas  # noqa: F401

        return df.hvplot.line(x="ratio", y=y, by="method", title=title, xlim=(0, 1.02), ylim=(0, 1.02))
    if backend == "holoviews":
        import holoviews as hv

        curves = [
            hv.Curve(part.sort_values("ratio"), "ratio", y, label=str(name))
            for name, part in df.groupby("method", sort=False)
        ]
        return hv.Overlay(curves).opts(title=title)
    if backend != "matplotlib":
        return df
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, part in df.groupby("method", sort=False):
        part = part.sort_values("ratio")
        ax.plot(part["ratio"], part[y], marker="o", label=str(name))
    ax.set_xlabel("compression ratio (tokens kept / original)")
    ax.set_ylabel(y.replace("_", " "))
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend()
    plt.close(fig)
    return fig
