"""The ``trim`` step: within a token budget, a long relevant turn comes back cut to its relevant sentences."""

from __future__ import annotations

import pytest

from lumina_lab.memory.chunking import estimate_tokens
from lumina_lab.memory.collection import VectorMemory
from lumina_lab.memory.conversation import ConversationMemory
from lumina_lab.memory.embeddings import HashingEmbedder
from lumina_lab.memory.retrieval import STEPS, RecallConfig

FILLER = "We talked about the weather and the traffic on the way home for a long while. "
LONG = (
    "Ann: " + FILLER * 3 + "My sister Lucy adopted a beagle puppy called Rex in Lisbon last spring. " + FILLER * 3
).strip()
OTHERS = [
    ("Bob", "Nice, how was the drive back?"),
    ("Ann", "It was fine, a bit slow."),
    ("Bob", "Did you watch the match on Sunday?"),
]


def make(config: RecallConfig | None = None) -> ConversationMemory:
    mem = ConversationMemory(VectorMemory(backend="memory", embedder=HashingEmbedder(dim=256)), config=config)
    mem.remember_many(
        [{"speaker": "Ann", "text": LONG.removeprefix("Ann: "), "turn_id": "t0"}]
        + [{"speaker": s, "text": t, "turn_id": f"t{n}"} for n, (s, t) in enumerate(OTHERS, 1)],
        session="s1",
        ts="2023-05-08",
    )
    return mem


QUESTION = "What puppy did Lucy adopt in Lisbon?"


def test_trim_is_a_step_on_by_default():
    assert "trim" in STEPS and RecallConfig().trim and "trim" in RecallConfig().steps
    assert not RecallConfig().without("trim").trim


def test_long_relevant_turn_comes_back_trimmed_to_its_relevant_sentence_within_budget():
    mem = make()
    budget = 30  # room for the relevant sentence, not for a second one
    assert estimate_tokens(LONG) > budget
    rec = mem.recall(QUESTION, k=3, budget_tokens=budget)
    assert rec.tokens <= budget
    top = next(r for r in rec if r.id == "t0")
    assert top.trimmed
    assert top.text == "Ann: My sister Lucy adopted a beagle puppy called Rex in Lisbon last spring."
    assert top.tokens < estimate_tokens(LONG)
    # provenance and metadata are those of the whole turn
    assert top.provenance["turn_id"] == "t0" and top.provenance["speaker"] == "Ann"
    assert top.metadata["session"] == "s1"
    assert not any(r.trimmed for r in rec if r.id != "t0")  # short turns that fit stay whole


def test_switched_off_the_old_packing_skips_the_long_turn():
    mem = make(RecallConfig().without("trim"))
    rec = mem.recall(QUESTION, k=3, budget_tokens=40)
    assert "t0" not in rec.ids and rec.tokens <= 40
    assert not any(r.trimmed for r in rec)
    # per call as well
    rec2 = make().recall(QUESTION, k=3, budget_tokens=40, config=RecallConfig().without("trim"))
    assert rec2.ids == rec.ids and [r.text for r in rec2] == [r.text for r in rec]


def test_whole_turns_that_fit_are_not_trimmed_and_unbudgeted_recall_is_unchanged():
    mem = make()
    rec = mem.recall(QUESTION, k=4, budget_tokens=10_000)
    assert not any(r.trimmed for r in rec) and LONG in [r.text for r in rec]
    plain = mem.recall(QUESTION, k=4)
    assert not any(r.trimmed for r in plain) and LONG in [r.text for r in plain]


def test_trim_sentences_bounds_the_sentences_kept():
    cfg = RecallConfig().with_(trim_sentences=2)
    rec = make(cfg).recall(QUESTION, k=1, budget_tokens=60)
    assert rec[0].id == "t0" and rec[0].trimmed and rec[0].tokens <= 60
    assert "Lucy adopted a beagle" in rec[0].text and rec[0].text.startswith("Ann: ")
    assert rec[0].text.count(".") == 2  # two sentences, in text order


def test_trim_share_trims_long_turns_to_their_share_so_more_items_fit():
    cfg = RecallConfig().with_(trim_share=1.0, trim_sentences=1)
    rec = make(cfg).recall(QUESTION, k=4, budget_tokens=100)
    assert rec.tokens <= 100 and len(rec) == 4
    t0 = next(r for r in rec if r.id == "t0")
    assert t0.trimmed and "Lucy" in t0.text


@pytest.mark.parametrize("budget", [1, 5, 12, 25, 40, 80])
def test_trimmed_recall_and_context_stay_within_budget(budget):
    mem = make()
    assert mem.recall(QUESTION, k=4, budget_tokens=budget).tokens <= budget
    block = mem.context(QUESTION, budget_tokens=budget)
    assert estimate_tokens(block) <= budget


def test_context_takes_the_trimmed_turn_and_not_without_trim():
    mem = make()
    block = mem.context(QUESTION, budget_tokens=40, compress=False)
    assert "Lucy adopted a beagle puppy called Rex" in block and FILLER.strip() not in block
    assert estimate_tokens(block) <= 40
    off = mem.context(QUESTION, budget_tokens=40, compress=False, config=RecallConfig().without("trim"))
    assert "Lucy" not in off


def test_bad_trim_sentences_is_refused():
    from lumina_lab.errors import ValidationError

    with pytest.raises(ValidationError):
        RecallConfig(trim_sentences=0)


def test_a_trimmed_turn_keeps_the_sentence_that_shares_the_questions_terms():
    """Sentence relevance is the cosine plus ``trim_lexical`` x the share of the question's terms: a
    sentence that restates the question's context (closest in embedding) must not crowd out the one
    holding its words."""
    import numpy as np

    mem = make()
    parts = [p for p, _ in mem.retriever.sentence_relevance("t0", LONG, QUESTION)]
    answer = parts.index("My sister Lucy adopted a beagle puppy called Rex in Lisbon last spring.")
    qv = mem._embed_query(QUESTION)
    # stored vectors in which a filler sentence (cosine 0.8), not the answer (0.2), is the question's nearest
    orth = np.random.default_rng(0).normal(size=qv.shape)
    orth -= (orth @ qv) / (qv @ qv) * qv
    orth /= np.linalg.norm(orth)
    unit = qv / np.linalg.norm(qv)
    fake = np.tile(orth, (len(parts), 1)).astype(np.float32)
    fake[0] = 0.8 * unit + 0.6 * orth
    fake[answer] = 0.2 * unit + np.sqrt(1 - 0.04) * orth
    mem.retriever.add_sentence_vectors({"t0": fake})
    by_cosine = mem.retriever.sentence_relevance("t0", LONG, QUESTION, qv, lexical=0.0)
    blended = mem.retriever.sentence_relevance("t0", LONG, QUESTION, qv)
    assert max(range(len(parts)), key=lambda j: by_cosine[j][1]) == 0
    assert max(range(len(parts)), key=lambda j: blended[j][1]) == answer
    rec = mem.recall(QUESTION, k=3, budget_tokens=30)
    assert next(r for r in rec if r.id == "t0").text.endswith("in Lisbon last spring.")
    off = mem.recall(QUESTION, k=3, budget_tokens=30, config=RecallConfig(trim_lexical=0.0))
    assert "Lisbon" not in next((r.text for r in off if r.id == "t0"), "")


def test_top_k_that_fit_whole_are_not_trimmed_even_when_one_is_long():
    mem = make()
    whole = mem.recall(QUESTION, k=4)
    budget = whole.tokens  # exactly what the four whole turns need
    assert estimate_tokens(LONG) > 1.25 * budget / 4  # longer than its share: the old packing cut it anyway
    rec = mem.recall(QUESTION, k=4, budget_tokens=budget)
    assert rec.ids == whole.ids and not any(r.trimmed for r in rec) and rec.tokens <= budget


def test_only_the_longest_turn_is_cut_and_only_as_far_as_needed():
    medium = "Bob: " + FILLER + "Lucy said the beagle puppy already knows his name. " + FILLER
    mem = ConversationMemory(VectorMemory(backend="memory", embedder=HashingEmbedder(dim=256)))
    mem.remember_many(
        [
            {"speaker": "Ann", "text": LONG.removeprefix("Ann: "), "turn_id": "t0"},
            {"speaker": "Bob", "text": medium.removeprefix("Bob: "), "turn_id": "t1"},
            {"speaker": "Ann", "text": "Lucy adopted him in Lisbon.", "turn_id": "t2"},
        ],
        session="s1",
        ts="2023-05-08",
    )
    whole = mem.recall(QUESTION, k=3)
    assert set(whole.ids) == {"t0", "t1", "t2"}
    budget = whole.tokens - 10  # ten tokens too many: cutting the longest turn is enough
    rec = mem.recall(QUESTION, k=3, budget_tokens=budget)
    assert set(rec.ids) == {"t0", "t1", "t2"} and rec.tokens <= budget
    assert [r.id for r in rec if r.trimmed] == ["t0"]
    assert next(r for r in rec if r.id == "t1").text == medium
