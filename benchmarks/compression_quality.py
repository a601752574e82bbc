"""Compression quality on LoCoMo: how much evidence survives at each compression ratio, ours vs baselines.

Data: the LoCoMo conversations under ``../shared/datasets/locomo/locomo7.json`` (CC BY-NC 4.0, read in
place, never copied; see its SOURCE.md).  For every question with evidence, the context is every turn
of the session(s) holding its evidence (one item per turn: ``"Speaker: text [shared image: caption]"``,
id = its ``dia_id``, ``ts`` = the session's date plus the turn's index in seconds) and the evidence is
the question's ``dia_id`` list (malformed ids normalised).  Each context is compressed to
``floor(ratio * tokens)`` tokens by :func:`lumina_lab.memory.compression.compress` (MMR over whole
turns, query = the question) and, at the same budget, by truncation of the oldest turns and by a
random choice of turns (fixed seed); a turn counts as retained only when kept whole.

Prints one JSON line:

* ``ratios`` -- the compression ratios;
* ``mmr``, ``truncate_oldest``, ``random`` -- mean evidence retained at each ratio (same order);
* ``mmr_all_evidence`` -- share of questions with all their evidence kept, at each ratio;
* ``mmr_auc``, ``truncate_oldest_auc``, ``random_auc`` -- mean over the ratios below 1;
* ``questions``, ``mean_context_tokens``, ``seconds``.

The anchors are the two baselines of the same run: ours should sit above both at every ratio below 1.

Usage: python benchmarks/compression_quality.py [--data PATH] [--ratios 1,0.75,0.5,0.33,0.25,0.1]
       [--limit N] [--embedder hashing|minilm]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lumina_lab.memory.compression import CompressionEvaluator
from lumina_lab.memory.locomo import LoCoMoError, compression_examples, default_path, load_locomo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_path())
    ap.add_argument("--ratios", default="1,0.75,0.5,0.33,0.25,0.1")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--embedder", default="hashing")
    args = ap.parse_args()
    ratios = tuple(float(r) for r in args.ratios.split(","))
    t0 = time.perf_counter()
    try:
        exs = compression_examples(load_locomo(args.data), args.limit)
    except LoCoMoError as e:
        raise SystemExit(str(e)) from None
    ev = CompressionEvaluator(ratios, strategy="mmr", baselines=("truncate-oldest", "random"), embedder=args.embedder)
    per = ev.per_example(exs)
    curve = ev.aggregate(per)
    result: dict[str, object] = {"ratios": list(ev.ratios)}
    for method, key in (("mmr", "mmr"), ("truncate-oldest", "truncate_oldest"), ("random", "random")):
        part = curve[curve["method"] == method].set_index("ratio")
        result[key] = [round(float(part.loc[r, "evidence_retained"]), 4) for r in ev.ratios]
        below = [r for r in ev.ratios if r < 1.0]
        result[f"{key}_auc"] = round(float(part.loc[below, "evidence_retained"].mean()), 4) if below else None
        if method == "mmr":
            result["mmr_all_evidence"] = [round(float(part.loc[r, "all_evidence"]), 4) for r in ev.ratios]
    result["questions"] = len(exs)
    result["mean_context_tokens"] = round(float(per.drop_duplicates("example")["original_tokens"].mean()), 1)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
