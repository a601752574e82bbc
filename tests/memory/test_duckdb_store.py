"""The DuckDB default store: many processes on one file, crash safety, and the approximate index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lumina_lab.errors import StoreError
from lumina_lab.memory.filters import F
from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

DIM = 16


def run_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITER = """
import sys, numpy as np
from lumina_lab.memory.stores.duckdb import DuckDBVectorStore
path, name, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = DuckDBVectorStore(path, lease_s=0.01)
s.create_collection("docs", dim=16)
rng = np.random.default_rng(abs(hash(name)) % 1000)
for b in range(batches):
    ids = [f"{name}-{b}-{i}" for i in range(20)]
    s.upsert("docs", ids, rng.normal(size=(20, 16)) + 0.1, metadata=[{"writer": name, "batch": b}] * 20)
    print("acked", b, flush=True)
s.close()
"""


def test_two_processes_write_and_read_the_same_file(tmp_path):
    path = tmp_path / "v.duckdb"
    mine = DuckDBVectorStore(path, lease_s=0.01)
    mine.create_collection("docs", dim=DIM)
    child = run_child(WRITER, str(path), "child", "15")
    rng = np.random.default_rng(1)
    for b in range(15):
        mine.upsert("docs", [f"parent-{b}-{i}" for i in range(20)], rng.normal(size=(20, DIM)) + 0.1)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.count("acked") == 15
    # The parent sees the child's rows without reopening (the generation file moved).
    assert mine.count("docs") == 600
    assert mine.count("docs", F.writer == "child") == 300
    hit = mine.search("docs", mine.get("docs", ["child-3-4"], with_vectors=True)[0].vector, k=1)[0]
    assert hit.id == "child-3-4" and hit.metadata == {"writer": "child", "batch": 3}


def test_a_second_store_object_sees_deletes_and_clears(tmp_path):
    a = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0)
    b = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0)
    a.create_collection("docs", dim=DIM)
    a.upsert("docs", ["x", "y", "z"], np.eye(DIM)[:3])
    assert b.count("docs") == 3
    a.delete("docs", ["x"])
    a.upsert("docs", ["w"], np.eye(DIM)[3:4])
    assert sorted(r.id for r in b.get("docs", ["w", "x", "y", "z"])) == ["w", "y", "z"]
    a.clear("docs")
    a.upsert("docs", ["v"], np.eye(DIM)[4:5])
    assert b.count("docs") == 1
    a.drop_collection("docs")
    assert b.collections() == []


def test_a_writer_killed_mid_stream_keeps_every_acknowledged_batch(tmp_path):
    path = tmp_path / "v.duckdb"
    child = run_child(WRITER, str(path), "k", "100000")
    acked = -1
    deadline = time.monotonic() + 60
    while acked < 10 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if line.startswith("acked"):
            acked = int(line.split()[1])
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert acked >= 10
    s = DuckDBVectorStore(path)
    n = s.count("docs")
    assert n % 20 == 0  # whole batches only
    assert n >= (acked + 1) * 20
    assert len(s.get("docs", [f"k-{b}-{i}" for b in range(acked + 1) for i in range(20)])) == (acked + 1) * 20
    s.upsert("docs", ["after"], np.ones((1, DIM)))
    assert s.count("docs") == n + 1


def test_a_foreign_connection_holding_the_file_is_a_clear_error(tmp_path):
    import duckdb

    path = tmp_path / "v.duckdb"
    DuckDBVectorStore(path, lease_s=0).close()
    holder = run_child(
        """
        import duckdb, sys, time
        con = duckdb.connect(sys.argv[1]); print("holding", flush=True); time.sleep(30)
        """,
        str(path),
    )
    assert holder.stdout.readline().strip() == "holding"
    try:
        with pytest.raises(StoreError, match="not Lumina Lab") as err:
            DuckDBVectorStore(path, timeout_s=0.3)
        assert "close the other program" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    assert duckdb is not None


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return (centres[rng.integers(0, 50, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def test_large_collections_use_the_approximate_index_with_high_recall(tmp_path):
    path = tmp_path / "v.duckdb"
    s = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    v = clustered(4000, 32)
    s.create_collection("big", dim=32)
    s.upsert("big", [f"i{j}" for j in range(4000)], v, metadata=[{"g": j % 4} for j in range(4000)])
    queries = clustered(50, 32, seed=9)
    recall = []
    for q in queries:
        exact = {h.id for h in s.search("big", q, k=10, exact=True)}
        approx = s.search("big", q, k=10)
        recall.append(len(exact & {h.id for h in approx}) / 10)
        assert [h.score for h in approx] == sorted((h.score for h in approx), reverse=True)
    assert np.mean(recall) >= 0.95
    table = s._tables["big"]
    assert table.ann is not None and len(table.ann) == 4000
    # A filter keeps only matching rows and still fills k (oversampling, then exact fallback when selective).
    hits = s.search("big", queries[0], k=10, where=F.g == 2)
    assert len(hits) == 10 and all(h.metadata["g"] == 2 for h in hits)
    rare = s.search("big", queries[0], k=10, where=F.g.isin([3]) & (F.g == 3))
    assert all(h.metadata["g"] == 3 for h in rare)
    # Writes go into the index as they happen.
    s.upsert("big", ["fresh"], queries[1:2])
    assert s.search("big", queries[1], k=1)[0].id == "fresh"
    s.delete("big", ["fresh"])
    assert s.search("big", queries[1], k=1)[0].id != "fresh"
    s.close()
    # The index was saved beside the database and is reused when its stamp matches.
    assert (tmp_path / "v.duckdb.big.usearch").exists()
    s2 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    s2.count("big")
    assert s2._tables["big"].ann is not None
    # A writer that updates the index keeps it current for the next process...
    s3 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    s3.upsert("big", ["late"], queries[2:3])
    s3.close()
    s2.close()
    s4 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    s4.count("big")
    assert s4._tables["big"].ann is not None
    assert s4.search("big", queries[2], k=1)[0].id == "late"
    s4.close()
    # ...and an index whose stamp does not match the table (a writer died before saving it) is rebuilt.
    stamp = tmp_path / "v.duckdb.big.json"
    stamp.write_text(stamp.read_text().replace('"count": 4001', '"count": 3999'))
    s5 = DuckDBVectorStore(path, exact_limit=500, lease_s=0)
    s5.count("big")
    assert s5._tables["big"].ann is None
    assert s5.search("big", queries[2], k=1)[0].id == "late"
    assert s5._tables["big"].ann is not None and len(s5._tables["big"].ann) == 4001


def test_sql_reaches_the_tables(tmp_path):
    s = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0)
    s.create_collection("docs", dim=DIM)
    s.upsert("docs", ["a", "b"], np.eye(DIM)[:2], ["alpha", "beta"], [{"lang": "en"}, {"lang": "fr"}])
    df = s.sql("SELECT id, metadata->>'lang' AS lang FROM c_docs ORDER BY id")
    assert df.to_dict("records") == [{"id": "a", "lang": "en"}, {"id": "b", "lang": "fr"}]


def test_closed_stores_say_so(tmp_path):
    s = DuckDBVectorStore(tmp_path / "v.duckdb")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.count("docs")


def test_the_default_path_is_under_lumina_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LUMINA_HOME", str(tmp_path / "home"))
    s = DuckDBVectorStore()
    assert s.path == tmp_path / "home" / "memory" / "vectors.duckdb"
    s.close()
