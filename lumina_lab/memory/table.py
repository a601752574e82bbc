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
    """An HNSW index (usearch) over unit vectors keyed by ``seq``; cosine similarity = 1 - distance."""

    def __init__(self, dim: int, *, connectivity: int = 16, expansion_add: int = 64, expansion_search: int = 128):
        from usearch.index import Index

        self.dim = dim
        self.params = {"connectivity": connectivity, "expansion_add": expansion_add, "expansion_search": expansion_search}
        self.index = Index(ndim=dim, metric="cos", dtype="f32", **self.params)

    def __len__(self) -> int:
        return len(self.index)

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        if len(seqs):
            self.index.add(seqs.astype(np.uint64), vectors, threads=0)

    def remove(self, seqs: Sequence[int]) -> None:
        if len(seqs):
            self.index.remove(np.asarray(seqs, dtype=np.uint64))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.index.search(q, k)
        keys = np.asarray(m.keys, dtype=np.int64)
        return keys, 1.0 - np.asarray(m.distances, dtype=np.float32)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        self.index.save(str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, dim: int, **params: int) -> AnnIndex:
        ann = cls(dim, **params)
        ann.index.load(str(path))
        ann.index.expansion_search = ann.params["expansion_search"]
        return ann


class VectorTable:
    """Unit vectors, texts and metadata of one collection, searchable exactly or approximately.

    Args:
        dim: vector dimension.
        exact_limit: at most this many candidate rows are scanned exactly; larger
            collections use the approximate index (built lazily on first search).
        ann_params: usearch parameters (``connectivity``, ``expansion_add``, ``expansion_search``).
    """

    def __init__(self, dim: int, *, exact_limit: int = 20_000, ann_params: dict[str, int] | None = None) -> None:
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

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
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
    ) -> None:
        """Insert or replace rows (``vectors`` already unit-norm; ``seqs`` increasing and above ``max_seq``)."""
        n = len(ids)
        if not n:
            return
        self.version = next(_VERSIONS)
        old = [self.slot[i] for i in ids if i in self.slot]
        if old:
            self._kill(old)
        self._grow(self.n + n)
        lo, hi = self.n, self.n + n
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
            ann = AnnIndex(self.dim, **self.ann_params)
            live = np.flatnonzero(self.alive[: self.n])
            ann.add(self.seqs[live], self.matrix[live])
            self.ann = ann
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
        ann = self.ensure_ann()
        want = k if mask is None else min(live, math.ceil(k * live / candidates * 1.5) + k)
        while True:
            keys, scores = ann.search(q, max(want, k))
            slots = np.searchsorted(self.seqs[: self.n], keys)
            slots = np.clip(slots, 0, max(self.n - 1, 0))
            ok = (self.seqs[slots] == keys) & self.alive[slots]
            if mask is not None:
                ok &= mask[slots]
            found = [(int(s), float(sc)) for s, sc, good in zip(slots, scores, ok, strict=True) if good]
            if len(found) >= k:
                return found[:k]
            if want >= live or mask is None:
                return None  # fall back to exact: the filter is too selective for the graph
            want = min(live, want * 4)

    def record(self, slot: int) -> tuple[str, np.ndarray, str, dict[str, Any]]:
        return self.ids[slot], self.matrix[slot], self.texts[slot], self.meta[slot]  # type: ignore[return-value]
