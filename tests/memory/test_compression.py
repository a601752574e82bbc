"""compress(): budget adherence, content-type units, scoring and strategies; the evidence-retention evaluator."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.events import InProcessBus
from lumina_lab.memory.chunking import estimate_tokens
from lumina_lab.memory.compression import (
    STRATEGIES,
    CompressionEvaluator,
    compress,
    evaluate_compression,
    plot_compression_curve,
)


@dataclass
class Hit:
    id: str
    text: str
    score: float | None = None
    ts: float | None = None


DIALOGUE = [
    Hit("t1", "Alice: Hi Bob! How was your weekend?", ts=1),
    Hit("t2", "Bob: Great, I adopted a puppy named Rex on Saturday.", ts=2),
    Hit("t3", "Alice: Oh lovely. What breed is Rex?", ts=3),
    Hit("t4", "Bob: Rex is a beagle, very noisy at night.", ts=4),
    Hit("t5", "Alice: I spent Sunday repainting the kitchen yellow.", ts=5),
    Hit("t6", "Bob: Yellow sounds bright. Did it take long?", ts=6),
    Hit("t7", "Alice: Most of the day, the ceiling was the worst part.", ts=7),
]


def test_budget_is_never_exceeded_over_many_random_inputs():
    rng = random.Random(7)
    vocab = ["the", "cat", "dog", "runs", "fast.", "slow!", "Alice:", "Bob:", "|", ",", ";", "def", "x():"]
    vocab += ["return", "1", "\n", "\n\n", "#", "heading", "```", "table", "\t"]
    for _ in range(250):
        items = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 50))) for _ in range(rng.randint(1, 7))]
        budget = rng.randint(0, 100)
        query = rng.choice([None, "cat dog", "def return"])
        strategy = rng.choice(STRATEGIES)
        out = compress(items, query, budget, strategy=strategy, lambda_=rng.random(), seed=rng.randint(0, 9))
        assert out.tokens == estimate_tokens(out.text) <= budget
        for item_id, (s, e) in out.kept:  # every kept span is verbatim in the output
            assert items[item_id][s:e] in out.text


def test_custom_token_counter_is_respected():
    words = lambda text: len(text.split())  # noqa: E731
    items = [f"Sentence number {k} talks about topic {k % 3}." for k in range(30)]
    for budget in (0, 5, 17, 40, 1000):
        out = compress(items, "topic 2", budget, length=words)
        assert words(out.text) == out.tokens <= budget


def test_everything_is_kept_in_order_when_it_fits():
    out = compress(DIALOGUE, "anything", 10_000)
    assert out.text == "\n".join(h.text for h in DIALOGUE)
    assert out.ratio == 1.0 and out.dropped == [] and out.kept_ids == [h.id for h in DIALOGUE]


def test_dialogue_keeps_whole_turns_with_their_speaker_and_the_relevant_one():
    out = compress(DIALOGUE, "Which dog is noisy at night?", 30)
    assert out.kind == "dialogue"
    kept_texts = out.text.split("\n")
    assert all(t in {h.text for h in DIALOGUE} for t in kept_texts)  # whole turns only
    assert "t4" in out.kept_ids  # "Rex is a beagle"
    assert out.tokens <= 30 and set(out.dropped) == {h.id for h in DIALOGUE} - set(out.kept_ids)
    assert [i for i in out.kept_ids] == sorted(out.kept_ids, key=lambda i: int(i[1:]))  # original order


def test_prose_is_cut_into_sentences_and_the_relevant_sentence_survives():
    doc = (
        "Lumina routes requests between providers. It keeps a ledger of costs. "
        "The circuit breaker opens after five failures in a row. Dashboards subscribe to events."
    )
    out = compress([doc], "when does the circuit breaker open?", 16)
    assert out.kind == "prose"
    assert out.text == "The circuit breaker opens after five failures in a row."
    ((item_id, (s, e)),) = out.kept
    assert item_id == 0 and doc[s:e] == out.text


def test_code_keeps_whole_blocks_or_their_signatures():
    code = (
        "import os\n\n\n"
        "def load(path):\n"
        '    """Read a file."""\n'
        "    with open(path) as f:\n"
        "        return f.read()\n\n\n"
        "@cache\n"
        "def parse_config(text, *, strict=True):\n"
        '    """Parse the configuration and validate every key against the schema."""\n'
        "    data = {}\n"
        "    for line in text.splitlines():\n"
        "        key, _, value = line.partition('=')\n"
        "        data[key.strip()] = value.strip()\n"
        "    return data\n"
    )
    out = compress([code], "parse config", 100)
    assert out.kind == "code"
    assert "def parse_config(text, *, strict=True):" in out.text and "return data" in out.text
    small = compress([code], "parse config", 14)
    assert "@cache\ndef parse_config(text, *, strict=True):" in small.text  # the signature only
    assert "return data" not in small.text and small.tokens <= 14


def test_tables_keep_the_header_and_the_matching_rows():
    table = "name,city,age\n" + "\n".join(
        f"{n},{c},{a}"
        for n, c, a in [("Ann", "Paris", 31), ("Bob", "Oslo", 42), ("Cid", "Rome", 28), ("Dee", "Lima", 55)]
    )
    out = compress([table], "who lives in Rome?", 8)
    assert out.kind == "table"
    assert out.text == "name,city,age\nCid,Rome,28"
    assert out.kept[0] == (0, (0, 13))  # header span first


def test_mmr_leaves_out_repeats_that_importance_only_keeps():
    items = [
        "The deploy failed because the database password expired.",
        "The deploy failed because the database password expired!",
        "Rotating the password every 90 days is the new policy.",
        "Lunch is at noon on Fridays.",
    ]
    budget = estimate_tokens(items[0]) + estimate_tokens(items[2]) + 1
    mmr = compress(items, "why did the deploy fail and what is the password policy?", budget, lambda_=0.5)
    assert 2 in mmr.kept_ids and len({0, 1} & set(mmr.kept_ids)) == 1  # the repeat is left out
    greedy = compress(items, "why did the deploy fail?", budget, strategy="importance")
    assert set(greedy.kept_ids) == {0, 1}  # both copies


def test_item_scores_and_recency_shift_importance():
    items = [
        Hit("old", "The office moved to the harbour.", score=0.1, ts=0),
        Hit("new", "The office moved uptown.", score=0.9, ts=9),
    ]
    out = compress(items, "where is the office?", 8, weights={"relevance": 0.0, "score": 1.0, "recency": 0.0})
    assert out.kept_ids == ["new"]
    recent = compress(items, None, 8, strategy="recent")
    assert recent.kept_ids == ["new"]
    first = compress(items, None, 9, strategy="first")
    assert first.kept_ids == ["old"]


def test_random_strategy_is_reproducible_by_seed():
    items = [f"Fact {k}: the value is {k * 7}." for k in range(20)]
    a = compress(items, None, 30, strategy="random", seed=3)
    b = compress(items, None, 30, strategy="random", seed=3)
    assert a.kept == b.kept


def test_dicts_strings_and_objects_are_accepted():
    out = compress([{"id": "x", "text": "alpha beta."}, {"text": "gamma delta."}], "beta", 100)
    assert out.kept_ids == ["x", 1]
    assert "Compressed(tokens=" in repr(out) and "<pre" in out._repr_html_()
    assert out.coverage("x") == 1.0 and out.coverage("missing") == 0.0


def test_an_event_reports_the_compression():
    bus = InProcessBus()
    seen = []
    bus.subscribe("memory.compressed", seen.append)
    out = compress(DIALOGUE, "puppy", 20, bus=bus)
    bus.drain_sync()
    bus.close_sync()
    (ev,) = seen
    assert ev.type == "memory.compressed" and ev.tokens_out == out.tokens <= ev.budget_tokens == 20
    assert ev.items == 7 and ev.kind == "dialogue" and ev.strategy == "mmr" and ev.query


def test_bad_input_is_refused_with_clear_errors():
    with pytest.raises(ValidationError, match="empty"):
        compress([], "q", 10)
    with pytest.raises(ValidationError, match="budget_tokens"):
        compress(["a"], "q", -1)
    with pytest.raises(ValidationError, match="budget_tokens"):
        compress(["a"], "q", 2.5)
    with pytest.raises(ValidationError, match="'mmr', 'importance'"):
        compress(["a"], "q", 10, strategy="best")
    with pytest.raises(ValidationError, match="lambda_"):
        compress(["a"], "q", 10, lambda_=2)
    with pytest.raises(ValidationError, match="kind"):
        compress(["a"], "q", 10, kind="poetry")
    with pytest.raises(ValidationError, match=r"without a string \.text"):
        compress([3], "q", 10)
    with pytest.raises(ValidationError, match="twice"):
        compress([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}], "q", 10)
    with pytest.raises(ValidationError, match="list"):
        compress("just a string", "q", 10)
    with pytest.raises(ValidationError, match="unknown component"):
        compress(["a"], "q", 10, weights={"beauty": 1.0})
    assert compress(["some text"], "q", 0).text == ""


# ---------------------------------------------------------------------- evaluator


def synthetic_examples(n: int = 12, seed: int = 0):
    """Dialogues of filler turns with one evidence turn that answers the question, at a random place."""
    rng = random.Random(seed)
    fillers = [
        "Sounds good, talk soon.",
        "Haha that is so funny.",
        "I have been busy with work lately.",
        "The weather has been awful this week.",
        "Did you watch the game last night?",
        "I need more coffee today.",
        "We should catch up properly sometime.",
        "My phone battery keeps dying.",
    ]
    facts = [
        ("Where did Maya travel in June?", "I flew to Kyoto in June to see the temples."),
        ("When did Maya start learning the cello?", "I started learning the cello last winter."),
        ("What is the name of Maya's cat?", "My cat Pickles knocked over a vase again."),
        ("Which book club novel did Maya finish?", "I finally finished Middlemarch for the book club."),
    ]
    out = []
    for k in range(n):
        question, fact = facts[k % len(facts)]
        turns = [f"{rng.choice(['Maya', 'Leo'])}: {rng.choice(fillers)}" for _ in range(20)]
        where = rng.randrange(20)
        turns[where] = f"Maya: {fact}"
        items = [{"id": f"d{j}", "text": t, "ts": float(j)} for j, t in enumerate(turns)]
        out.append((question, items, [f"d{where}"]))
    return out


def test_evaluator_curve_is_monotone_and_beats_the_baselines():
    df = evaluate_compression(synthetic_examples(), ratios=(1.0, 0.5, 0.25, 0.1))
    assert list(df.columns) == [
        "method",
        "ratio",
        "evidence_retained",
        "all_evidence",
        "tokens",
        "budget_tokens",
        "actual_ratio",
        "examples",
    ]
    assert df["method"].unique().tolist() == ["mmr", "truncate-oldest", "random"]
    ours = df[df["method"] == "mmr"].set_index("ratio")["evidence_retained"]
    assert ours[1.0] == 1.0 and ours[0.1] >= 0.9  # the answer turn survives even at 10%
    assert ours.is_monotonic_increasing or ours.sort_index().diff().dropna().min() >= -0.1
    for baseline in ("truncate-oldest", "random"):
        theirs = df[df["method"] == baseline].set_index("ratio")["evidence_retained"]
        assert theirs[1.0] == 1.0
        for r in (0.5, 0.25, 0.1):
            assert ours[r] > theirs[r]
    assert (df["tokens"] <= df["budget_tokens"]).all() and (df["examples"] == 12).all()


def test_evaluator_accepts_evidence_strings_and_dicts():
    examples = [
        {
            "query": "what colour is the sky?",
            "items": ["The sky is blue.", "Grass is green."],
            "evidence": ["sky is BLUE"],
        },
        ("no evidence here", ["x"], []),  # skipped
    ]
    ev = CompressionEvaluator(ratios=(1.0, 0.5), baselines=["truncate-newest"])
    df = ev.evaluate(examples)
    assert df.set_index(["method", "ratio"]).loc[("mmr", 0.5), "evidence_retained"] == 1.0
    per = ev.per_example(examples)
    assert set(per["example"]) == {0} and len(per) == 4
    assert "CompressionEvaluator(" in repr(ev)


def test_plot_returns_the_frame_when_no_plotting_library_is_installed(monkeypatch):
    from lumina_lab.memory import compression

    df = evaluate_compression(synthetic_examples(2), ratios=(1.0, 0.5), baselines=())
    monkeypatch.setattr(compression, "_plot_backend", lambda: None)
    assert plot_compression_curve(df) is df
    with pytest.raises(ValidationError, match="lacks column"):
        plot_compression_curve(pd.DataFrame({"x": [1]}))


@pytest.mark.slow  # importing hvplot takes seconds
def test_plot_draws_one_line_per_method_with_hvplot():
    pytest.importorskip("holoviews")
    pytest.importorskip("hvplot")
    df = evaluate_compression(synthetic_examples(2), ratios=(1.0, 0.5))
    plot = plot_compression_curve(df)
    import holoviews as hv

    assert isinstance(plot, hv.core.overlay.NdOverlay | hv.Overlay)
    assert len(plot) == 3  # mmr, truncate-oldest, random


def test_evaluator_bad_input():
    with pytest.raises(ValidationError, match="ratio"):
        CompressionEvaluator(ratios=(1.5,))
    with pytest.raises(ValidationError, match="ratio"):
        CompressionEvaluator(ratios=(0.0,))
    with pytest.raises(ValidationError, match="empty"):
        CompressionEvaluator(ratios=())
    with pytest.raises(ValidationError, match="baseline"):
        CompressionEvaluator(baselines=["oracle"])
    with pytest.raises(ValidationError, match="no example has evidence"):
        evaluate_compression([("q", ["a"], [])])
    with pytest.raises(ValidationError, match="example 0"):
        evaluate_compression([("only two", ["a"])])
