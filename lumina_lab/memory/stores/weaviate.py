"""Weaviate behind the :class:`~lumina_lab.memory.base.VectorStore` protocol (weaviate-client v4, Weaviate ≥ 1.24).

Layout: our collection ``docs`` is the Weaviate collection ``<prefix>_docs`` (``prefix`` starts with
an upper-case letter, default ``Lumina``, as Weaviate requires). Its description is JSON holding our
name, prefix and dimension, so :meth:`WeaviateVectorStore.collections` lists only collections this
adapter created and reopening knows the dimension before any vector is stored. Each item is one
object:

* uuid ``uuid5(LUMINA_NAMESPACE, id)`` — Weaviate object ids must be UUIDs, so ours is derived;
* ``lumina_id`` (our id), ``text``, and ``metadata_json`` (the metadata, JSON-encoded: the source
  of truth, since Weaviate has no schemaless JSON field and types every property once);
* one typed *shadow* property per metadata key and kind, created on first use: ``m_<key>_s`` (text,
  field tokenisation), ``m_<key>_n`` (number) and ``m_<key>_b`` (boolean); keys that are not
  lower-case identifiers are hex-encoded (``mx_<hex>_<kind>``). Splitting by kind is what lets a key
  hold ``1`` in one item and ``"1"`` in another, and keeps ``true`` apart from ``1``;
* the vector as the self-provided named vector ``default`` in a ``flat`` index with cosine distance
  (exact; pass ``index="hnsw"`` for large collections). ``score = 1 - distance``.

Filters: :func:`weaviate_filter` translates a filter into a Weaviate filter on the shadow properties
that selects a *superset* of the matching items (``Not`` and string ranges are not pushed down;
numbers compare as float64 with inclusive bounds), and every result is checked again with
:meth:`Filter.matches <lumina_lab.memory.filters.Filter.matches>` on ``metadata_json``. Searches
over-fetch until ``k`` items survive (up to Weaviate's 10 000-result window), then scan exactly
(the loop is shared with the Milvus adapter: :mod:`lumina_lab.memory.stores.superset`).

Consistency: a single Weaviate node shows a write to the next read; with replication pass
``consistency="ALL"`` (or ``"QUORUM"``). Batches are not transactional: a failed batch may be
partly written (re-upserting it is idempotent).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ...errors import LuminaError, StoreError, ValidationError
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
from ..filters import And, Eq, Filter, In, Not, Or, Range, parse_filter
from .superset import TopK, overfetch, recheck

__all__ = [
    "LUMINA_NAMESPACE",
    "NOTHING",
    "WeaviateVectorStore",
    "as_float",
    "logical_name",
    "object_uuid",
    "physical_name",
    "shadow_property",
    "weaviate_filter",
]

LUMINA_NAMESPACE = uuid.UUID("6f1d3c2e-9a4b-5e7f-8c1d-2b3a4c5d6e7f")
VECTOR = "default"
MAX_RESULTS = 10_000  # Weaviate's QUERY_MAXIMUM_RESULTS default (limit + offset)
_PREFIX = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")
_PLAIN_KEY = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_ID_CHUNK = 200
_INSERT_CHUNK = 500
_PROPS = ["lumina_id", "text", "metadata_json"]


class _Nothing:
    """A filter no item matches (a key never stored, or contradictory bounds)."""

    _instance: _Nothing | None = None

    def __new__(cls) -> _Nothing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()


# ---- names and ids ---------------------------------------------------------------------------
def object_uuid(item_id: str) -> str:
    """The Weaviate object uuid of our id (``uuid5`` in a fixed namespace: stable across processes)."""
    return str(uuid.uuid5(LUMINA_NAMESPACE, item_id))


def physical_name(prefix: str, name: str) -> str:
    """Weaviate's name for our collection ``name``: ``<prefix>_<name>`` (upper-case first letter via the prefix)."""
    return f"{prefix}_{name}"


def logical_name(prefix: str, physical: str) -> str | None:
    """Our name of a Weaviate collection, or None if it does not carry ``prefix``."""
    head = f"{prefix}_"
    if not physical.startswith(head) or len(physical) == len(head):
        return None
    return physical[len(head) :]


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "b"
    if isinstance(v, str):
        return "s"
    return "n"


def shadow_property(key: str, kind: str) -> str | None:
    """The typed property holding metadata ``key`` values of ``kind`` (``s``/``n``/``b``); None if unnameable."""
    if _PLAIN_KEY.match(key):
        return f"m_{key}_{kind}"
    hexed = key.encode().hex()
    return f"mx_{hexed}_{kind}" if len(hexed) <= 200 else None


# ---- filter translation ----------------------------------------------------------------------
def weaviate_filter(f: Filter | None, known: Callable[[str], bool] | None = None) -> Any:
    """A Weaviate filter selecting a superset of what ``f`` matches; ``None``: no restriction; :data:`NOTHING`.

    ``known(prop)`` says whether a shadow property exists (a filter on a key never stored matches nothing).
    Results must still be checked with ``f.matches``.
    """
    if f is None:
        return None
    return _translate(f, known or (lambda p: True))


def _leaf(key: str, kind: str, known: Callable[[str], bool]) -> Any:
    from weaviate.classes.query import Filter as W

    prop = shadow_property(key, kind)
    if prop is None:
        return None
    if not known(prop):
        return NOTHING
    return W.by_property(prop)


def _translate(f: Filter, known: Callable[[str], bool]) -> Any:
    from weaviate.classes.query import Filter as W

    if isinstance(f, Eq):
        p = _leaf(f.field, _kind(f.value), known)
        if p is None or p is NOTHING:
            return p
        if isinstance(f.value, str) and not f.value.strip():
            return None  # field tokenisation indexes no token for blank strings: Python only
        return p.equal(as_float(f.value) if _kind(f.value) == "n" else f.value)
    if isinstance(f, In):
        return _translate(Or(*(Eq(f.field, v) for v in f.values)), known) if f.values else NOTHING
    if isinstance(f, Range):
        bounds = f.bounds()
        kinds = {_kind(b) for _, b in bounds}
        if len(kinds) > 1:
            return NOTHING  # a value cannot be of two kinds at once
        if kinds != {"n"}:
            return None  # string and boolean ranges are checked in Python only
        p = _leaf(f.field, "n", known)
        if p is None or p is NOTHING:
            return p
        # float rounding is monotonic, so inclusive float64 bounds select a superset of the exact ones
        parts = [
            p.greater_or_equal(as_float(b)) if op in ("gt", "ge") else p.less_or_equal(as_float(b)) for op, b in bounds
        ]
        return parts[0] if len(parts) == 1 else W.all_of(parts)
    if isinstance(f, And):
        parts = [_translate(x, known) for x in f.parts]
        if any(x is NOTHING for x in parts):
            return NOTHING
        parts = [x for x in parts if x is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else W.all_of(parts)
    if isinstance(f, Or):
        parts = [x for x in (_translate(x, known) for x in f.parts) if x is not NOTHING]
        if any(x is None for x in parts):
            return None
        if not parts:
            return NOTHING
        return parts[0] if len(parts) == 1 else W.any_of(parts)
    if isinstance(f, Not):
        return None
    return None  # pragma: no cover - every Filter is one of the above


def as_float(v: float) -> float:
    """``v`` as float64, clamped to the largest finite float (ints may be too big): monotonic, so
    comparisons on the shadows still select a superset."""
    try:
        return float(v)
    except OverflowError:
        return sys.float_info.max if v > 0 else -sys.float_info.max


def _shadows(metadata: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metadata.items():
        prop = shadow_property(k, _kind(v))
        if prop is not None:
            out[prop] = as_float(v) if _kind(v) == "n" else v
    return out


# ---- the store ------------------------------------------------------------------------------
class WeaviateVectorStore(BaseVectorStore):
    """Vector collections in a Weaviate server (vectors supplied by us, cosine distance).

    Args:
        url: ``http(s)://host:8080``.
        api_key: Weaviate API key, if the server wants one.
        grpc_port: the server's gRPC port (default 50051); ``grpc_host`` defaults to the URL's host.
        prefix: collection name prefix, starting with an upper-case letter (default ``Lumina``).
        index: ``"flat"`` (exact, the default) or ``"hnsw"``.
        consistency: ``"ONE"``, ``"QUORUM"`` or ``"ALL"`` for replicated collections (None: server default).
        connect_timeout_s: how long to wait for the server when connecting.
        headers: extra HTTP headers.
    """

    name = "weaviate"

    def __init__(
        self,
        url: str = "http://localhost:8080",
        *,
        api_key: str | None = None,
        grpc_port: int = 50051,
        grpc_host: str | None = None,
        prefix: str = "Lumina",
        index: str = "flat",
        consistency: str | None = None,
        connect_timeout_s: float = 5.0,
        query_timeout_s: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ValidationError(
                f"prefix={prefix!r} is not a Weaviate collection prefix",
                input=prefix,
                hint="start with an upper-case letter, then letters, digits or _, e.g. 'Lumina'",
            )
        if index not in ("flat", "hnsw"):
            raise ValidationError(f"index={index!r} is not supported", input=index, hint="use 'flat' or 'hnsw'")
        if consistency not in (None, "ONE", "QUORUM", "ALL"):
            raise ValidationError(
                f"consistency={consistency!r} is not a Weaviate consistency level",
                input=consistency,
                hint="use 'ONE', 'QUORUM' or 'ALL' (or None for the server's default)",
            )
        self.url = url
        self.host, self.port, self.secure = parse_url(url)
        self.grpc_host = grpc_host or self.host
        self.grpc_port = grpc_port
        self.prefix = prefix
        self.index = index
        self.consistency = consistency
        self._lock = threading.RLock()
        self._infos: dict[str, CollectionInfo] = {}
        self._props: dict[str, set[str]] = {}
        self._closed = False
        self._client = self._connect(api_key, connect_timeout_s, query_timeout_s, dict(headers or {}))

    def _connect(self, api_key: str | None, connect_s: float, query_s: float, headers: dict[str, str]) -> Any:
        try:
            import weaviate
            from weaviate.classes.init import AdditionalConfig, Auth, Timeout
        except ImportError:
            raise StoreError(
                "the weaviate backend needs weaviate-client", hint="pip install 'lumina-lab[weaviate]'"
            ) from None
        try:
            return weaviate.connect_to_custom(
                http_host=self.host,
                http_port=self.port,
                http_secure=self.secure,
                grpc_host=self.grpc_host,
                grpc_port=self.grpc_port,
                grpc_secure=self.secure,
                headers=headers or None,
                auth_credentials=Auth.api_key(api_key) if api_key else None,
                additional_config=AdditionalConfig(timeout=Timeout(init=connect_s, query=query_s, insert=2 * query_s)),
            )
        except Exception as exc:
            raise StoreError(
                f"cannot connect to Weaviate at {self.url} (gRPC {self.grpc_host}:{self.grpc_port}): {_message(exc)}",
                input=self.url,
                hint="start Weaviate (HTTP and gRPC ports open) or check url, grpc_port and api_key; "
                "the default DuckDB store needs no server",
            ) from None

    @property
    def _where(self) -> str:
        return f"Weaviate at {self.url}"

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):
                self._client.close()

    # ---- calls and errors ------------------------------------------------------------------------
    def _call(self, name: str | None, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreError(f"the store for {self._where} is closed", hint="open a new WeaviateVectorStore")
        try:
            return fn(*args, **kwargs)
        except LuminaError:
            raise
        except Exception as exc:
            msg = _message(exc)
            low = msg.lower()
            if name is not None and (
                "could not find class" in low
                or "no such class" in low
                or getattr(exc, "status_code", None) == 404
                or ("not found" in low and "class" in low and "prop" not in low)
            ):
                with self._lock:
                    self._infos.pop(name, None)
                    self._props.pop(name, None)
                raise not_found(name, self._known(), self._where) from None
            raise StoreError(
                f"Weaviate {op}{f' on {name!r}' if name else ''} failed: {msg}",
                input=name,
                hint=f"check that {self._where} is reachable and healthy",
            ) from None

    def _coll(self, name: str) -> Any:
        coll = self._client.collections
        handle = (
            coll.use(physical_name(self.prefix, name))
            if hasattr(coll, "use")
            else coll.get(physical_name(self.prefix, name))
        )
        if self.consistency:
            from weaviate.classes.config import ConsistencyLevel

            handle = handle.with_consistency_level(ConsistencyLevel[self.consistency])
        return handle

    # ---- catalog -----------------------------------------------------------------------------------
    def _parse(self, physical: str, description: str | None) -> CollectionInfo | None:
        name = logical_name(self.prefix, physical)
        try:
            meta = json.loads(description or "")
        except ValueError:
            return None
        if not isinstance(meta, dict) or meta.get("lumina") != 1 or meta.get("name") != name:
            return None
        if meta.get("prefix") != self.prefix:
            return None
        return CollectionInfo(name, int(meta["dim"]), meta.get("metric", "cosine"))

    def _describe(self, name: str) -> CollectionInfo | None:
        phys = physical_name(self.prefix, name)
        if not self._call(None, "exists", self._client.collections.exists, phys):
            return None
        config = self._call(name, "config.get", self._coll(name).config.get)
        info = self._parse(phys, getattr(config, "description", None))
        if info is not None:
            self._props[name] = {p.name for p in config.properties}
        return info

    def _info(self, name: str) -> CollectionInfo:
        if self._closed:
            raise StoreError(f"the store for {self._where} is closed", hint="open a new WeaviateVectorStore")
        info = self._infos.get(name)
        if info is not None:
            return info
        with self._lock:
            info = self._describe(name) if isinstance(name, str) and name else None
            if info is None:
                raise not_found(name, self._known(), self._where)
            self._infos[name] = info
            return info

    def _known(self) -> list[str]:
        try:
            return [c.name for c in self.collections()]
        except LuminaError:
            return list(self._infos)

    def collections(self) -> list[CollectionInfo]:
        with self._lock:
            every = self._call(None, "list_all", self._client.collections.list_all, simple=True)
            found = {}
            for phys, config in every.items():
                info = self._parse(phys, getattr(config, "description", None))
                if info is not None:
                    found[info.name] = info
            self._infos = found
            return sorted(found.values(), key=lambda c: c.name)

    def create_collection(
        self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True
    ) -> CollectionInfo:
        from .memory import _create

        name, dim, metric = check_collection_name(name), check_dim(dim), check_metric(metric)
        with self._lock:
            old = self._infos.get(name) or self._describe(name)
            if old is None:
                phys = physical_name(self.prefix, name)
                if self._call(None, "exists", self._client.collections.exists, phys):
                    raise StoreError(
                        f"Weaviate collection {phys!r} exists but was not created by Lumina Lab",
                        input=name,
                        hint="use another collection name or prefix=..., or delete that Weaviate collection",
                    )
                try:
                    self._create(phys, name, dim)
                except StoreError:
                    old = self._describe(name)  # another client created it meanwhile
                    if old is None:
                        raise
                else:
                    info = CollectionInfo(name, dim, metric)
                    self._infos[name] = info
                    self._props[name] = set(_PROPS)
                    return info
            self._infos[name] = old
            return _create({name: old}, name, dim, metric, exist_ok, lambda info: None)

    def _create(self, phys: str, name: str, dim: int) -> None:
        from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

        index = (
            Configure.VectorIndex.flat(distance_metric=VectorDistances.COSINE)
            if self.index == "flat"
            else Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        )
        description = json.dumps({"lumina": 1, "name": name, "prefix": self.prefix, "dim": dim, "metric": "cosine"})
        self._call(
            None,
            "collections.create",
            self._client.collections.create,
            phys,
            description=description,
            properties=[
                Property(
                    name="lumina_id",
                    data_type=DataType.TEXT,
                    tokenization=Tokenization.FIELD,
                    index_filterable=True,
                    index_searchable=False,
                    skip_vectorization=True,
                ),
                Property(name="text", data_type=DataType.TEXT, skip_vectorization=True),
                Property(
                    name="metadata_json",
                    data_type=DataType.TEXT,
                    index_filterable=False,
                    index_searchable=False,
                    skip_vectorization=True,
                ),
            ],
            vector_config=Configure.Vectors.self_provided(name=VECTOR, vector_index_config=index),
        )

    def drop_collection(self, name: str) -> None:
        with self._lock:
            self._info(name)
            self._call(name, "collections.delete", self._client.collections.delete, physical_name(self.prefix, name))
            self._infos.pop(name, None)
            self._props.pop(name, None)

    def _ensure_props(self, name: str, needed: Mapping[str, str]) -> None:
        """Create the shadow properties a batch needs (kind ``s``/``n``/``b`` per property name)."""
        from weaviate.classes.config import DataType, Property, Tokenization

        have = self._props.setdefault(name, set())
        missing = {p: k for p, k in needed.items() if p not in have}
        if not missing:
            return
        with self._lock:
            config = self._coll(name).config
            have.update(p.name for p in self._call(name, "config.get", config.get).properties)
            for prop, kind in missing.items():
                if prop in have:
                    continue
                spec = {
                    "s": dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False),
                    "n": dict(data_type=DataType.NUMBER),
                    "b": dict(data_type=DataType.BOOL),
                }[kind]
                try:
                    config.add_property(Property(name=prop, index_filterable=True, skip_vectorization=True, **spec))
                except Exception as exc:
                    if "exist" not in _message(exc).lower():  # another writer added it meanwhile
                        self._call(name, "add_property", _raise, exc)
                have.add(prop)

    # ---- data ------------------------------------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        from weaviate.classes.data import DataObject

        info = self._info(collection)
        batch = prepare_batch(info, ids, vectors, texts, metadata)
        if not len(batch):
            return 0
        needed: dict[str, str] = {}
        objects = []
        for i, vec, text, md in zip(batch.ids, batch.vectors, batch.texts, batch.metadata, strict=True):
            shadows = _shadows(md)
            needed.update({p: p.rsplit("_", 1)[1] for p in shadows})
            props = {"lumina_id": i, "text": text, "metadata_json": json.dumps(md), **shadows}
            objects.append(DataObject(properties=props, uuid=object_uuid(i), vector={VECTOR: vec.tolist()}))
        self._ensure_props(collection, needed)
        data = self._coll(collection).data
        for j in range(0, len(objects), _INSERT_CHUNK):
            result = self._call(collection, "insert_many", data.insert_many, objects[j : j + _INSERT_CHUNK])
            if getattr(result, "has_errors", False):
                first = next(iter(result.errors.values()))
                raise StoreError(
                    f"Weaviate refused {len(result.errors)} of {len(objects)} items in {collection!r}: "
                    f"{getattr(first, 'message', first)}",
                    input=collection,
                    hint="fix the data and upsert the batch again (upserts are idempotent)",
                )
        return len(batch)

    def _filter(self, name: str, f: Filter | None) -> Any:
        """``f`` as a Weaviate superset filter; shadow properties are re-read once if ``f`` names unseen ones."""
        if f is None:
            return None
        misses: list[str] = []

        def known(prop: str) -> bool:
            if prop in self._props.get(name, ()):
                return True
            misses.append(prop)
            return False

        wf = weaviate_filter(f, known)
        if misses:  # another client may have stored those keys since we looked
            self._describe(name)
            wf = weaviate_filter(f, self._props.get(name, set()).__contains__)
        return wf

    def _objects(self, collection: str, wf: Any, *, include_vector: bool = False) -> Iterator[Any]:
        """Every object the Weaviate filter ``wf`` selects (None: all); callers check the exact filter."""
        if wf is NOTHING:
            return
        coll = self._coll(collection)
        vec = [VECTOR] if include_vector else False
        if wf is not None:
            res = self._call(
                collection,
                "fetch_objects",
                coll.query.fetch_objects,
                filters=wf,
                limit=MAX_RESULTS,
                return_properties=_PROPS,
                include_vector=vec,
            )
            if len(res.objects) < MAX_RESULTS:
                yield from res.objects
                return
        it = self._call(collection, "iterator", coll.iterator, include_vector=include_vector, return_properties=_PROPS)
        yield from _guarded(self, collection, it)

    def _matching(self, collection: str, f: Filter, *, include_vector: bool = False) -> list[Any]:
        wf = self._filter(collection, f)
        return [o for o in self._objects(collection, wf, include_vector=include_vector) if recheck(f, _meta(o))]

    def _by_ids(self, collection: str, ids: Sequence[str], *, include_vector: bool = False) -> dict[str, Any]:
        from weaviate.classes.query import Filter as W

        coll = self._coll(collection)
        unique = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i]
        found: dict[str, Any] = {}
        for j in range(0, len(unique), _ID_CHUNK):
            chunk = unique[j : j + _ID_CHUNK]
            res = self._call(
                collection,
                "fetch_objects",
                coll.query.fetch_objects,
                filters=W.by_id().contains_any([object_uuid(i) for i in chunk]),
                limit=len(chunk),
                return_properties=_PROPS,
                include_vector=[VECTOR] if include_vector else False,
            )
            for o in res.objects:
                found[o.properties.get("lumina_id")] = o
        return found

    def search(self, collection: str, vector: Any, k: int = 10, where: Where = None) -> list[Hit]:
        info = self._info(collection)
        q, k, f = prepare_query(info, vector, k, where)
        wf = self._filter(collection, f)
        if wf is NOTHING:
            return []
        if k > MAX_RESULTS:
            return self._scan_search(collection, q, k, f, wf)
        return overfetch(
            lambda limit: self._search_once(collection, q, wf, limit, f),
            k,
            filtered=f is not None,
            max_limit=MAX_RESULTS,
            scan=lambda: self._scan_search(collection, q, k, f, wf),
        )

    def _search_once(self, collection: str, q: np.ndarray, wf: Any, limit: int, f: Filter | None) -> tuple[list[Hit], int]:
        """Weaviate's top ``limit`` for ``wf``, checked with ``f``; also how many Weaviate returned."""
        from weaviate.classes.query import MetadataQuery

        res = self._call(
            collection,
            "near_vector",
            self._coll(collection).query.near_vector,
            near_vector=q.tolist(),
            target_vector=VECTOR,
            limit=limit,
            filters=wf,
            return_metadata=MetadataQuery(distance=True),
            return_properties=_PROPS,
        )
        got = list(res.objects)
        hits = []
        for o in got:
            md = _meta(o)
            if recheck(f, md):
                hits.append(Hit(o.properties.get("lumina_id"), 1.0 - float(o.metadata.distance), o.properties.get("text") or "", md))
        return hits, len(got)

    def _scan_search(self, collection: str, q: np.ndarray, k: int, f: Filter | None, wf: Any) -> list[Hit]:
        top = TopK(k)
        for o in self._objects(collection, wf, include_vector=True):
            md = _meta(o)
            if not recheck(f, md):
                continue
            v = np.asarray(_vector(o), dtype=np.float32)
            score = float(v @ q / (np.linalg.norm(v) or 1.0))
            top.add([(score, o.properties.get("lumina_id"), o.properties.get("text") or "", md)])
        return top.hits()

    def get(self, collection: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        self._info(collection)
        if isinstance(ids, str):
            raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
        found = self._by_ids(collection, list(ids), include_vector=with_vectors)
        out = []
        for i in ids:
            o = found.get(i) if isinstance(i, str) else None
            if o is not None:
                vec = np.asarray(_vector(o), dtype=np.float32) if with_vectors else None
                out.append(Record(i, vec, o.properties.get("text") or "", _meta(o)))
        return out

    def delete(self, collection: str, ids: Sequence[str] | None = None, where: Where = None) -> int:
        from weaviate.classes.query import Filter as W

        self._info(collection)
        f = parse_filter(where)
        if ids is None and f is None:
            raise ValidationError(
                "delete() needs ids or a filter", hint="pass ids=[...] or where=...; to delete everything call clear()"
            )
        if isinstance(ids, str):
            raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
        if ids is None:
            doomed = [o.properties.get("lumina_id") for o in self._matching(collection, f)]  # type: ignore[arg-type]
        else:
            found = self._by_ids(collection, list(ids))
            doomed = [i for i, o in found.items() if recheck(f, _meta(o))]
        data = self._coll(collection).data
        for j in range(0, len(doomed), _ID_CHUNK):
            chunk = [object_uuid(i) for i in doomed[j : j + _ID_CHUNK]]
            self._call(collection, "delete_many", data.delete_many, where=W.by_id().contains_any(chunk))
        return len(doomed)

    def count(self, collection: str, where: Where = None) -> int:
        self._info(collection)
        f = parse_filter(where)
        if f is None:
            agg = self._call(collection, "aggregate", self._coll(collection).aggregate.over_all, total_count=True)
            return int(agg.total_count or 0)
        return len(self._matching(collection, f))

    def clear(self, collection: str) -> None:
        from weaviate.classes.query import Filter as W

        self._info(collection)
        data = self._coll(collection).data
        for _ in range(10_000):
            res = self._call(collection, "delete_many", data.delete_many, where=W.by_property("lumina_id").like("*"))
            if not getattr(res, "matches", 0) or not getattr(res, "successful", 0):
                return


# ---- helpers -----------------------------------------------------------------------------------
def parse_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of a Weaviate URL (port 8080 for http, 443 for https by default)."""
    if not isinstance(url, str) or "://" not in url:
        raise ValidationError(f"url={url!r} is not a Weaviate URL", input=url, hint="pass e.g. 'http://localhost:8080'")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError(
            f"url={url!r} is not a Weaviate URL", input=url, hint="pass e.g. 'http://localhost:8080' or 'https://host'"
        )
    secure = parsed.scheme == "https"
    try:
        port = parsed.port or (443 if secure else 8080)
    except ValueError:
        raise ValidationError(f"url={url!r} has a bad port", input=url) from None
    return parsed.hostname, port, secure


def _meta(o: Any) -> dict[str, Any]:
    raw = o.properties.get("metadata_json")
    return json.loads(raw) if raw else {}


def _vector(o: Any) -> Any:
    v = o.vector
    return v.get(VECTOR) if isinstance(v, Mapping) else v


def _guarded(store: WeaviateVectorStore, collection: str, it: Any) -> Iterator[Any]:
    """Iterate a Weaviate iterator, turning its errors into ours."""
    iterator = iter(it)
    while True:
        try:
            o = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            store._call(collection, "iterator", _raise, exc)
        yield o


def _raise(exc: BaseException) -> None:
    raise exc


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    lines = [line for line in str(msg).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
