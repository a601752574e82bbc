"""The in-memory vector store: numpy matrices in this process, nothing persisted."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..base import (
    BaseVectorStore,
    CollectionInfo,
    Hit,
    Record,
    Where,
    check_collection_name,
    check_dim,
    check_metric,
    not_found,
    prepare_batch,
    prepare_query,
)
from ..filters import parse_filter
from ..table import VectorTable

__all__ = ["MemoryVectorStore"]


class MemoryVectorStore(BaseVectorStore):
    """Collections held in this process (lost when it ends); thread-safe.

    >>> import numpy as np
    >>> s = MemoryVectorStore()
    >>> _ = s.create_collection("docs", dim=3)
    >>> s.upsert("docs", ["a", "b"], np.eye(3)[:2], texts=["x", "y"], metadata=[{"n": 1}, {"n": 2}])
    2
    >>> [h.id for h in s.search("docs", [1, 0.1, 0], k=1)]
    ['a']
    """

    name = "memory"

    def __init__(self, *, exact_limit: int = 20_000, ann_params: dict[str, int] | None = None) -> None:
        self._lock = threading.RLock()
        self._infos: dict[str, CollectionInfo] = {}
        self._tables: dict[str, VectorTable] = {}
        self._seq = 0
        self.exact_limit = exact_limit
        self.ann_params = ann_params

    def _table(self, name: str) -> tuple[CollectionInfo, VectorTable]:
        try:
            return self._infos[name], self._tables[name]
        except KeyError:
            raise not_found(name, list(self._infos), "the in-memory store") from None

    def create_collection(self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True) -> CollectionInfo:
        name, dim, metric = check_collection_name(name), check_dim(dim), check_metric(metric)
        with self._lock:
            return _create(self._infos, name, dim, metric, exist_ok, self._new_table)

    def _new_table(self, info: CollectionInfo) -> None:
        self._tables[info.name] = VectorTable(info.dim, exact_limit=self.exact_limit, ann_params=self.ann_params)

    def collections(self) -> list[CollectionInfo]:
        with self._lock:
            return sorted(self._infos.values(), key=lambda c: c.name)

    def drop_collection(self, name: str) -> None:
        with self._lock:
            self._table(name)
            del self._infos[name], self._tables[name]

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        with self._lock:
            info, table = self._table(collection)
            batch = prepare_batch(info, ids, vectors, texts, metadata)
            seqs = range(self._seq + 1, self._seq + 1 + len(batch))
            self._seq += len(batch)
            table.put(batch.ids, batch.vectors, batch.texts, batch.metadata, seqs)
            return len(batch)

    def search(self, collection: str, vector: Any, k: int = 10, where: Where = None) -> list[Hit]:
        with self._lock:
            info, table = self._table(collection)
            q, k, f = prepare_query(info, vector, k, where)
            return [Hit(table.ids[s], sc, table.texts[s], dict(table.meta[s])) for s, sc in table.topk(q, k, f)]  # type: ignore[arg-type]

    def revision(self, collection: str) -> int:
        """A number that changes whenever the collection's contents may have changed (caches key on it)."""
        with self._lock:
            return self._table(collection)[1].version

    def scan(self, collection: str, *, batch_size: int = 1000) -> Iterator[list[Record]]:
        """Every live item, in batches of records (no vectors), oldest first."""
        with self._lock:
            table = self._table(collection)[1]
            slots = [s for s in range(table.n) if table.alive[s]]
            batches = [
                [Record(table.ids[s], None, table.texts[s], dict(table.meta[s])) for s in slots[i : i + batch_size]]  # type: ignore[arg-type]
                for i in range(0, len(slots), batch_size)
            ]
        yield from batches

    def get(self, collection: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        with self._lock:
            _, table = self._table(collection)
            return records(table, ids, with_vectors)

    def delete(self, collection: str, ids: Sequence[str] | None = None, where: Where = None) -> int:
        with self._lock:
            _, table = self._table(collection)
            return table.remove(doomed_ids(table, ids, where))

    def count(self, collection: str, where: Where = None) -> int:
        with self._lock:
            _, table = self._table(collection)
            return table.count(parse_filter(where))

    def clear(self, collection: str) -> None:
        with self._lock:
            self._table(collection)[1].clear()

    def close(self) -> None:
        pass


def _create(infos: dict[str, CollectionInfo], name: str, dim: int, metric: str, exist_ok: bool, make) -> CollectionInfo:
    from ...errors import ValidationError

    old = infos.get(name)
    if old is not None:
        if not exist_ok:
            raise ValidationError(f"collection {name!r} already exists", input=name, hint="pass exist_ok=True to reuse it")
        if old.dim != dim or old.metric != metric:
            raise ValidationError(
                f"collection {name!r} exists with dim={old.dim}, metric={old.metric!r}; asked for dim={dim}, metric={metric!r}",
                input=dim,
                hint="use another collection name for another embedder, or drop_collection() first",
            )
        return old
    info = CollectionInfo(name, dim, metric)
    make(info)
    infos[name] = info
    return info


def records(table: VectorTable, ids: Sequence[str], with_vectors: bool) -> list[Record]:
    """Stored records for ``ids`` (unknown ones left out), in the order asked."""
    from ...errors import ValidationError

    if isinstance(ids, str):
        raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
    out = []
    for i in ids:
        s = table.slot.get(i)
        if s is not None:
            out.append(Record(i, table.matrix[s].copy() if with_vectors else None, table.texts[s], dict(table.meta[s])))
    return out


def doomed_ids(table: VectorTable, ids: Sequence[str] | None, where: Where) -> list[str]:
    """Ids a delete removes: the given ids (existing ones), narrowed by ``where``; all matching if no ids."""
    from ...errors import ValidationError

    f = parse_filter(where)
    if ids is None and f is None:
        raise ValidationError(
            "delete() needs ids or a filter", hint="pass ids=[...] or where=...; to delete everything call clear()"
        )
    if isinstance(ids, str):
        raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
    if ids is None:
        return table.matching_ids(f)
    present = [i for i in dict.fromkeys(ids) if i in table.slot]
    if f is None:
        return present
    return [i for i in present if f.matches(table.meta[table.slot[i]])]
