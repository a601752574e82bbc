"""Evidence recall of ConversationMemory on LoCoMo-format conversations, against plain BM25, same run.

For each conversation a fresh :class:`~lumina_lab.memory.conversation.ConversationMemory`
(in-memory store) remembers every turn as ``"Speaker: text [image caption]"`` with its
session, the session's date and its ``dia_id`` as turn id.  Each question of that
conversation is recalled from that memory only (top 20); ``recall@k`` is the mean over
questions of ``|gold ∩ top-k turn ids| / |gold|`` (gold: the question's evidence ids,
normalised: ``"D8:6; D9:17"`` is two ids, ``"D:11:26"`` is ``D11:26``, ``"D30:05"`` is
``D30:5``; ids that name no turn are dropped, and questions left without evidence are
skipped and counted in ``questions_skipped``).

Prints one JSON line:

* ``recall@5``, ``recall@10``, ``recall@20`` and ``by_category`` (``multi-hop``, ``temporal``,
  ``open-domain``, ``single-hop``, ``adversarial`` → the same keys and ``n``);
* ``tokens_mean`` — mean estimated tokens (``chunking.estimate_tokens``) of what @10 returns,
  beside ``tokens_10_turns``, "10 turns' worth": 10 x the mean tokens of a turn of the question's
  conversation.  The @10 list is ``recall(question, k=10, budget_tokens=<10 turns' worth>)``: at
  most 10 turns, taken in rank order while they fit that budget (``recall@10_unbudgeted`` is the
  plain top 10, which runs a little over: retrieval favours longer turns); with the ``trim`` step
  (``--no-trim`` switches it off) a turn that does not fit is returned cut to its sentences most
  similar to the question (``--trim-sentences``, ``--trim-share``: see ``RecallConfig``), and
  ``trimmed_mean`` is the mean number of such turns in the @10 list;
* ``answer_kept@10`` — recall counts turn ids, and a trimmed turn may have lost the answer: over the
  ``answer_questions`` (not adversarial) whose answer is written out (lowercased, punctuation
  dropped, 3+ characters) in one of their evidence turns, the share whose answer is in the text the
  @10 list returns; ``answer_in_turns@10`` the same over the returned turns' whole texts;
* ``ingest_s``, ``ingest_ms_per_turn``, ``query_ms_mean``, ``query_ms_p95``;
* ``bm25_recall@5/10/20`` and ``bm25_by_category`` — the plain BM25 baseline: Okapi BM25 as
  ``rank_bm25.BM25Okapi`` computes it (k1 1.5, b 0.75, idf floor 0.25 x mean idf), lowercase
  word tokens, English stop words removed, no stemming, over the same turn texts;
  ``keyword_index_recall@10`` — :class:`~lumina_lab.memory.keyword.KeywordIndex` with its defaults;
* ``by_split`` → ``{"dev": {...}, "heldout": {...}}``, the same keys as the top level for
  conversations 0-2 (on which every weight and step was chosen) and for the others (held out:
  never used for a choice), and the short forms ``dev_recall@10`` / ``heldout_recall@10`` (and
  their multi-hop parts); ``heldout_multi-hop_interval`` → ``n`` (questions) and ``ci95``, the 95%
  bootstrap interval of that held-out multi-hop mean (questions resampled, fixed seed);
* ``embedder_identity`` — the embedder that really ran (``minilm:all-MiniLM-L6-v2`` or the hashing one);
* with ``--ablations``: ``ablations`` → ``{"dense_only" | "first_pass" | "-<step>": {...}}``, the plain
  top-10 recall (compare with ``recall@10_unbudgeted``), its multi-hop part and its held-out part.

Anchors (LoCoMo conversations conv-26 ... conv-47, from SOURCE.md of the shared data set):
BM25 recall@10 0.583 (multi-hop 0.248), dense MiniLM alone ≈ 0.43.  Target: recall@10 ≥ 0.75,
multi-hop ≥ 0.50, with at most 10 turns' worth of tokens for @10.

The file is read by :func:`lumina_lab.memory.locomo.load_locomo` (evidence ids, session dates and
categories are parsed there).

Usage: python benchmarks/locomo_recall.py --data PATH [--embedder hashing|minilm] [--limit N]
       [--no-hybrid] [--no-expansion] [--no-topics] [--no-temporal] [--no-neighbours] [--no-sessions]
       [--no-speaker] [--no-rerank] [--no-multiquery] [--no-intent] [--no-statements] [--no-sentences]
       [--no-trim] [--trim-sentences N] [--trim-share X] [--trim-lexical X] [--no-contextual] [--ablations]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lumina_lab.memory.locomo import CATEGORIES

KS = (5, 10, 20)


# ---------------------------------------------------------------------- data
def load(path: Path) -> list[dict[str, Any]]:
    """Conversations of a LoCoMo file (read by :func:`lumina_lab.memory.locomo.load_locomo`) as dicts:
    ``id``, ``turns`` (mappings for ``remember_many``), ``questions`` (``q``, ``gold``, ``category``), ``skipped``."""
    from lumina_lab.memory.locomo import LoCoMoError, load_locomo

    try:
        convs = load_locomo(path)
    except LoCoMoError as e:
        raise SystemExit(str(e)) from None
    return [
        {
            "id": c.id,
            "turns": [t.as_item() for t in c.turns],
            "questions": [
                {"q": q.question, "gold": q.evidence, "category": q.category, "answer": q.answer} for q in c.questions
            ],
            "skipped": c.skipped,
        }
        for c in convs
    ]


def _norm(text: Any) -> str:
    """Lowercase words joined by single spaces (what answer containment compares)."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def turn_text(t: dict[str, Any]) -> str:
    text = f"{t['speaker']}: {t['text']}"
    return text + (f" [{t['blip_caption']}]" if t.get("blip_caption") else "")


# ---------------------------------------------------------------------- scoring
class Scores:
    """Per-question recall@k, grouped by category and by conversation index."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, dict[Any, float]]] = []  # (conversation index, category, {k: recall})

    def add(
        self, conv: int, category: int, ranked: Sequence[str], gold: Sequence[str], at10: Sequence[str] | None = None
    ) -> None:
        """One question; ``at10``: the @10 list when it is recalled apart (within a token budget)."""
        g = set(gold)
        rec: dict[Any, float] = {k: len(g & set(ranked[:k])) / len(g) for k in KS}
        rec["plain10"] = rec[10]
        if at10 is not None:
            rec[10] = len(g & set(at10[:10])) / len(g)
        self.rows.append((conv, category, rec))

    def summary(self, prefix: str = "", where: Callable[[int], bool] = lambda c: True) -> dict[str, Any]:
        rows = [r for r in self.rows if where(r[0])]
        out: dict[str, Any] = {f"{prefix}recall@{k}": _mean([r[2][k] for r in rows]) for k in KS}
        by: dict[str, Any] = {}
        for cat, name in CATEGORIES.items():
            sub = [r for r in rows if r[1] == cat]
            if sub:
                by[name] = {f"recall@{k}": _mean([r[2][k] for r in sub]) for k in KS} | {"n": len(sub)}
        out[f"{prefix}by_category"] = by
        return out

    def at10(
        self, where: Callable[[int], bool] = lambda c: True, category: int | None = None, plain: bool = False
    ) -> float:
        key = "plain10" if plain else 10
        return _mean([r[2][key] for r in self.rows if where(r[0]) and (category is None or r[1] == category)])

    def interval(
        self, where: Callable[[int], bool] = lambda c: True, category: int | None = None, n_boot: int = 2000
    ) -> dict[str, Any]:
        """``n`` questions and the 95% bootstrap interval of their mean recall@10 (questions resampled
        with replacement, ``n_boot`` times, fixed seed): how far a mean over this few questions can move."""
        import numpy as np

        xs = np.array([r[2][10] for r in self.rows if where(r[0]) and (category is None or r[1] == category)])
        if not len(xs):
            return {"n": 0, "ci95": [float("nan"), float("nan")]}
        means = xs[np.random.default_rng(0).integers(0, len(xs), (n_boot, len(xs)))].mean(axis=1)
        lo, hi = np.quantile(means, [0.025, 0.975])
        return {"n": len(xs), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def _mean(xs: Sequence[float]) -> float:
    return round(statistics.fmean(xs), 4) if xs else float("nan")


class OkapiBM25:
    """Okapi BM25 exactly as ``rank_bm25.BM25Okapi`` scores it (the anchor's baseline)."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = [len(d) for d in docs]
        self.avg = sum(self.len) / max(1, len(docs))
        df = Counter(t for d in docs for t in set(d))
        n = len(docs)
        idf = {t: math.log(n - f + 0.5) - math.log(f + 0.5) for t, f in df.items()}
        floor = epsilon * (sum(idf.values()) / len(idf)) if idf else 0.0
        self.idf = {t: (v if v >= 0 else floor) for t, v in idf.items()}

    def scores(self, query: list[str]) -> list[float]:
        out = [0.0] * len(self.tf)
        for t in query:
            w = self.idf.get(t)
            if w is None:
                continue
            for j, tf in enumerate(self.tf):
                f = tf.get(t)
                if f:
                    out[j] += w * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.len[j] / self.avg))
        return out


def bm25_tokens(text: str) -> list[str]:
    from lumina_lab.memory.retrieval import STOPWORDS

    return [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]


# ---------------------------------------------------------------------- run
def make_embedder(name: str) -> Any:
    from lumina_lab.memory.embeddings import HashingEmbedder

    if name == "hashing":
        return HashingEmbedder()
    if name == "minilm":
        from lumina_lab.memory.embed_cache import DiskCachedEmbedder
        from lumina_lab.memory.minilm import MiniLMEmbedder

        return DiskCachedEmbedder(MiniLMEmbedder())
    raise SystemExit(f"unknown --embedder {name!r}: use hashing or minilm")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from lumina_lab.memory.retrieval import STEPS, RecallConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="a LoCoMo-format JSON file")
    ap.add_argument("--embedder", default="minilm", choices=["hashing", "minilm"])
    ap.add_argument("--limit", type=int, default=None, help="first N conversations only")
    for step in STEPS:
        ap.add_argument(f"--no-{step}", dest=step, action="store_false", help=f"switch the {step} step off")
    ap.add_argument("--trim-sentences", type=int, default=None, help="most sentences a trimmed turn keeps")
    ap.add_argument(
        "--trim-share", type=float, default=None, help="trim turns longer than this x their share of the budget (0: off)"
    )
    ap.add_argument(
        "--trim-lexical", type=float, default=None, help="weight of query-term overlap in a trimmed sentence's relevance"
    )
    ap.add_argument(
        "--no-contextual", dest="contextual", action="store_false", help="embed turns without the turn before"
    )
    ap.add_argument("--ablations", action="store_true", help="also run each step off, first pass only and dense only")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit("--limit must be >= 1")

    from lumina_lab.memory.chunking import estimate_tokens
    from lumina_lab.memory.collection import VectorMemory
    from lumina_lab.memory.conversation import ConversationMemory
    from lumina_lab.memory.keyword import KeywordIndex

    convs = load(args.data)[: args.limit]
    embedder = make_embedder(args.embedder)
    config = RecallConfig(**{s: getattr(args, s) for s in STEPS})
    if args.trim_sentences is not None:
        config = config.with_(trim_sentences=args.trim_sentences)
    if args.trim_share is not None:
        config = config.with_(trim_share=args.trim_share)
    if args.trim_lexical is not None:
        config = config.with_(trim_lexical=args.trim_lexical)
    variants: dict[str, RecallConfig] = {}
    if args.ablations:
        variants["dense_only"] = RecallConfig.only()
        variants["first_pass"] = RecallConfig.only("hybrid")
        # trim only acts within a token budget: the plain top-20 ablations would not see it
        variants |= {f"-{s}": config.without(s) for s in config.steps if s != "trim"}

    main_scores, bm25_scores, kw_scores = Scores(), Scores(), Scores()
    ablation_scores = {name: Scores() for name in variants}
    ingest_s, query_ms, tokens_at10, budgets, trimmed = 0.0, [], [], [], []
    answers: list[tuple[int, bool, bool]] = []  # (conversation, answer in what @10 returned, in those turns whole)
    n_turns = skipped = 0
    for ci, conv in enumerate(convs):
        texts = [turn_text(t) for t in conv["turns"]]
        n_turns += len(texts)
        skipped += conv["skipped"]
        t0 = time.perf_counter()
        store = VectorMemory(backend="memory", embedder=embedder)
        # VectorMemory takes ``embedder or HashingEmbedder()``, and a DiskCachedEmbedder over an empty cache
        # has len 0, so it is falsy: without this line a first run with a cold cache measures the hashing embedder
        store.embedder = embedder
        mem = ConversationMemory(
            store,
            name=f"c{ci}",
            config=config,
            graph_path=False,
            contextual=args.contextual,
        )
        if conv["turns"]:
            mem.remember_many(conv["turns"])
        ingest_s += time.perf_counter() - t0
        ids = [t["dia_id"] for t in conv["turns"]]
        whole = dict(zip(ids, texts, strict=True))
        okapi = OkapiBM25([bm25_tokens(t) for t in texts])
        kw = KeywordIndex()
        if ids:
            kw.add(ids, texts)
        budget10 = max(1, round(10 * statistics.fmean(estimate_tokens(t) for t in texts))) if texts else 1
        for q in conv["questions"]:
            t1 = time.perf_counter()
            rec = mem.recall(q["q"], k=20) if ids else []
            query_ms.append((time.perf_counter() - t1) * 1000)
            at10 = mem.recall(q["q"], k=10, budget_tokens=budget10) if ids else []
            ranked = [r.id for r in rec]
            main_scores.add(ci, q["category"], ranked, q["gold"], at10=[r.id for r in at10])
            tokens_at10.append(sum(r.tokens for r in at10))
            answer = _norm(q["answer"])
            if q["category"] != 5 and len(answer) >= 3 and any(answer in _norm(whole.get(g, "")) for g in q["gold"]):
                answers.append(
                    (
                        ci,
                        answer in _norm(" ".join(r.text for r in at10)),
                        answer in _norm(" ".join(whole.get(r.id, "") for r in at10)),
                    )
                )
            trimmed.append(sum(bool(getattr(r, "trimmed", False)) for r in at10))
            budgets.append(budget10)
            s = okapi.scores(bm25_tokens(q["q"]))
            order = sorted(range(len(ids)), key=lambda j: -s[j])
            bm25_scores.add(ci, q["category"], [ids[j] for j in order if s[j] > 0][:20], q["gold"])
            kw_scores.add(ci, q["category"], [i for i, _ in kw.search(q["q"], k=20)] if ids else [], q["gold"])
            for name, cfg in variants.items():
                ablation_scores[name].add(
                    ci, q["category"], [r.id for r in mem.recall(q["q"], k=20, config=cfg)], q["gold"]
                )
        mem.memory.close()

    dev = lambda c: c < 3  # noqa: E731 - conversations the weights were checked on
    held = lambda c: c >= 3  # noqa: E731
    out: dict[str, Any] = {
        "benchmark": "locomo_recall",
        "data": args.data.name,
        "embedder": args.embedder,
        "embedder_identity": getattr(embedder, "identity", type(embedder).__name__),
        "contextual": args.contextual,
        "steps": config.steps,
        "conversations": len(convs),
        "questions": len(main_scores.rows),
        "questions_skipped": skipped,
        "turns": n_turns,
    }
    out |= main_scores.summary()
    out["tokens_mean"] = round(statistics.fmean(tokens_at10), 1) if tokens_at10 else 0.0
    out["tokens_10_turns"] = round(statistics.fmean(budgets), 1) if budgets else 0.0
    out["tokens_over_budget"] = sum(t > b for t, b in zip(tokens_at10, budgets, strict=True))
    out["trim"] = {
        "on": config.trim,
        "sentences": config.trim_sentences,
        "share": config.trim_share,
        "lexical": config.trim_lexical,
    }
    out["trimmed_mean"] = round(statistics.fmean(trimmed), 2) if trimmed else 0.0
    out["recall@10_unbudgeted"] = main_scores.at10(plain=True)
    out["answer_questions"] = len(answers)
    out["answer_kept@10"] = _mean([float(a[1]) for a in answers])
    out["answer_in_turns@10"] = _mean([float(a[2]) for a in answers])
    out["ingest_s"] = round(ingest_s, 2)
    out["ingest_ms_per_turn"] = round(1000 * ingest_s / max(1, n_turns), 2)
    out["query_ms_mean"] = round(statistics.fmean(query_ms), 2) if query_ms else 0.0
    out["query_ms_p95"] = round(sorted(query_ms)[int(0.95 * (len(query_ms) - 1))], 2) if query_ms else 0.0
    out |= bm25_scores.summary("bm25_")
    out["keyword_index_recall@10"] = kw_scores.at10()
    if len(convs) > 3:
        out["by_split"] = {
            "dev": {"conversations": "0-2"} | main_scores.summary(where=dev),
            "heldout": {"conversations": f"3-{len(convs) - 1}"} | main_scores.summary(where=held),
        }
        out["dev_recall@10"] = main_scores.at10(dev)
        out["heldout_recall@10"] = main_scores.at10(held)
        out["dev_multi-hop_recall@10"] = main_scores.at10(dev, 1)
        out["heldout_multi-hop_recall@10"] = main_scores.at10(held, 1)
        out["heldout_multi-hop_interval"] = main_scores.interval(held, 1)
    out["anchor"] = {
        "bm25_recall@10": 0.583,
        "bm25_multi-hop_recall@10": 0.248,
        "dense_minilm_recall@10": 0.43,
        "target_recall@10": 0.75,
        "target_multi-hop_recall@10": 0.50,
    }
    if variants:
        out["ablations"] = {
            name: {
                "recall@10_unbudgeted": sc.at10(),
                "multi-hop": sc.at10(category=1),
                "heldout_recall@10_unbudgeted": sc.at10(held),
            }
            for name, sc in ablation_scores.items()
        }
    out["ts"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
