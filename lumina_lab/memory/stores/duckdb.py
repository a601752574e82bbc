"""The default vector store: one DuckDB file, an in-memory mirror for search, usearch for scale.

Layout (``$LUMINA_HOME/memory/vectors.duckdb`` by default):

* ``lumina_collections`` (name, dim, metric, created_seq) and one table per collection,
  ``c_<name>(id, seq, text, metadata JSON, vector FLOAT[dim])`` — query them with :meth:`DuckDBVectorStore.sql`;
* ``lumina_deletions`` (collection, id, seq) so other processes can replay deletes; ``id`` NULL means *cleared*;
* ``vectors.duckdb.gen`` holds the last write's ``seq``: a reader compares one ``stat()`` per
  search and replays only newer rows when it changed;
* ``vectors.duckdb.<collection>.usearch`` (+ ``.json`` stamp): the approximate index, reused
  (memory-mapped) when its stamp matches the table and rebuilt otherwise;
* ``vectors.duckdb.<collection>.f32``: a copy of the float32 vectors and their ``seq``s, written with
  the index, memory-mapped on open when its ``seq``s are exactly the table's (a cache: reading a
  million vectors out of DuckDB takes seconds; a stale or torn copy is ignored).

Many processes (notebook kernels) share one file: DuckDB lets only one process hold a file, so
every process takes an exclusive ``flock`` on ``vectors.duckdb.lock``, opens the database, works,
and closes it again after ``lease_s`` idle seconds. Searches need no database at all while the
mirror is current. Every write is one transaction: a writer killed mid-batch leaves the batch
either fully stored or absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import StoreError, ValidationError
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
from ..table import AnnIndex, VectorTable
from .memory import doomed_ids, records

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["DuckDBVectorStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lumina_collections (name VARCHAR PRIMARY KEY, dim INTEGER, metric VARCHAR, created_seq BIGINT);
CREATE TABLE IF NOT EXISTS lumina_meta (key VARCHAR PRIMARY KEY, value BIGINT);
CREATE TABLE IF NOT EXISTS lumina_deletions (collection VARCHAR, id VARCHAR, seq BIGINT);
INSERT INTO lumina_meta SELECT 'seq', 0 WHERE NOT EXISTS (SELECT 1 FROM lumina_meta WHERE key = 'seq');
"""


class _Db:
    """One DuckDB file shared by threads and processes: flock, lazily opened, closed when idle."""

    def __init__(self, path: Path, *, lease_s: float, timeout_s: float) -> None:
        self.path = path
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.lock = threading.RLock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self._lockfile: int | None = None
        self._deadline = 0.0
        self._closer: threading.Thread | None = None
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.lock:
            if self.con is None:
                self._open()
            try:
                yield self.con  # type: ignore[misc]
            finally:
                if self.lease_s <= 0:
                    self._close()
                else:
                    self._deadline = time.monotonic() + self.lease_s
                    if self._closer is None or not self._closer.is_alive():
                        self._closer = threading.Thread(target=self._close_when_idle, daemon=True, name="lumina-vs-lease")
                        self._closer.start()

    def _close_when_idle(self) -> None:
        while True:
            wait = self._deadline - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.5))
                continue
            with self.lock:
                if time.monotonic() >= self._deadline:
                    self._close()
                    return

    def _open(self) -> None:
        import duckdb

        lockpath = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lockpath, os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > self.timeout_s:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise StoreError(
                        f"the vector store {self.path} stayed busy for {self.timeout_s:.0f} s (held by process {holder})",
                        input=str(self.path),
                        hint="that process is in a long write or hung; wait, stop it, or open another file "
                        "(LUMINA_HOME or DuckDBVectorStore(path=...))",
                    ) from None
                time.sleep(0.002)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lockfile = fd
        try:
            self.con = self._connect(duckdb)
            _x(self.con, _SCHEMA)
        except BaseException:
            self._close()
            raise

    def _connect(self, duckdb: Any) -> duckdb.DuckDBPyConnection:
        start = time.monotonic()
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StoreError(f"cannot open the vector store {self.path}: {exc}", input=str(self.path)) from None
                if time.monotonic() - start > self.timeout_s:
                    raise StoreError(
                        f"the vector store {self.path} is held open by a program that is not Lumina Lab",
                        input=str(self.path),
                        hint="close the other program's DuckDB connection to this file (e.g. a duckdb shell), "
                        "or give Lumina another file",
                    ) from None
                time.sleep(0.05)

    def _close(self) -> None:
        if self.con is not None:
            with contextlib.suppress(Exception):
                self.con.close()
            self.con = None
        if self._lockfile is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)
                os.close(self._lockfile)
            self._lockfile = None

    def close(self) -> None:
        with self.lock:
            self._close()
            self._deadline = 0.0


class DuckDBVectorStore(BaseVectorStore):
    """Vector collections persisted in one DuckDB file, searched from memory (exact or usearch HNSW).

    Args:
        path: the database file (default ``$LUMINA_HOME/memory/vectors.duckdb``).
        exact_limit: collections (or filtered candidate sets) up to this size are searched exactly;
            beyond it the approximate index answers (recall@10 ≥ 0.95 in ``benchmarks/vector_search.py``).
        ann_params: usearch ``connectivity``, ``expansion_add``, ``expansion_search``, ``dtype`` (defaults in
            :attr:`lumina_lab.memory.table.AnnIndex.defaults`; candidates are re-ranked exactly either way).
        lease_s: idle seconds before the file is handed back to other processes.
        timeout_s: how long to wait for another process holding the file.
        encryption: a :class:`~lumina_lab.security.keys.KeyRing` (or ``Sealer``): item texts are sealed
            in the file with AES-GCM envelope encryption (see :mod:`lumina_lab.memory.stores.sealing`);
            vectors are not.  Rows written before are read as they are.
        sealed_metadata: metadata fields sealed as well as the text.
    """

    name = "duckdb"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        exact_limit: int = 20_000,
        ann_params: dict[str, Any] | None = None,
        lease_s: float = 0.25,
        timeout_s: float = 30.0,
        encryption: Any = None,
        sealed_metadata: Sequence[str] = (),
    ) -> None:
        from .sealing import make_sealing

        self.sealing = make_sealing(encryption, sealed_metadata)
        if path is None:
            from ...config import load_settings

            path = Path(load_settings().home) / "memory" / "vectors.duckdb"
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ValidationError(
                f"{self.path} is a directory", input=str(path), hint="pass the database file, e.g. .../vectors.duckdb"
            )
        self.exact_limit = exact_limit
        self.ann_params = dict(ann_params or {})
        self._db = _Db(self.path, lease_s=lease_s, timeout_s=timeout_s)
        self._lock = self._db.lock
        self._gen_path = self.path.with_name(self.path.name + ".gen")
        self._gen_stamp: tuple[int, int, int] | None = None
        self._infos: dict[str, CollectionInfo] = {}
        self._created: dict[str, int] = {}
        self._tables: dict[str, VectorTable] = {}
        self._synced: dict[str, int] = {}
        self.loaded_from: dict[str, str] = {}  # collection -> where its vectors came from: "cache", "table", "empty"
        self._closed = False
        with self._db.session() as con:
            self._sync(con)

    # ---- cross-process freshness ----------------------------------------------------------
    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._gen_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _fresh(self) -> None:
        """Replay other processes' writes if the generation file moved since we last looked."""
        if self._closed:
            raise StoreError(f"the vector store {self.path} is closed", hint="open a new DuckDBVectorStore")
        if self._stamp() != self._gen_stamp:
            with self._db.session() as con:
                self._sync(con)

    def _sync(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring catalog and loaded mirrors up to the database (call inside a session)."""
        stamp = self._stamp()
        rows = con.execute("SELECT name, dim, metric, created_seq FROM lumina_collections").fetchall()
        catalog = {r[0]: (CollectionInfo(r[0], r[1], r[2]), r[3]) for r in rows}
        for name in list(self._infos):
            if name not in catalog or catalog[name][1] != self._created[name]:
                self._forget(name)
        for name, (info, created) in catalog.items():
            self._infos[name] = info
            self._created[name] = created
        seq = self._seq(con)
        for name, table in self._tables.items():
            if self._synced[name] < seq:
                self._replay(con, name, table)
                self._synced[name] = seq
        self._gen_stamp = stamp

    def _forget(self, name: str) -> None:
        self.loaded_from.pop(name, None)
        self._infos.pop(name, None)
        self._created.pop(name, None)
        self._tables.pop(name, None)
        self._synced.pop(name, None)

    @staticmethod
    def _seq(con: duckdb.DuckDBPyConnection) -> int:
        return int(con.execute("SELECT value FROM lumina_meta WHERE key = 'seq'").fetchall()[0][0])

    def _replay(self, con: duckdb.DuckDBPyConnection, name: str, table: VectorTable) -> None:
        since = self._synced[name]
        _load_rows(con, name, table, since, sealing=self.sealing)
        dels = con.execute(
            "SELECT id, seq FROM lumina_deletions WHERE collection = ? AND seq > ? ORDER BY seq", [name, since]
        ).fetchall()
        for doc_id, seq in dels:
            if doc_id is None:
                table.remove_before(seq)
            else:
                table.remove_if_older([doc_id], seq)

    def _write_gen(self, seq: int) -> None:
        tmp = self._gen_path.with_name(self._gen_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, self._gen_path)
        self._gen_stamp = self._stamp()

    def _table(self, name: str, con: duckdb.DuckDBPyConnection | None = None) -> tuple[CollectionInfo, VectorTable]:
        info = self._infos.get(name)
        if info is None:
            raise not_found(name, list(self._infos), f"the DuckDB store {self.path}")
        table = self._tables.get(name)
        if table is None:
            if con is None:
                with self._db.session() as c:
                    return self._table(name, c)
            table = VectorTable(info.dim, exact_limit=self.exact_limit, ann_params=self.ann_params)
            self.loaded_from[name] = _load_rows(con, name, table, 0, self._matrix_path(name), self.sealing)
            self._synced[name] = self._seq(con)
            self._tables[name] = table
            self._load_ann(name, table)
        return info, table

    # ---- approximate index persistence ---------------------------------------------------
    def _ann_paths(self, name: str) -> tuple[Path, Path]:
        base = self.path.with_name(f"{self.path.name}.{name}.usearch")
        return base, base.with_suffix(".json")

    def _matrix_path(self, name: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{name}.f32")

    def _ann_stamp(self, name: str, table: VectorTable) -> dict[str, Any]:
        return {
            "created_seq": self._created.get(name),
            "max_seq": table.live_max_seq,
            "count": len(table),
            "dim": table.dim,
            "params": {**AnnIndex.defaults, **table.ann_params},  # new defaults rebuild older indexes once
        }

    def _load_ann(self, name: str, table: VectorTable) -> None:
        path, stamp_path = self._ann_paths(name)
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            return
        if stamp != self._ann_stamp(name, table):
            return  # stale: rebuilt on the first search that needs it
        try:
            table.ann = AnnIndex.load(path, table.dim, **table.ann_params)
            table.ann_dirty = False
        except Exception as exc:  # a torn or foreign file: rebuild instead
            log.warning("ignoring unreadable vector index %s (%s); it will be rebuilt", path, exc)

    def save_indexes(self) -> None:
        """Persist approximate indexes that changed (done on :meth:`close` too)."""
        with self._lock:
            for name, table in self._tables.items():
                if table.ann is not None and table.ann_dirty:
                    path, stamp_path = self._ann_paths(name)
                    live = table.alive[: table.n]
                    rows = None if live.all() else np.flatnonzero(live)
                    save_matrix(self._matrix_path(name), table.seqs[: table.n], table.matrix[: table.n], rows)
                    table.ann.save(path)
                    tmp = stamp_path.with_name(stamp_path.name + ".tmp")
                    tmp.write_text(json.dumps(self._ann_stamp(name, table)))
                    os.replace(tmp, stamp_path)
                    table.ann_dirty = False

    # ---- the VectorStore API ---------------------------------------------------------------
    def create_collection(self, name: str, dim: int, *, metric: str = "cosine", exist_ok: bool = True) -> CollectionInfo:
        name, dim, metric = check_collection_name(name), check_dim(dim), check_metric(metric)
        with self._db.session() as con:
            self._sync(con)
            old = self._infos.get(name)
            if old is not None:
                from .memory import _create

                return _create(self._infos, name, dim, metric, exist_ok, lambda info: None)
            seq = self._seq(con) + 1
            _x(con, "BEGIN")
            try:
                _x(con,
                    f"CREATE TABLE {_t(name)} (id VARCHAR, seq BIGINT, text VARCHAR, metadata JSON, vector FLOAT[{dim}])"
                )
                _x(con, "INSERT INTO lumina_collections VALUES (?, ?, ?, ?)", [name, dim, metric, seq])
                _x(con, "UPDATE lumina_meta SET value = ? WHERE key = 'seq'", [seq])
                _x(con, "COMMIT")
            except Exception as exc:
                _x(con, "ROLLBACK")
                raise StoreError(f"could not create collection {name!r} in {self.path}: {exc}", input=name) from None
            info = CollectionInfo(name, dim, metric)
            self._infos[name], self._created[name] = info, seq
            self._write_gen(seq)
            return info

    def collections(self) -> list[CollectionInfo]:
        with self._lock:
            self._fresh()
            return sorted(self._infos.values(), key=lambda c: c.name)

    def drop_collection(self, name: str) -> None:
        with self._db.session() as con:
            self._sync(con)
            self._table_info(name)
            seq = self._seq(con) + 1
            _x(con, "BEGIN")
            _x(con, f"DROP TABLE IF EXISTS {_t(name)}")
            _x(con, "DELETE FROM lumina_collections WHERE name = ?", [name])
            _x(con, "DELETE FROM lumina_deletions WHERE collection = ?", [name])
            _x(con, "UPDATE lumina_meta SET value = ? WHERE key = 'seq'", [seq])
            _x(con, "COMMIT")
            self._forget(name)
            for p in (*self._ann_paths(name), self._matrix_path(name)):
                p.unlink(missing_ok=True)
            self._write_gen(seq)

    def _table_info(self, name: str) -> CollectionInfo:
        info = self._infos.get(name)
        if info is None:
            raise not_found(name, list(self._infos), f"the DuckDB store {self.path}")
        return info

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        with self._db.session() as con:
            self._sync(con)
            info, table = self._table(collection, con)
            batch = prepare_batch(info, ids, vectors, texts, metadata)
            if not len(batch):
                return 0
            import pyarrow as pa

            first = self._seq(con) + 1
            last = first + len(batch) - 1
            seqs = np.arange(first, last + 1, dtype=np.int64)
            texts, metas = batch.texts, batch.metadata
            if self.sealing is not None:
                texts, metas = self.sealing.seal(collection, batch.ids, texts, metas)
            rows = pa.table(
                {
                    "id": pa.array(batch.ids, pa.string()),
                    "seq": pa.array(seqs),
                    "text": pa.array(texts, pa.string()),
                    "metadata": pa.array([json.dumps(m) for m in metas], pa.string()),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(batch.vectors.ravel()), info.dim),
                }
            )
            existing = any(i in table.slot for i in batch.ids)
            con.register("_lumina_rows", rows)
            _x(con, "BEGIN")
            try:
                if existing:
                    _x(con, f"DELETE FROM {_t(collection)} WHERE id IN (SELECT id FROM _lumina_rows)")
                _x(con,
                    f"INSERT INTO {_t(collection)} SELECT id, seq, text, metadata::JSON, vector FROM _lumina_rows"
                )
                _x(con, "UPDATE lumina_meta SET value = ? WHERE key = 'seq'", [last])
                _x(con, "COMMIT")
            except Exception as exc:
                _x(con, "ROLLBACK")
                raise StoreError(f"could not write {len(batch)} items to {collection!r}: {exc}", input=collection) from None
            finally:
                con.unregister("_lumina_rows")
            table.put(batch.ids, batch.vectors, batch.texts, batch.metadata, seqs)
            self._synced[collection] = last
            self._write_gen(last)
            return len(batch)

    def search(self, collection: str, vector: Any, k: int = 10, where: Where = None, *, exact: bool | None = None) -> list[Hit]:
        with self._lock:
            self._fresh()
            info, table = self._table(collection)
            q, k, f = prepare_query(info, vector, k, where)
            building = table.ann is None
            hits = table.topk(q, k, f, exact=exact)
            if building and table.ann is not None:
                self.save_indexes()
            return [Hit(table.ids[s], sc, table.texts[s], dict(table.meta[s])) for s, sc in hits]  # type: ignore[arg-type]

    def revision(self, collection: str) -> int:
        """A number that changes whenever the collection's contents may have changed (caches key on it)."""
        with self._lock:
            self._fresh()
            return self._table(collection)[1].version

    def scan(self, collection: str, *, batch_size: int = 1000) -> Iterator[list[Record]]:
        """Every live item, in batches of records (no vectors), oldest first."""
        with self._lock:
            self._fresh()
            table = self._table(collection)[1]
            slots = [s for s in range(table.n) if table.alive[s]]
            batches = [
                [Record(table.ids[s], None, table.texts[s], dict(table.meta[s])) for s in slots[i : i + batch_size]]  # type: ignore[arg-type]
                for i in range(0, len(slots), batch_size)
            ]
        yield from batches

    def get(self, collection: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        with self._lock:
            self._fresh()
            return records(self._table(collection)[1], ids, with_vectors)

    def delete(self, collection: str, ids: Sequence[str] | None = None, where: Where = None) -> int:
        with self._db.session() as con:
            self._sync(con)
            _, table = self._table(collection, con)
            doomed = doomed_ids(table, ids, where)
            if not doomed:
                return 0
            import pyarrow as pa

            seq = self._seq(con) + 1
            con.register("_lumina_doomed", pa.table({"id": pa.array(doomed, pa.string())}))
            _x(con, "BEGIN")
            try:
                _x(con, f"DELETE FROM {_t(collection)} WHERE id IN (SELECT id FROM _lumina_doomed)")
                _x(con, "INSERT INTO lumina_deletions SELECT ?, id, ? FROM _lumina_doomed", [collection, seq])
                _x(con, "UPDATE lumina_meta SET value = ? WHERE key = 'seq'", [seq])
                _x(con, "COMMIT")
            except Exception as exc:
                _x(con, "ROLLBACK")
                raise StoreError(f"could not delete from {collection!r}: {exc}", input=collection) from None
            finally:
                con.unregister("_lumina_doomed")
            n = table.remove(doomed)
            self._synced[collection] = seq
            self._write_gen(seq)
            return n

    def count(self, collection: str, where: Where = None) -> int:
        with self._lock:
            self._fresh()
            return self._table(collection)[1].count(parse_filter(where))

    def clear(self, collection: str) -> None:
        with self._db.session() as con:
            self._sync(con)
            _, table = self._table(collection, con)
            seq = self._seq(con) + 1
            _x(con, "BEGIN")
            _x(con, f"DELETE FROM {_t(collection)}")
            _x(con, "DELETE FROM lumina_deletions WHERE collection = ?", [collection])
            _x(con, "INSERT INTO lumina_deletions VALUES (?, NULL, ?)", [collection, seq])
            _x(con, "UPDATE lumina_meta SET value = ? WHERE key = 'seq'", [seq])
            _x(con, "COMMIT")
            table.clear()
            self._synced[collection] = seq
            for p in (*self._ann_paths(collection), self._matrix_path(collection)):
                p.unlink(missing_ok=True)
            self._write_gen(seq)

    def rewrap(self) -> int:
        """Wrap the data key of every sealed text and metadata field again with the key ring's active
        key (payloads untouched), so older keys can be retired; returns the values rewrapped."""
        if self.sealing is None:
            raise StoreError(f"the DuckDB store {self.path} has no encryption", hint="open it with encryption=KeyRing")
        import pyarrow as pa

        from ...security.envelope import PREFIX, is_sealed, key_id_of

        sealer, active, total = self.sealing.sealer, self.sealing.sealer.keyring.active, 0
        t0 = time.perf_counter()
        with self._db.session() as con:
            self._sync(con)
            for name in list(self._infos):
                got = con.execute(
                    f"SELECT id, text, metadata::VARCHAR FROM {_t(name)} WHERE text LIKE ? OR metadata::VARCHAR LIKE ?",
                    [PREFIX + "%", f'%"{PREFIX}%'],
                ).fetchall()
                ids, texts, metas = [], [], []
                for doc_id, text, meta in got:
                    m = json.loads(meta) if meta else {}
                    stale = [f for f, v in m.items() if is_sealed(v) and key_id_of(v) != active]
                    old_text = is_sealed(text) and key_id_of(text) != active
                    if not stale and not old_text:
                        continue
                    total += len(stale) + int(old_text)
                    for f in stale:
                        m[f] = sealer.rewrap(m[f])
                    ids.append(doc_id)
                    texts.append(sealer.rewrap(text) if old_text else text)
                    metas.append(json.dumps(m))
                if not ids:
                    continue
                con.register("_lumina_rewrap", pa.table({"id": ids, "text": texts, "metadata": metas}))
                try:
                    _x(
                        con,
                        f"UPDATE {_t(name)} SET text = r.text, metadata = r.metadata::JSON "
                        f"FROM _lumina_rewrap r WHERE {_t(name)}.id = r.id",
                    )
                finally:
                    con.unregister("_lumina_rewrap")
        from ...security.events import ValuesRewrapped, audit

        audit(
            sealer.keyring.bus,
            ValuesRewrapped,
            where=str(self.path),
            count=total,
            key_id=active,
            ms=(time.perf_counter() - t0) * 1000,
        )
        return total

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run SQL on the database (collections are tables ``c_<name>``) and return a DataFrame."""
        from ...events.store.base import frame

        with self._db.session() as con:
            return frame(con.execute(query, params or []))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(Exception):
                self.save_indexes()
            self._db.close()
            self._closed = True


def _x(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Execute and consume the result (duckdb 2 refuses new work while a result is pending)."""
    return con.execute(query, params or []).fetchall()


def _t(name: str) -> str:
    return f'"c_{name}"'


_MAGIC = b"LUMVEC01"
_HEADER = 64


def save_matrix(path: Path, seqs: np.ndarray, matrix: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Write ``matrix[rows]`` and their ``seqs`` to one file (atomically replaced) that :func:`open_matrix` maps.

    Layout: 64-byte header (magic, row count, dim), ``int64`` seqs, then ``float32`` rows.
    """
    n = len(seqs) if rows is None else len(rows)
    dim = matrix.shape[1]
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC + np.array([n, dim], np.int64).tobytes() + bytes(_HEADER - 24))
        fh.write(np.ascontiguousarray(seqs if rows is None else seqs[rows], np.int64).tobytes())
        step = max(1, (64 << 20) // (4 * dim))
        for lo in range(0, n, step):
            part = matrix[lo : lo + step] if rows is None else matrix[rows[lo : lo + step]]
            fh.write(np.ascontiguousarray(part, np.float32).tobytes())
    os.replace(tmp, path)


def open_matrix(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(seqs, matrix)`` memory-mapped from a :func:`save_matrix` file (copy-on-write), or None if unusable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(head) < _HEADER or head[:8] != _MAGIC:
        return None
    n, d = (int(x) for x in np.frombuffer(head[8:24], np.int64))
    if d != dim or n <= 0 or size != _HEADER + 8 * n + 4 * n * d:
        return None
    seqs = np.memmap(path, np.int64, "r", _HEADER, (n,))
    matrix = np.memmap(path, np.float32, "c", _HEADER + 8 * n, (n, d))
    return np.asarray(seqs), matrix  # type: ignore[return-value]


def _load_rows(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: VectorTable,
    since: int,
    cached: Path | None = None,
    sealing: Any = None,
) -> str:
    """Append rows with ``seq > since`` to the mirror, in ``seq`` order; return where vectors came from.

    Rows come back in insertion order, which is ``seq`` order (every write appends higher
    ``seq``s), so there is no ``ORDER BY`` (it costs 5x the scan at 1M rows); an out-of-order
    result is sorted here instead. On a full load, vectors come memory-mapped from ``cached``
    (a :func:`save_matrix` file) when its seqs are exactly the table's — reading a million
    384-d vectors out of DuckDB takes seconds — and otherwise from the table, streamed into
    one float32 matrix that the mirror adopts.
    """
    where = f"WHERE seq > {int(since)}"
    n = int(con.execute(f"SELECT count(*) FROM {_t(name)} {where}").fetchall()[0][0])
    if n == 0:
        return "empty"
    mapped = open_matrix(cached, table.dim) if cached is not None and since == 0 and table.n == 0 else None
    cols = "id, seq, text, metadata" + ("" if mapped is not None else ", vector")
    arrow = con.sql(f"SELECT {cols} FROM {_t(name)} {where}").to_arrow_table()
    seqs = arrow.column("seq").to_numpy().astype(np.int64, copy=False)
    ordered = n < 2 or bool(np.all(seqs[1:] > seqs[:-1]))
    order = None if ordered else np.argsort(seqs, kind="stable")
    if order is not None:
        seqs = seqs[order]
    if mapped is not None:
        if len(mapped[0]) != n or not np.array_equal(mapped[0], seqs):
            return _load_rows(con, name, table, since, sealing=sealing)  # stale copy: read the vectors from the table
        matrix, source = np.asarray(mapped[1]), "cache"
    else:
        source = "table"
        matrix = np.empty((n, table.dim), np.float32)
        off = 0
        for chunk in arrow.column("vector").chunks:
            m = len(chunk)
            matrix[off : off + m] = chunk.flatten().to_numpy(zero_copy_only=False).reshape(m, table.dim)
            off += m
        if order is not None:
            matrix = matrix[order]
    ids = arrow.column("id").to_pylist()
    texts = [t or "" for t in arrow.column("text").to_pylist()]
    loads = json.loads
    metas = [loads(m) if m and m != "{}" else {} for m in arrow.column("metadata").to_pylist()]
    if order is not None:
        ids, texts, metas = [ids[j] for j in order], [texts[j] for j in order], [metas[j] for j in order]
    if sealing is not None:
        texts, metas = sealing.open(name, ids, texts, metas)
    elif any(t.startswith("lx1:") for t in texts[:100]):
        log.warning(
            "collection %r holds sealed (encrypted) texts: they are shown sealed; "
            "open the store with encryption=KeyRing.open(...) to read them",
            name,
        )
    table.put(ids, matrix, texts, metas, seqs, adopt=True)
    return source
