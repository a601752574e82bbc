"""The :class:`VectorStore` protocol, its value types, and the validation every backend shares.

Backends implement the synchronous methods; :class:`BaseVectorStore` derives the
``a``-prefixed async twins (run in a worker thread, so an event loop never
blocks on a database) and checks every input *before* anything is written, so
a bad batch leaves the store exactly as it was.

Scores are cosine similarities in ``[-1, 1]``, higher is closer, on every backend.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import CollectionNotFound, ValidationError
from .filters import Filter, check_metadata, parse_filter

__all__ = [
    "BaseVectorStore",
    "CollectionInfo",
    "Hit",
    "Record",
    "VectorStore",
    "Where",
    "check_collection_name",
    "prepare_batch",
    "prepare_query",
]

Where = Filter | Mapping[str, Any] | None
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
METRICS = ("cosine",)


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """A collection's name, vector dimension and metric."""

    name: str
    dim: int
    metric: str = "cosine"


@dataclass(slots=True)
class Record:
    """One stored item: its id, unit vector, text and metadata."""

    id: str
    vector: np.ndarray | None
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"Record(id={self.id!r}, text={text!r}, metadata={self.metadata!r})"


@dataclass(slots=True)
class Hit:
    """One search result: id, cosine ``score`` (higher is closer), text, metadata."""

    id: str
    score: float
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"Hit(id={self.id!r}, score={self.score:.4f}, text={text!r})"


@runtime_checkable
class VectorStore(Protocol):
    """What every vector-store backend offers (sync methods; async twins are prefixed ``a``)."""

    name: str

    def create_collection(self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True) -> CollectionInfo:
        """Create a collection (or return the existing one when ``exist_ok`` and the dimension agrees)."""
        ...

    def collections(self) -> list[CollectionInfo]:
        """Every collection, sorted by name."""
        ...

    def drop_collection(self, name: str) -> None:
        """Remove a collection and everything in it."""
        ...

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Insert or replace items by id (idempotent); returns how many were written."""
        ...

    def search(self, collection: str, vector: Any, k: int = 10, where: Where = None) -> list[Hit]:
        """The ``k`` nearest items (cosine), optionally only those matching ``where``."""
        ...

    def get(self, collection: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Items by id, in the order asked; unknown ids are left out."""
        ...

    def delete(self, collection: str, ids: Sequence[str] | None = None, where: Where = None) -> int:
        """Delete items by id and/or filter; returns how many existed and were deleted."""
        ...

    def count(self, collection: str, where: Where = None) -> int:
        """How many items (matching ``where``)."""
        ...

    def clear(self, collection: str) -> None:
        """Delete every item, keep the collection."""
        ...

    def close(self) -> None:
        """Release files, connections and threads."""
        ...


def check_collection_name(name: Any) -> str:
    """A valid collection name (letter first, then letters, digits, ``_``; at most 63)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"collection name {name!r} is not valid",
            input=name,
            hint="start with a letter; use letters, digits and _ only (at most 63), e.g. 'docs' or 'agent_memory'",
        )
    return name


def check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 1 <= int(dim) <= 65536:
        raise ValidationError(f"dim={dim!r} is not a vector dimension", input=dim, hint="pass an int between 1 and 65536")
    return int(dim)


def check_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise ValidationError(f"metric={metric!r} is not supported", input=metric, hint=f"use one of {METRICS}")
    return metric


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or int(k) < 1:
        raise ValidationError(f"k={k!r} is not a positive int", input=k, hint="ask for k >= 1 results")
    return int(k)


def normalise_rows(m: np.ndarray, what: str, ids: Sequence[str] | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm; NaN/inf or all-zero rows are a :class:`ValidationError`."""
    bad = ~np.isfinite(m).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = f"id {ids[i]!r}" if ids is not None else f"row {i}"
        raise ValidationError(f"{what} of {name} contains NaN or infinity", input=i, hint="pass finite numbers only")
    norms = np.linalg.norm(m, axis=1)
    zero = norms == 0
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        name = f"id {ids[i]!r}" if ids is not None else f"row {i}"
        raise ValidationError(
            f"{what} of {name} is all zeros (cosine similarity is undefined)",
            input=i,
            hint="embed a non-empty text, or drop the item",
        )
    return (m / norms[:, None]).astype(np.float32, copy=False)


def as_matrix(vectors: Any, dim: int, what: str, ids: Sequence[str] | None = None) -> np.ndarray:
    try:
        m = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} are not numbers of one shape ({exc})", input=None, hint=f"pass an (n, {dim}) float array"
        ) from None
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] != dim:
        got = "x".join(map(str, m.shape))
        raise ValidationError(
            f"{what} have shape {got}, but the collection's dimension is {dim}",
            input=m.shape,
            hint=f"embed with the collection's embedder (dim {dim}), or create a new collection with dim={m.shape[-1]}",
        )
    return m


@dataclass(slots=True)
class Batch:
    """A validated upsert batch: ids unique (last one wins), unit float32 vectors, texts and metadata."""

    ids: list[str]
    vectors: np.ndarray
    texts: list[str]
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


def prepare_batch(
    info: CollectionInfo,
    ids: Sequence[str],
    vectors: Any,
    texts: Sequence[str] | None,
    metadata: Sequence[Mapping[str, Any] | None] | None,
) -> Batch:
    """Check and normalise an upsert batch; raises before anything is written."""
    if isinstance(ids, str):
        raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
    ids = list(ids)
    for i in ids:
        if not isinstance(i, str) or not i or len(i) > 512:
            raise ValidationError(f"id {i!r} is not a non-empty string (≤ 512 chars)", input=i)
    n = len(ids)
    m = as_matrix(vectors, info.dim, "vectors", ids) if n else np.zeros((0, info.dim), np.float32)
    if len(m) != n:
        raise ValidationError(f"{n} ids but {len(m)} vectors", input=len(m), hint="pass one vector per id")
    if texts is None:
        texts = [""] * n
    elif isinstance(texts, str) or len(texts) != n:
        raise ValidationError(
            f"{n} ids but texts has {1 if isinstance(texts, str) else len(texts)} entries",
            input=texts,
            hint="pass one text per id (a list), or none",
        )
    for i, t in zip(ids, texts, strict=True):
        if not isinstance(t, str):
            raise ValidationError(f"text of {i!r} is a {type(t).__name__}, not a str", input=t)
    if metadata is None:
        metas: list[dict[str, Any]] = [{} for _ in range(n)]
    else:
        if isinstance(metadata, Mapping) or len(metadata) != n:
            raise ValidationError(
                f"{n} ids but metadata is not a list of {n} dicts", input=metadata, hint="pass one dict per id"
            )
        metas = [check_metadata(i, md) for i, md in zip(ids, metadata, strict=True)]
    m = normalise_rows(m, "vector", ids) if n else m
    if len(set(ids)) != n:  # last occurrence wins, like applying the rows one by one
        last = {i: j for j, i in enumerate(ids)}
        keep = sorted(last.values())
        ids = [ids[j] for j in keep]
        m = m[keep]
        texts = [texts[j] for j in keep]
        metas = [metas[j] for j in keep]
    return Batch(ids, np.ascontiguousarray(m), list(texts), metas)


def prepare_query(info: CollectionInfo, vector: Any, k: Any, where: Where) -> tuple[np.ndarray, int, Filter | None]:
    """A unit query vector, a checked ``k`` and a parsed filter."""
    q = as_matrix(vector, info.dim, "query vector")
    if len(q) != 1:
        raise ValidationError(f"search takes one query vector, got {len(q)}", input=q.shape)
    return normalise_rows(q, "query vector")[0], check_k(k), parse_filter(where)


def not_found(name: str, known: Sequence[str], store: str) -> CollectionNotFound:
    close = [k for k in known if k.lower() == name.lower()]
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else f"create it first (store.create_collection({name!r}, dim=...)); existing: {sorted(known) or 'none'}"
    )
    return CollectionNotFound(f"collection {name!r} does not exist in {store}", input=name, hint=hint)


class BaseVectorStore:
    """Shared behaviour: async twins of the sync API, context manager, repr."""

    name = "base"

    def __enter__(self) -> BaseVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __repr__(self) -> str:
        try:
            cols = ", ".join(f"{c.name}[{c.dim}]" for c in self.collections())
        except Exception:  # a closed or unreachable store still has a repr
            cols = "?"
        return f"{type(self).__name__}({self.name!r}, collections: {cols or 'none'})"

    async def acreate_collection(self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True):
        return await asyncio.to_thread(self.create_collection, name, dim, metric=metric, exist_ok=exist_ok)  # type: ignore[attr-defined]

    async def acollections(self) -> list[CollectionInfo]:
        return await asyncio.to_thread(self.collections)  # type: ignore[attr-defined]

    async def adrop_collection(self, name: str) -> None:
        await asyncio.to_thread(self.drop_collection, name)  # type: ignore[attr-defined]

    async def aupsert(self, collection: str, ids, vectors, texts=None, metadata=None) -> int:
        return await asyncio.to_thread(self.upsert, collection, ids, vectors, texts, metadata)  # type: ignore[attr-defined]

    async def asearch(self, collection: str, vector, k: int = 10, where: Where = None) -> list[Hit]:
        return await asyncio.to_thread(self.search, collection, vector, k, where)  # type: ignore[attr-defined]

    async def aget(self, collection: str, ids, *, with_vectors: bool = False) -> list[Record]:
        return await asyncio.to_thread(self.get, collection, ids, with_vectors=with_vectors)  # type: ignore[attr-defined]

    async def adelete(self, collection: str, ids=None, where: Where = None) -> int:
        return await asyncio.to_thread(self.delete, collection, ids, where)  # type: ignore[attr-defined]

    async def acount(self, collection: str, where: Where = None) -> int:
        return await asyncio.to_thread(self.count, collection, where)  # type: ignore[attr-defined]

    async def aclear(self, collection: str) -> None:
        await asyncio.to_thread(self.clear, collection)  # type: ignore[attr-defined]


def finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
