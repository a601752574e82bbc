"""ConversationMemory: levels, recall with provenance, context within budget, graph, events, persistence, bad input.

Also runs ``benchmarks/locomo_recall.py`` end to end on a tiny LoCoMo-format file (and on the
shared LoCoMo file when it is present, one conversation, hashing embedder).
"""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import lumina_lab.memory.conversation as conversation_module
from lumina_lab.errors import ValidationError
from lumina_lab.events.bus import InProcessBus
from lumina_lab.memory.chunking import estimate_tokens
from lumina_lab.memory.collection import VectorMemory
from lumina_lab.memory.conversation import ConversationMemory, Recall
from lumina_lab.memory.embeddings import HashingEmbedder
from lumina_lab.memory.filters import F
from lumina_lab.memory.retrieval import RecallConfig

ROOT = Path(__file__).resolve().parents[2]
SHARED_LOCOMO = ROOT.parent / "shared" / "datasets" / "locomo" / "locomo7.json"
MAY = "2023-05-08T13:56:00"
JUNE = "2023-06-20T10:00:00"

SESSION_1 = [
    {
        "speaker": "Caroline",
        "text": "I went to an LGBTQ support group yesterday and it was so powerful.",
        "dia_id": "D1:1",
    },
    {"speaker": "Melanie", "text": "That's great! What happened there?", "dia_id": "D1:2"},
    {
        "speaker": "Caroline",
        "text": "People shared their transgender stories. I moved from Sweden 4 years ago, so it felt like home.",
        "dia_id": "D1:3",
    },
    {
        "speaker": "Melanie",
        "text": "I painted a lake sunrise last year, painting is my therapy.",
        "dia_id": "D1:4",
        "blip_caption": "a photo of a painting of a sunrise over a lake",
    },
    {"speaker": "Caroline", "text": "I want to work as a counselor for trans youth.", "dia_id": "D1:5"},
]
SESSION_2 = [
    {"speaker": "Melanie", "text": "We went camping in the mountains with the kids last weekend.", "dia_id": "D2:1"},
    {"speaker": "Caroline", "text": "Lovely! I started researching adoption agencies.", "dia_id": "D2:2"},
    {"speaker": "Melanie", "text": "Good luck! My kids love dinosaurs, we visited the museum.", "dia_id": "D2:3"},
    {"speaker": "Caroline", "text": "My grandma in Sweden sent me a necklace.", "dia_id": "D2:4"},
]


def make(**kw) -> ConversationMemory:
    kw.setdefault("working_size", 3)
    mem = ConversationMemory(VectorMemory(backend="memory", embedder=HashingEmbedder(dim=256)), **kw)
    mem.remember_many(SESSION_1, session="1", ts=MAY)
    mem.remember_many(SESSION_2, session="2", ts=JUNE)
    return mem


@pytest.fixture
def mem() -> ConversationMemory:
    return make()


def test_docstring_examples():
    assert doctest.testmod(conversation_module, optionflags=doctest.ELLIPSIS).failed == 0


# ---------------------------------------------------------------------- levels and recall
def test_recall_returns_scored_items_with_levels_and_provenance(mem):
    rec = mem.recall("When did Caroline go to the LGBTQ support group?", k=5)
    assert isinstance(rec, Recall) and len(rec) == 5 and rec.ids[0] == "D1:1"
    top = rec[0]
    assert top.level == "episodic" and top.score >= rec[1].score
    p = top.provenance
    assert p["session"] == "1" and p["speaker"] == "Caroline" and p["turn_id"] == "D1:1" and p["kind"] == "turn"
    assert p["ts"] == datetime(2023, 5, 8, 13, 56, tzinfo=UTC).timestamp()
    assert "keyword" in p["via"] and "vector" in p["via"]
    assert top.text.startswith("Caroline: I went to an LGBTQ support group")
    assert rec.tokens == sum(estimate_tokens(r.text) for r in rec)


def test_image_captions_are_part_of_the_turn(mem):
    assert mem.recall("painting of a sunrise over a lake", k=1)[0].text.endswith(
        "[a photo of a painting of a sunrise over a lake]"
    )


def test_working_level_is_the_most_recent_turns(mem):
    assert mem.working() == ["D2:2", "D2:3", "D2:4"]
    rec = mem.recall("Sweden", k=5, level="working")
    assert rec.ids == ["D2:4"] or set(rec.ids) <= {"D2:2", "D2:3", "D2:4"}
    assert all(r.level == "working" for r in rec)
    assert mem.count("working") == 3 and mem.count("episodic") == 9 and mem.count() == 9
    # the episodic level holds every turn, the working ones included
    assert "D2:4" in mem.recall("grandma Sweden necklace", k=3, level="episodic").ids


def test_semantic_level_facts_and_topics(mem):
    ids = mem.remember(
        "Caroline is a transgender woman who wants to be a counselor.", level="semantic", speaker="Caroline"
    )
    assert mem.count("semantic") == 1
    rec = mem.recall("What does Caroline want to be?", k=3, level="semantic")
    assert rec.ids == ids and rec[0].level == "semantic" and rec[0].provenance["kind"] == "fact"
    everything = mem.recall("What does Caroline want to be?", k=10)
    assert ids[0] in everything.ids
    topics = mem.topics()
    assert topics and sum(t.size for t in topics) == 10
    assert all(t.label for t in topics)
    assert {e.node.kind for e in mem.graph.neighbours(ids[0], edge="topic")} == {"topic"}


def test_consolidate_writes_summaries_at_the_semantic_level(mem):
    report = mem.consolidate(summarize_older_than_days=1, now=datetime(2023, 7, 1, tzinfo=UTC))
    assert report.summaries
    semantic = mem.items("semantic")
    assert len(semantic) == len(report.summaries) and set(semantic["kind"]) == {"summary"}
    assert mem.recall("Sweden", level="semantic", k=2)[0].level == "semantic"


def test_filters_times_sessions_and_speakers(mem):
    assert set(mem.recall("camping museum kids", k=9, session="2").ids) <= {f"D2:{i}" for i in range(1, 5)}
    assert {r.provenance["speaker"] for r in mem.recall("Sweden", k=9, speaker="Melanie")} == {"Melanie"}
    assert {r.provenance["speaker"] for r in mem.recall("Sweden", k=9, where=F.speaker == "Caroline")} == {"Caroline"}
    june = mem.recall("Sweden", k=9, since="2023-06-01")
    assert june.ids and all(i.startswith("D2:") for i in june.ids)
    may = mem.recall("Sweden", k=9, until=datetime(2023, 5, 31, tzinfo=UTC))
    assert may.ids and all(i.startswith("D1:") for i in may.ids)
    assert mem.recall("Sweden", k=3, session="nope").ids == []


def test_each_step_can_be_switched_off(mem):
    q = "What happened at the support group?"
    full = mem.recall(q, k=3)
    first = mem.recall(q, k=3, config=RecallConfig.only("hybrid"))
    assert "neighbour" in {v for r in full for v in r.provenance["via"]}
    assert all("neighbour" not in r.provenance["via"] for r in first)
    assert first.steps == ["hybrid"] and full.steps == RecallConfig().steps


def test_sentence_vectors_are_kept_for_the_sentences_step(mem):
    assert set(mem.retriever._sentences) == set(mem.retriever.rows)
    assert mem.retriever._sentences["D1:3"].shape[0] == 2  # "People shared..." and "I moved from Sweden..."
    assert "sentences" in RecallConfig().steps
    mem.forget(["D1:3"])
    assert "D1:3" not in mem.retriever._sentences
    without = make(sentence_vectors=False)
    assert without.retriever._sentences == {}
    assert without.recall("Sweden", k=1).ids == ["D1:3"]


def test_documents_are_chunked_and_neighbours(mem):
    doc = " ".join(f"Paragraph {i} about the Cedar policy engine and provider routing decisions." for i in range(60))
    ids = mem.remember(doc, kind="document", turn_id="guide", chunk_size=64)
    assert len(ids) > 2 and ids[0] == "guide#0"
    assert mem.retriever.adjacent(ids[1]) == (ids[0], ids[2])
    hit = mem.recall("Cedar policy engine", k=1)[0]
    assert hit.id in ids and hit.provenance["kind"] == "document"


def test_remembering_the_same_turn_id_replaces_it(mem):
    mem.remember(
        {"speaker": "Caroline", "text": "My grandma in Norway sent me a bracelet.", "dia_id": "D2:4"},
        session="2",
        ts=JUNE,
    )
    assert mem.count() == 9
    assert mem.recall("bracelet", k=1)[0].id == "D2:4"


def test_forget(mem):
    assert mem.forget(["D1:3", "nope"]) == 1
    assert "D1:3" not in mem.recall("Sweden moved", k=9).ids
    assert "item:D1:3" not in mem.graph
    assert mem.count() == 8


# ---------------------------------------------------------------------- budgets
@pytest.mark.parametrize("budget", [1, 5, 12, 30, 60, 120, 400])
def test_recall_and_context_never_exceed_the_budget(mem, budget):
    rec = mem.recall("What did Caroline and Melanie do?", k=9, budget_tokens=budget)
    assert rec.tokens <= budget and rec.budget_tokens == budget
    block = mem.context("What did Caroline and Melanie do?", budget_tokens=budget)
    assert estimate_tokens(block) <= budget if block else True


def test_context_is_grouped_by_session_with_dates(mem):
    block = mem.context("Sweden", budget_tokens=400)
    lines = block.splitlines()
    assert lines[0] == "## Session 1 (2023-05-08)"
    assert "## Session 2 (2023-06-20)" in lines
    assert lines.index("## Session 2 (2023-06-20)") > lines.index("## Session 1 (2023-05-08)")
    assert any(line.startswith("Caroline: My grandma in Sweden") for line in lines)
    mem.remember("Caroline is from Sweden.", level="semantic")
    assert mem.context("Sweden", budget_tokens=400).startswith("## Known facts\n- Caroline is from Sweden.")


def test_context_compresses_the_best_item_that_does_not_fit():
    mem = ConversationMemory(VectorMemory(backend="memory", embedder=HashingEmbedder(dim=256)))
    long = (
        ("The quarterly review covered many topics. " * 10)
        + "The launch date of the rocket is 4 July. "
        + ("Budget lines were discussed at length. " * 10)
    )
    mem.remember(long, speaker="Ann", session="s", ts=MAY)
    block = mem.context("When is the rocket launch date?", budget_tokens=40)
    assert 0 < estimate_tokens(block) <= 40
    assert "launch date of the rocket" in block
    # without compression, the trim step keeps the rocket sentence of the turn; without either, nothing fits whole
    trimmed = mem.context("When is the rocket launch date?", budget_tokens=40, compress=False)
    assert "launch date of the rocket" in trimmed and 0 < estimate_tokens(trimmed) <= 40
    off = RecallConfig().without("trim")
    assert mem.context("rocket", budget_tokens=40, compress=False, config=off) == ""


def test_empty_memory_recalls_nothing():
    mem = ConversationMemory(VectorMemory(backend="memory", embedder=HashingEmbedder(dim=64)))
    assert len(mem.recall("anything")) == 0
    assert mem.context("anything", budget_tokens=50) == ""
    assert mem.topics() == [] and len(mem.projection()) == 0
    assert mem.consolidate().items == []


def test_an_empty_disk_cache_embedder_is_used_not_replaced(tmp_path):
    from lumina_lab.memory.embed_cache import DiskCachedEmbedder

    cached = DiskCachedEmbedder(HashingEmbedder(dim=64), path=tmp_path / "vectors.sqlite")
    assert len(cached) == 0  # falsy: ``embedder or default`` would drop it
    mem = ConversationMemory(backend="memory", embedder=cached)
    assert mem.memory.embedder is cached
    mem.remember("Ann: I adopted a beagle.", session="s1")
    assert len(cached) >= 1


# ---------------------------------------------------------------------- graph, explorer, events
def test_graph_links_items_entities_dates_and_time(mem):
    g = mem.graph
    assert [n.id for n in g.about("Sweden")] == ["item:D1:3", "item:D2:4"]
    assert [n.id for n in g.about("Sweden", since="2023-06-01")] == ["item:D2:4"]
    assert ("item:D1:2", "next") in {(e.id, e.kind) for e in g.neighbours("D1:3", edge="next")}
    assert g.path("D1:1", "D2:4") is not None
    # "yesterday" said on 8 May 2023
    assert "date:2023-05-07" in {e.id for e in g.neighbours("D1:1", kind="date")}
    assert g.edge_count("topic") == 9


def test_projection_and_tables(mem):
    pts = mem.projection()
    assert list(pts.columns) == ["x", "y", "id", "level", "topic", "session", "speaker", "text"]
    assert len(pts) == 9 and pts["x"].abs().sum() > 0
    df = mem.recall("Sweden", k=3).df()
    assert list(df.columns[:4]) == ["rank", "id", "score", "level"] and len(df) == 3
    html = mem.recall("Sweden", k=3)._repr_html_()
    assert "<table>" in html and "Sweden" in html
    assert "ConversationMemory('conversation', 9 items, 2 sessions" in repr(mem)
    assert "graph" in mem._repr_html_()
    items = mem.items()
    assert list(items["id"][:2]) == ["D1:1", "D1:2"]
    with pytest.raises(ValidationError, match="projection method"):
        mem.projection("tsne")


def test_events_for_remember_recall_and_compress():
    bus = InProcessBus()
    seen = []
    bus.subscribe("memory.*", seen.append)
    mem = ConversationMemory(VectorMemory(backend="memory", embedder=HashingEmbedder(dim=64)), bus=bus)
    mem.remember_many(SESSION_1, session="1", ts=MAY)
    mem.recall("Sweden", k=2)
    mem.context("Sweden", budget_tokens=30)
    mem.compress("Sweden", budget_tokens=20)
    bus.drain_sync()
    types = [e.event_type for e in seen if e.event_type.startswith("memory.r") or e.event_type == "memory.compressed"]
    assert types[0] == "memory.remembered"
    remembered = next(e for e in seen if e.event_type == "memory.remembered")
    assert remembered.count == 5 and remembered.kinds == {"turn": 5} and remembered.entities > 0
    recalled = [e for e in seen if e.event_type == "memory.recalled"]
    assert [e.context for e in recalled] == [False, True, False]
    assert recalled[1].tokens <= 30 and recalled[1].budget_tokens == 30
    assert "memory.compressed" in types
    bus.close_sync()


# ---------------------------------------------------------------------- persistence
def test_a_persistent_memory_reopens_with_its_indexes_and_graph(tmp_path):
    from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

    def open_mem() -> ConversationMemory:
        store = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0.05)
        return ConversationMemory(
            VectorMemory(store, embedder=HashingEmbedder(dim=64)), name="chat", graph_path=tmp_path / "chat.graph.json"
        )

    first = open_mem()
    first.remember_many(SESSION_1, session="1", ts=MAY)
    before = first.recall("Sweden", k=3).ids
    first.memory.close()
    assert (tmp_path / "chat.graph.json").exists()
    again = open_mem()
    assert len(again) == 5 and again.recall("Sweden", k=3).ids == before
    assert [n.id for n in again.graph.about("Sweden")] == ["item:D1:3"]
    assert again.topics()
    again.remember_many(SESSION_2, session="2", ts=JUNE)
    assert again.retriever.adjacent("D2:1") == (None, "D2:2")
    again.memory.close()
    (tmp_path / "chat.graph.json").unlink()  # without the file the graph is rebuilt from the store
    third = open_mem()
    assert [n.id for n in third.graph.about("Sweden")] == ["item:D1:3", "item:D2:4"]
    third.memory.close()


class _CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it embeds."""

    texts = 0

    def embed(self, texts):
        type(self).texts += len(texts)
        return super().embed(texts)


def test_a_reopened_memory_reads_its_sentence_vectors_from_the_store(tmp_path):
    from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

    def open_mem() -> ConversationMemory:
        store = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0.05)
        return ConversationMemory(VectorMemory(store, embedder=_CountingEmbedder(dim=64)), name="chat", graph_path=False)

    first = open_mem()
    first.remember_many(SESSION_1, session="1", ts=MAY)
    kept = {i: m.copy() for i, m in first.retriever._sentences.items()}
    before = first.recall("Which country is Caroline moving to?", k=5)
    assert "chat__sentences" in first.memory.collections(internal=True)
    assert first.memory.collections() == ["chat"]  # kept out of the listing: it belongs to "chat"
    first.memory.close()

    _CountingEmbedder.texts = 0
    again = open_mem()
    assert _CountingEmbedder.texts == 0  # nothing embedded again: items and sentences come from the store
    assert set(again.retriever._sentences) == set(kept)
    for i, m in kept.items():
        assert again.retriever._sentences[i] == pytest.approx(m, abs=1e-6)
    after = again.recall("Which country is Caroline moving to?", k=5)
    assert after.ids == before.ids and [r.score for r in after] == pytest.approx([r.score for r in before])

    # a turn written again with new text gets new sentence vectors; a forgotten one loses its own
    again.remember_many(
        [{"speaker": "Caroline", "text": "I changed my mind. Norway it is!", "dia_id": "D1:3"}], session="1", ts=MAY
    )
    again.forget("D1:5")
    again.memory.close()
    _CountingEmbedder.texts = 0
    third = open_mem()
    assert _CountingEmbedder.texts == 0
    assert len(third.retriever._sentences["D1:3"]) == 2 and "D1:5" not in third.retriever._sentences
    rows = third.memory.store.scan("chat__sentences")
    items = {r.metadata["item"] for batch in rows for r in batch}
    assert items == set(kept) - {"D1:5"}
    third.memory.drop("chat")  # its sentence vectors go with it
    assert third.memory.collections(internal=True) == []
    third.memory.close()


def test_sentence_vectors_of_another_text_or_embedder_are_not_used(tmp_path):
    from lumina_lab.memory.sentence_vectors import SentenceVectors
    from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

    store = DuckDBVectorStore(tmp_path / "v.duckdb")
    kept = SentenceVectors(store, "chat", 2, "model-a")
    kept.save({"a": "One. Two.", "b": "Three."}, {"a": np.eye(2, dtype=np.float32), "b": np.ones((1, 2), np.float32)})
    found, missing = kept.load({"a": "One. Two.", "b": "Three, changed."})
    assert list(found) == ["a"] and missing == ["b"] and found["a"].shape == (2, 2)
    assert SentenceVectors(store, "chat", 2, "model-b").load({"a": "One. Two."}) == ({}, ["a"])
    assert kept.delete(["a"]) == 2 and kept.load({"a": "One. Two."}) == ({}, ["a"])
    store.close()


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.remember(""), "empty"),
        (lambda m: m.remember("   "), "empty"),
        (lambda m: m.remember(42), "item 0 is a int"),
        (lambda m: m.remember({"speaker": "Ann"}), "has no 'text'"),
        (lambda m: m.remember("hi", level="working"), "cannot be written"),
        (lambda m: m.remember("hi", kind="poem"), "kind='poem'"),
        (lambda m: m.remember("hi", {"session": "x"}), "set by the memory"),
        (lambda m: m.remember("hi", {"tags": ["a"]}), "metadata 'tags'"),
        (lambda m: m.remember("hi", ts="someday"), "not a time"),
        (lambda m: m.remember("hi", speaker=""), "speaker"),
        (lambda m: m.remember_many([]), "empty"),
        (lambda m: m.remember_many("hi"), "list of items"),
        (lambda m: m.remember_many(["a", "b"], [{}]), "2 items but 1 metadata"),
        (lambda m: m.remember("hi", 5), "metadata is a int, not a dict"),
        (lambda m: m.remember("hi", "topic=travel"), "metadata is a str, not a dict"),
        (lambda m: m.remember_many(["a", "b"], [{}, 3]), "metadata is a int, not a dict"),
        (lambda m: m.remember_many([{"text": "a", "dia_id": "x"}, {"text": "b", "dia_id": "x"}]), "appears twice"),
        (lambda m: m.recall(""), "query is empty"),
        (lambda m: m.recall(None), "query must be a str"),
        (lambda m: m.recall("x", k=0), "k=0"),
        (lambda m: m.recall("x", budget_tokens=0), "budget_tokens=0"),
        (lambda m: m.recall("x", budget_tokens=True), "budget_tokens=True"),
        (lambda m: m.recall("x", level="long-term"), "not a memory level"),
        (lambda m: m.recall("x", since="whenever"), "since="),
        (lambda m: m.recall("x", config={"hybrid": False}), "RecallConfig"),
        (lambda m: m.context("x", budget_tokens=-5), "budget_tokens=-5"),
        (lambda m: m.context("x", budget_tokens="100"), "budget_tokens='100'"),
        (lambda m: m.count("short-term"), "not a memory level"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(mem, call, match):
    with pytest.raises(ValidationError, match=match):
        call(mem)
    assert mem.count() == 9  # nothing was written


def test_bad_construction_is_refused():
    with pytest.raises(ValidationError, match="either memory="):
        ConversationMemory(VectorMemory(backend="memory"), embedder=HashingEmbedder())
    with pytest.raises(ValidationError, match="working_size"):
        ConversationMemory(VectorMemory(backend="memory"), working_size=0)
    with pytest.raises(ValidationError, match="topics must be"):
        ConversationMemory(VectorMemory(backend="memory"), topics="yes")


# ---------------------------------------------------------------------- the benchmark script
def _locomo_sample() -> list[dict]:
    conv = {
        "speaker_a": "Ann",
        "speaker_b": "Bob",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_2_date_time": "10:00 am on 20 June, 2023",
    }
    conv["session_1"] = [
        {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a beagle called Rex yesterday!"},
        {"speaker": "Bob", "dia_id": "D1:2", "text": "Congrats! How old is he?"},
        {"speaker": "Ann", "dia_id": "D1:3", "text": "Two years old.", "blip_caption": "a photo of a beagle"},
        {"speaker": "Bob", "dia_id": "D1:4", "text": "I baked bread with my kids."},
    ]
    conv["session_2"] = [
        {"speaker": "Bob", "dia_id": "D2:1", "text": "We went camping at the lake."},
        {"speaker": "Ann", "dia_id": "D2:2", "text": "Rex loved the beach trip."},
    ]
    qa = [
        {"question": "When did Ann adopt Rex?", "answer": "7 May 2023", "evidence": ["D1:1"], "category": 2},
        {"question": "How old is Ann's dog?", "answer": "two", "evidence": ["D1:3"], "category": 4},
        {"question": "What has Ann done with Rex?", "answer": "beach", "evidence": ["D1:1; D2:2"], "category": 1},
        {"question": "What did Bob bake?", "answer": "bread", "evidence": ["D:1:04"], "category": 4},
        {"question": "What did Ann bake?", "adversarial_answer": "bread", "evidence": ["D1:4"], "category": 5},
        {"question": "Unanswerable?", "answer": "n/a", "evidence": [], "category": 3},
    ]
    return [
        {"sample_id": "tiny-1", "conversation": conv, "qa": qa},
        {"sample_id": "tiny-2", "conversation": conv, "qa": qa},
    ]


def _run_benchmark(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "locomo_recall.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])


def test_benchmark_script_end_to_end_on_a_tiny_file(tmp_path):
    path = tmp_path / "tiny_locomo.json"
    path.write_text(json.dumps(_locomo_sample()))
    out = _run_benchmark("--data", str(path), "--embedder", "hashing", "--limit", "1", "--ablations")
    for key in (
        "recall@5",
        "recall@10",
        "recall@20",
        "by_category",
        "tokens_mean",
        "tokens_10_turns",
        "bm25_recall@10",
        "ingest_s",
        "query_ms_mean",
        "ablations",
    ):
        assert key in out
    assert out["conversations"] == 1 and out["questions"] == 5 and out["questions_skipped"] == 1
    assert out["recall@10"] == 1.0  # six turns: everything is in the top 10
    assert set(out["by_category"]) == {"multi-hop", "temporal", "single-hop", "adversarial"}
    assert out["by_category"]["multi-hop"]["n"] == 1
    assert out["tokens_mean"] <= sum([11, 7, 9, 8, 8, 7]) + 10  # all six turns
    assert {"dense_only", "first_pass", "-neighbours"} <= set(out["ablations"])
    no_nb = _run_benchmark("--data", str(path), "--embedder", "hashing", "--no-neighbours", "--no-contextual")
    assert "neighbours" not in no_nb["steps"] and no_nb["conversations"] == 2 and not no_nb["contextual"]


def test_benchmark_script_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "locomo_recall.py"), "--data", str(bad), "--embedder", "hashing"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "not a LoCoMo file" in proc.stderr


@pytest.mark.skipif(not SHARED_LOCOMO.exists(), reason="the shared LoCoMo file is not here")
def test_benchmark_script_on_the_shared_locomo_file():
    out = _run_benchmark("--data", str(SHARED_LOCOMO), "--embedder", "hashing", "--limit", "1")
    assert out["conversations"] == 1 and out["questions"] > 150
    assert out["recall@10"] > out["bm25_recall@10"]
    assert out["tokens_mean"] <= 1.1 * out["tokens_10_turns"]
    # answers written out in an evidence turn: what @10 returns holds most of them, trimmed or not
    assert out["answer_questions"] > 20
    assert 0.5 < out["answer_kept@10"] <= out["answer_in_turns@10"] <= 1.0
    assert out["trim"]["lexical"] == 1.0
