"""Text-level collections: embedding, vector/keyword/hybrid search, cache, events, policy gate."""

from __future__ import annotations

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.events.bus import InProcessBus
from lumina_lab.memory import F, VectorMemory
from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

CORPUS = [
    ("Cedar policies decide which principal may call which provider.", {"area": "policy", "year": 2024}),
    ("DuckDB keeps every vector in one file under LUMINA_HOME.", {"area": "memory", "year": 2023}),
    ("The router falls back to the next provider when a breaker opens.", {"area": "routing", "year": 2024}),
    ("Budgets cap the daily spend of each project in US dollars.", {"area": "routing", "year": 2022}),
    ("BM25 finds rare words such as zyxomorph that embeddings blur.", {"area": "memory", "year": 2024}),
    ("Milvus Lite stores vectors in a local file; a server scales out.", {"area": "memory", "year": 2025}),
]


@pytest.fixture
def docs():
    mem = VectorMemory(backend="memory")
    c = mem.collection("docs")
    c.add([t for t, _ in CORPUS], [m for _, m in CORPUS], ids=[f"d{i}" for i in range(len(CORPUS))])
    return c


def test_add_embeds_and_ids_default_to_content_hashes():
    mem = VectorMemory(backend="memory")
    c = mem.collection("notes")
    ids = c.add(["alpha beta", "gamma delta"])
    assert ids == c.add(["alpha beta", "gamma delta"])  # idempotent
    assert c.count() == 2
    assert c.get(ids[:1])[0].text == "alpha beta"
    assert mem.collections() == ["notes"]


def test_vector_search_finds_the_paraphrase(docs):
    res = docs.search("one DuckDB file holds every vector", k=2)
    assert res[0].id == "d1"
    assert res.mode == "vector" and len(res) == 2


def test_keyword_search_finds_rare_terms_and_respects_filters(docs):
    assert docs.search("zyxomorph", k=3, mode="keyword").ids == ["d4"]
    assert docs.search("provider", k=5, mode="keyword", where=F.area == "routing").ids == ["d2"]
    assert docs.search("provider", k=5, mode="keyword", where=F.year < 2023).ids == []


def test_hybrid_search_fuses_both_rankings(docs):
    res = docs.search("zyxomorph DuckDB LUMINA_HOME", k=3, mode="hybrid")
    assert set(res.ids[:2]) == {"d4", "d1"}
    assert sorted(res.ranks[res.ids.index(i)]["keyword"] for i in ("d1", "d4")) == [1, 2]
    frame = res.df()
    assert {"vector_rank", "keyword_rank", "area"} <= set(frame.columns)
    weighted = docs.search("zyxomorph DuckDB LUMINA_HOME", k=3, mode="hybrid", fusion="weighted", alpha=0.0)
    assert weighted.ids[:2] == docs.search("zyxomorph DuckDB LUMINA_HOME", k=2, mode="keyword").ids  # alpha=0


def test_keyword_index_follows_upserts_deletes_and_clear(docs):
    assert docs.search("zyxomorph", mode="keyword").ids == ["d4"]
    docs.add(["another zyxomorph appears"], ids=["d9"])
    assert set(docs.search("zyxomorph", mode="keyword").ids) == {"d4", "d9"}
    docs.add(["now it is gone"], ids=["d4"])  # re-upsert replaces the text
    assert docs.search("zyxomorph", mode="keyword").ids == ["d9"]
    docs.delete(where=F.area == "memory")
    assert docs.search("file", mode="keyword", k=10).ids == []
    docs.delete(["d9"])
    assert docs.search("zyxomorph", mode="keyword").ids == []
    docs.clear()
    assert docs.search("provider", mode="keyword").ids == []


def test_keyword_index_sees_writes_from_another_store_object(tmp_path):
    a = VectorMemory(DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0))
    b = VectorMemory(DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0))
    ca, cb = a.collection("docs"), b.collection("docs")
    ca.add(["the first quokka"], ids=["q1"])
    assert cb.search("quokka", mode="keyword").ids == ["q1"]
    ca.add(["a second quokka"], ids=["q2"])  # written by a, b's BM25 index must notice
    assert set(cb.search("quokka", mode="keyword").ids) == {"q1", "q2"}
    cb.add(["b adds a quokka"], ids=["q3"])
    assert set(ca.search("quokka", mode="keyword").ids) == {"q1", "q2", "q3"}


def test_the_query_cache_hits_and_writes_invalidate_it(docs):
    mem = docs.memory
    first = docs.search("router breaker", k=2)
    second = docs.search("router breaker", k=2)
    assert not first.cache_hit and second.cache_hit and second.ids == first.ids
    assert mem.cache_stats().hits == 1
    docs.add(["the router trips a breaker and routes around it"], ids=["new"])
    third = docs.search("router breaker", k=2)
    assert not third.cache_hit and "new" in third.ids
    assert not docs.search("router breaker", k=2, cache=False).cache_hit


def test_events_report_writes_and_searches_with_timings(docs):
    bus = InProcessBus()
    seen = []
    bus.subscribe("memory.*", seen.append)
    docs.memory.bus = bus
    docs.add(["one more"], ids=["x"])
    docs.search("one more", k=1)
    docs.search("one more", k=1)
    docs.delete(["x"])
    bus.drain_sync()
    kinds = [(e.event_type, getattr(e, "op", None), getattr(e, "cache_hit", None)) for e in seen]
    assert kinds == [
        ("memory.written", "upsert", None),
        ("memory.searched", None, False),
        ("memory.searched", None, True),
        ("memory.written", "delete", None),
    ]
    assert all(e.ms >= 0 for e in seen) and seen[1].backend == "memory"
    bus.close_sync()


def test_a_policy_withholds_what_the_principal_may_not_read():
    def policy(principal, hits):
        return [principal == "admin" or h.metadata.get("area") != "policy" for h in hits]

    mem = VectorMemory(backend="memory", policy=policy)
    c = mem.collection("docs")
    c.add([t for t, _ in CORPUS], [m for _, m in CORPUS], ids=[f"d{i}" for i in range(len(CORPUS))])
    assert "d0" in c.search("Cedar policies principal", k=3, principal="admin").ids
    res = c.search("Cedar policies principal", k=3, principal="intern")
    assert "d0" not in res.ids and len(res) == 3 and res.denied == 1
    assert "withheld by policy" in res._repr_html_()


def test_bad_search_arguments_are_clear_errors(docs):
    with pytest.raises(ValidationError, match="mode='fuzzy'"):
        docs.search("x", mode="fuzzy")
    with pytest.raises(ValidationError, match="fusion='max'"):
        docs.search("x", mode="hybrid", fusion="max")
    with pytest.raises(ValidationError, match="needs a text query"):
        docs.search(np.ones(1024), mode="keyword")
    with pytest.raises(ValidationError, match="texts must be strings"):
        docs.add([1, 2])
    for empty in ("", "   "):  # not "all-zero query vector": the mistake is the query
        for mode in ("vector", "keyword", "hybrid"):
            with pytest.raises(ValidationError, match="the query is empty"):
                docs.search(empty, mode=mode)
    with pytest.raises(ValidationError, match="texts is a NoneType, not text"):
        docs.add(None)  # type: ignore[arg-type]


def test_results_render_in_notebooks(docs):
    res = docs.search("budget", k=2)
    assert res.__repr__().startswith("SearchResults(2 hits from 'docs', vector")
    assert "<table>" in res._repr_html_()
    assert repr(docs) == "Collection('docs', 6 items, store=memory)"
    assert "VectorMemory(memory, embedder=HashingEmbedder[1024]" in repr(docs.memory)
