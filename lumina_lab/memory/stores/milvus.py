"""Milvus behind the :class:`~lumina_lab.memory.base.VectorStore` protocol (pymilvus ``MilvusClient``).

``uri`` is either a local Milvus Lite file (``.../milvus.db``, the default is
``$LUMINA_HOME/memory/milvus.db``) or a server/cluster address (``http://host:19530``, with
``token`` and ``db_name`` when needed).

Layout: each collection ``docs`` is the Milvus collection ``lumina_<prefix>docs`` with the fields
``id`` (VARCHAR primary key, 2048 *bytes*: Milvus counts bytes, our ids are up to 512 characters),
``vector`` (FLOAT_VECTOR, unit length, ``FLAT`` index with metric ``COSINE`` — exact; pass
``index_type="AUTOINDEX"``/``"HNSW"`` for large server collections), ``text`` (VARCHAR, 65535 bytes)
and ``metadata`` (JSON). The collection's properties hold ``lumina.name`` and ``lumina.prefix``, so
:meth:`MilvusVectorStore.collections` lists only collections this adapter created, and reopening
reads the dimension back from the schema.

Filters: Milvus compares JSON values loosely (``metadata["n"] == 1`` matches ``true``; ``not``
drops items whose key is absent; Milvus Lite has no ``in`` on JSON keys, and servers have had
int/float mix-ups). So :func:`milvus_expr` turns a filter into an expression that selects a
*superset* of the matching items (strings exactly; numbers as float literals; booleans;
``In`` as ``or``; ``Not`` is not pushed down), and every result is checked again with
:meth:`Filter.matches <lumina_lab.memory.filters.Filter.matches>` in Python. Searches over-fetch
(x4 per round, up to Milvus' 16384 limit) until ``k`` items survive, then fall back to an exact scan
(the loop is shared with the Weaviate adapter: :mod:`lumina_lab.memory.stores.superset`).

Consistency: collections are created with ``consistency_level="Strong"`` and loaded on open, so
a search, count or get sees every write acknowledged before it. ``flush`` is needed for neither
visibility nor durability (Milvus Lite keeps a write-ahead log, a server its message queue), so
servers are never flushed. Milvus Lite, though, searches unflushed rows slowly (a k=10 search over
2000 unflushed 384-d rows takes ~130 ms, ~10 ms once flushed), so the adapter flushes a Lite collection after every
``lite_flush_rows`` (1000) written rows and on :meth:`~MilvusVectorStore.close`. On Lite, a filtered
search first tries the unfiltered top ``max(8k, 64)`` (Lite evaluates JSON filters row by row in Python).

Writes: every input is checked before anything is written (also Milvus' own limits: texts up to
65535 bytes, metadata JSON up to 64 KiB, integers within 64 bits). Batches above 1000 rows (or
32 MiB) go out in several calls, so a failure part-way can leave part of a batch written; upserts
are idempotent, so writing the batch again repairs it.

Milvus Lite lets one process open a file at a time: a second process gets a :class:`StoreError`
naming the remedies (the DuckDB default, which many processes share, or a Milvus server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

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
from .superset import TopK, best, overfetch, recheck

__all__ = ["MilvusVectorStore", "matches_nothing", "milvus_expr", "quote"]

MAX_TOPK = 16384  # Milvus' largest limit (+ offset) for search and query
_BASE = "lumina_"
_PREFIX = re.compile(r"^[A-Za-z0-9_]{0,64}$")
_SAFE_KEY = re.compile(r"^[\w\- .]{1,255}$", re.ASCII)
_ID_CHUNK = 500
_ROW_CHUNK = 1000
_BATCH_BYTES = 32 * 1024 * 1024
_TEXT_BYTES = 65535
_JSON_BYTES = 65536
_FLOAT_EXACT = 2**53

# Milvus Lite runs one in-process server per data directory; we count our open stores per directory
# and stop the servers we started when the last one closes (so other processes may open the file).
_LITE_OPEN: dict[str, int] = {}
_LITE_OURS: set[str] = set()
_LITE_LOCK = threading.Lock()


# ---- filter translation ---------------------------------------------------------------------
def quote(s: str) -> str:
    """A Milvus string literal for ``s`` (escapes both Milvus and Milvus Lite understand)."""
    return (
        '"'
        + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        + '"'
    )


def _number(v: int | float) -> str | None:
    """A float literal for a number (never an exponent), or None when it cannot be written exactly enough."""
    if isinstance(v, int) and abs(v) > _FLOAT_EXACT:
        return None
    x = float(v)
    if not math.isfinite(x) or not (x == 0 or 1e-4 <= abs(x) < 1e15):
        return None
    text = repr(x)
    return None if "e" in text or "inf" in text or "nan" in text else text


def _literal(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, int | float):
        return _number(v)
    return None


def _field(key: str) -> str | None:
    return f"metadata[{quote(key)}]" if _SAFE_KEY.match(key) else None


def milvus_expr(f: Filter | None) -> str:
    """A Milvus boolean expression selecting a superset of what ``f`` matches (``""``: no restriction).

    Results must still be checked with ``f.matches``: Milvus treats ``true == 1`` and absent keys
    under ``not`` differently from the filter semantics, so only what is safe is pushed down.

    >>> from lumina_lab.memory.filters import F
    >>> milvus_expr((F.tag == "red") & (F.n >= 3))
    '(metadata["tag"] == "red") and (metadata["n"] >= 3.0)'
    >>> milvus_expr(~(F.tag == "red"))
    ''
    """
    return (_expr(f) or "") if f is not None else ""


def matches_nothing(f: Filter | None) -> bool:
    """Whether ``f`` provably matches no item (``isin([])``, bounds of two kinds), so Milvus need not be asked."""
    if isinstance(f, In):
        return not f.values
    if isinstance(f, Range):
        return len({type(b) if isinstance(b, bool | str) else float for _, b in f.bounds()}) > 1
    if isinstance(f, And):
        return any(matches_nothing(p) for p in f.parts)
    if isinstance(f, Or):
        return all(matches_nothing(p) for p in f.parts)
    return False


def _expr(f: Filter) -> str | None:
    if isinstance(f, Eq):
        field, lit = _field(f.field), _literal(f.value)
        return f"{field} == {lit}" if field and lit else None
    if isinstance(f, In):
        if not f.values or len(f.values) > 64:
            return None
        parts = [_expr(Eq(f.field, v)) for v in f.values]
        if any(p is None for p in parts):
            return None
        return " or ".join(f"({p})" for p in parts) if len(parts) > 1 else parts[0]
    if isinstance(f, Range):
        field = _field(f.field)
        bounds = f.bounds()
        if field is None or not bounds or any(isinstance(b, bool) for _, b in bounds):
            return None
        ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
        parts = []
        for op, b in bounds:
            lit = _literal(b)
            if lit is None:
                return None
            if not isinstance(b, str):  # float rounding is monotonic: widen strict bounds so the set stays a superset
                op = {"gt": "ge", "lt": "le"}.get(op, op)
            parts.append(f"{field} {ops[op]} {lit}")
        return " and ".join(parts)
    if isinstance(f, And):
        parts = [p for p in (_expr(x) for x in f.parts) if p]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)
    if isinstance(f, Or):
        parts = [_expr(x) for x in f.parts]
        if not parts or any(not p for p in parts):
            return None
        return " or ".join(f"({p})" for p in parts)
    if isinstance(f, Not):
        return None
    return None


# ---- the store ------------------------------------------------------------------------------
class _Capture(logging.Filter):
    """Swallow (and keep) the exception milvus-lite logs when it cannot start a server."""

    def __init__(self) -> None:
        super().__init__()
        self.exc: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.exc = record.exc_info[1]
        return False


def _is_lite(uri: str) -> bool:
    return "://" not in uri and not uri.startswith("unix:")


class MilvusVectorStore(BaseVectorStore):
    """Vector collections in Milvus: a Milvus Lite file (one process) or a Milvus server.

    Args:
        uri: a Milvus Lite file ending in ``.db`` (default ``$LUMINA_HOME/memory/milvus.db``) or
            ``http(s)://host:19530``.
        token: server credentials (``"user:password"`` or an API key).
        db_name: server database (default: the server's default database).
        prefix: extra name prefix: collection ``docs`` is Milvus collection ``lumina_<prefix>docs``.
        index_type: vector index (``FLAT`` is exact; ``AUTOINDEX``/``HNSW`` scale further on a server).
        index_params: extra index build parameters.
        timeout_s: connection and call timeout.
        lite_flush_rows: Milvus Lite only: flush a collection once this many rows were written since
            its last flush (Lite searches unflushed rows slowly: ~130 ms for 2000 rows, 2.5 ms flushed);
            None never flushes.

    >>> import numpy as np, tempfile, os
    >>> s = MilvusVectorStore(os.path.join(tempfile.mkdtemp(), "milvus.db"))
    >>> _ = s.create_collection("docs", dim=3)
    >>> s.upsert("docs", ["a", "b"], np.eye(3)[:2], texts=["x", "y"], metadata=[{"n": 1}, {"n": 2}])
    2
    >>> [h.id for h in s.search("docs", [1, 0.1, 0], k=1)]
    ['a']
    >>> s.close()
    """

    name = "milvus"

    def __init__(
        self,
        uri: str | os.PathLike[str] | None = None,
        *,
        token: str = "",
        db_name: str = "",
        prefix: str = "",
        index_type: str = "FLAT",
        index_params: Mapping[str, Any] | None = None,
        timeout_s: float = 30.0,
        lite_flush_rows: int | None = 1000,
    ) -> None:
        if uri is None:
            from ...config import load_settings

            uri = Path(load_settings().home) / "memory" / "milvus.db"
        uri = os.fspath(uri)
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ValidationError(
                f"prefix={prefix!r} is not valid", input=prefix, hint="use letters, digits and _ only (at most 64)"
            )
        self.lite = _is_lite(uri)
        if self.lite:
            path = Path(uri).expanduser().absolute()
            if path.suffix != ".db":
                raise ValidationError(
                    f"{uri!r} is not a Milvus Lite file name",
                    input=uri,
                    hint="end the file name in .db, e.g. .../milvus.db",
                )
            if path.exists() and not path.is_dir():
                raise StoreError(
                    f"{path} is a file, not a Milvus Lite 3 data directory (it may come from milvus-lite 2)",
                    input=str(path),
                    hint="pass another path, or move the old file away",
                )
            self.uri = str(path)
        else:
            self.uri = uri
        self.prefix = prefix
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self.timeout_s = timeout_s
        self.lite_flush_rows = lite_flush_rows
        self._pending: dict[str, int] = {}
        self._base = _BASE + prefix
        self._lock = threading.RLock()
        self._infos: dict[str, CollectionInfo] = {}
        self._closed = False
        self._client = self._connect_lite() if self.lite else self._connect_server(token, db_name)

    # ---- connection --------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"the Milvus {'Lite file' if self.lite else 'server'} {self.uri}"

    def _connect_server(self, token: str, db_name: str) -> Any:
        MilvusClient = _pymilvus().MilvusClient
        try:
            return MilvusClient(uri=self.uri, token=token, db_name=db_name, timeout=self.timeout_s)
        except Exception as exc:
            raise StoreError(
                f"cannot connect to Milvus at {self.uri}: {_message(exc)}",
                input=self.uri,
                hint="start the server (or check uri, token and db_name); for a local file pass uri='.../milvus.db'",
            ) from None

    def _connect_lite(self) -> Any:
        MilvusClient = _pymilvus().MilvusClient
        Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        capture = _Capture()  # milvus-lite logs (with a traceback) why it could not start: keep it quiet
        logger = logging.getLogger("milvus_lite.server_manager")
        with _LITE_LOCK:
            fresh = not _LITE_OPEN.get(self.uri) and not _lite_running(self.uri)
            logger.addFilter(capture)
            try:
                client = MilvusClient(uri=self.uri, timeout=self.timeout_s)
            except Exception as exc:
                raise self._lite_error(exc, capture.exc) from None
            finally:
                logger.removeFilter(capture)
            _LITE_OPEN[self.uri] = _LITE_OPEN.get(self.uri, 0) + 1
            if fresh:
                _LITE_OURS.add(self.uri)
        return client

    def _lite_error(self, exc: BaseException, cause: BaseException | None) -> StoreError:
        locked = type(cause).__name__ == "DataDirLockedError" or _locked_elsewhere(Path(self.uri) / "LOCK")
        if locked:
            return StoreError(
                f"the Milvus Lite file {self.uri} is open in another process (Milvus Lite allows one process per file)",
                input=self.uri,
                hint="use the default DuckDB store (open_vector_store('duckdb')), which many processes share, "
                "or run a Milvus server and pass uri='http://host:19530'; or close the other process first",
            )
        detail = _message(cause) if cause is not None else _message(exc)
        return StoreError(
            f"cannot open the Milvus Lite file {self.uri}: {detail}",
            input=self.uri,
            hint="check that the path is writable and that milvus-lite is installed (pip install 'lumina-lab[milvus]')",
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            for name, rows in list(self._pending.items()):
                if rows:  # a reopened Lite file would otherwise replay them into its slow memtable
                    with contextlib.suppress(Exception):
                        self._client.flush(self._phys(name))
            self._pending.clear()
            self._closed = True
            with contextlib.suppress(Exception):
                self._client.close()
            if self.lite:
                with _LITE_LOCK:
                    left = _LITE_OPEN.pop(self.uri, 1) - 1
                    if left > 0:
                        _LITE_OPEN[self.uri] = left
                    elif self.uri in _LITE_OURS:
                        _LITE_OURS.discard(self.uri)
                        _release_lite(self.uri)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._where} is closed", hint="open a new MilvusVectorStore")

    # ---- calls and errors ------------------------------------------------------------------------
    def _call(self, name: str | None, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; missing collections become CollectionNotFound, the rest StoreError."""
        self._check_open()
        for attempt in range(2):
            try:
                return fn(*args, **kwargs)
            except LuminaError:
                raise
            except Exception as exc:
                msg = _message(exc)
                low = msg.lower()
                if name is not None and (
                    getattr(exc, "code", None) == 100
                    or ("collection" in low and ("not exist" in low or "not found" in low))
                ):
                    with self._lock:
                        self._infos.pop(name, None)
                    raise not_found(name, self._known(), self._where) from None
                if name is not None and attempt == 0 and ("released" in low or "not loaded" in low or "load()" in low):
                    with contextlib.suppress(Exception):
                        self._client.load_collection(self._phys(name))
                    continue
                raise StoreError(
                    f"Milvus {op}{f' on {name!r}' if name else ''} failed: {msg}",
                    input=name,
                    hint=f"check that {self._where} is reachable and healthy",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _phys(self, name: str) -> str:
        return self._base + name

    # ---- catalog -----------------------------------------------------------------------------------
    def _describe(self, name: str) -> CollectionInfo | None:
        """The collection ``name`` as stored (None if absent); loads it for search."""
        phys = self._phys(name)
        if not self._call(None, "has_collection", self._client.has_collection, phys):
            return None
        d = self._call(name, "describe_collection", self._client.describe_collection, phys)
        props = d.get("properties") or {}
        if props.get("lumina.name") != name or props.get("lumina.prefix", "") != self.prefix:
            return None
        dim = next(
            (int(f.get("params", {}).get("dim")) for f in d.get("fields", []) if f.get("name") == "vector"), None
        )
        if dim is None:  # pragma: no cover - we always create the vector field
            raise StoreError(f"Milvus collection {phys!r} has no vector field", input=name)
        self._call(name, "load_collection", self._client.load_collection, phys)
        return CollectionInfo(name, dim, "cosine")

    def _info(self, name: str) -> CollectionInfo:
        self._check_open()
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
        self._check_open()
        with self._lock:
            names = self._call(None, "list_collections", self._client.list_collections)
            found: dict[str, CollectionInfo] = {}
            for phys in names:
                if not phys.startswith(self._base):
                    continue
                name = phys[len(self._base) :]
                info = self._infos.get(name) or self._describe(name)
                if info is not None:
                    found[name] = info
            self._infos = found
            return sorted(found.values(), key=lambda c: c.name)

    def create_collection(
        self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True
    ) -> CollectionInfo:
        from .memory import _create

        name, dim, metric = check_collection_name(name), check_dim(dim), check_metric(metric)
        self._check_open()
        with self._lock:
            old = self._infos.get(name) or self._describe(name)
            if old is None:
                phys = self._phys(name)
                if self._call(None, "has_collection", self._client.has_collection, phys):
                    raise StoreError(
                        f"Milvus collection {phys!r} exists but was not created by Lumina Lab (prefix {self.prefix!r})",
                        input=name,
                        hint="use another collection name or prefix=..., or drop that Milvus collection",
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
                    return info
            self._infos[name] = old
            return _create({name: old}, name, dim, metric, exist_ok, lambda info: None)

    def _create(self, phys: str, name: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", DataType.VARCHAR, max_length=_TEXT_BYTES)
        schema.add_field("metadata", DataType.JSON)
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="COSINE", params=self.index_params)
        self._call(
            None,
            "create_collection",
            self._client.create_collection,
            phys,
            schema=schema,
            consistency_level="Strong",
            properties={"lumina.name": name, "lumina.prefix": self.prefix},
        )
        # Milvus Lite builds the index at once but lacks the timestamp call pymilvus waits with (it
        # would log a server error and sleep 0.5 s); a server's index build is awaited before loading.
        self._call(name, "create_index", self._client.create_index, phys, index, sync=not self.lite)
        self._call(name, "load_collection", self._client.load_collection, phys)

    def drop_collection(self, name: str) -> None:
        with self._lock:
            self._info(name)
            self._call(name, "drop_collection", self._client.drop_collection, self._phys(name))
            self._infos.pop(name, None)
            self._pending.pop(name, None)

    # ---- data ------------------------------------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        info = self._info(collection)
        batch = prepare_batch(info, ids, vectors, texts, metadata)
        if not len(batch):
            return 0
        rows: list[dict[str, Any]] = []
        sizes: list[int] = []
        for i, vec, text, md in zip(batch.ids, batch.vectors, batch.texts, batch.metadata, strict=True):
            tb = len(text.encode())
            if tb > _TEXT_BYTES:
                raise ValidationError(
                    f"text of {i!r} is {tb} bytes; Milvus stores at most {_TEXT_BYTES}",
                    input=i,
                    hint="split long texts into chunks (lumina_lab.memory.chunking), or use the DuckDB store",
                )
            for key, v in md.items():
                if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
                    raise ValidationError(
                        f"metadata {key!r} of {i!r} is an integer beyond 64 bits, which Milvus cannot store",
                        input=v,
                        hint="store it as a string (or a float), or use the DuckDB store",
                    )
            mb = len(json.dumps(md).encode())
            if mb > _JSON_BYTES:
                raise ValidationError(
                    f"metadata of {i!r} is {mb} bytes of JSON; Milvus stores at most {_JSON_BYTES}", input=i
                )
            if len(i.encode()) > 2048:  # pragma: no cover - 512 characters are at most 2048 bytes
                raise ValidationError(f"id {i[:40]!r}... is longer than 2048 bytes", input=i)
            rows.append({"id": i, "vector": vec.tolist(), "text": text, "metadata": md})
            sizes.append(tb + mb + 4 * info.dim + len(i) + 64)
        phys = self._phys(collection)
        start, acc = 0, 0
        for j, size in enumerate(sizes):
            if j > start and (j - start >= _ROW_CHUNK or acc + size > _BATCH_BYTES):
                self._call(collection, "upsert", self._client.upsert, phys, rows[start:j])
                start, acc = j, 0
            acc += size
        self._call(collection, "upsert", self._client.upsert, phys, rows[start:])
        if self.lite and self.lite_flush_rows is not None:
            with self._lock:
                pending = self._pending.get(collection, 0) + len(batch)
                if pending >= self.lite_flush_rows:
                    self._call(collection, "flush", self._client.flush, phys)
                    pending = 0
                self._pending[collection] = pending
        return len(batch)

    def _query(self, collection: str, expr: str, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Every row matching ``expr`` (``""``: all), in batches."""
        phys = self._phys(collection)
        expr = expr or 'id != ""'
        if self.lite:  # Milvus Lite answers a query without limit in full
            yield self._call(collection, "query", self._client.query, phys, filter=expr, output_fields=fields)
            return
        it = self._call(
            collection,
            "query_iterator",
            self._client.query_iterator,
            phys,
            batch_size=1000,
            filter=expr,
            output_fields=fields,
        )
        try:
            while True:
                rows = self._call(collection, "query_iterator", it.next)
                if not rows:
                    return
                yield rows
        finally:
            with contextlib.suppress(Exception):
                it.close()

    def _matching(self, collection: str, f: Filter, fields: list[str]) -> list[dict[str, Any]]:
        if matches_nothing(f):
            return []
        return [
            r
            for rows in self._query(collection, milvus_expr(f), fields)
            for r in rows
            if recheck(f, r.get("metadata"))
        ]

    def _by_ids(self, collection: str, ids: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i]
        for j in range(0, len(unique), _ID_CHUNK):
            chunk = unique[j : j + _ID_CHUNK]
            expr = f"id in [{', '.join(quote(i) for i in chunk)}]"
            for rows in self._query(collection, expr, fields):
                for r in rows:
                    found[r["id"]] = r
        return found

    def search(self, collection: str, vector: Any, k: int = 10, where: Where = None) -> list[Hit]:
        info = self._info(collection)
        q, k, f = prepare_query(info, vector, k, where)
        if matches_nothing(f):
            return []
        expr = milvus_expr(f)
        if k > MAX_TOPK:
            return self._scan_search(collection, q, k, f, expr)
        if f is not None and expr and self.lite:
            # Milvus Lite evaluates JSON filters row by row in Python (~40 ms per 1000 rows), while an
            # unfiltered search is cheap: try the plain top-N first, it suffices for common filters.
            limit = min(MAX_TOPK, max(8 * k, 64))
            hits, got = self._search_once(collection, q, "", limit, f)
            if len(hits) >= k or got < limit:
                return best(hits, k)
        return overfetch(
            lambda limit: self._search_once(collection, q, expr, limit, f),
            k,
            filtered=f is not None,
            max_limit=MAX_TOPK,
            scan=lambda: self._scan_search(collection, q, k, f, expr),
        )

    def _search_once(
        self, collection: str, q: np.ndarray, expr: str, limit: int, f: Filter | None
    ) -> tuple[list[Hit], int]:
        """Milvus' top ``limit`` for ``expr``, checked with ``f``; also how many Milvus returned."""
        raw = self._call(
            collection,
            "search",
            self._client.search,
            self._phys(collection),
            data=[q.tolist()],
            filter=expr,
            limit=limit,
            output_fields=["text", "metadata"],
            search_params={"metric_type": "COSINE", "params": {}},
        )
        got = list(raw[0]) if raw else []
        hits = []
        for h in got:
            entity = h.get("entity") or {}
            md = entity.get("metadata") or {}
            if recheck(f, md):
                hits.append(Hit(str(h["id"]), float(h["distance"]), entity.get("text") or "", dict(md)))
        return hits, len(got)

    def _scan_search(self, collection: str, q: np.ndarray, k: int, f: Filter | None, expr: str) -> list[Hit]:
        """Exact top-k by scanning rows (for filters Milvus cannot narrow, or k beyond its limit)."""
        top = TopK(k)
        for rows in self._query(collection, expr, ["id", "vector", "text", "metadata"]):
            keep = [r for r in rows if recheck(f, r.get("metadata"))]
            if not keep:
                continue
            scores = np.asarray([r["vector"] for r in keep], dtype=np.float32) @ q
            top.add(
                (float(s), r["id"], r.get("text") or "", dict(r.get("metadata") or {}))
                for s, r in zip(scores, keep, strict=True)
            )
        return top.hits()

    def get(self, collection: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        self._info(collection)
        if isinstance(ids, str):
            raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
        fields = ["id", "text", "metadata"] + (["vector"] if with_vectors else [])
        found = self._by_ids(collection, list(ids), fields)
        out = []
        for i in ids:
            r = found.get(i) if isinstance(i, str) else None
            if r is not None:
                vec = np.asarray(r["vector"], dtype=np.float32) if with_vectors else None
                out.append(Record(i, vec, r.get("text") or "", dict(r.get("metadata") or {})))
        return out

    def delete(self, collection: str, ids: Sequence[str] | None = None, where: Where = None) -> int:
        self._info(collection)
        f = parse_filter(where)
        if ids is None and f is None:
            raise ValidationError(
                "delete() needs ids or a filter", hint="pass ids=[...] or where=...; to delete everything call clear()"
            )
        if isinstance(ids, str):
            raise ValidationError(f"ids={ids!r} is one string", input=ids, hint="pass a list of ids, e.g. [id]")
        if ids is None:
            doomed = [r["id"] for r in self._matching(collection, f, ["id", "metadata"])]  # type: ignore[arg-type]
        else:
            found = self._by_ids(collection, list(ids), ["id", "metadata"])
            doomed = [i for i, r in found.items() if recheck(f, r.get("metadata"))]
        phys = self._phys(collection)
        for j in range(0, len(doomed), _ID_CHUNK):
            chunk = doomed[j : j + _ID_CHUNK]
            self._call(
                collection, "delete", self._client.delete, phys, filter=f"id in [{', '.join(quote(i) for i in chunk)}]"
            )
        return len(doomed)

    def count(self, collection: str, where: Where = None) -> int:
        self._info(collection)
        f = parse_filter(where)
        if f is None:
            rows = self._call(
                collection, "count", self._client.query, self._phys(collection), filter="", output_fields=["count(*)"]
            )
            return int(rows[0]["count(*)"]) if rows else 0
        return len(self._matching(collection, f, ["id", "metadata"]))

    def clear(self, collection: str) -> None:
        self._info(collection)
        self._call(collection, "clear", self._client.delete, self._phys(collection), filter='id != ""')

    def flush(self, collection: str | None = None) -> None:
        """Seal and persist pending writes now (never needed for visibility; optional before a backup)."""
        names = [collection] if collection else [c.name for c in self.collections()]
        for name in names:
            self._info(name)
            self._call(name, "flush", self._client.flush, self._phys(name))
            self._pending.pop(name, None)


# ---- Milvus Lite helpers ----------------------------------------------------------------------
def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise StoreError(
            "the milvus backend needs pymilvus (and milvus-lite for local files)",
            hint="pip install 'lumina-lab[milvus]'",
        ) from None
    return pymilvus


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(msg).strip().splitlines()[0] if str(msg).strip() else type(exc).__name__


def _lite_running(path: str) -> bool:
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - pymilvus reports the missing package itself
        return False
    servers = getattr(server_manager_instance, "_servers", {})
    return os.path.abspath(path) in servers


def _release_lite(path: str) -> None:
    """Stop the Milvus Lite server this process runs for ``path`` (freeing the file for others)."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover
        return
    release = getattr(server_manager_instance, "release_server", None)
    if release is not None:
        with contextlib.suppress(Exception):
            release(path)


def _locked_elsewhere(lock: Path) -> bool:
    """Whether another process holds Milvus Lite's ``LOCK`` file (only asked after opening failed)."""
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
