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
import re
import time
from datetime import datetime
from pathlib import Path

from lumina_lab.memory.compression import CompressionEvaluator

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo7.json"
_ID = re.compile(r"D:?(\d+):0*(\d+)")


def norm_ids(evidence: list[str]) -> list[str]:
    """``["D8:6; D9:17", "D:11:26", "D30:05"]`` -> ``["D8:6", "D9:17", "D11:26", "D30:5"]``."""
    out: list[str] = []
    for e in evidence:
        for m in _ID.finditer(str(e)):
            out.append(f"D{int(m.group(1))}:{int(m.group(2))}")
    return list(dict.fromkeys(out))


def session_ts(value: str) -> float:
    """``"1:56 pm on 8 May, 2023"`` -> epoch seconds (0.0 if it does not parse)."""
    try:
        return datetime.strptime(value.strip(), "%I:%M %p on %d %B, %Y").timestamp()
    except ValueError:
        return 0.0


def examples(data: list[dict], limit: int | None = None) -> list[tuple[str, list[dict], list[str]]]:
    out = []
    for conv in data:
        c = conv["conversation"]
        sessions: dict[int, list[dict]] = {}
        for key, turns in c.items():
            m = re.fullmatch(r"session_(\d+)", key)
            if not m or not isinstance(turns, list):
                continue
            n = int(m.group(1))
            ts = session_ts(c.get(f"{key}_date_time", ""))
            items = []
            for j, t in enumerate(turns):
                text = f"{t['speaker']}: {t['text']}"
                if t.get("blip_caption"):
                    text += f" [shared image: {t['blip_caption']}]"
                items.append({"id": t["dia_id"], "text": text, "ts": ts + j})
            sessions[n] = items
        for qa in conv["qa"]:
            evidence = norm_ids(qa.get("evidence", []))
            wanted = sorted({int(e[1:].split(":")[0]) for e in evidence} & set(sessions))
            items = [it for n in wanted for it in sessions[n]]
            ids = {it["id"] for it in items}
            evidence = [e for e in evidence if e in ids]
            if evidence:
                out.append((qa["question"], items, evidence))
            if limit is not None and len(out) >= limit:
                return out
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--ratios", default="1,0.75,0.5,0.33,0.25,0.1")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--embedder", default="hashing")
    args = ap.parse_args()
    ratios = tuple(float(r) for r in args.ratios.split(","))
    t0 = time.perf_counter()
    exs = examples(json.loads(args.data.read_text()), args.limit)
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
