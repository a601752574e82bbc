"""The approximate path of VectorTable (usearch candidates re-ranked exactly) and its persistence in the DuckDB store."""

from __future__ import annotations

import numpy as np
import pytest

from lumina_lab.memory import F
from lumina_lab.memory.stores.duckdb import DuckDBVectorStore, open_matrix, save_matrix
from lumina_lab.memory.table import AnnIndex, VectorTable

DIM = 24


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def filled(n: int = 3000) -> VectorTable:
    t = VectorTable(DIM, exact_limit=100)
    t.put([f"i{j}" for j in range(n)], unit(n), [""] * n, [{"g": j % 3} for j in range(n)], np.arange(1, n + 1))
    return t


def test_candidates_are_reranked_exactly(monkeypatch):
    t = filled()
    q = unit(1, seed=7)[0]
    t.ensure_ann()
    seen: list[tuple[int, np.ndarray]] = []
    real = AnnIndex.search

    def scrambled(self, q, count):
        keys = real(self, q, count)
        seen.append((count, keys))
        return keys[::-1].copy()  # the graph's order must not matter: scores are recomputed

    monkeypatch.setattr(AnnIndex, "search", scrambled)
    hits = t.topk(q, 10, exact=False)
    count, keys = seen[-1]
    assert count >= 64  # over-fetched: max(4k, 64) candidates for k=10
    slots = np.searchsorted(t.seqs[: t.n], keys)
    exact = t.matrix[slots] @ q
    best = slots[np.lexsort((t.seqs[slots], -exact))[:10]]
    assert [s for s, _ in hits] == best.tolist()
    assert [sc for _, sc in hits] == pytest.approx(sorted(exact.tolist(), reverse=True)[:10], abs=1e-6)
    # A filtered search re-ranks the surviving candidates the same way.
    f_hits = t.topk(q, 5, F.g == 1, exact=False)
    assert all(t.meta[s]["g"] == 1 for s, _ in f_hits)
    assert [sc for _, sc in f_hits] == sorted((sc for _, sc in f_hits), reverse=True)


def test_recall_and_scores_match_exact():
    t = filled(5000)
    for q in unit(20, seed=3):
        approx = t.topk(q, 10, exact=False)
        exact = t.topk(q, 10, exact=True)
        assert len({s for s, _ in approx} & {s for s, _ in exact}) >= 9
        for s, sc in approx:  # scores are exact cosine, not the quantised graph's estimate
            assert sc == pytest.approx(float(t.matrix[s] @ q), abs=1e-5)


def test_the_walk_widens_with_size(monkeypatch):
    ann = AnnIndex(DIM)
    assert ann.expansion(10) == 128
    assert ann.expansion(400) == 800
    monkeypatch.setattr(AnnIndex, "__len__", lambda self: 1_000_000)
    assert ann.expansion(10) == 512
    assert AnnIndex.defaults["dtype"] == "i8"
    with pytest.raises(ValueError, match="unknown usearch"):
        AnnIndex(DIM, connectivty=8)


def test_reopen_uses_the_saved_index_and_vectors(tmp_path):
    path = tmp_path / "v.duckdb"
    v = unit(2500)
    queries = unit(5, seed=11)
    s = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    s.create_collection("big", dim=DIM)
    s.upsert("big", [f"i{j}" for j in range(2500)], v, metadata=[{"g": j % 4} for j in range(2500)])
    s.delete("big", ["i3", "i4"])
    before = AnnIndex.builds
    first = [[h.id for h in s.search("big", q, k=10)] for q in queries]
    assert AnnIndex.builds == before + 1
    s.close()
    assert (tmp_path / "v.duckdb.big.usearch").exists() and (tmp_path / "v.duckdb.big.f32").exists()

    s2 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    again = [[h.id for h in s2.search("big", q, k=10)] for q in queries]
    table = s2._tables["big"]
    assert AnnIndex.builds == before + 1  # no rebuild
    assert table.ann is not None and table.ann.view  # memory-mapped, not copied
    assert s2.loaded_from["big"] == "cache"
    assert again == first
    got = s2.get("big", ["i0", "i2499"], with_vectors=True)
    assert np.allclose(got[0].vector, v[0]) and np.allclose(got[1].vector, v[2499])
    # The first write turns the view into an owned index and the mapped matrix into an owned one.
    s2.upsert("big", ["fresh"], queries[:1])
    assert not table.ann.view
    assert s2.search("big", queries[0], k=1)[0].id == "fresh"
    s2.close()

    s3 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    assert s3.search("big", queries[0], k=1)[0].id == "fresh"
    assert s3.loaded_from["big"] == "cache" and AnnIndex.builds == before + 1
    s3.close()
    # A vector copy that no longer matches the table (a writer died before saving it) is ignored.
    s4 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    s4.upsert("big", ["later"], queries[1:2])
    s4._db.close()  # simulate a crash: nothing saved
    s5 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    assert s5.search("big", queries[1], k=1)[0].id == "later"
    assert s5.loaded_from["big"] == "table"
    assert AnnIndex.builds == before + 2  # the stale index was rebuilt
    s5.close()


def test_matrix_file_round_trip_and_torn_files(tmp_path):
    p = tmp_path / "m.f32"
    m = unit(50)
    seqs = np.arange(10, 60)
    save_matrix(p, seqs, m, np.arange(0, 50, 2))
    got = open_matrix(p, DIM)
    assert got is not None
    assert got[0].tolist() == seqs[::2].tolist() and np.array_equal(got[1], m[::2])
    assert open_matrix(p, DIM + 1) is None
    p.write_bytes(p.read_bytes()[:-4])
    assert open_matrix(p, DIM) is None
    assert open_matrix(tmp_path / "missing.f32", DIM) is None
