"""DiskCachedEmbedder: only misses are computed (in batches), vectors persist across instances and
processes, models never mix, counters add up, and a damaged or mismatched cache is handled."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lumina_lab.errors import StoreError, ValidationError
from lumina_lab.memory.embed_cache import DiskCachedEmbedder, default_cache_path, embedding_key
from lumina_lab.memory.embeddings import CachedEmbedder, Embedder, HashingEmbedder

pytestmark = pytest.mark.timeout(60)


class Recording:
    """Wraps an embedder and records the batches it is asked for."""

    def __init__(self, inner: HashingEmbedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.identity = inner.identity
        self.batches: list[list[str]] = []

    def embed(self, texts):
        self.batches.append(list(texts))
        return self.inner.embed(texts)

    def embed_one(self, text):
        return self.embed([text])[0]


def test_default_path_is_under_lumina_home(lumina_home: Path) -> None:
    assert default_cache_path() == lumina_home / "cache" / "embeddings" / "vectors.sqlite"
    cached = DiskCachedEmbedder(HashingEmbedder(dim=16))
    assert cached.path == default_cache_path() and cached.path.is_file()
    assert isinstance(cached, Embedder) and cached.dim == 16
    assert cached.identity == HashingEmbedder(dim=16).identity


def test_only_misses_are_computed_in_batches(tmp_path: Path) -> None:
    rec = Recording(HashingEmbedder(dim=64))
    cached = DiskCachedEmbedder(rec, tmp_path / "c.sqlite", batch_size=2)
    texts = ["a", "b", "a", "c", "d", "b"]
    m = cached.embed(texts)
    np.testing.assert_array_equal(m, rec.inner.embed(texts))
    assert rec.batches == [["a", "b"], ["c", "d"]]  # distinct misses, batch_size at a time
    assert cached.stats()["misses"] == 4 and cached.stats()["hits"] == 2
    rec.batches.clear()
    m2 = cached.embed(["d", "e", "a"])
    np.testing.assert_array_equal(m2, rec.inner.embed(["d", "e", "a"]))
    assert rec.batches == [["e"]]
    stats = cached.stats()
    assert (stats["hits"], stats["misses"], stats["stored"]) == (4, 5, 5)
    assert stats["hit_rate"] == pytest.approx(4 / 9)
    assert len(cached) == 5
    assert cached.embed([]).shape == (0, 64)
    np.testing.assert_array_equal(cached.embed_one("e"), m2[1])
    cached.reset_stats()
    assert cached.stats()["hit_rate"] is None


def test_vectors_persist_across_instances_and_pickles(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    texts = [f"text number {i}" for i in range(50)]
    first = DiskCachedEmbedder(HashingEmbedder(dim=32), path)
    expected = first.embed(texts)
    first.close()
    rec = Recording(HashingEmbedder(dim=32))
    with DiskCachedEmbedder(rec, path) as second:
        np.testing.assert_array_equal(second.embed(texts), expected)
        assert rec.batches == [] and second.stats()["hits"] == 50
        clone = pickle.loads(pickle.dumps(second))
    np.testing.assert_array_equal(clone.embed(texts[:3]), expected[:3])
    assert "hits=53" in repr(clone)


def test_models_never_mix(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    a = DiskCachedEmbedder(HashingEmbedder(dim=32, seed=0), path)
    b = DiskCachedEmbedder(HashingEmbedder(dim=32, seed=1), path)
    va, vb = a.embed(["same text"]), b.embed(["same text"])
    assert b.stats()["misses"] == 1
    assert not np.allclose(va, vb)
    np.testing.assert_array_equal(vb, HashingEmbedder(dim=32, seed=1).embed(["same text"]))
    assert len(a) == 1 and len(b) == 1
    assert b.clear() == 1 and len(b) == 0 and len(a) == 1
    assert embedding_key("m1", "x") != embedding_key("m2", "x")
    assert embedding_key("ab", "c") != embedding_key("a", "bc")  # the identity is length-prefixed


def test_identity_is_required_and_checked(tmp_path: Path) -> None:
    class Anonymous:
        dim = 2

        def embed(self, texts):
            return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

        def embed_one(self, text):
            return self.embed([text])[0]

    with pytest.raises(ValidationError, match="no identity") as info:
        DiskCachedEmbedder(Anonymous(), tmp_path / "c.sqlite")
    assert "identity=" in info.value.hint
    with pytest.raises(ValidationError, match="no identity"):
        DiskCachedEmbedder(CachedEmbedder(Anonymous()), tmp_path / "c.sqlite")
    named = DiskCachedEmbedder(Anonymous(), tmp_path / "c.sqlite", identity="anon:v1")
    assert named.embed(["x"]).shape == (1, 2)
    # the same identity with another dimension: two models claim one name
    with pytest.raises(StoreError, match="dim=2"):
        DiskCachedEmbedder(HashingEmbedder(dim=8), tmp_path / "c.sqlite", identity="anon:v1")
    with pytest.raises(ValidationError, match="not an Embedder"):
        DiskCachedEmbedder(object(), tmp_path / "c.sqlite")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="batch_size"):
        DiskCachedEmbedder(HashingEmbedder(dim=8), tmp_path / "c.sqlite", batch_size=0)


def test_directory_path_and_unusable_path(tmp_path: Path) -> None:
    cached = DiskCachedEmbedder(HashingEmbedder(dim=8), tmp_path)
    assert cached.path == tmp_path / "vectors.sqlite"
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open"):
        DiskCachedEmbedder(HashingEmbedder(dim=8), tmp_path / "file" / "c.sqlite")


def test_damaged_rows_are_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    emb = HashingEmbedder(dim=16)
    cached = DiskCachedEmbedder(emb, path)
    good = cached.embed(["x"])
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE vectors SET vec = ?", (b"\x00" * 7,))
    con.close()
    cached.reset_stats()
    np.testing.assert_array_equal(cached.embed(["x"]), good)
    assert cached.stats()["misses"] == 1
    np.testing.assert_array_equal(cached.embed(["x"]), good)
    assert cached.stats()["hits"] == 1


def test_inner_returning_the_wrong_shape(tmp_path: Path) -> None:
    class Wrong:
        dim = 4
        identity = "wrong"

        def embed(self, texts):
            return np.zeros((len(texts), 3), dtype=np.float32)

        def embed_one(self, text):
            return np.zeros(3, dtype=np.float32)

    with pytest.raises(ValidationError, match="shape"):
        DiskCachedEmbedder(Wrong(), tmp_path / "c.sqlite").embed(["a"])


def test_processes_share_one_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    code = (
        "import json, sys\n"
        "from lumina_lab.memory.embed_cache import DiskCachedEmbedder\n"
        "from lumina_lab.memory.embeddings import HashingEmbedder\n"
        "c = DiskCachedEmbedder(HashingEmbedder(dim=32), sys.argv[1], batch_size=7)\n"
        "start = int(sys.argv[2])\n"
        "for i in range(0, 200, 20):\n"
        "    c.embed([f'text {j}' for j in range(start + i, start + i + 20)])\n"
        "print(json.dumps(c.stats()['misses']))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(start)], stdout=subprocess.PIPE, text=True)
        for start in (0, 100)  # overlapping ranges: both write texts 100..199
    ]
    outs = [p.communicate(timeout=50)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(json.loads(o) for o in outs) >= 300
    cached = DiskCachedEmbedder(HashingEmbedder(dim=32), path)
    texts = [f"text {j}" for j in range(300)]
    np.testing.assert_array_equal(cached.embed(texts), HashingEmbedder(dim=32).embed(texts))
    assert cached.stats()["hits"] == 300 and len(cached) == 300


def test_an_empty_cache_is_still_the_collections_embedder(tmp_path) -> None:
    """An empty cache has length 0 but must not be replaced by the default embedder (`embedder or default`)."""
    from lumina_lab.memory.collection import VectorMemory

    cached = DiskCachedEmbedder(HashingEmbedder(dim=64), tmp_path / "cache.sqlite")
    assert len(cached) == 0 and bool(cached)
    assert VectorMemory(backend="memory", embedder=cached).embedder is cached
