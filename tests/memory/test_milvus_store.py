"""Milvus-specific behaviour: visibility right after writes, reopening, one process per Lite file, filters.

The backend-independent behaviour is in ``test_vector_store_contract.py``. One Milvus Lite store is
shared by this module (each test gets its own collection) because starting Lite costs time.
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lumina_lab.errors import CollectionNotFound, StoreError, ValidationError
from lumina_lab.memory.filters import F, Filter, Range, parse_filter
from lumina_lab.memory.stores import milvus as milvus_mod
from lumina_lab.memory.stores.milvus import MilvusVectorStore, matches_nothing, milvus_expr, quote

pymilvus = pytest.importorskip("pymilvus")

DIM = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    s = MilvusVectorStore(tmp_path_factory.mktemp("milvus") / "shared.db")
    yield s
    s.close()


@pytest.fixture
def coll(store: MilvusVectorStore, request: pytest.FixtureRequest):
    """A fresh collection for this test, dropped afterwards."""
    name = "t_" + re.sub(r"\W", "_", request.node.name)[:55]
    store.create_collection(name, dim=DIM)
    yield name
    store.drop_collection(name)


def unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def truth(vectors: np.ndarray, ids: list[str], q: np.ndarray, k: int, keep=lambda j: True) -> list[str]:
    s = unit(vectors) @ unit(q)
    return [ids[j] for j in np.argsort(-s, kind="stable") if keep(j)][:k]


def run_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---- consistency and persistence ------------------------------------------------------------
def test_writes_are_visible_to_the_very_next_read(store, coll):
    rng = np.random.default_rng(0)
    for round_ in range(4):
        v = rng.normal(size=DIM)
        assert store.upsert(coll, [f"r{round_}"], [v], [f"round {round_}"], [{"round": round_}]) == 1
        # no flush, no sleep: search, count and get see the write at once
        assert store.search(coll, v, k=1)[0].id == f"r{round_}"
        assert store.count(coll) == round_ + 1
        assert store.count(coll, F["round"] == round_) == 1
        assert store.get(coll, [f"r{round_}"])[0].text == f"round {round_}"
    w = rng.normal(size=DIM)
    store.upsert(coll, ["r0"], [w], ["moved"])  # a replaced vector is what the next search sees
    hit = store.search(coll, w, k=1)[0]
    assert (hit.id, hit.text, hit.metadata) == ("r0", "moved", {})
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert store.delete(coll, ["r1"]) == 1
    assert store.count(coll) == 3 and store.get(coll, ["r1"]) == []
    assert "r1" not in {h.id for h in store.search(coll, w, k=10)}


def test_collections_are_strong_flat_cosine_and_labelled(store, coll):
    client, phys = store._client, "lumina_" + coll
    desc = client.describe_collection(phys)
    assert desc["consistency_level_name"] == "Strong"
    fields = {f["name"]: f for f in desc["fields"]}
    assert set(fields) == {"id", "vector", "text", "metadata"}
    assert int(fields["vector"]["params"]["dim"]) == DIM
    assert desc["properties"]["lumina.name"] == coll
    index = client.describe_index(phys, "vector")
    assert (index["index_type"], index["metric_type"]) == ("FLAT", "COSINE")


def test_lite_collections_are_flushed_every_n_rows_and_on_close(store, coll):
    s = MilvusVectorStore(store.uri, lite_flush_rows=10)  # same file and process: a second client
    flushed: list[str] = []
    real = s._client.flush
    s._client.flush = lambda name, *a, **kw: (flushed.append(name), real(name, *a, **kw))[1]
    rng = np.random.default_rng(9)
    for b in range(5):  # 4, 8, 12 -> flush, 4, 8 rows pending
        s.upsert(coll, [f"b{b}-{i}" for i in range(4)], rng.normal(size=(4, DIM)))
    assert flushed == ["lumina_" + coll]
    s.close()  # flushes the 8 pending rows, so a reopened file does not replay them slowly
    assert flushed == ["lumina_" + coll] * 2
    assert store.count(coll) == 20


REOPEN_WRITER = """
import os, sys, numpy as np
from lumina_lab.memory.stores.milvus import MilvusVectorStore
s = MilvusVectorStore(sys.argv[1])
s.create_collection("docs", dim=8)
s.create_collection("wide", dim=32)
rng = np.random.default_rng(5)
s.upsert("docs", [f"d{i}" for i in range(50)], rng.normal(size=(50, 8)), metadata=[{"i": i} for i in range(50)])
s.delete("docs", ["d7"])
print("written", flush=True)
os._exit(0)  # no close, no flush: what was acknowledged must survive
"""


def test_reopening_keeps_dimensions_and_data_without_flush(tmp_path):
    path = tmp_path / "reopen.db"
    child = run_child(REOPEN_WRITER, str(path))
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and "written" in out, err
    with MilvusVectorStore(path) as s:
        assert [(c.name, c.dim) for c in s.collections()] == [("docs", 8), ("wide", 32)]
        assert s.count("docs") == 49 and s.count("wide") == 0
        vectors = np.random.default_rng(5).normal(size=(50, 8))
        ids = [f"d{i}" for i in range(50)]
        assert [h.id for h in s.search("docs", vectors[3], k=3)] == truth(vectors, ids, vectors[3], 3, lambda j: j != 7)
        (rec,) = s.get("docs", ["d9"], with_vectors=True)
        assert rec.metadata == {"i": 9} and np.allclose(rec.vector, unit(vectors[9]), atol=1e-6)
        with pytest.raises(ValidationError, match="dimension is 32"):
            s.upsert("wide", ["x"], [np.ones(8)])


SECOND_OPENER = """
import sys
from lumina_lab.errors import StoreError
from lumina_lab.memory.stores import open_vector_store
for attempt in range(2):
    try:
        s = open_vector_store("milvus", uri=sys.argv[1])
    except StoreError as exc:
        print("StoreError:", str(exc).replace(chr(10), " | "), flush=True)
    else:
        print("opened", [c.name for c in s.collections()], flush=True)
        s.close()
    sys.stdin.readline()
"""


def test_a_second_process_gets_one_clear_error_until_the_file_is_closed(tmp_path):
    path = tmp_path / "busy.db"
    mine = MilvusVectorStore(path)
    mine.create_collection("docs", dim=DIM)
    child = run_child(SECOND_OPENER, str(path))
    try:
        first = child.stdout.readline()
        assert first.startswith("StoreError:"), first + child.stderr.read()
        assert "open in another process" in first and str(path) in first
        assert "DuckDB" in first and "Milvus server" in first
        mine.close()  # frees the file: the same process may now open it
        child.stdin.write("\n")
        child.stdin.flush()
        second = child.stdout.readline()
        assert second.strip() == "opened ['docs']"
        child.stdin.write("\n")
        child.stdin.flush()
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "Traceback" not in err, err  # one message, never a raw traceback from milvus-lite


# ---- filters -----------------------------------------------------------------------------------
def test_filters_translate_to_superset_expressions():
    cases = [
        (F.tag == "red", 'metadata["tag"] == "red"'),
        (F.n == 3, 'metadata["n"] == 3.0'),
        (F.flag == True, 'metadata["flag"] == true'),  # noqa: E712
        (F.tag.isin(["a", "b"]), '(metadata["tag"] == "a") or (metadata["tag"] == "b")'),
        (F.n > 2, 'metadata["n"] >= 2.0'),  # strict numeric bounds widen: float rounding stays a superset
        (F.n.between(1, 2.5), 'metadata["n"] >= 1.0 and metadata["n"] <= 2.5'),
        (F.name > "m", 'metadata["name"] > "m"'),  # strings compare exactly
        ((F.a == 1) & ~(F.b == 2), 'metadata["a"] == 1.0'),  # Not is never pushed down
        ((F.a == 1) | ~(F.b == 2), ""),
        (~(F.a == 1), ""),
        (F.big == 2**60, ""),  # not exactly a float: checked in Python only
        (F["odd/key"] == 1, ""),  # keys Milvus would read as JSON paths
        (F.s == 'say "hi"\\\n', 'metadata["s"] == "say \\"hi\\"\\\\\\n"'),
    ]
    for f, want in cases:
        assert milvus_expr(f) == want, f
    assert milvus_expr(None) == ""
    assert milvus_expr(F.tag.isin([])) == ""
    nothing = [
        F.tag.isin([]),
        Range("n", gt=1, lt="z"),
        (F.a == 1) & F.b.isin([]),
        F.a.isin([]) | Range("b", ge=True, le=2),
    ]
    assert all(matches_nothing(f) for f in nothing)
    assert not any(matches_nothing(f) for f in [~F.a.isin([]), F.a.isin([]) | (F.b == 1), F.n.between(1, 2.5)])
    assert quote("a\tb\rc") == '"a\\tb\\rc"'


META = [
    {"n": 1, "b": True, "s": "1", "f": 1.0},
    {"n": True, "b": 1, "s": 1, "f": 1},
    {"n": 0, "b": False, "s": 'a"b\\c', "f": 2.5},
    {"n": False, "b": 0, "s": "new\nline", "f": -3},
    {"n": 2**53 + 1, "s": "é", "odd/key": "x"},
    {"n": 2.5, "s": "true", 'q"uote': 1},
    {},
    {"n": "1", "b": "true", "s": "", "f": 1e20},
]
NUMBERS = [True, False, 0, 1, 2, 2.5, -3, 1.0, 2**53, 2**53 + 1, 1e20]
POOL = [*NUMBERS, "1", "", "a", "true", "é", 'a"b\\c', "new\nline", "x"]
KEYS = ["n", "b", "s", "f", "odd/key", 'q"uote', "absent"]


def random_filter(rng: random.Random, depth: int = 0) -> Filter:
    r = rng.random()
    key = rng.choice(KEYS)
    if depth < 2 and r < 0.3:
        parts = [random_filter(rng, depth + 1) for _ in range(rng.randint(2, 3))]
        return parts[0] & parts[1] if rng.random() < 0.5 else parts[0] | parts[1]
    if depth < 2 and r < 0.4:
        return ~random_filter(rng, depth + 1)
    if r < 0.65:
        return F[key] == rng.choice(POOL)
    if r < 0.8:
        return F[key].isin(rng.sample(POOL, rng.randint(1, 3)))
    op = rng.choice(["__gt__", "__ge__", "__lt__", "__le__"])
    f = getattr(F[key], op)(rng.choice(POOL))
    return f & getattr(F[key], rng.choice(["__lt__", "__le__"]))(rng.choice(POOL)) if rng.random() < 0.3 else f


def test_filters_follow_the_reference_semantics_exactly(store, coll):
    rng = np.random.default_rng(11)
    n = 4 * len(META)
    vectors = rng.normal(size=(n, DIM))
    ids = [f"m{i}" for i in range(n)]
    meta = [META[i % len(META)] for i in range(n)]
    store.upsert(coll, ids, vectors, metadata=meta)
    # the strictness rules, spelled out
    assert store.count(coll, F.n == 1) == 4  # 1, and not True
    assert store.count(coll, F.b == True) == 4  # noqa: E712 - True, and not 1
    assert store.count(coll, F.n > 0) == 12  # 1, 2**53+1, 2.5 — never True
    assert store.count(coll, F.f == 1) == 8  # 1.0 == 1: both numbers
    assert store.count(coll, F.s == 1) == 4 and store.count(coll, F.s == "1") == 4
    assert store.count(coll, ~(F.n == 1)) == n - 4  # absent keys included
    assert store.count(coll, F.n == 2**53) == 0 and store.count(coll, F.n == 2**53 + 1) == 4
    assert store.count(coll, F["odd/key"] == "x") == 4 and store.count(coll, F['q"uote'] == 1) == 4
    assert store.count(coll, {"s": 'a"b\\c'}) == 4 and store.count(coll, F.s == "new\nline") == 4
    assert store.count(coll, F.n.isin([])) == 0 and store.count(coll, ~F.n.isin([])) == n
    assert store.search(coll, np.ones(DIM), k=3, where=F.n.isin([])) == []
    pick = random.Random(3)
    q = rng.normal(size=DIM)
    for _ in range(120):
        f = random_filter(pick)
        keep = [j for j in range(n) if f.matches(meta[j])]
        assert store.count(coll, f) == len(keep), f
        assert [h.id for h in store.search(coll, q, k=5, where=f)] == truth(vectors, ids, q, 5, keep.__contains__), f


def test_search_over_fetches_and_falls_back_to_an_exact_scan(store, coll, monkeypatch):
    rng = np.random.default_rng(2)
    n = 300
    q = unit(rng.normal(size=DIM))
    vectors = np.vstack([q + 0.05 * rng.normal(size=(n - 5, DIM)), rng.normal(size=(5, DIM))])
    ids = [f"v{i:03d}" for i in range(n)]
    meta = [{"keep": i >= n - 5} for i in range(n)]
    store.upsert(coll, ids, vectors, metadata=meta)
    want = truth(vectors, ids, q, 3, lambda j: j >= n - 5)
    where = ~(F.keep == False)  # noqa: E712 - Not is checked in Python: the closest 295 items are rejected
    assert [h.id for h in store.search(coll, q, k=3, where=where)] == want
    monkeypatch.setattr(milvus_mod, "MAX_TOPK", 40)  # Milvus' window is too small now: exact scan
    hits = store.search(coll, q, k=3, where=where)
    assert [h.id for h in hits] == want
    assert [h.score for h in hits] == pytest.approx([float(unit(vectors[ids.index(i)]) @ q) for i in want], abs=1e-5)
    assert [h.id for h in store.search(coll, q, k=50)] == truth(vectors, ids, q, 50)  # k beyond the window


def test_the_server_code_paths_work_too(store, coll, monkeypatch):
    """Servers cap query results, so the adapter pages with query_iterator there; run that path on Lite."""
    monkeypatch.setattr(store, "lite", False)
    monkeypatch.setattr(milvus_mod, "MAX_TOPK", 16)
    rng = np.random.default_rng(8)
    n = 2500  # more than one iterator batch
    vectors = rng.normal(size=(n, DIM))
    ids = [f"s{i:04d}" for i in range(n)]
    store.upsert(coll, ids, vectors, metadata=[{"i": i, "odd": i % 2 == 1} for i in range(n)])
    assert store.count(coll) == n
    assert store.count(coll, ~(F.odd == True)) == n // 2  # noqa: E712 - scanned in pages
    q = rng.normal(size=DIM)
    want = truth(vectors, ids, q, 20, lambda j: j % 2 == 0 and j < 2000)
    assert [h.id for h in store.search(coll, q, k=20, where=~(F.odd == True) & (F.i < 2000))] == want  # noqa: E712
    assert store.delete(coll, where=F.i >= 100) == n - 100
    assert store.count(coll) == 100


# ---- ids, sizes, catalog and connections ------------------------------------------------------
def test_any_id_round_trips(store, coll):
    ids = ['quote"d', "back\\slash", "new\nline", "tab\tand\rcr", "ünïcødé", "x" * 512, "[a, b]", "' or 1 == 1"]
    vectors = np.random.default_rng(4).normal(size=(len(ids), DIM))
    store.upsert(coll, ids, vectors, texts=ids)
    assert [r.id for r in store.get(coll, ids[::-1])] == ids[::-1]
    assert [r.text for r in store.get(coll, ids)] == ids
    assert store.delete(coll, [*ids[:3], "ghost"]) == 3
    assert store.count(coll) == len(ids) - 3
    assert store.delete(coll, where=F.missing == 1) == 0


def test_what_milvus_cannot_store_is_refused_before_writing(store, coll):
    with pytest.raises(ValidationError, match="65535"):
        store.upsert(coll, ["ok", "big"], np.ones((2, DIM)), texts=["fine", "é" * 40_000])
    with pytest.raises(ValidationError, match="beyond 64 bits"):
        store.upsert(coll, ["ok", "huge"], np.ones((2, DIM)), metadata=[{"n": 2**63 - 1}, {"n": 2**63}])
    assert store.count(coll) == 0


def test_prefixes_and_foreign_collections_stay_apart(store, coll):
    other = MilvusVectorStore(store.uri, prefix="x_")  # same file, same process: the server is shared
    try:
        other.create_collection(coll, dim=3)
        assert [c.dim for c in other.collections()] == [3]
        assert (coll, DIM) in [(c.name, c.dim) for c in store.collections()]
        schema = store._client.create_schema(auto_id=False)
        schema.add_field("id", pymilvus.DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=4)
        store._client.create_collection("lumina_foreign", schema=schema)  # not made by the adapter
        store._client.create_collection("plain", schema=schema)
        names = [c.name for c in store.collections()]
        assert "foreign" not in names and "plain" not in names and "x_" + coll not in names
        with pytest.raises(StoreError, match="not created by Lumina Lab"):
            store.create_collection("foreign", dim=4)
        with pytest.raises(CollectionNotFound):
            store.count("foreign")
        other.drop_collection(coll)
    finally:
        other.close()
        store._client.drop_collection("lumina_foreign")
        store._client.drop_collection("plain")
    assert store.count(coll) == 0  # closing the second store left the shared server running


def test_bad_locations_and_unreachable_servers_are_clear_errors(tmp_path):
    with pytest.raises(ValidationError, match=r"end the file name in \.db"):
        MilvusVectorStore(tmp_path / "vectors.sqlite")
    (tmp_path / "old.db").write_text("milvus-lite 2 file")
    with pytest.raises(StoreError, match="not a Milvus Lite 3 data directory"):
        MilvusVectorStore(tmp_path / "old.db")
    with pytest.raises(ValidationError, match="prefix"):
        MilvusVectorStore(tmp_path / "m.db", prefix="bad-prefix")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"cannot connect to Milvus at http://127.0.0.1:{port}") as err:
        MilvusVectorStore(f"http://127.0.0.1:{port}", timeout_s=2)
    assert err.value.hint and "start the server" in err.value.hint
    assert time.monotonic() - start < 15


def test_default_file_is_under_lumina_home(lumina_home):
    with MilvusVectorStore() as s:
        assert s.uri == str(lumina_home / "memory" / "milvus.db")
        assert s.collections() == []


def test_a_closed_store_refuses_work(tmp_path):
    s = MilvusVectorStore(tmp_path / "closed.db")
    s.create_collection("docs", dim=DIM)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.count("docs")


def test_parse_filter_dicts_reach_milvus(store, coll):
    store.upsert(coll, ["a", "b"], np.eye(DIM)[:2], metadata=[{"year": 2021}, {"year": 2019}])
    assert store.count(coll, parse_filter({"year": {"$gte": 2020}})) == 1
    assert [h.id for h in store.search(coll, np.eye(DIM)[1], k=2, where={"year": {"$lt": 2020}})] == ["b"]
