"""An on-disk embedding cache keyed by content hash, shared by processes and runs.

:class:`DiskCachedEmbedder` wraps an embedder; each text's vector is stored in a
SQLite file (WAL mode, so many processes can read and write it at once) under
the key ``blake2b(identity, text)``, where ``identity`` names the model and its
settings: vectors of two models never mix, and changing a setting that changes
the vectors (say ``dim``) starts a fresh set of keys.  Only the texts not yet in
the cache are embedded, in batches, and written as each batch finishes (an
interrupted run keeps what it computed).

>>> from lumina_lab.memory import HashingEmbedder
>>> cached = DiskCachedEmbedder(HashingEmbedder(dim=64), path=tmp / "emb.sqlite")  # doctest: +SKIP
>>> cached.embed(["a", "b", "a"]).shape                                           # doctest: +SKIP
(3, 64)
>>> cached.stats()["misses"], cached.stats()["hits"]                              # doctest: +SKIP
(2, 1)
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError, ValidationError
from .embeddings import Embedder, _check_texts

__all__ = ["DiskCachedEmbedder", "default_cache_path", "embedding_key"]

_FILE = "vectors.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, model INTEGER NOT NULL, vec BLOB NOT NULL) WITHOUT ROWID",
)
_IN_CHUNK = 500  # keys per SELECT ... IN (...): below SQLite's oldest limit of 999 variables


def default_cache_path() -> Path:
    """``$LUMINA_HOME/cache/embeddings/vectors.sqlite`` (the home of :func:`~lumina_lab.config.load_settings`)."""
    from ..config import load_settings

    return load_settings().home / "cache" / "embeddings" / _FILE


def embedding_key(identity: str, text: str) -> bytes:
    """The 16-byte cache key of ``text`` under the model ``identity``: BLAKE2b of both, length-prefixed."""
    ident = identity.encode("utf-8")
    h = hashlib.blake2b(digest_size=16, person=b"lumina-emb-v1")
    h.update(len(ident).to_bytes(4, "little"))
    h.update(ident)
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.digest()


class DiskCachedEmbedder:
    """Wraps an :class:`~lumina_lab.memory.embeddings.Embedder` with a persistent, content-addressed cache.

    A call looks every text up by ``blake2b(identity, text)``; the misses are
    de-duplicated, embedded by ``inner`` in batches of ``batch_size`` and
    stored, each batch in one transaction.  Vectors come back exactly as
    ``inner`` made them (stored as little-endian float32).  The SQLite
    connection opens on first use and again after a ``fork``; the object
    pickles (without its connection), so it can travel to worker processes.

    Counters: every requested text is a *hit* (served from the cache, or a
    repeat of a text computed earlier in the same call) or a *miss* (embedded
    by ``inner``), so ``hits + misses`` is the number of texts asked for.

    Args:
        inner: the embedder to cache; it must have an ``identity`` unless one is given.
        path: the SQLite file (created with its folders), or an existing directory to hold
            ``vectors.sqlite``; default ``$LUMINA_HOME/cache/embeddings/vectors.sqlite``.
        identity: overrides ``inner.identity`` (needed for embedders without one).
        batch_size: texts per ``inner.embed`` call for the misses.
        timeout_s: how long to wait for another process's write lock.

    Attributes:
        dim, identity: those of ``inner`` (the vectors are the same).
        path: the SQLite file.
        hits, misses: the counters since construction (or :meth:`reset_stats`).

    Raises:
        ValidationError: ``inner`` is not an embedder, or has no identity.
        StoreError: the file cannot be opened, or holds this identity with another ``dim``.
    """

    def __init__(
        self,
        inner: Embedder,
        path: str | os.PathLike[str] | None = None,
        *,
        identity: str | None = None,
        batch_size: int = 256,
        timeout_s: float = 30.0,
    ) -> None:
        if not isinstance(inner, Embedder):
            raise ValidationError(f"{inner!r} is not an Embedder", input=inner, hint="pass e.g. HashingEmbedder()")
        if identity is None:
            identity = getattr(inner, "identity", None)
            if not isinstance(identity, str) or not identity:
                raise ValidationError(
                    f"{inner!r} has no identity string, so its vectors cannot be told apart from another model's",
                    input=inner,
                    hint="give the embedder an `identity` attribute, or pass identity='my-model:v1'",
                )
        elif not isinstance(identity, str) or not identity:
            raise ValidationError(f"identity={identity!r} must be a non-empty string", input=identity)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValidationError(f"batch_size={batch_size!r} must be a positive integer", input=batch_size)
        self.inner = inner
        self.dim = int(inner.dim)
        self.identity = identity
        self.batch_size = batch_size
        self.timeout_s = float(timeout_s)
        p = default_cache_path() if path is None else Path(path).expanduser()
        self.path = p / _FILE if p.is_dir() else p
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._pid = -1
        self._model = -1
        self._connect()  # fail now, not on the first embed, when the file cannot be used

    def __repr__(self) -> str:
        return f"DiskCachedEmbedder({self.inner!r}, path={str(self.path)!r}, hits={self.hits}, misses={self.misses})"

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        """The connection of this process (opened, and the schema made, on first use)."""
        if self._con is not None and self._pid == os.getpid():
            return self._con
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                con.execute(stmt)
            con.execute("INSERT OR IGNORE INTO models (identity, dim) VALUES (?, ?)", (self.identity, self.dim))
            model, dim = con.execute("SELECT id, dim FROM models WHERE identity = ?", (self.identity,)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the embedding cache {self.path}: {exc}",
                hint="check the path is a writable file (not a folder on a network share), or pass another path=",
            ) from exc
        if dim != self.dim:
            con.close()
            raise StoreError(
                f"the embedding cache {self.path} holds {self.identity!r} with dim={dim}, but the embedder has dim={self.dim}",
                hint="two different models share one identity: give one of them another identity=",
            )
        self._con, self._pid, self._model = con, os.getpid(), int(model)
        return con

    def close(self) -> None:
        """Close the SQLite connection (a later call reopens it)."""
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    def __enter__(self) -> DiskCachedEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_lock=None, _con=None, _pid=-1)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ storage
    def _lookup(self, con: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), _IN_CHUNK):
            part = keys[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            for key, blob in con.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", part):
                if len(blob) == 4 * self.dim:  # anything else is damage: recompute it
                    found[bytes(key)] = np.frombuffer(blob, dtype="<f4")
        return found

    def _store(self, con: sqlite3.Connection, keys: list[bytes], rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype="<f4")
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "INSERT OR REPLACE INTO vectors (key, model, vec) VALUES (?, ?, ?)",
                [(k, self._model, data[i].tobytes()) for i, k in enumerate(keys)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ public
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (an ``(n, dim)`` float32 matrix), computing only what the cache lacks."""
        items = _check_texts(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        keys = [embedding_key(self.identity, t) for t in items]
        with self._lock:
            try:
                con = self._connect()
                found = self._lookup(con, list(dict.fromkeys(keys)))
                missing = list(dict.fromkeys(k for k in keys if k not in found))
                text_of = dict(zip(keys, items, strict=True))
                for b in range(0, len(missing), self.batch_size):
                    batch = missing[b : b + self.batch_size]
                    rows = np.asarray(self.inner.embed([text_of[k] for k in batch]), dtype=np.float32)
                    if rows.shape != (len(batch), self.dim):
                        raise ValidationError(
                            f"{self.inner!r} returned shape {rows.shape} for {len(batch)} texts",
                            input=rows.shape,
                        )
                    self._store(con, batch, rows)
                    found.update(zip(batch, rows, strict=True))
            except sqlite3.Error as exc:
                raise StoreError(f"the embedding cache {self.path} failed: {exc}") from exc
            for i, k in enumerate(keys):
                out[i] = found[k]
            self.misses += len(missing)
            self.hits += len(items) - len(missing)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text through the cache: a ``(dim,)`` float32 vector."""
        if not isinstance(text, str):
            raise ValidationError(f"embed_one() takes a str, not {type(text).__name__}", input=text)
        return self.embed([text])[0]

    def __bool__(self) -> bool:
        """Always true: an embedder, even with an empty cache (``embedder or default`` must keep it)."""
        return True

    def __len__(self) -> int:
        """Vectors stored for this identity."""
        with self._lock:
            return int(
                self._connect().execute("SELECT count(*) FROM vectors WHERE model = ?", (self._model,)).fetchone()[0]
            )

    def stats(self) -> dict[str, Any]:
        """``hits``, ``misses``, ``hit_rate`` (``None`` before any text), ``stored`` (vectors of this
        identity in the file), ``identity`` and ``path``."""
        asked = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / asked if asked else None,
            "stored": len(self),
            "identity": self.identity,
            "path": str(self.path),
        }

    def reset_stats(self) -> None:
        """Set the hit and miss counters to zero."""
        self.hits = self.misses = 0

    def clear(self) -> int:
        """Delete the vectors of this identity (other models' stay); returns how many were deleted."""
        with self._lock:
            con = self._connect()
            return int(con.execute("DELETE FROM vectors WHERE model = ?", (self._model,)).rowcount)
