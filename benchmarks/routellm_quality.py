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
   mean over datasets of ``(cost_saving_at_95 + apgr) / 2`` on out-of-fold scores), refitted
   on all training prompts and scored on each test half.
2. **Unseen groups** (datasets with at least 4 groups, e.g. MMLU subjects): half of the groups
   for training, the others for testing; the router is chosen by cross-validation with folds
   by group inside the training groups.  This measures transfer to topics never seen.
3. **Unseen dataset**: the router chosen in (1) is trained on all the other datasets and
   tested on all of this one.

Candidates: logistic regression on hashing embeddings plus shape features (``logreg``),
cosine kNN with k=32 and k=128, a shape-only logistic model (length, numbers, lines),
and their ensembles.  The random router is the mean over 20 seeds.

Costs: the pricing snapshot's ``mistralai/mixtral-8x7b-instruct`` ($0.6/$0.6) and
``gpt-4-1106-preview`` ($10/$30 per million tokens) with a 1:1 input/output mix and **the same
number of tokens for every prompt**, so the saving depends on the share of strong calls only,
as in RouteLLM's own accounting (its cost savings are derived from the share of GPT-4 calls);
``length_weighted`` gives the same figures with input tokens estimated from each prompt and as
many output tokens, the router ranking prompts by expected gain per extra dollar (``cost_aware``;
``cost_blind``: by gain alone, which sends long, expensive prompts to the strong model first).  ``cost_saving_at_95`` is the cheapest point of the full-resolution sweep
reaching 95% of the strong model's accuracy on the test split (RouteLLM reads its call-performance
threshold off the test curve the same way); ``deployed`` instead applies one threshold chosen on
the training data's out-of-fold scores and reports what it actually achieves on the test split.

Prints one JSON line: per dataset (``gsm8k``, ``mmlu``) ``cost_saving_at_95`` and ``apgr`` of
the chosen router on the test split, the random router's and every candidate's figures, and
the anchor (RouteLLM's best router: about 45% on MMLU and 35% on GSM8K at 95% quality).

Usage: python benchmarks/routellm_quality.py [--data ../shared/datasets/routellm] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lumina_lab.memory import CachedEmbedder, HashingEmbedder
from lumina_lab.sim.learned import (
    KNNRouter,
    LearnedRouter,
    LogisticRouter,
    RandomRouter,
    evaluate,
    load_correctness,
)

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = {"mmlu": 0.45, "gsm8k": 0.35}  # RouteLLM's best router, cost saving at 95% of GPT-4's quality
UNIFORM_TOKENS = 1000  # same tokens for every prompt (1:1 mix): cost depends on the share of strong calls
FOLDS = 4
RANDOM_SEEDS = 20

# base routers, and ensembles: the mean score of fitted bases (what EnsembleRouter computes, without rescoring)
BASES: dict[str, Callable[[CachedEmbedder], LearnedRouter]] = {
    "logreg": lambda e: LogisticRouter(embedder=e),
    "knn32": lambda e: KNNRouter(32, embedder=e),
    "knn128": lambda e: KNNRouter(128, embedder=e),
    "shape": lambda e: LogisticRouter(text_features=False, embedder=e),
}
ENSEMBLES: dict[str, tuple[str, ...]] = {
    "ens_knn32_logreg": ("knn32", "logreg"),
    "ens_knn32_shape": ("knn32", "shape"),
    "ens_knn128_shape": ("knn128", "shape"),
    "ens_knn32_logreg_shape": ("knn32", "logreg", "shape"),
}
CANDIDATES = [*BASES, *ENSEMBLES]


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


def fit_bases(names: set[str], train: pd.DataFrame, emb: CachedEmbedder) -> dict[str, LearnedRouter]:
    prompts = list(train.prompt)
    return {n: BASES[n](emb).fit(prompts, train.weak_correct, train.strong_correct) for n in sorted(names)}


def candidate_scores(fitted: dict[str, LearnedRouter], prompts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    base = {n: r.score(prompts) for n, r in fitted.items()}
    out = {}
    for name in names:
        members = ENSEMBLES.get(name, (name,))
        out[name] = np.mean([base[m] for m in members], axis=0)
    return out


def needed_bases(names: list[str]) -> set[str]:
    return {m for n in names for m in ENSEMBLES.get(n, (n,))}


def out_of_fold(train: pd.DataFrame, folds: np.ndarray, emb: CachedEmbedder, names: list[str]) -> dict[str, np.ndarray]:
    oof = {n: np.zeros(len(train)) for n in names}
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        fitted = fit_bases(needed_bases(names), train[tr], emb)
        for n, s in candidate_scores(fitted, list(train.prompt[te]), names).items():
            oof[n][te] = s
    return oof


def select(oof: dict[str, np.ndarray], train: pd.DataFrame, by: str) -> tuple[str, dict[str, float]]:
    """Candidate with the best mean over datasets (``by`` column) of (saving at 95% + APGR) / 2."""
    crit = {}
    for name, scores in oof.items():
        vals = []
        for _, idx in train.groupby(by).indices.items():
            m = metrics(scores[idx], train.iloc[idx])
            vals.append((m["cost_saving_at_95"] + m["apgr"]) / 2)
        crit[name] = r3(np.mean(vals))
    return max(crit, key=lambda n: (crit[n], n)), crit


# ---------------------------------------------------------------------- scenarios


def random_split(datasets: dict[str, pd.DataFrame], emb: CachedEmbedder, seed: int, test_share: float) -> dict:
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

    fitted = fit_bases(needed_bases(CANDIDATES), train, emb)
    out: dict = {"selection": {"router": best, "criterion_cv": crit, "n_train": len(train)}}
    for name, test in tests.items():
        scores = candidate_scores(fitted, list(test.prompt), CANDIDATES)
        routers = {n: metrics(s, test) for n, s in scores.items()}
        dep = evaluate(
            scores[best],
            list(test.prompt),
            test.weak_correct,
            test.strong_correct,
            tokens=UNIFORM_TOKENS,
            threshold=threshold,
        )["at_threshold"]
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
        }
    return out


def unseen_groups(df: pd.DataFrame, emb: CachedEmbedder, seed: int) -> dict:
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
    return {
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


def unseen_dataset(datasets: dict[str, pd.DataFrame], name: str, router: str, emb: CachedEmbedder) -> dict:
    train = pd.concat([d for n, d in datasets.items() if n != name], ignore_index=True)
    test = datasets[name]
    fitted = fit_bases(needed_bases([router]), train, emb)
    scores = candidate_scores(fitted, list(test.prompt), [router])[router]
    return {**metrics(scores, test), "router": router, "random": random_metrics(test), "n_train": len(train)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "routellm"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    root = Path(args.data)
    if not root.is_dir():
        raise SystemExit(f"--data {root}: no such folder")
    datasets, n_contaminated = load_datasets(root)
    emb = CachedEmbedder(HashingEmbedder())
    emb.embed([p for d in datasets.values() for p in d.prompt])  # embed every prompt once

    split = random_split(datasets, emb, args.seed, args.test_share)
    best = split["selection"]["router"]
    result: dict = {}
    for name, df in datasets.items():
        entry = split[name]
        if len(datasets) > 1:
            entry["unseen_dataset"] = unseen_dataset(datasets, name, best, emb)
        if df.group.nunique() >= 2 * FOLDS:
            entry["unseen_groups"] = unseen_groups(df, emb, args.seed)
        if name in ANCHORS:
            entry["anchor_cost_saving_at_95"] = ANCHORS[name]
            entry["beats_anchor"] = bool(entry["cost_saving_at_95"] > ANCHORS[name])
        entry["models"] = {"weak": df.attrs["weak_model"], "strong": df.attrs["strong_model"]}
        result[name] = entry
    result["selection"] = split["selection"]
    result["settings"] = {
        "seed": args.seed,
        "test_share": args.test_share,
        "contaminated_dropped": n_contaminated,
        "prices": "mistralai/mixtral-8x7b-instruct $0.6/$0.6, gpt-4-1106-preview $10/$30 per M tokens (snapshot)",
        "tokens": "uniform per prompt, 1:1 input/output (length_weighted: estimated from each prompt)",
        "cv_folds": FOLDS,
        "random_seeds": RANDOM_SEEDS,
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
