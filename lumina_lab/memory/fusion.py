"""Rank fusion: merge several ranked hit lists (vector search, keyword search, ...) into one.

Every input list is a sequence of ``(id, score)`` pairs, **best first**; an id's
rank in a list is its 1-based position (if an id occurs twice in one list, its
first occurrence counts and the rest are ignored).  Scores must be "higher is
better" (negate distances before fusing).  Two methods:

* :func:`rrf` — reciprocal-rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009):
  ``score(d) = sum_i w_i / (k + rank_i(d))`` over the lists that contain ``d``.
  Uses ranks only, so lists with incomparable score scales fuse safely.
* :func:`weighted` — score fusion: each list's scores are normalised
  (``"minmax"``, ``"zscore"`` or ``"none"``), then ``score(d) = sum_i w_i * norm_i(d)``,
  where a list that does not contain ``d`` contributes 0.

:func:`fuse` is the two-list (vector + keyword) convenience that a hybrid search
calls, with ``alpha`` the weight of the vector list and ``1 - alpha`` that of the
keyword list.

All return a list of :class:`Fused` ``(id, score, ranks)``, best first; ``ranks``
maps each input list's name (the key of a mapping of lists, else its position
``0, 1, ...``; ``"vector"``/``"keyword"`` for :func:`fuse`) to the id's 1-based rank
in it, or ``None`` where absent.  Only ids found in a list of positive weight are
returned.  Ties are broken deterministically: higher score, then better (smaller)
best rank among the positively weighted lists, then id.

>>> vector = [("a", 0.91), ("b", 0.85), ("c", 0.40)]
>>> keyword = [("c", 12.0), ("a", 7.5)]
>>> [(f.id, round(f.score, 5), f.ranks) for f in rrf([vector, keyword])]
[('a', 0.03252, {0: 1, 1: 2}), ('c', 0.03227, {0: 3, 1: 1}), ('b', 0.01613, {0: 2, 1: None})]
>>> [f.id for f in fuse("weighted", vector, keyword, alpha=0.5)]
['a', 'c', 'b']
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from ..errors import ValidationError

__all__ = ["MODES", "NORMALISATIONS", "Fused", "fuse", "rrf", "weighted"]

MODES = ("rrf", "weighted")
"""Fusion modes :func:`fuse` accepts."""

NORMALISATIONS = ("minmax", "zscore", "none")
"""Per-list score normalisations :func:`weighted` accepts."""

Hit = tuple[str, float]
Rankings = Mapping[Any, Sequence[Hit]] | Sequence[Sequence[Hit]]
Weights = Mapping[Any, float] | Sequence[float]


@dataclass(frozen=True, slots=True)
class Fused:
    """One fused hit.

    Attributes:
        id: the document id.
        score: fused score (higher is better; its scale depends on the method and weights).
        ranks: input list name -> 1-based rank of ``id`` in that list, ``None`` where absent.

    Unpacks like the tuple ``(id, score, ranks)``; hashes by ``(id, score)``.
    """

    id: str
    score: float
    ranks: Mapping[Any, int | None] = field(hash=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.id, self.score, self.ranks))


@dataclass(slots=True)
class _List:
    name: Any
    weight: float
    hits: list[Hit]  # first occurrence of each id, in rank order
    rank: dict[str, int]  # id -> 1-based rank


def _is_number(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValidationError(f"limit={limit!r} must be None or an integer >= 0", input=limit)
    return limit


def _prepare(rankings: Rankings, weights: Weights | None, *, need_scores: bool) -> list[_List]:
    """Validate ``rankings`` and ``weights``; name the lists; drop repeated ids within a list."""
    if isinstance(rankings, Mapping):
        names: list[Any] = list(rankings)
        lists: list[Any] = [rankings[n] for n in names]
    elif isinstance(rankings, Sequence) and not isinstance(rankings, str | bytes):
        names = list(range(len(rankings)))
        lists = list(rankings)
    else:
        raise ValidationError(
            f"rankings must be a sequence (or a mapping) of hit lists, not {type(rankings).__name__}",
            input=rankings,
            hint="pass e.g. [vector_hits, keyword_hits], each a list of (id, score) pairs, best first",
        )
    if not lists:
        raise ValidationError("rankings is empty", input=rankings, hint="pass at least one list of (id, score) pairs")

    if weights is None:
        ws = [1.0] * len(lists)
    elif isinstance(weights, Mapping):
        if set(weights) != set(names):
            raise ValidationError(
                f"weights has keys {sorted(map(str, weights))} but rankings has {sorted(map(str, names))}",
                input=weights,
                hint="give exactly one weight per ranked list",
            )
        ws = [weights[n] for n in names]
    elif isinstance(weights, Sequence) and not isinstance(weights, str | bytes):
        if len(weights) != len(lists):
            raise ValidationError(
                f"got {len(weights)} weights for {len(lists)} ranked lists",
                input=weights,
                hint="give exactly one weight per ranked list, in the same order",
            )
        ws = list(weights)
    else:
        raise ValidationError(f"weights must be a sequence of numbers, not {type(weights).__name__}", input=weights)
    for name, w in zip(names, ws, strict=True):
        if not _is_number(w) or not math.isfinite(w) or w < 0:
            raise ValidationError(
                f"weight of list {name!r} is {w!r}; weights must be finite numbers >= 0",
                input=w,
                hint="use 0 to ignore a list, a positive number to count it",
            )
    if not any(w > 0 for w in ws):
        raise ValidationError("every weight is 0", input=weights, hint="give at least one list a positive weight")

    out = []
    for name, w, hits in zip(names, ws, lists, strict=True):
        if isinstance(hits, str | bytes) or not isinstance(hits, Sequence):
            raise ValidationError(
                f"ranked list {name!r} must be a sequence of (id, score) pairs, not {type(hits).__name__}", input=hits
            )
        kept: list[Hit] = []
        rank: dict[str, int] = {}
        for pos, hit in enumerate(hits, start=1):
            if (
                not isinstance(hit, Sequence)
                or isinstance(hit, str | bytes)
                or len(hit) != 2
                or not isinstance(hit[0], str)
            ):
                raise ValidationError(
                    f"item #{pos} of ranked list {name!r} is {hit!r}, not an (id: str, score) pair", input=hit
                )
            doc_id, score = hit
            if need_scores and (not _is_number(score) or not math.isfinite(score)):
                raise ValidationError(
                    f"score of {doc_id!r} in ranked list {name!r} is {score!r}, not a finite number", input=score
                )
            if doc_id in rank:
                continue
            if need_scores and kept and score > kept[-1][1]:
                raise ValidationError(
                    f"ranked list {name!r} is not sorted best first: {doc_id!r} (rank {pos}) scores {score!r}, "
                    f"above {kept[-1][0]!r} before it ({kept[-1][1]!r})",
                    input=hits,
                    hint="pass hits sorted by descending score, with higher meaning better (negate distances)",
                )
            rank[doc_id] = pos
            kept.append((doc_id, float(score) if need_scores else 0.0))
        out.append(_List(name, float(w), kept, rank))
    return out


def _finish(lists: list[_List], scores: dict[str, float], limit: int | None) -> list[Fused]:
    """Sort by (score desc, best positively-weighted rank, id) and attach every list's rank."""
    live = [lst for lst in lists if lst.weight > 0]

    def key(doc_id: str) -> tuple[float, int, str]:
        best = min(lst.rank[doc_id] for lst in live if doc_id in lst.rank)
        return (-scores[doc_id], best, doc_id)

    ordered = sorted(scores, key=key)
    if limit is not None:
        ordered = ordered[:limit]
    return [Fused(doc_id, scores[doc_id], {lst.name: lst.rank.get(doc_id) for lst in lists}) for doc_id in ordered]


def rrf(rankings: Rankings, k: float = 60, weights: Weights | None = None, limit: int | None = None) -> list[Fused]:
    """Reciprocal-rank fusion: ``score(d) = sum_i weights[i] / (k + rank_i(d))`` (ranks start at 1).

    Args:
        rankings: hit lists ``[(id, score), ...]``, best first (a sequence, or a mapping of name -> list).
            Only the order is used; scores are ignored.
        k: rank offset, ``>= 0``; the default 60 is Cormack et al.'s.  Larger ``k`` flattens the
            advantage of top ranks.
        weights: one weight ``>= 0`` per list (same order, or same keys); default all 1.
        limit: keep at most this many fused hits (default all).

    Returns:
        :class:`Fused` hits, best first (see the module docstring for ties and ``ranks``).

    Raises:
        ValidationError: malformed lists, a weights/rankings mismatch, a negative or
            non-finite weight, every weight 0, ``k < 0`` or a bad ``limit``.
    """
    if not _is_number(k) or not math.isfinite(k) or k < 0:
        raise ValidationError(f"k={k!r} must be a finite number >= 0", input=k, hint="60 is the usual value")
    limit = _check_limit(limit)
    lists = _prepare(rankings, weights, need_scores=False)
    scores: dict[str, float] = {}
    for lst in lists:
        if lst.weight == 0:
            continue
        for doc_id, _ in lst.hits:
            scores[doc_id] = scores.get(doc_id, 0.0) + lst.weight / (k + lst.rank[doc_id])
    return _finish(lists, scores, limit)


def _normalise(values: list[float], how: str) -> list[float]:
    if not values or how == "none":
        return values
    if how == "minmax":
        lo, hi = min(values), max(values)
        if hi == lo:
            return [1.0] * len(values)
        return [(v - lo) / (hi - lo) for v in values]
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if std == 0:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


def weighted(
    rankings: Rankings,
    weights: Weights | None = None,
    normalise: str = "minmax",
    limit: int | None = None,
) -> list[Fused]:
    """Score fusion: ``score(d) = sum_i weights[i] * norm_i(score_i(d))``; a list without ``d`` adds 0.

    Normalisations, applied to each list's scores separately:

    * ``"minmax"`` (default): ``(s - min) / (max - min)``, so each list spans ``[0, 1]``
      (its best hit 1, its worst 0); a list whose scores are all equal (e.g. one hit) maps them to 1.
    * ``"zscore"``: ``(s - mean) / std`` (population std); a list with zero spread maps to 0.
      Below-average hits then score below absent ones (which add 0).
    * ``"none"``: raw scores (only sensible when the lists share a scale).

    Args:
        rankings: hit lists ``[(id, score), ...]`` sorted by descending score (a sequence, or a
            mapping of name -> list).  Scores must be finite, higher is better.
        weights: one weight ``>= 0`` per list; default all 1.  They are not rescaled.
        normalise: one of :data:`NORMALISATIONS`.
        limit: keep at most this many fused hits (default all).

    Raises:
        ValidationError: as :func:`rrf`, plus a non-finite score, a list not sorted by descending
            score, or an unknown ``normalise``.
    """
    if normalise not in NORMALISATIONS:
        raise ValidationError(
            f"normalise={normalise!r} is not a known normalisation",
            input=normalise,
            hint=f"use one of {', '.join(map(repr, NORMALISATIONS))}",
        )
    limit = _check_limit(limit)
    lists = _prepare(rankings, weights, need_scores=True)
    scores: dict[str, float] = {}
    for lst in lists:
        if lst.weight == 0:
            continue
        normed = _normalise([s for _, s in lst.hits], normalise)
        for (doc_id, _), v in zip(lst.hits, normed, strict=True):
            scores[doc_id] = scores.get(doc_id, 0.0) + lst.weight * v
    return _finish(lists, scores, limit)


def fuse(
    mode: str,
    vector_hits: Sequence[Hit],
    keyword_hits: Sequence[Hit],
    alpha: float = 0.5,
    *,
    k: float = 60,
    normalise: str = "minmax",
    limit: int | None = None,
) -> list[Fused]:
    """Fuse a vector search's hits with a keyword search's: the hybrid search step.

    The vector list gets weight ``alpha`` and the keyword list ``1 - alpha``
    (so ``alpha=1`` is pure vector search, ``alpha=0`` pure keyword search, and
    with ``mode="rrf"`` and ``alpha=0.5`` the scores are half of unweighted RRF's).
    ``ranks`` of each result are ``{"vector": rank_or_None, "keyword": rank_or_None}``.

    Args:
        mode: ``"rrf"`` (:func:`rrf` with offset ``k``) or ``"weighted"`` (:func:`weighted` with ``normalise``).
        vector_hits: ``(id, similarity)`` pairs, best first (negate distances).
        keyword_hits: ``(id, BM25 score)`` pairs, best first, e.g. :meth:`KeywordIndex.search`'s result.
        alpha: weight of the vector list, in ``[0, 1]``.
        k: RRF rank offset (``mode="rrf"`` only).
        normalise: score normalisation (``mode="weighted"`` only).
        limit: keep at most this many fused hits.

    Raises:
        ValidationError: unknown ``mode`` (the message lists the allowed ones), ``alpha``
            outside ``[0, 1]``, or any error of :func:`rrf` / :func:`weighted`.
    """
    if mode not in MODES:
        raise ValidationError(
            f"mode={mode!r} is not a fusion mode", input=mode, hint=f"use one of {', '.join(map(repr, MODES))}"
        )
    if not _is_number(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValidationError(
            f"alpha={alpha!r} must be a number in [0, 1] (the weight of the vector hits)",
            input=alpha,
            hint="0.5 weighs both lists equally; 1 is vector only, 0 keyword only",
        )
    rankings = {"vector": vector_hits, "keyword": keyword_hits}
    weights = {"vector": float(alpha), "keyword": 1.0 - float(alpha)}
    if mode == "rrf":
        return rrf(rankings, k=k, weights=weights, limit=limit)
    return weighted(rankings, weights, normalise=normalise, limit=limit)
