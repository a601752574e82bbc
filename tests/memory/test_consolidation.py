"""consolidate(): merges, supersessions with history, decay scores, episode summaries, summarizers, events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lumina_lab.errors import ProviderError, ValidationError
from lumina_lab.events import InProcessBus
from lumina_lab.memory.consolidation import (
    ConsolidationReport,
    ExtractiveSummarizer,
    LLMSummarizer,
    MemoryItem,
    Summarizer,
    consolidate,
    recency_weight,
)
from lumina_lab.memory.embeddings import HashingEmbedder

DAY = 86400.0
NOW = 1000 * DAY


def item(id_: str, text: str, days_ago: float, **kw) -> MemoryItem:
    return MemoryItem(id_, text, ts=NOW - days_ago * DAY, **kw)


def test_near_duplicates_are_merged_into_the_oldest_with_history():
    items = [
        item("a", "Bob adopted a beagle puppy named Rex.", 10, importance=0.4),
        item("b", "Lunch is at noon.", 9),
        item("c", "bob adopted a beagle puppy named rex", 5, importance=0.9),
        item("d", "Bob adopted a beagle puppy named Rex!!", 1, importance=0.2),
    ]
    report = consolidate(items, now=NOW)
    (merge,) = report.merges
    assert merge.kept_id == "a" and merge.merged_ids == ["c", "d"] and merge.similarity == 1.0
    assert "same text" in merge.reason
    kept = report.get("a")
    assert kept.ts == NOW - DAY and kept.importance == 0.9 and kept.metadata["mentions"] == 3
    assert [h["id"] for h in kept.history] == ["c", "d"] and kept.history[0]["op"] == "merged"
    assert [it.id for it in report.items] == ["a", "b"] and report.removed_ids == ["c", "d"]
    assert items[0].ts == NOW - 10 * DAY and items[0].history == []  # inputs untouched


def test_vectors_decide_near_duplicates_by_threshold():
    v = np.array([1.0, 0.0, 0.0])
    w = np.array([0.95, np.sqrt(1 - 0.95**2), 0.0])  # cosine 0.95
    items = [MemoryItem("x", "one", vector=v, ts=1), MemoryItem("y", "two", vector=w, ts=2)]
    assert [m.merged_ids for m in consolidate(items, now=10).merges] == [["y"]]
    assert consolidate(items, now=10, duplicate_threshold=0.96).merges == []
    # different owners never merge
    items[1].metadata["speaker"] = "Bob"
    assert consolidate(items, now=10).merges == []


def test_a_newer_conflicting_fact_supersedes_the_old_one_which_stays_as_history():
    items = [
        item("paris", "I live in Paris", 300, metadata={"speaker": "Ann"}),
        item("rome", "I live in Rome", 250, metadata={"speaker": "Bob"}),  # another person
        item("berlin", "I moved to Berlin last spring.", 100, metadata={"speaker": "Ann"}),
        item("tokyo", "Ann: I'm now living in Tokyo", 2),
    ]
    report = consolidate(items, now=NOW)
    assert [(s.old_id, s.new_id) for s in report.supersessions] == [("paris", "berlin"), ("berlin", "tokyo")]
    assert "location" in report.supersessions[0].reason and "'paris' -> 'berlin'" in report.supersessions[0].reason
    assert report.get("paris").superseded_by == "berlin" and report.get("berlin").superseded_by == "tokyo"
    assert [it.id for it in report.active] == ["rome", "tokyo"]
    tokyo = report.get("tokyo")
    assert [h["id"] for h in tokyo.history] == ["paris", "berlin"]  # the whole chain
    assert tokyo.history[-1]["text"] == "I moved to Berlin last spring."
    assert report.superseded_ids == ["paris", "berlin"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("My favorite color is blue.", "My favorite color is green."),
        ("The team meeting is on Tuesday at 3pm.", "The team meeting is on Thursday at 3pm."),
        ("I like coffee.", "I don't like coffee."),
        ("I work at Google.", "I started a new job at Microsoft."),
        ("I am 30 years old.", "I am 31 years old."),
    ],
)
def test_kinds_of_change_that_supersede(old, new):
    report = consolidate([item("old", old, 20), item("new", new, 1)], now=NOW)
    assert [(s.old_id, s.new_id) for s in report.supersessions] == [("old", "new")], report.supersessions


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("I went to Rome in May.", "I went to Paris in June."),  # two events, both true
        ("I have a dog named Max.", "I have a cat named Luna."),  # both can hold
        ("Python is a programming language.", "Python is a programming language used widely."),  # elaboration
        ("The sky is blue.", "Grass is green."),
        ("I joined a book club.", "I joined a running group."),  # both can hold
        ("His name is Ned.", "His name is Kyle."),  # "his" may be two people
    ],
)
def test_compatible_statements_do_not_supersede(old, new):
    assert consolidate([item("old", old, 20), item("new", new, 1)], now=NOW).supersessions == []


def test_the_older_statement_never_supersedes_the_newer_one_and_supersede_can_be_off_or_custom():
    items = [item("new", "I live in Oslo", 1), item("old", "I live in Lima", 50)]  # input order is not time order
    report = consolidate(items, now=NOW)
    assert [(s.old_id, s.new_id) for s in report.supersessions] == [("old", "new")]
    assert consolidate(items, now=NOW, supersede=False).supersessions == []
    seen = []

    def judge(old, new):
        seen.append((old.id, new.id))
        return "custom says so"

    report = consolidate(items, now=NOW, supersede=judge)
    assert seen == [("old", "new")] and report.supersessions[0].reason == "custom says so"


def test_scores_decay_by_half_each_half_life():
    assert recency_weight(NOW, NOW, 30) == 1.0
    assert recency_weight(NOW - 30 * DAY, NOW, 30) == pytest.approx(0.5)
    assert recency_weight(NOW - 60 * DAY, NOW, 30) == pytest.approx(0.25)
    assert recency_weight(NOW + DAY, NOW, 30) == 1.0  # the future counts as now
    assert recency_weight(0.0, NOW, math.inf) == 1.0
    items = [
        item("fresh", "Fresh note about invoices.", 0, importance=0.5),
        item("month", "A month-old note about printers.", 30, importance=0.5),
        item("vital", "A vital but old note about passwords.", 60, importance=4.0),
    ]
    report = consolidate(items, now=NOW, half_life_days=30)
    assert report.scores == pytest.approx({"fresh": 0.5, "month": 0.25, "vital": 1.0})
    assert [it.id for it in report.ranked()] == ["vital", "fresh", "month"]
    with pytest.raises(ValidationError, match="half_life_days"):
        recency_weight(0, 1, 0)


def session(n: int, days_ago: float, texts: list[str]) -> list[MemoryItem]:
    return [
        MemoryItem(f"s{n}-{k}", t, ts=NOW - days_ago * DAY + k, metadata={"session": n}) for k, t in enumerate(texts)
    ]


HIKE = [
    "Ann: We hiked up to the lake on Saturday morning.",
    "Bob: The lake water was freezing cold.",
    "Ann: We saw two eagles near the shore of the lake.",
    "Bob: My boots were soaked by the end of the hike.",
]


def test_old_episodes_become_semantic_summaries_with_provenance():
    items = (
        session(1, 40, HIKE)
        + session(2, 35, ["Ann: Just one line."])
        + session(3, 1, ["Ann: New job tomorrow!", "Bob: Good luck!"])
    )
    report = consolidate(items, now=NOW, summarize_older_than_days=30, summarizer=ExtractiveSummarizer(max_tokens=30))
    (summary,) = report.summaries  # session 2 is too small, session 3 too recent
    assert summary.level == "semantic" and summary.metadata["source_ids"] == [f"s1-{k}" for k in range(4)]
    assert summary.metadata["episode"] == "1" and summary.metadata["summarizer"] == "extractive"
    assert 0 < len(summary.text) <= 4 * 30 and "lake" in summary.text
    assert summary.ts == items[3].ts and summary.vector is not None
    assert summary in report.items and all(
        report.get(f"s1-{k}").metadata["summarized_into"] == summary.id for k in range(4)
    )
    assert report.df()["action"].tolist() == ["summarize"]
    # running again does not summarise the same episode twice
    assert consolidate(report.items, now=NOW, summarize_older_than_days=30).summaries == []


def test_llm_summarizer_uses_any_langchain_chat_model():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    model = FakeListChatModel(responses=["Ann and Bob hiked to a cold lake and saw eagles."])
    summarizer = LLMSummarizer(model)
    assert isinstance(summarizer, Summarizer)
    messages = summarizer.messages(HIKE)
    assert messages[0].type == "system" and messages[1].content.count("\n- ") == 3
    report = consolidate(session(1, 40, HIKE), now=NOW, summarize_older_than_days=30, summarizer=summarizer)
    assert report.summaries[0].text == "Ann and Bob hiked to a cold lake and saw eagles."
    assert report.summaries[0].metadata["summarizer"] == "llm:FakeListChatModel"


async def test_llm_summarizer_async_and_failures():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    assert await LLMSummarizer(FakeListChatModel(responses=["short."])).asummarize(["a", "b"]) == "short."

    class Broken:
        def invoke(self, messages):
            raise RuntimeError("model offline")

    with pytest.raises(ProviderError, match="model offline"):
        LLMSummarizer(Broken()).summarize(["a"])
    assert LLMSummarizer(Broken(), fallback=ExtractiveSummarizer()).summarize(["Only sentence."]) == "Only sentence."
    with pytest.raises(ProviderError, match="empty summary"):
        LLMSummarizer(FakeListChatModel(responses=["  "])).summarize(["a"])
    with pytest.raises(ValidationError, match="invoke"):
        LLMSummarizer(object())


def test_extractive_summary_is_deterministic_and_within_budget():
    s = ExtractiveSummarizer(max_tokens=20)
    texts = [t.split(": ", 1)[1] for t in HIKE] * 2
    a, b = s.summarize(texts), s.summarize(texts)
    assert a == b and 0 < len(a) <= 80
    assert s.summarize([]) == "" and s.summarize(["  "]) == ""


def test_items_without_vectors_are_embedded_and_mixed_inputs_need_the_embedder():
    emb = HashingEmbedder(dim=64)
    with_vec = MemoryItem("v", "alpha beta", vector=emb.embed_one("alpha beta"), ts=1)
    without = MemoryItem("w", "alpha beta", ts=2)
    with pytest.raises(ValidationError, match="pass embedder="):
        consolidate([with_vec, without], now=10)
    report = consolidate([with_vec, without], now=10, embedder=emb)
    assert report.removed_ids == ["w"]


def test_an_event_reports_the_consolidation():
    bus = InProcessBus()
    seen = []
    bus.subscribe("memory.consolidated", seen.append)
    items = [item("a", "I live in Paris", 9), item("b", "I live in Paris.", 8), item("c", "I moved to Rome", 1)]
    consolidate(items, now=NOW, bus=bus)
    bus.drain_sync()
    bus.close_sync()
    (ev,) = seen
    assert (ev.type, ev.items, ev.merged, ev.superseded, ev.summarized, ev.active) == (
        "memory.consolidated",
        3,
        1,
        1,
        0,
        1,
    )


def test_report_renders_and_tabulates():
    report = consolidate([item("a", "I live in Paris", 9), item("b", "I live in Rome", 1)], now=NOW)
    assert isinstance(report, ConsolidationReport)
    html = report._repr_html_()
    assert "supersede" in html and "1 supersessions" in html
    df = report.df()
    assert df.to_dict("records")[0]["action"] == "supersede" and df.to_dict("records")[0]["other_ids"] == ["a"]
    frame = report.items_df()
    assert frame["id"].tolist() == ["a", "b"] and frame["superseded_by"].isna().tolist() == [False, True]
    assert "ConsolidationReport(items=2, active=1" in repr(report)
    assert consolidate([], now=NOW).items == []


def test_bad_input_is_refused_with_clear_errors():
    with pytest.raises(ValidationError, match="twice"):
        consolidate([item("a", "x", 1), item("a", "y", 2)])
    with pytest.raises(ValidationError, match="importance"):
        consolidate([item("a", "x", 1, importance=-1)])
    with pytest.raises(ValidationError, match="level"):
        consolidate([item("a", "x", 1, level="working")])
    with pytest.raises(ValidationError, match="ts"):
        consolidate([MemoryItem("a", "x", ts=float("nan"))])
    with pytest.raises(ValidationError, match="not a MemoryItem"):
        consolidate(["just text"])
    with pytest.raises(ValidationError, match="duplicate_threshold"):
        consolidate([item("a", "x", 1)], duplicate_threshold=1.5)
    with pytest.raises(ValidationError, match="half_life_days"):
        consolidate([item("a", "x", 1)], half_life_days=0)
    with pytest.raises(ValidationError, match="summarize_older_than_days"):
        consolidate([item("a", "x", 1)], summarize_older_than_days=-3)
    with pytest.raises(ValidationError, match="summarize"):
        consolidate([item("a", "x", 1)], summarizer="gpt")
    with pytest.raises(ValidationError, match="shapes"):
        consolidate([MemoryItem("a", "x", vector=np.ones(3)), MemoryItem("b", "y", vector=np.ones(4))])
    with pytest.raises(ValidationError, match="max_tokens"):
        ExtractiveSummarizer(max_tokens=0)
