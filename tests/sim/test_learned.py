"""Learned routers: they learn which prompts need the strong model (synthetic data where a keyword
decides difficulty, and the real RouteLLM data); evaluate() against hand-computed metrics; data
loading; and LearnedThreshold routing live requests through a real Router."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory import HashingEmbedder
from lumina_lab.providers import ChatRequest, Pricing, ProviderRegistry, Router, SimulatedProvider
from lumina_lab.providers.cost import estimate_tokens
from lumina_lab.sim import (
    EnsembleRouter,
    KNNRouter,
    LearnedThreshold,
    LogisticRouter,
    RandomRouter,
    evaluate,
    load_correctness,
    oracle_scores,
    prompt_costs,
)
from lumina_lab.sim.learned import TEXT_STAT_NAMES, RidgeRouter, _ridge_solve, text_statistics

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
ROUTELLM = ROOT.parent / "shared" / "datasets" / "routellm"
FILLER = [
    "apple",
    "river",
    "stone",
    "cloud",
    "paper",
    "garden",
    "window",
    "music",
    "table",
    "orange",
    "valley",
    "bridge",
    "candle",
    "forest",
]
TOPICS = ["count", "add", "share", "buy", "sell", "split"]
PRICES = {"weak": (1.0, 1.0), "strong": (10.0, 10.0)}  # USD per million input / output tokens


def synthetic(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts of random words; those with the keyword 'integral' are hard for the weak model."""
    rng = np.random.default_rng(seed)
    prompts, weak, strong = [], [], []
    for _ in range(n):
        hard = rng.random() < 0.4
        words = [*list(rng.choice(FILLER, size=8)), str(rng.choice(TOPICS))]
        # the keyword, or a filler word: every prompt has 10 words, so length says nothing
        words.insert(int(rng.integers(0, len(words))), "integral" if hard else str(rng.choice(FILLER)))
        prompts.append(" ".join(words))
        weak.append(rng.random() < (0.2 if hard else 0.9))
        strong.append(rng.random() < (0.9 if hard else 0.95))
    return prompts, np.array(weak), np.array(strong)


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    return {"train": synthetic(500, 1), "test": synthetic(400, 2)}


@pytest.fixture(scope="module")
def embedder() -> HashingEmbedder:
    return HashingEmbedder(dim=512)


# ---------------------------------------------------------------- routers learn


@pytest.mark.parametrize(
    "kind", ["logreg", "logreg_weak_wrong", "knn", "ensemble", "ridge", "ridge_cv_weak_wrong", "ensemble_ridge_knn"]
)
def test_routers_beat_random_on_a_keyword_task(kind, data, embedder) -> None:
    make = {
        "logreg": lambda: LogisticRouter(embedder=embedder),
        "logreg_weak_wrong": lambda: LogisticRouter(target="weak_wrong", embedder=embedder),
        "knn": lambda: KNNRouter(16, embedder=embedder),
        "ensemble": lambda: EnsembleRouter([LogisticRouter(embedder=embedder), KNNRouter(16, embedder=embedder)]),
        "ridge": lambda: RidgeRouter(embedder=embedder),
        "ridge_cv_weak_wrong": lambda: RidgeRouter(target="weak_wrong", l2=None, embedders=[embedder, embedder]),
        "ensemble_ridge_knn": lambda: EnsembleRouter(
            [RidgeRouter(embedder=embedder), KNNRouter(16, embedder=embedder)], weights=[2, 1]
        ),
    }[kind]
    router = make().fit(*data["train"])
    prompts, weak, strong = data["test"]
    learned = evaluate(router, prompts, weak, strong, PRICES, tokens=100)
    rnd = evaluate(RandomRouter(seed=3), prompts, weak, strong, PRICES, tokens=100)
    # a router that knows the keyword scores APGR ~0.75 here (the oracle ~0.9), random ~0.5
    assert learned["apgr"] > 0.66 > rnd["apgr"] + 0.1
    assert learned["cost_saving_at_95"] > rnd["cost_saving_at_95"] + 0.2
    # the keyword is what the router learned: hard prompts score higher
    hard = np.array(["integral" in p for p in prompts])
    scores = router.score(prompts)
    assert scores[hard].mean() > scores[~hard].mean()
    assert (router.route(prompts, learned["threshold_at_95"]) == (scores >= learned["threshold_at_95"])).all()


def test_gain_scores_are_probability_differences(data, embedder) -> None:
    prompts, _, _ = data["test"]
    for router in (LogisticRouter(embedder=embedder), KNNRouter(8, embedder=embedder)):
        s = router.fit(*data["train"]).score(prompts)
        assert s.dtype == np.float64 and s.shape == (len(prompts),)
        assert (s >= -1).all() and (s <= 1).all()
    knn = KNNRouter(8, embedder=embedder).fit(*data["train"])
    rates = knn.neighbour_rates(prompts[:5])
    assert rates.shape == (5, 2) and ((rates >= 0) & (rates <= 1)).all()
    np.testing.assert_allclose(knn.score(prompts[:5]), rates[:, 1] - rates[:, 0])


def test_shape_only_router_uses_length(embedder) -> None:
    prompts = [" ".join(["word"] * n) for n in range(1, 201)]
    weak = np.array([n < 100 for n in range(1, 201)])  # long prompts defeat the weak model
    router = LogisticRouter(text_features=False, embedder=embedder).fit(prompts, weak, np.ones(200, bool))
    s = router.score(["word " * 5, "word " * 180])
    assert s[1] > s[0] + 0.5


def test_ridge_router_estimates_the_gain(data, embedder) -> None:
    # hard prompts: P(strong) - P(weak) = 0.9 - 0.2 = 0.7; easy ones: 0.95 - 0.9 = 0.05
    router = RidgeRouter(l2=None, embedder=embedder).fit(*data["train"])
    prompts = data["test"][0]
    hard = np.array(["integral" in p for p in prompts])
    s = router.score(prompts)
    assert s.dtype == np.float64 and s.shape == (len(prompts),)
    assert s[hard].mean() == pytest.approx(0.7, abs=0.15)
    assert s[~hard].mean() == pytest.approx(0.05, abs=0.1)
    # the penalty was cross-validated on the training prompts: the grid's best held-out error
    assert router.l2_ in RidgeRouter.L2_GRID and router.cv_mse_[router.l2_] == min(router.cv_mse_.values())
    assert set(router.cv_mse_) == set(RidgeRouter.L2_GRID)
    fixed = RidgeRouter(l2=0.05, embedder=embedder).fit(*data["train"])
    assert fixed.l2_ == 0.05 and fixed.cv_mse_ == {}
    # its gain drives the cost-aware rule: an answer worth $1000 sends exactly the positive-gain prompts' share
    weak_cost, strong_cost = prompt_costs(prompts, PRICES)
    np.testing.assert_array_equal(router.route_by_value(prompts, 1e3, PRICES), s * 1e3 > strong_cost - weak_cost)
    # features: the embedding, then the 16 standardised text statistics
    X = router.features(prompts[:3])
    assert X.shape == (3, embedder.dim + len(TEXT_STAT_NAMES)) and X.dtype == np.float32


def test_ridge_solve_matches_the_normal_equations() -> None:
    rng = np.random.default_rng(0)
    for n, d in ((50, 8), (6, 20)):  # primal (more rows) and dual (more columns)
        X = rng.normal(size=(n, d))
        X -= X.mean(axis=0)
        y = rng.normal(size=n)
        y -= y.mean()
        for l2, beta in zip((0.01, 1.0), _ridge_solve(X, y, [0.01, 1.0]), strict=True):
            expected = np.linalg.solve(X.T @ X / n + l2 * np.eye(d), X.T @ y / n)
            np.testing.assert_allclose(beta, expected, rtol=1e-8, atol=1e-10)


def test_ridge_on_text_statistics_alone_uses_length() -> None:
    prompts = [" ".join(["word"] * n) for n in range(1, 201)]
    weak = np.array([n < 100 for n in range(1, 201)])  # long prompts defeat the weak model
    router = RidgeRouter(embedders=[]).fit(prompts, weak, np.ones(200, bool))
    assert router.features(prompts[:2]).shape == (2, len(TEXT_STAT_NAMES))
    s = router.score(["word " * 5, "word " * 180])
    assert s[1] > s[0] + 0.5


def test_text_statistics_by_hand() -> None:
    prompt = "What is 15% of 1,200?\nA. 12\nB. 180\nC) 1,200 x 2 = 2,400"
    stats = dict(zip(TEXT_STAT_NAMES, text_statistics([prompt, ""])[0], strict=True))
    assert stats["log_numbers"] == pytest.approx(np.log1p(7))  # 15, 1,200, 12, 180, 1,200, 2, 2,400
    assert stats["log_distinct_numbers"] == pytest.approx(np.log1p(6))
    assert stats["log_largest_number"] == pytest.approx(np.log1p(2400))
    assert stats["log_option_lines"] == pytest.approx(np.log1p(3))  # "A. ", "B. ", "C) "
    assert stats["log_lines"] == pytest.approx(np.log1p(3))
    assert stats["log_question_marks"] == pytest.approx(np.log1p(1))
    assert stats["log_words"] == pytest.approx(np.log1p(7))  # What, is, of, A, B, C, x (runs of letters)
    np.testing.assert_array_equal(text_statistics([""]), np.zeros((1, len(TEXT_STAT_NAMES))))
    assert text_statistics([]).shape == (0, len(TEXT_STAT_NAMES))
    with pytest.raises(ValidationError, match="single string"):
        text_statistics("one prompt")


def test_random_router_is_deterministic_per_prompt_and_seed() -> None:
    prompts = [f"prompt {i}" for i in range(1000)]
    a = RandomRouter(seed=7).score(prompts)
    np.testing.assert_array_equal(a, RandomRouter(seed=7).score(prompts[::-1])[::-1])
    assert not np.array_equal(a, RandomRouter(seed=8).score(prompts))
    assert ((a >= 0) & (a < 1)).all() and abs(a.mean() - 0.5) < 0.05
    assert RandomRouter().fit(["x"], [True], [False]).score_one("x") == RandomRouter().score_one("x")


def test_route_by_value_trades_gain_against_price(data, embedder) -> None:
    router = LogisticRouter(embedder=embedder).fit(*data["train"])
    prompts = data["test"][0]
    gain = router.score(prompts)
    weak_cost, strong_cost = prompt_costs(prompts, PRICES)
    cheap = router.route_by_value(prompts, 1e-9, PRICES)  # an answer worth almost nothing: all weak
    rich = router.route_by_value(prompts, 1e3, PRICES)  # worth $1000: strong wherever it is expected to help
    assert not cheap.any()
    np.testing.assert_array_equal(rich, gain * 1e3 > strong_cost - weak_cost)
    assert rich.mean() > 0.3
    with pytest.raises(ValidationError, match="target='gain'"):
        LogisticRouter(target="weak_wrong", embedder=embedder).fit(*data["train"]).route_by_value(prompts, 1.0)


# ---------------------------------------------------------------- evaluate: hand-computed

W = [True, False, True, False]
S = [True, True, True, False]
P4 = ["a", "b", "c", "d"]


def test_evaluate_oracle_by_hand() -> None:
    # every prompt costs 2 USD on the weak model and 20 USD on the strong one (1e6 tokens in and out)
    res = evaluate(oracle_scores(W, S), P4, W, S, PRICES, tokens=1_000_000)
    assert res["quality_weak"] == 0.5 and res["quality_strong"] == 0.75
    assert res["cost_all_weak"] == pytest.approx(8.0) and res["cost_all_strong"] == pytest.approx(80.0)
    curve = res["curve"]
    np.testing.assert_allclose(curve["strong_share"], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve["quality"], [0.5, 0.75, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(curve["pgr"], [0, 1, 1, 1, 1])
    np.testing.assert_allclose(curve["cost"], [8, 26, 44, 62, 80])
    # APGR: trapezoids under PGR vs strong share = 0.25 * (0 + 1) / 2 + 0.75 * 1
    assert res["apgr"] == pytest.approx(0.875)
    # 95% of 0.75 = 0.7125 is first reached with one strong call: 3 * 2 + 20 = 26 USD of 80
    assert res["cost_saving_at_95"] == pytest.approx(1 - 26 / 80)
    assert res["strong_share_at_95"] == 0.25 and res["quality_at_95"] == 0.75
    assert res["threshold_at_95"] == 1.0
    assert curve["threshold"].iloc[0] == np.inf


def test_evaluate_cascade_pays_both_calls_when_escalating() -> None:
    # the weak model answers all four prompts (4 x 2 USD); one escalation to the strong model (+20 USD)
    res = evaluate(oracle_scores(W, S), P4, W, S, PRICES, tokens=1_000_000, cascade=True, threshold=1.0)
    np.testing.assert_allclose(res["curve"]["cost"], [8, 28, 48, 68, 88])
    np.testing.assert_allclose(res["curve"]["quality"], [0.5, 0.75, 0.75, 0.75, 0.75])  # quality as routing
    assert res["cost_all_strong"] == pytest.approx(80.0)  # savings stay relative to the strong model alone
    assert res["cost_saving_at_95"] == pytest.approx(1 - 28 / 80)
    assert res["at_threshold"]["cost_saving"] == pytest.approx(1 - 28 / 80)
    assert evaluate(np.zeros(4), P4, W, S, PRICES, tokens=1_000_000, cascade=True)["cost_saving_at_95"] < 0


def test_evaluate_random_line_and_ties() -> None:
    # a constant score ties every prompt: the expectation over orders is the straight random line
    res = evaluate(np.zeros(4), P4, W, S, PRICES, tokens=1_000_000)
    np.testing.assert_allclose(res["curve"]["quality"], [0.5, 0.5625, 0.625, 0.6875, 0.75])
    assert res["apgr"] == pytest.approx(0.5)
    assert res["cost_saving_at_95"] == pytest.approx(0.0)  # only all-strong reaches 0.7125
    # partial ties: two tied at the top, one of them the only useful prompt
    res = evaluate([1.0, 1.0, 0.0, -1.0], P4, [False, True, True, True], [True, True, True, True], tokens=10)
    np.testing.assert_allclose(res["curve"]["quality"], [0.75, 0.875, 1.0, 1.0, 1.0])


def test_evaluate_points_threshold_and_errors() -> None:
    res = evaluate(oracle_scores(W, S), P4, W, S, PRICES, tokens=1_000_000, points=3, threshold=0.5)
    np.testing.assert_allclose(res["curve"]["strong_share"], [0, 0.5, 1])
    assert res["apgr"] == pytest.approx(0.5 * (0 + 1) / 2 + 0.5 * 1)
    at = res["at_threshold"]
    assert at["strong_share"] == 0.25 and at["quality"] == 0.75 and at["quality_ratio"] == 1.0
    assert at["cost_saving"] == pytest.approx(1 - 26 / 80)
    with pytest.raises(ValidationError, match="one number per prompt"):
        evaluate([1.0, 2.0], P4, W, S)
    with pytest.raises(ValidationError, match="weak_correct"):
        evaluate(np.zeros(4), P4, W[:3], S)
    with pytest.raises(ValidationError, match="booleans"):
        evaluate(np.zeros(4), P4, [0, 1, 2, 1], S)
    with pytest.raises(ValidationError, match="no prompts"):
        evaluate(np.zeros(0), [], [], [])
    with pytest.raises(ValidationError, match="points"):
        evaluate(np.zeros(4), P4, W, S, points=1)
    tie = evaluate(np.zeros(4), P4, [True] * 4, [True] * 4)
    assert np.isnan(tie["apgr"]) and tie["cost_saving_at_95"] > 0.9  # equal models: weak is enough


def test_prompt_costs_and_cost_aware_ranking() -> None:
    text = "x" * 400  # 100 tokens by the 4-characters rule
    assert estimate_tokens(text) == 100
    weak, strong = prompt_costs([text])  # snapshot prices: Mixtral $0.6/$0.6, GPT-4-1106 $10/$30
    assert weak[0] == pytest.approx(100 * 1.2 / 1e6) and strong[0] == pytest.approx(100 * 40 / 1e6)
    weak, strong = prompt_costs(
        ["a", "b"], PRICES, tokens={"input": [10, 10], "weak_output": [0, 5], "strong_output": [1, 1]}
    )
    np.testing.assert_allclose(weak, [10e-6, 15e-6])
    np.testing.assert_allclose(strong, [110e-6, 110e-6])
    with pytest.raises(ValidationError, match="'weak' and 'strong'"):
        prompt_costs(["a"], {"weak": "gpt-4"})
    with pytest.raises(ValidationError, match="no list price"):
        prompt_costs(["a"], {"weak": "no-such-model", "strong": "gpt-4"})
    with pytest.raises(ValidationError, match="lacks"):
        prompt_costs(["a"], tokens={"input": [1]})
    # the same expected gain on a short and a long prompt: cost-aware sends the short one first
    prompts = ["short", "a much longer prompt " * 50]
    w, s = [False, False], [True, True]
    blind = evaluate([0.5, 0.6], prompts, w, s, PRICES)
    aware = evaluate([0.5, 0.6], prompts, w, s, PRICES, cost_aware=True)
    assert aware["curve"]["cost"].iloc[1] < blind["curve"]["cost"].iloc[1]


# ---------------------------------------------------------------- validation


def test_bad_inputs_are_validation_errors(embedder) -> None:
    r = LogisticRouter(embedder=embedder)
    with pytest.raises(ValidationError, match="not fitted"):
        r.score(["x"])
    with pytest.raises(ValidationError, match="single string"):
        r.fit("one prompt", [True], [True])
    with pytest.raises(ValidationError, match="one value per prompt"):
        r.fit(["a", "b"], [True], [True, False])
    with pytest.raises(ValidationError, match="no prompts"):
        r.fit([], [], [])
    with pytest.raises(ValidationError, match="prompt #1"):
        r.fit(["a", 3], [True, False], [True, True])
    with pytest.raises(ValidationError, match="target"):
        LogisticRouter(target="best")
    with pytest.raises(ValidationError, match="l2"):
        LogisticRouter(l2=0)
    with pytest.raises(ValidationError, match="k="):
        KNNRouter(0)
    with pytest.raises(ValidationError, match="l2"):
        RidgeRouter(l2=0)
    with pytest.raises(ValidationError, match="not both"):
        RidgeRouter(embedder=HashingEmbedder(dim=64), embedders=[HashingEmbedder(dim=64)])
    with pytest.raises(ValidationError, match="embedders or text_stats"):
        RidgeRouter(embedders=[], text_stats=False)
    with pytest.raises(ValidationError, match="cv_folds"):
        RidgeRouter(cv_folds=1)
    with pytest.raises(ValidationError, match="not an Embedder"):
        RidgeRouter(embedders=["tfidf"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="not fitted"):
        RidgeRouter().score(["x"])
    with pytest.raises(ValidationError, match="not an Embedder"):
        KNNRouter(embedder="tfidf")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="different targets"):
        EnsembleRouter([LogisticRouter(), LogisticRouter(target="weak_wrong")])
    fitted = r.fit(["a", "b"], [True, False], [True, True])
    with pytest.raises(ValidationError, match="threshold"):
        fitted.route(["a"], float("nan"))
    assert fitted.score([]).shape == (0,)


# ---------------------------------------------------------------- data loading


def test_load_correctness_detects_columns(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    pd.DataFrame(
        {"prompt": ["p1", "p2", "p3"], "big-model": [True, True, False], "small-model": [True, False, False]}
    ).to_csv(folder / "bench_algebra.csv", index=False)
    pd.DataFrame(
        {"prompt": ["p4", "p5"], "big-model": ["True", "True"], "small-model": ["False", "True"], "note": ["x", "y"]}
    ).to_csv(folder / "bench_history.csv", index=False)
    df = load_correctness(folder, exclude={"p5"})
    assert df.attrs["weak_model"] == "small-model" and df.attrs["strong_model"] == "big-model"
    assert df.prompt.tolist() == ["p1", "p2", "p3", "p4"]
    assert df.weak_correct.tolist() == [True, False, False, False]
    assert df.strong_correct.tolist() == [True, True, False, True]
    assert df.group.tolist() == ["bench_algebra"] * 3 + ["bench_history"]
    named = load_correctness(folder, weak="big-model", strong="small-model")
    assert named.weak_correct.tolist()[:3] == [True, True, False]
    one = tmp_path / "three.csv"
    pd.DataFrame({"q": ["a"], "m1": [True], "m2": [False], "m3": [True]}).to_csv(one, index=False)
    with pytest.raises(ValidationError, match="two correctness"):
        load_correctness(one)
    with pytest.raises(ValidationError, match="no CSV"):
        load_correctness(tmp_path / "missing")


@pytest.mark.skipif(not ROUTELLM.is_dir(), reason=f"RouteLLM data not found at {ROUTELLM} (shared/datasets/routellm)")
def test_routellm_gsm8k_router_beats_random() -> None:
    contaminated = set(pd.read_json(ROUTELLM / "gsm8k_contaminated_prompts.jsonl", lines=True)["eval_prompt"])
    df = load_correctness(ROUTELLM / "gsm8k_responses.csv", exclude=contaminated)
    assert len(df) == 1307 and "weak_response" in df
    assert df.attrs["weak_model"].startswith("mistralai/Mixtral") and df.attrs["strong_model"] == "gpt-4-1106-preview"
    assert df.weak_correct.mean() == pytest.approx(0.637, abs=0.005)
    assert df.strong_correct.mean() == pytest.approx(0.857, abs=0.005)
    perm = np.random.default_rng(0).permutation(len(df))
    train, test = df.iloc[perm[650:]], df.iloc[perm[:650]]
    assert not set(train.prompt) & set(test.prompt)
    router = EnsembleRouter(
        [KNNRouter(32), LogisticRouter(text_features=False)]  # content neighbours + length/number difficulty
    ).fit(list(train.prompt), train.weak_correct, train.strong_correct)
    learned = evaluate(router, list(test.prompt), test.weak_correct, test.strong_correct, tokens=1000)
    expected_random = evaluate(
        np.zeros(len(test)), list(test.prompt), test.weak_correct, test.strong_correct, tokens=1000
    )
    assert learned["apgr"] > expected_random["apgr"] + 0.03
    assert learned["cost_saving_at_95"] > expected_random["cost_saving_at_95"]


@pytest.mark.skipif(not ROUTELLM.is_dir(), reason=f"RouteLLM data not found at {ROUTELLM} (shared/datasets/routellm)")
def test_routellm_ridge_router_transfers_from_mmlu_to_gsm8k() -> None:
    # trained on MMLU questions only (a sample of every subject), scored on GSM8K: a dataset it never saw
    contaminated = set(pd.read_json(ROUTELLM / "mmlu_contaminated_prompts.jsonl", lines=True)["eval_prompt"])
    mmlu = load_correctness(ROUTELLM / "mmlu", exclude=contaminated)
    mmlu = mmlu.groupby("group").head(60)
    gsm = load_correctness(ROUTELLM / "gsm8k_responses.csv")
    router = RidgeRouter(l2=None).fit(list(mmlu.prompt), mmlu.weak_correct, mmlu.strong_correct)
    learned = evaluate(router, list(gsm.prompt), gsm.weak_correct, gsm.strong_correct, tokens=1000)
    expected_random = evaluate(np.zeros(len(gsm)), list(gsm.prompt), gsm.weak_correct, gsm.strong_correct, tokens=1000)
    assert learned["apgr"] > expected_random["apgr"] + 0.03
    assert learned["cost_saving_at_95"] > expected_random["cost_saving_at_95"] + 0.05


# ---------------------------------------------------------------- live routing


def _live(router, threshold: float, *, strong_down: bool = False) -> Router:
    weak = SimulatedProvider("mixtral", id="weak", pricing=Pricing(input_per_m=0.6, output_per_m=0.6))
    strong = SimulatedProvider("gpt-4", id="strong", pricing=Pricing(input_per_m=10, output_per_m=30), down=strong_down)
    other = SimulatedProvider("other", id="other", pricing=Pricing(input_per_m=0.1, output_per_m=0.1))
    registry = ProviderRegistry([other, weak, strong])
    return Router(registry, LearnedThreshold(router, threshold, weak="weak", strong="strong"))


async def test_learned_threshold_routes_hard_prompts_to_the_strong_provider(data, embedder) -> None:
    learned = LogisticRouter(embedder=embedder).fit(*data["train"])
    threshold = evaluate(learned, *data["test"])["threshold_at_95"]  # chosen on held-out prompts
    hard = "apple river garden stone integral cloud paper table count"
    easy = "apple river garden stone window cloud paper table count"
    assert learned.score_one(hard) >= threshold > learned.score_one(easy)
    router = _live(learned, threshold)
    assert router.plan(ChatRequest(hard)).ranked == ["strong", "weak", "other"]
    assert router.plan(ChatRequest(easy)).ranked == ["weak", "strong", "other"]
    answers = [await router.ainvoke(ChatRequest(p)) for p in (hard, easy, hard)]
    assert [a.provider for a in answers] == ["strong", "weak", "strong"]
    assert answers[0].cost_usd > answers[1].cost_usd
    # the strong provider is down: the hard prompt falls back to the weak one
    down = _live(learned, threshold, strong_down=True)
    assert (await down.ainvoke(ChatRequest(hard))).provider == "weak"


def test_learned_threshold_validation(embedder) -> None:
    with pytest.raises(ValidationError, match="not fitted"):
        LearnedThreshold(LogisticRouter(embedder=embedder), 0.1, weak="a", strong="b")
    rnd = RandomRouter()
    with pytest.raises(ValidationError, match="same provider"):
        LearnedThreshold(rnd, 0.5, weak="a", strong="a")
    with pytest.raises(ValidationError, match="threshold"):
        LearnedThreshold(rnd, float("nan"), weak="a", strong="b")
    with pytest.raises(ValidationError, match="not a LearnedRouter"):
        LearnedThreshold(object(), 0.5, weak="a", strong="b")  # type: ignore[arg-type]
    # a registry without the pair: the strategy keeps the given order
    strategy = LearnedThreshold(rnd, 0.5, weak="a", strong="b")
    reg = ProviderRegistry([SimulatedProvider("m", id="x", pricing=Pricing())])
    assert [s.id for s in strategy.rank(list(reg), ChatRequest("hi"))] == ["x"]
