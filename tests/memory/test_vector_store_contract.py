"""The vector-store contract: every backend gives the same answers and the same errors.

Runs on each backend in ``conftest.BACKENDS`` (memory, duckdb, milvus; weaviate with WEAVIATE_URL).
Ground truth for search is numpy brute force over the same unit vectors.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lumina_lab.errors import CollectionNotFound, ValidationError
from lumina_lab.memory.filters import F

DIM = 8
N = 60
PERSISTENT = {"duckdb", "duckdb-sealed", "milvus", "weaviate", "sharded"}


def data(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    ids = [f"doc-{i:03d}" for i in range(n)]
    texts = [f"text number {i}" for i in range(n)]
    meta = [
        {"n": i, "tag": ["red", "green", "blue"][i % 3], "even": i % 2 == 0, "score": i / 10}
        | ({"rare": "yes"} if i % 10 == 0 else {})
        for i in range(n)
    ]
    return ids, vectors, texts, meta


def truth(vectors, ids, q, k, keep=None):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    s = unit @ (q / np.linalg.norm(q))
    order = [j for j in np.argsort(-s, kind="stable") if keep is None or keep(j)]
    return [ids[j] for j in order[:k]], [float(s[j]) for j in order[:k]]


@pytest.fixture
def filled(store):
    ids, vectors, texts, meta = data()
    store.create_collection("docs", dim=DIM)
    assert store.upsert("docs", ids, vectors, texts, meta) == N
    return store


def test_collections_are_created_listed_and_dropped(store):
    info = store.create_collection("docs", dim=DIM)
    assert (info.name, info.dim, info.metric) == ("docs", DIM, "cosine")
    store.create_collection("alpha", dim=3)
    assert [c.name for c in store.collections()] == ["alpha", "docs"]
    assert store.create_collection("docs", dim=DIM) == info  # exist_ok by default
    with pytest.raises(ValidationError, match="already exists"):
        store.create_collection("docs", dim=DIM, exist_ok=False)
    with pytest.raises(ValidationError, match="dim=8"):
        store.create_collection("docs", dim=16)
    store.drop_collection("alpha")
    assert [c.name for c in store.collections()] == ["docs"]
    with pytest.raises(CollectionNotFound):
        store.count("alpha")


@pytest.mark.parametrize("bad", ["", "1abc", "has space", "dash-ed", "x" * 64, None])
def test_bad_collection_names_are_refused(store, bad):
    with pytest.raises(ValidationError, match="collection name"):
        store.create_collection(bad, dim=DIM)


def test_search_returns_the_exact_top_k_by_cosine(filled):
    ids, vectors, _, _ = data()
    for qi in (0, 7, 33):
        q = vectors[qi] + 0.1
        want_ids, want_scores = truth(vectors, ids, q, 5)
        hits = filled.search("docs", q, k=5)
        assert [h.id for h in hits] == want_ids
        assert [h.score for h in hits] == pytest.approx(want_scores, abs=1e-4)
    top = filled.search("docs", vectors[4], k=1)[0]
    assert (top.id, top.text, top.metadata) == ("doc-004", "text number 4", data()[3][4])
    assert top.score == pytest.approx(1.0, abs=1e-5)


def test_k_larger_than_the_collection_returns_everything(filled):
    assert len(filled.search("docs", np.ones(DIM), k=500)) == N


def test_filters_select_exactly_the_matching_items(filled):
    ids, vectors, _, meta = data()
    q = vectors[1]
    cases = [
        (F.tag == "red", lambda m: m["tag"] == "red"),
        (F.tag.isin(["red", "blue"]), lambda m: m["tag"] in ("red", "blue")),
        (F.n.between(10, 20), lambda m: 10 <= m["n"] <= 20),
        (F.score > 2.5, lambda m: m["score"] > 2.5),
        ((F.tag == "green") & (F.n < 30), lambda m: m["tag"] == "green" and m["n"] < 30),
        ((F.tag == "green") | (F.n >= 55), lambda m: m["tag"] == "green" or m["n"] >= 55),
        (~(F.tag == "green"), lambda m: m["tag"] != "green"),
        (F.rare == "yes", lambda m: m.get("rare") == "yes"),
        (~(F.rare == "yes"), lambda m: m.get("rare") != "yes"),
        (F.even == True, lambda m: m["even"] is True),  # noqa: E712
        ({"tag": "blue", "n": {"$lt": 40}}, lambda m: m["tag"] == "blue" and m["n"] < 40),
    ]
    for where, keep in cases:
        want = sum(keep(m) for m in meta)
        assert filled.count("docs", where) == want, where
        got = [h.id for h in filled.search("docs", q, k=7, where=where)]
        assert got == truth(vectors, ids, q, 7, lambda j, keep=keep: keep(meta[j]))[0], where


def test_booleans_and_numbers_never_compare_equal(filled):
    assert filled.count("docs", F.even == 1) == 0
    assert filled.count("docs", F.n == True) == 0  # noqa: E712
    assert filled.count("docs", F.n == 1) == 1
    assert filled.count("docs", F.tag > 5) == 0  # a string never compares with a number
    assert filled.count("docs", F.missing == "x") == 0
    assert filled.count("docs", ~(F.missing == "x")) == N


def test_reupsert_replaces_vector_text_and_metadata(filled):
    ids, vectors, _, _ = data()
    assert filled.upsert("docs", ["doc-000"], [vectors[59]], ["replaced"], [{"tag": "new"}]) == 1
    assert filled.count("docs") == N
    (rec,) = filled.get("docs", ["doc-000"])
    assert (rec.text, rec.metadata) == ("replaced", {"tag": "new"})
    assert filled.count("docs", F.tag == "new") == 1
    assert filled.count("docs", F.n == 0) == 0  # the old metadata is gone
    hits = filled.search("docs", vectors[59], k=2)
    assert {h.id for h in hits} == {"doc-000", "doc-059"}
    # Upserting the same batch twice is idempotent.
    filled.upsert("docs", ids, vectors, data()[2], data()[3])
    filled.upsert("docs", ids, vectors, data()[2], data()[3])
    assert filled.count("docs") == N
    assert filled.get("docs", ["doc-000"])[0].text == "text number 0"


def test_duplicate_ids_in_one_batch_keep_the_last(store):
    store.create_collection("docs", dim=DIM)
    v = np.eye(DIM)
    assert store.upsert("docs", ["a", "b", "a"], v[:3], ["first", "b", "last"]) == 2
    assert store.count("docs") == 2
    assert store.get("docs", ["a"])[0].text == "last"


def test_get_keeps_the_order_asked_and_skips_unknown_ids(filled):
    recs = filled.get("docs", ["doc-010", "nope", "doc-002"])
    assert [r.id for r in recs] == ["doc-010", "doc-002"]
    assert recs[0].vector is None
    (rec,) = filled.get("docs", ["doc-003"], with_vectors=True)
    v = data()[1][3]
    assert np.allclose(rec.vector, v / np.linalg.norm(v), atol=1e-5)


def test_delete_by_ids_by_filter_and_both(filled):
    assert filled.delete("docs", ["doc-000", "doc-001", "ghost"]) == 2
    assert filled.count("docs") == N - 2
    assert filled.delete("docs", ["doc-000"]) == 0
    assert filled.delete("docs", where=F.tag == "red") == 19  # 20 reds minus doc-000
    assert filled.count("docs", F.tag == "red") == 0
    assert filled.delete("docs", ["doc-002", "doc-004"], where=F.tag == "blue") == 1  # only doc-002 is blue
    assert [r.id for r in filled.get("docs", ["doc-002", "doc-004"])] == ["doc-004"]
    hits = filled.search("docs", data()[1][2], k=N)
    assert "doc-002" not in {h.id for h in hits} and len(hits) == filled.count("docs")
    with pytest.raises(ValidationError, match="needs ids or a filter"):
        filled.delete("docs")


def test_clear_keeps_the_collection(filled):
    filled.clear("docs")
    assert filled.count("docs") == 0
    assert filled.search("docs", np.ones(DIM), k=3) == []
    assert [c.name for c in filled.collections()] == ["docs"]
    filled.upsert("docs", ["x"], [np.ones(DIM)])
    assert filled.count("docs") == 1


def test_bad_input_is_refused_before_anything_is_written(filled):
    ones = np.ones(DIM)
    cases = [
        (dict(ids=["z"], vectors=[np.ones(DIM + 1)]), "dimension is 8"),
        (dict(ids=["z", "y"], vectors=[ones, ones * np.nan]), "NaN"),
        (dict(ids=["z", "y"], vectors=[ones, np.zeros(DIM)]), "all zeros"),
        (dict(ids=["z", ""], vectors=[ones, ones]), "non-empty string"),
        (dict(ids=["z", "y"], vectors=[ones]), "2 ids but 1 vectors"),
        (dict(ids=["z"], vectors=[ones], texts=["a", "b"]), "texts"),
        (dict(ids=["z"], vectors=[ones], metadata=[{"k": [1, 2]}]), "scalars"),
        (dict(ids=["z"], vectors=[ones], metadata=[{"k": float("nan")}]), "finite"),
        (dict(ids="z", vectors=[ones]), "one string"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValidationError, match=message):
            filled.upsert("docs", **kwargs)
        assert filled.count("docs") == N
        assert filled.get("docs", ["z", "y"]) == []
    with pytest.raises(ValidationError, match="dimension is 8"):
        filled.search("docs", np.ones(3))
    with pytest.raises(ValidationError, match="k=0"):
        filled.search("docs", ones, k=0)
    with pytest.raises(ValidationError, match="not a filter"):
        filled.search("docs", ones, where="tag = 'red'")


@pytest.mark.parametrize("op", ["upsert", "search", "get", "delete", "count", "clear", "drop_collection"])
def test_unknown_collections_are_a_clear_error(store, op):
    store.create_collection("docs", dim=DIM)
    args = {
        "upsert": (["a"], [np.ones(DIM)]),
        "search": (np.ones(DIM),),
        "get": (["a"],),
        "delete": (["a"],),
        "count": (),
        "clear": (),
        "drop_collection": (),
    }[op]
    with pytest.raises(CollectionNotFound, match="'dcos' does not exist") as err:
        getattr(store, op)("dcos", *args)
    assert "create it first" in str(err.value) and "docs" in str(err.value)


def test_data_survives_close_and_reopen(backend, store_factory):
    if backend not in PERSISTENT:
        pytest.skip(f"the {backend} backend keeps nothing by design")
    ids, vectors, texts, meta = data()
    s = store_factory()
    s.create_collection("docs", dim=DIM)
    s.upsert("docs", ids, vectors, texts, meta)
    s.delete("docs", ["doc-005"])
    s.close()
    s2 = store_factory(reopen=True)
    assert [(c.name, c.dim) for c in s2.collections()] == [("docs", DIM)]
    assert s2.count("docs") == N - 1
    assert s2.count("docs", F.tag == "blue") == 19
    q = vectors[9]
    assert [h.id for h in s2.search("docs", q, k=4)] == truth(vectors, ids, q, 4, lambda j: j != 5)[0]


def test_concurrent_writers_lose_nothing(store):
    store.create_collection("docs", dim=DIM)
    rng = np.random.default_rng(3)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for b in range(5):
                ids = [f"w{w}-{b}-{i}" for i in range(10)]
                store.upsert("docs", ids, rng.normal(size=(10, DIM)) + 0.01, metadata=[{"w": w}] * 10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count("docs") == 200
    assert [store.count("docs", F.w == w) for w in range(4)] == [50] * 4


async def test_async_twins_give_the_same_answers(filled):
    _ids, vectors, _, _ = data()
    assert await filled.acount("docs") == N
    hits = await filled.asearch("docs", vectors[2], k=3)
    assert [h.id for h in hits] == [h.id for h in filled.search("docs", vectors[2], k=3)]
    assert await filled.aupsert("docs", ["extra"], [vectors[0]]) == 1
    assert [r.id for r in await filled.aget("docs", ["extra"])] == ["extra"]
    assert await filled.adelete("docs", ["extra"]) == 1
    assert [c.name for c in await filled.acollections()] == ["docs"]
