"""The in-memory engine behind the numpy and DuckDB stores: a unit-vector matrix, columnar
metadata for filters, an exact top-k and an optional approximate (usearch HNSW) index.

Rows live in *slots* appended in increasing ``seq`` order (a per-store write counter);
replacing an item kills its old slot and appends a new one, so ``seqs`` stays sorted and
the approximate index, keyed by ``seq``, maps back to slots with one ``searchsorted``.
Dead slots are compacted away when they outnumber live ones.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .filters import Filter

__all__ = ["AnnIndex", "VectorTable"]

log = logging.getLogger(__name__)
_VERSIONS = itertools.count(1)


class AnnIndex:
    """An HNSW graph (usearch) over unit vectors keyed by ``seq``, used to *propose* candidates.

    The graph stores int8-quantised copies of the vectors (``dtype="i8"``: 4x smaller and
    faster to load than float32); :meth:`VectorTable.topk` re-scores the candidates it returns
    exactly against the float32 matrix, so quantisation only shapes the walk, never the scores.
    The walk widens with the collection (``expansion_search`` is the floor up to 62,500 rows and
    grows with the square root of the size: 512 at 1M rows, at most 8x), because neighbours
    inside a dense cluster get harder to reach as it fills.

    An index restored from disk is memory-mapped (``view``): opening costs no copy. The first
    write turns the view into an owned copy.
    """

    # connectivity 32, not 16: on 1M clustered 384-d vectors, 16 leaves ~5% of points unreachable
    # (recall@10 stuck at 0.95 at any breadth), 32 reaches 0.986 (benchmarks/vector_search.py).
    defaults: dict[str, Any] = {"connectivity": 32, "expansion_add": 64, "expansion_search": 128, "dtype": "i8"}
    builds = 0  # indexes built from rows in this process (tests check reopen does not rebuild)

    def __init__(self, dim: int, **params: Any) -> None:
        from usearch.index import Index

        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown usearch parameters {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.dim = dim
        self.params = {**self.defaults, **params}
        self.index = Index(ndim=dim, metric="cos", **self.params)
        self.view = False
        self.fixed_expansion: int | None = None  # benchmarks sweep the breadth with this

    def __len__(self) -> int:
        return len(self.index)

    def _own(self) -> None:
        if self.view:  # a memory-mapped index is read-only: copy it into memory before the first write
            self.index = self.index.copy()
            self.view = False

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        if len(seqs):
            self._own()
            self.index.add(np.asarray(seqs, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32), threads=0)

    def remove(self, seqs: Sequence[int]) -> None:
        if len(seqs):
            self._own()
            self.index.remove(np.asarray(seqs, dtype=np.uint64))

    def expansion(self, count: int) -> int:
        """The search breadth for ``count`` results at the index's current size (``fixed_expansion`` overrides)."""
        if self.fixed_expansion:
            return max(self.fixed_expansion, count)
        base = int(self.params["expansion_search"])
        grown = int(base * math.sqrt(max(len(self), 1) / 62_500))
        return max(base, min(grown, 8 * base), 2 * count)

    def search(self, q: np.ndarray, count: int) -> np.ndarray:
        """Keys (``seq``) of up to ``count`` approximate neighbours of ``q``, roughly best first."""
        self.index.expansion_search = self.expansion(count)
        m = self.index.search(q, count)
        return np.asarray(m.keys, dtype=np.int64)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        self.index.save(str(tmp))
        tmp.replace(path)  # a view of the old file keeps its (unlinked) inode

    @classmethod
    def build(cls, dim: int, seqs: np.ndarray, vectors: np.ndarray, **params: Any) -> AnnIndex:
        ann = cls(dim, **params)
        ann.add(seqs, vectors)
        AnnIndex.builds += 1
        return ann

    @classmethod
    def load(cls, path: Path, dim: int, *, view: bool = True, **params: Any) -> AnnIndex:
        """Open a saved index (memory-mapped when ``view``), keeping its stored layout."""
        from usearch.index import Index

        meta = Index.metadata(str(path))
        if not meta or int(meta["dimensions"]) != dim:
            raise ValueError(f"{path} is not a {dim}-dimensional usearch index")
        ann = cls(dim, **params)
        ann.index = Index.restore(str(path), view=view, **{k: v for k, v in ann.params.items() if k != "dtype"})
        ann.view = view
        return ann


class VectorTable:
    """Unit vectors, texts and metadata of one collection, searchable exactly or approximately.

    Args:
        dim: vector dimension.
        exact_limit: at most this many candidate rows are scanned exactly; larger
            collections use the approximate index (built lazily on first search).
        ann_params: usearch parameters (``connectivity``, ``expansion_add``, ``expansion_search``,
            ``dtype``); see :attr:`AnnIndex.defaults`.
    """

    def __init__(self, dim: int, *, exact_limit: int = 20_000, ann_params: dict[str, Any] | None = None) -> None:
        self.dim = dim
        self.exact_limit = exact_limit
        self.ann_params = dict(ann_params or {})
        self._cap = 0
        self.n = 0  # slots used
        self.matrix = np.zeros((0, dim), np.float32)
        self.seqs = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)
        self.ids: list[str | None] = []
        self.texts: list[str] = []
        self.meta: list[dict[str, Any]] = []
        self.columns: dict[str, np.ndarray] = {}
        self.slot: dict[str, int] = {}
        self.ann: AnnIndex | None = None
        self.ann_dirty = False  # the index holds every live row, but differs from the saved copy
        self.version = next(_VERSIONS)  # changes with every write (unique in this process); caches key on it

    # ---- writes -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.slot)

    @property
    def max_seq(self) -> int:
        return int(self.seqs[self.n - 1]) if self.n else 0

    @property
    def live_max_seq(self) -> int:
        """The newest ``seq`` among live rows (0 when empty)."""
        live = self.seqs[: self.n][self.alive[: self.n]]
        return int(live.max()) if len(live) else 0

    def _grow(self, need: int, matrix: np.ndarray | None = None) -> None:
        if need <= self._cap:
            return
        if matrix is not None:  # adopt the caller's rows as they are (exactly ``need`` of them)
            cap = need
            m = matrix
        else:
            cap = max(need, 1024, int(self._cap * 1.5))
            m = np.zeros((cap, self.dim), np.float32)
            m[: self.n] = self.matrix[: self.n]
        self.matrix = m
        self.seqs = np.concatenate([self.seqs[: self.n], np.zeros(cap - self.n, np.int64)])
        self.alive = np.concatenate([self.alive[: self.n], np.zeros(cap - self.n, bool)])
        for key, col in list(self.columns.items()):
            c = np.full(cap, None, dtype=object)
            c[: self.n] = col[: self.n]
            self.columns[key] = c
        self._cap = cap

    def put(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str],
        metas: Sequence[dict[str, Any]],
        seqs: Sequence[int] | np.ndarray,
        *,
        adopt: bool = False,
    ) -> None:
        """Insert or replace rows (``vectors`` already unit-norm; ``seqs`` increasing and above ``max_seq``).

        ``adopt``: an empty table may keep ``vectors`` (a float32 C-contiguous matrix the caller
        hands over) as its storage instead of copying it — loading a million rows copies once.
        """
        n = len(ids)
        if not n:
            return
        self.version = next(_VERSIONS)
        old = [self.slot[i] for i in ids if i in self.slot]
        if old:
            self._kill(old)
        lo, hi = self.n, self.n + n
        if (
            adopt
            and self.n == 0
            and isinstance(vectors, np.ndarray)
            and vectors.dtype == np.float32
            and vectors.shape == (n, self.dim)
            and vectors.flags.c_contiguous
            and vectors.flags.writeable
        ):
            self._cap = 0
            self._grow(n, matrix=vectors)
        else:
            self._grow(hi)
            self.matrix[lo:hi] = vectors
        self.seqs[lo:hi] = np.asarray(seqs, dtype=np.int64)
        self.alive[lo:hi] = True
        self.ids.extend(ids)
        self.texts.extend(texts)
        self.meta.extend(metas)
        for j, md in enumerate(metas):
            for key, value in md.items():
                col = self.columns.get(key)
                if col is None:
                    col = self.columns[key] = np.full(self._cap, None, dtype=object)
                col[lo + j] = value
        for j, i in enumerate(ids):
            self.slot[i] = lo + j
        self.n = hi
        if self.ann is not None:
            self.ann.add(self.seqs[lo:hi], self.matrix[lo:hi])
            self.ann_dirty = True

    def remove(self, ids: Sequence[str]) -> int:
        slots = [self.slot[i] for i in ids if i in self.slot]
        self._kill(slots)
        return len(slots)

    def remove_before(self, seq: int) -> int:
        """Remove every row written before ``seq`` (a clear seen from another process)."""
        doomed = [i for i, s in self.slot.items() if self.seqs[s] < seq]
        return self.remove(doomed)

    def remove_if_older(self, ids: Sequence[str], seq: int) -> int:
        """Remove the given ids whose current row was written before ``seq``."""
        return self.remove([i for i in ids if i in self.slot and self.seqs[self.slot[i]] < seq])

    def clear(self) -> None:
        self.__init__(self.dim, exact_limit=self.exact_limit, ann_params=self.ann_params)  # type: ignore[misc]
        self.version = next(_VERSIONS)

    def _kill(self, slots: list[int]) -> None:
        if not slots:
            return
        self.version = next(_VERSIONS)
        for s in slots:
            i = self.ids[s]
            if i is not None:
                del self.slot[i]
            self.ids[s] = None
            self.texts[s] = ""
            self.meta[s] = {}
            self.alive[s] = False
            for col in self.columns.values():
                col[s] = None
        if self.ann is not None:
            self.ann.remove(self.seqs[np.asarray(slots)])
            self.ann_dirty = True
        if self.n > 4096 and self.n > 2 * len(self.slot):
            self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self.alive[: self.n])
        self.matrix = np.ascontiguousarray(self.matrix[keep])
        self.seqs = self.seqs[keep].copy()
        self.alive = np.ones(len(keep), bool)
        self.ids = [self.ids[s] for s in keep]
        self.texts = [self.texts[s] for s in keep]
        self.meta = [self.meta[s] for s in keep]
        self.columns = {k: c[keep] for k, c in self.columns.items()}
        self.slot = {i: j for j, i in enumerate(self.ids)}  # type: ignore[misc]
        self.n = self._cap = len(keep)

    # ---- reads --------------------------------------------------------------------------
    def column(self, key: str) -> np.ndarray:
        col = self.columns.get(key)
        return col[: self.n] if col is not None else np.full(self.n, None, dtype=object)

    def mask(self, where: Filter | None) -> np.ndarray:
        alive = self.alive[: self.n]
        if where is None:
            return alive
        return alive & where.mask(self.column, self.n)

    def matching_ids(self, where: Filter | None) -> list[str]:
        return [self.ids[s] for s in np.flatnonzero(self.mask(where))]  # type: ignore[misc]

    def count(self, where: Filter | None = None) -> int:
        return len(self.slot) if where is None else int(self.mask(where).sum())

    def ensure_ann(self) -> AnnIndex:
        if self.ann is None:
            live = np.flatnonzero(self.alive[: self.n])
            self.ann = AnnIndex.build(self.dim, self.seqs[live], self.matrix[live], **self.ann_params)
            self.ann_dirty = True
        return self.ann

    def topk(self, q: np.ndarray, k: int, where: Filter | None = None, *, exact: bool | None = None) -> list[tuple[int, float]]:
        """``(slot, score)`` pairs of the best ``k`` rows matching ``where``, best first."""
        live = len(self.slot)
        if live == 0:
            return []
        mask = None if where is None else self.mask(where)
        candidates = live if mask is None else int(mask.sum())
        if candidates == 0:
            return []
        k = min(k, candidates)
        use_ann = not exact and (exact is False or candidates > self.exact_limit)
        if use_ann:
            hits = self._ann_topk(q, k, mask, candidates, live)
            if hits is not None:
                return hits
        return self._exact_topk(q, k, mask)

    def _exact_topk(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        if mask is None:
            mask = self.alive[: self.n]
        rows = np.flatnonzero(mask)
        scores = self.matrix[rows] @ q if len(rows) * 2 < self.n else (self.matrix[:self.n] @ q)[rows]
        part = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        order = sorted(part.tolist(), key=lambda j: (-scores[j], self.seqs[rows[j]]))
        return [(int(rows[j]), float(scores[j])) for j in order]

    def _ann_topk(
        self, q: np.ndarray, k: int, mask: np.ndarray | None, candidates: int, live: int
    ) -> list[tuple[int, float]] | None:
        """Candidates from the graph (``max(4k, 64)``, more under a filter), re-ranked exactly."""
        ann = self.ensure_ann()
        want = max(4 * k, 64)
        if mask is not None:
            want = max(want, math.ceil(k * live / candidates * 1.5) + k)
        want = min(want, live)
        while True:
            keys = ann.search(q, want)
            slots = np.searchsorted(self.seqs[: self.n], keys)
            slots = np.clip(slots, 0, max(self.n - 1, 0))
            ok = (self.seqs[slots] == keys) & self.alive[slots]
            if mask is not None:
                ok &= mask[slots]
            good = np.unique(slots[ok])  # the keys are distinct; unique also sorts by slot, i.e. by seq
            if len(good) >= k:
                return self._rerank(q, good, k)
            if want >= live or mask is None:
                return None  # fall back to exact: the filter is too selective for the graph
            want = min(live, want * 4)

    def _rerank(self, q: np.ndarray, slots: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The best ``k`` of ``slots`` by exact cosine on the float32 matrix (ties: older first)."""
        scores = self.matrix[slots] @ q
        order = np.lexsort((self.seqs[slots], -scores))[:k]
        return [(int(slots[j]), float(scores[j])) for j in order]

    def record(self, slot: int) -> tuple[str, np.ndarray, str, dict[str, Any]]:
        return self.ids[slot], self.matrix[slot], self.texts[slot], self.meta[slot]  # type: ignore[return-value]
