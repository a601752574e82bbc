"""Hash-partitioned shards behind one :class:`~lumina_lab.memory.base.VectorStore`.

An item lives on shard ``blake2b(id) mod n`` (stable across processes and runs); a search
asks every shard for its top ``k`` in parallel threads and merges them (score, then id), which
is exactly the global top ``k``. Shards can be any backends — several DuckDB files on
different disks, several Milvus servers, or a mix.

>>> from lumina_lab.memory.stores.memory import MemoryVectorStore
>>> s = ShardedVectorStore([MemoryVectorStore(), MemoryVectorStore()])
>>> _ = s.create_collection("docs", dim=2)
>>> s.upsert("docs", ["a", "b", "c"], [[1, 0], [0, 1], [1, 1]])
3
>>> [h.id for h in s.search("docs", [1, 0.1], k=2)]
['a', 'c']
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import ValidationError
from .base import BaseVectorStore, CollectionInfo, Hit, Record, VectorStore, Where, check_k
from .filters import parse_filter

__all__ = ["ShardedVectorStore", "shard_of"]


def shard_of(item_id: str, n: int) -> int:
    """The shard an id belongs to (BLAKE2b, so every process agrees)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "little") % n


class ShardedVectorStore(BaseVectorStore):
    """Several stores as one: writes partitioned by id hash, searches scattered and merged.

    Args:
        shards: the stores, in a fixed order (the order *is* the partitioning; keep it).
    """

    name = "sharded"

    def __init__(self, shards: Sequence[VectorStore]) -> None:
        if len(shards) < 1:
            raise ValidationError("ShardedVectorStore needs at least one shard", hint="pass a list of stores")
        self.shards = list(shards)
        self._pool = ThreadPoolExecutor(max_workers=len(self.shards), thread_name_prefix="lumina-shard")
        self._lock = threading.Lock()
        self._searches = 0
        self._shard_ms = [0.0] * len(self.shards)

    def __repr__(self) -> str:
        return f"ShardedVectorStore({len(self.shards)} shards: {', '.join(s.name for s in self.shards)})"

    def _all(self, fn: str, *args: Any, **kwargs: Any) -> list[Any]:
        futures = [self._pool.submit(getattr(s, fn), *args, **kwargs) for s in self.shards]
        return [f.result() for f in futures]

    def _split(self, ids: Sequence[str]) -> list[list[int]]:
        parts: list[list[int]] = [[] for _ in self.shards]
        for j, i in enumerate(ids):
            parts[shard_of(i, len(self.shards)) if isinstance(i, str) else 0].append(j)
        return parts

    def create_collection(self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True) -> CollectionInfo:
        infos = [s.create_collection(name, dim, metric=metric, exist_ok=exist_ok) for s in self.shards]
        return infos[0]

    def collections(self) -> list[CollectionInfo]:
        return self.shards[0].collections()

    def drop_collection(self, name: str) -> None:
        self.shards[0].count(name)  # a clear error for unknown names before touching any shard
        self._all("drop_collection", name)

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        from .base import prepare_batch

        info = self._info(collection)
        batch = prepare_batch(info, ids, vectors, texts, metadata)  # validate everything before any shard writes
        futures = []
        for shard, rows in zip(self.shards, self._split(batch.ids), strict=True):
            if rows:
                futures.append(
                    self._pool.submit(
                        shard.upsert,
                        collection,
                        [batch.ids[j] for j in rows],
                        batch.vectors[rows],
                        [batch.texts[j] for j in rows],
                        [batch.metadata[j] for j in rows],
                    )
                )
        return sum(f.result() for f in futures)

    def _info(self, collection: str) -> CollectionInfo:
        from .base import not_found

        for c in self.shards[0].collections():
            if c.name == collection:
                return c
        raise not_found(collection, [c.name for c in self.shards[0].collections()], "the sharded store")

    def search(self, collection: str, vector: Any, k: int = 10, where: Where = None) -> list[Hit]:
        k = check_k(k)
        where = parse_filter(where)
        q = np.asarray(vector, dtype=np.float32)
        futures = [self._pool.submit(_timed, s.search, collection, q, k, where) for s in self.shards]
        results = [f.result() for f in futures]
        with self._lock:
            self._searches += 1
            for j, (_, ms) in enumerate(results):
                self._shard_ms[j] += ms
        merged = [h for hits, _ in results for h in hits]
        merged.sort(key=lambda h: (-h.score, h.id))
        return merged[:k]

    def get(self, collection: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        if isinstance(ids, str):
            raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
        ids = list(ids)
        found: dict[str, Record] = {}
        for shard, rows in zip(self.shards, self._split(ids), strict=True):
            if rows:
                for r in shard.get(collection, [ids[j] for j in rows], with_vectors=with_vectors):
                    found[r.id] = r
            else:
                shard.count(collection)  # unknown collections fail the same way on every path
        return [found[i] for i in ids if i in found]

    def delete(self, collection: str, ids: Sequence[str] | None = None, where: Where = None) -> int:
        if ids is None:
            return sum(self._all("delete", collection, None, where))
        if isinstance(ids, str):
            raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
        ids = list(ids)
        total = 0
        for shard, rows in zip(self.shards, self._split(ids), strict=True):
            if rows:
                total += shard.delete(collection, [ids[j] for j in rows], where)
            else:
                shard.count(collection)
        return total

    def count(self, collection: str, where: Where = None) -> int:
        return sum(self._all("count", collection, where))

    def clear(self, collection: str) -> None:
        self._all("clear", collection)

    def revision(self, collection: str) -> tuple[Any, ...] | None:
        revs = []
        for s in self.shards:
            fn = getattr(s, "revision", None)
            if fn is None:
                return None
            revs.append(fn(collection))
        return tuple(revs)

    def scan(self, collection: str, *, batch_size: int = 1000) -> Iterator[list[Record]]:
        for s in self.shards:
            yield from s.scan(collection, batch_size=batch_size)  # type: ignore[attr-defined]

    def stats(self) -> dict[str, Any]:
        """Searches so far, mean milliseconds per shard, and items per shard for each collection."""
        with self._lock:
            n = max(self._searches, 1)
            mean = [round(ms / n, 3) for ms in self._shard_ms]
            searches = self._searches
        counts = {c.name: [s.count(c.name) for s in self.shards] for c in self.collections()}
        return {"shards": len(self.shards), "searches": searches, "mean_shard_ms": mean, "items": counts}

    def close(self) -> None:
        for s in self.shards:
            s.close()
        self._pool.shutdown(wait=False)


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000
