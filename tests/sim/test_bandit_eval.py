"""The Thompson bandit evaluated RouteLLM-style: with prompt clusters as its context it learns which
kind of prompt needs the strong model (from the chosen model's answers only); without context it can
only learn one share; the sweep of its cost weight spans all-strong to all-weak; runs are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory import HashingEmbedder
from lumina_lab.sim.bandit_eval import PromptClusters, evaluate_bandit

pytestmark = pytest.mark.timeout(120)

HARD = ["integral", "derivative", "eigenvalue", "manifold", "topology", "tensor", "lemma", "theorem"]
EASY = ["apple", "river", "garden", "window", "music", "table", "orange", "candle"]


def stream(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts of one vocabulary or the other; the weak model fails most 'hard' ones, the strong one few."""
    rng = np.random.default_rng(seed)
    prompts, weak, strong = [], [], []
    for _ in range(n):
        hard = rng.random() < 0.4
        prompts.append(" ".join(rng.choice(HARD if hard else EASY, size=6)))
        weak.append(rng.random() < (0.2 if hard else 0.95))
        strong.append(rng.random() < 0.95)
    return prompts, np.array(weak), np.array(strong)


@pytest.fixture(scope="module")
def data() -> tuple:
    return stream(600, 0), stream(400, 1)


def test_contextual_bandit_learns_which_prompts_need_the_strong_model(data) -> None:
    train, (prompts, weak, strong) = data
    emb = HashingEmbedder()
    ctx = evaluate_bandit(prompts, weak, strong, embedder=emb, train=train, clusters=4, seeds=2)
    flat = evaluate_bandit(prompts, weak, strong, embedder=emb, train=train, clusters=1, seeds=2)
    assert ctx["clusters"] == 4 and flat["clusters"] == 1 and ctx["warm"]
    # the contextual bandit reaches 95% of the strong model's quality sending about the hard share (40%)
    assert ctx["quality_at_95"] >= 0.95 * ctx["quality_strong"] - 1e-12
    assert ctx["strong_share_at_95"] < 0.6
    assert ctx["cost_saving_at_95"] > 0.35
    # one context for all prompts: it can only mix, so it recovers less of the gap per strong call
    assert ctx["apgr"] > flat["apgr"] + 0.1
    assert ctx["cost_saving_at_95"] > flat["cost_saving_at_95"] + 0.1


def test_cost_weight_sweep_spans_strong_to_weak(data) -> None:
    train, (prompts, weak, strong) = data
    r = evaluate_bandit(
        prompts, weak, strong, embedder=HashingEmbedder(), train=train, clusters=4, cost_weights=(0.0, 5.0), seeds=1
    )
    curve = r["curve"].set_index("cost_weight")
    assert curve.loc[5.0, "strong_share"] == 0.0  # cost dominates: the cheap model for every prompt
    assert curve.loc[5.0, "quality"] == pytest.approx(weak.mean())
    assert curve.loc[0.0, "strong_share"] > 0.5  # quality alone: mostly the model that is right more often
    assert curve.loc[0.0, "cost_ratio"] > curve.loc[5.0, "cost_ratio"]


def test_evaluation_is_reproducible(data) -> None:
    train, (prompts, weak, strong) = data
    emb = HashingEmbedder()
    args = dict(embedder=emb, train=train, clusters=4, seeds=1, cost_weights=(0.1, 0.3))
    a = evaluate_bandit(prompts, weak, strong, **args)
    b = evaluate_bandit(prompts, weak, strong, **args)
    assert a["curve"].equals(b["curve"])
    cold = evaluate_bandit(prompts, weak, strong, **args, warm=False)  # flat priors: a different run
    assert not cold["warm"] and not cold["curve"].equals(a["curve"])


def test_without_training_prompts_the_clusters_come_from_the_test_text() -> None:
    prompts, weak, strong = stream(200, 2)
    r = evaluate_bandit(prompts, weak, strong, embedder=HashingEmbedder(), clusters=3, seeds=1, cost_weights=(0.2,))
    assert r["warm"] is False and r["clusters"] == 3 and r["n"] == 200


def test_prompt_clusters_separate_vocabularies() -> None:
    prompts, _, _ = stream(200, 3)
    model = PromptClusters(2, embedder=HashingEmbedder(), seed=0).fit(prompts)
    labels = model.predict(prompts)
    hard = np.array([p.split()[0] in HARD for p in prompts])
    assert len(set(labels[hard])) == 1 and len(set(labels[~hard])) == 1
    assert labels[hard][0] != labels[~hard][0]
    assert "2 centroids" in repr(model)


def test_bad_input_names_the_argument() -> None:
    prompts, weak, strong = stream(20, 4)
    emb = HashingEmbedder()
    with pytest.raises(ValidationError, match="no prompts"):
        evaluate_bandit([], [], [], embedder=emb)
    with pytest.raises(ValidationError, match="cost_weights"):
        evaluate_bandit(prompts, weak, strong, embedder=emb, cost_weights=(-1.0,))
    with pytest.raises(ValidationError, match="seeds"):
        evaluate_bandit(prompts, weak, strong, embedder=emb, seeds=0)
    with pytest.raises(ValidationError, match="weak_correct"):
        evaluate_bandit(prompts, weak[:5], strong, embedder=emb)
    with pytest.raises(ValidationError, match="not fitted"):
        PromptClusters(2, embedder=emb).predict(prompts)
    with pytest.raises(ValidationError, match="positive int"):
        PromptClusters(0, embedder=emb)
