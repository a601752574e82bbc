"""TopicModel: online clustering with cosine threshold, merging, c-TF-IDF labels, removal, persistence."""

from __future__ import annotations

import doctest
import importlib
import json

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory.topics import STOPWORDS, Topic, TopicModel, terms_of

DIM = 32
WORDS = {
    "travel": ["flight", "hotel", "rome", "lisbon", "passport", "luggage"],
    "cooking": ["pasta", "basil", "sourdough", "oven", "recipe", "tomato"],
    "code": ["python", "parser", "bug", "function", "tests", "refactor"],
}


def clustered(n_per: int = 12, noise: float = 0.25, seed: int = 0):
    """Three well-separated directions with noisy members, each with texts of its own vocabulary."""
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM)[:3] * 3.0
    ids, vecs, texts, truth = [], [], [], []
    for c, (name, words) in enumerate(WORDS.items()):
        for k in range(n_per):
            v = centres[c] + noise * rng.standard_normal(DIM)
            ids.append(f"{name}-{k}")
            vecs.append(v / np.linalg.norm(v))
            picked = rng.choice(words, size=3, replace=False)
            texts.append(f"The {picked[0]} and the {picked[1]} with {picked[2]}")
            truth.append(name)
    order = rng.permutation(len(ids))
    return [ids[i] for i in order], np.array(vecs)[order], [texts[i] for i in order], [truth[i] for i in order]


def test_clusters_recover_the_groups_and_labels_name_their_vocabulary():
    ids, vecs, texts, truth = clustered()
    tm = TopicModel(DIM, threshold=0.5)
    assigned = tm.update(ids, vecs, texts)
    assert len(tm) == 3
    by_topic: dict[int, set[str]] = {}
    for t, name in zip(assigned, truth, strict=True):
        by_topic.setdefault(t, set()).add(name)
    assert all(len(names) == 1 for names in by_topic.values())  # pure topics
    for topic in tm.topics():
        assert isinstance(topic, Topic) and topic.size == 12 and len(topic.members) == 12
        name = truth[ids.index(topic.members[0])]
        assert set(topic.terms[:3]) <= set(WORDS[name])  # distinctive terms, no stopwords
        assert topic.label == ", ".join(topic.terms[:3])
        assert abs(float(np.linalg.norm(topic.centroid)) - 1.0) < 1e-5
        assert topic.weights == sorted(topic.weights, reverse=True)


def test_incremental_updates_join_existing_topics_and_found_new_ones():
    ids, vecs, texts, truth = clustered()
    first = [i for i, t in enumerate(truth) if t != "code"]
    later = [i for i, t in enumerate(truth) if t == "code"]
    tm = TopicModel(DIM, threshold=0.5)
    tm.update([ids[i] for i in first], vecs[first], [texts[i] for i in first])
    assert len(tm) == 2
    before = {t.id: t.size for t in tm.topics()}
    out = tm.update([ids[i] for i in later], vecs[later], [texts[i] for i in later])
    assert len(set(out)) == 1 and out[0] not in before  # a new topic, with a fresh id
    assert {t.id: t.size for t in tm.topics() if t.id in before} == before
    # a new travel item joins the travel topic
    travel_topic = tm.topic_of(ids[truth.index("travel")])
    v = np.eye(DIM)[0]
    assert tm.assign(v)[0] == travel_topic
    assert tm.update(["travel-new"], v[None, :], ["another rome flight"]) == [travel_topic]


def test_assign_reports_similarity_and_none_below_threshold():
    tm = TopicModel(2, threshold=0.9)
    assert tm.assign(np.array([1.0, 0.0])) == (None, 0.0)
    tm.update(["a"], np.array([[1.0, 0.0]]), ["x"])
    assert tm.assign(np.array([1.0, 0.0])) == (0, 1.0)
    topic, sim = tm.assign(np.array([1.0, 1.0]))
    assert topic is None and sim == pytest.approx(2**-0.5, abs=1e-6)


def test_close_topics_merge_into_the_older_one():
    tm = TopicModel(2, threshold=0.95, merge_threshold=0.96)
    a, b = np.array([1.0, 0.0]), np.array([np.cos(0.4), np.sin(0.4)])  # cosine 0.92: two topics
    assert tm.update(["a", "b"], np.stack([a, b]), ["alpha", "beta"]) == [0, 1]
    # members between them pull topic 0 toward topic 1 until the centroids are within 0.96
    mid = np.array([np.cos(0.2), np.sin(0.2)])
    out = tm.update(["m1", "m2"], np.stack([mid, mid]), ["gamma", "delta"])
    assert out == [0, 0] and len(tm) == 1 and tm.topic_of("b") == 0
    assert tm.topics()[0].members == ["a", "m1", "m2", "b"]


def test_max_topics_caps_the_number_of_topics():
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((40, DIM))
    tm = TopicModel(DIM, threshold=0.99, max_topics=5)
    tm.update([f"i{k}" for k in range(40)], vecs, None)
    assert len(tm) <= 5 and tm.n_items == 40


def test_remove_takes_items_out_and_drops_empty_topics():
    ids, vecs, texts, truth = clustered(n_per=4)
    tm = TopicModel(DIM, threshold=0.5)
    tm.update(ids, vecs, texts)
    code_ids = [i for i, t in zip(ids, truth, strict=True) if t == "code"]
    assert tm.remove([*code_ids, "unknown"]) == 4
    assert len(tm) == 2 and tm.n_items == 8
    assert all(not set(t.terms) & set(WORDS["code"]) for t in tm.topics())
    # re-adding an id moves it
    travel = next(i for i, t in zip(ids, truth, strict=True) if t == "travel")
    cooking_topic = tm.topic_of(next(i for i, t in zip(ids, truth, strict=True) if t == "cooking"))
    assert tm.update([travel], np.eye(DIM)[1][None, :], ["pasta"]) == [cooking_topic]


def test_same_input_order_gives_the_same_topics_and_persistence_round_trips():
    ids, vecs, texts, _ = clustered()
    a, b = TopicModel(DIM, threshold=0.5), TopicModel(DIM, threshold=0.5)
    assert a.update(ids, vecs, texts) == b.update(ids, vecs, texts)
    assert [(t.id, t.label, t.members) for t in a.topics()] == [(t.id, t.label, t.members) for t in b.topics()]
    saved = json.loads(json.dumps(a.to_dict()))
    c = TopicModel.from_dict(saved)
    assert [(t.id, t.label, t.size, t.members) for t in c.topics()] == [
        (t.id, t.label, t.size, t.members) for t in a.topics()
    ]
    v = np.eye(DIM)[2]
    assert c.update(["new"], v[None, :], ["python"]) == a.update(["new"], v[None, :], ["python"])
    with pytest.raises(ValidationError, match="not a saved TopicModel"):
        TopicModel.from_dict({"format": "other"})


def test_refine_moves_items_to_their_nearest_centroid():
    tm = TopicModel(2, threshold=0.5, merge_threshold=0.999)
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [0.72, 0.69], [0.1, 1.0]])
    tm.update(["a", "b", "c", "d"], vecs, None)
    assert tm.topic_of("c") == 0  # arrived when topic 0 was nearer
    moved = tm.refine()
    assert moved >= 0 and tm.n_items == 4
    assert sorted(t.size for t in tm.topics()) == [2, 2]


def test_terms_drop_stopwords_numbers_and_short_words():
    assert terms_of("I think the 3 big Dogs are in Zürich, x y") == ["big", "dogs", "zürich"]
    assert "the" in STOPWORDS and "python" not in STOPWORDS


def test_bad_input_is_refused_with_clear_errors():
    with pytest.raises(ValidationError, match="dim"):
        TopicModel(0)
    with pytest.raises(ValidationError, match="threshold"):
        TopicModel(4, threshold=1.5)
    with pytest.raises(ValidationError, match="max_topics"):
        TopicModel(4, max_topics=0)
    tm = TopicModel(4)
    with pytest.raises(ValidationError, match="shape"):
        tm.update(["a"], np.ones((1, 3)), ["x"])
    with pytest.raises(ValidationError, match="all zeros"):
        tm.update(["a"], np.zeros((1, 4)), ["x"])
    with pytest.raises(ValidationError, match="NaN"):
        tm.update(["a"], np.full((1, 4), np.nan), ["x"])
    with pytest.raises(ValidationError, match="twice"):
        tm.update(["a", "a"], np.ones((2, 4)), ["x", "y"])
    with pytest.raises(ValidationError, match="texts"):
        tm.update(["a"], np.ones((1, 4)), ["x", "y"])
    with pytest.raises(ValidationError, match="list"):
        tm.update("a", np.ones((1, 4)), ["x"])
    assert tm.update([], np.zeros((0, 4)), []) == [] and len(tm) == 0
    assert "TopicModel(dim=4" in repr(tm)


@pytest.mark.parametrize(
    "name",
    [
        "lumina_lab.memory.topics",
        "lumina_lab.memory.consolidation",
        "lumina_lab.memory.compression",
        "lumina_lab.memory.compression_events",
    ],
)
def test_docstring_examples_of_the_hierarchical_memory_modules(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
