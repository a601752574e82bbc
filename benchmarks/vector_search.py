"""Top-10 vector search: our DuckDB default store vs DuckDB's plain SQL and Milvus Lite, at 100k and 1M.

Data: ``dim``-dimensional unit vectors from a mixture of 2,000 Gaussian clusters around random
unit centres, noise of norm ≈ 0.6 (so neighbours within a cluster have cosine ≈ 0.7, as paraphrases
do under sentence embedders; isotropic noise is not what a memory holds), queries from the same mixture.
Ground truth is exact cosine top-10 by numpy. Prints one JSON line:

* ``p50_ms_100k``, ``p95_ms_100k``, ``p50_ms_1m``, ``p95_ms_1m`` — our store's ``search(k=10)``
  after its approximate index is built (wall time per query, one query at a time);
* ``recall_at_10_100k``, ``recall_at_10_1m`` and ``recall_at_10`` (the lower) — against exact;
* ``ingest_vectors_per_s_*`` — ``upsert`` into the DuckDB file, batches of 50,000 (durable);
* ``index_build_s_*`` — building the usearch HNSW index on the first search;
* ``duckdb_sql_p50_ms_*`` — ``ORDER BY array_cosine_similarity(...) LIMIT 10`` on the same table;
* ``numpy_p50_ms_*`` — brute force ``matrix @ q`` + ``argpartition`` over the same matrix;
* ``milvus_lite_p50_ms_*``, ``milvus_lite_recall_at_10_*``, ``milvus_lite_ingest_vectors_per_s_*`` —
  pymilvus ``MilvusClient`` on a Milvus Lite file (default index, COSINE), after load. (pymilvus 3 ships
  a pure-Python Milvus Lite; the older C++ Lite, milvus-lite 2.5, is not what ``pip install pymilvus``
  brings today.)

* ``ef_sweep_*`` — recall@10 and p50 of the same index at fixed search breadths (``--sweep-ef``);
  ``expansion_search_*`` is the breadth the store picks by itself at that size.

Usage: python benchmarks/vector_search.py [--sizes 100000,1000000] [--dim 384] [--queries 200]
       [--no-milvus] [--milvus-max 1000000] [--sweep-ef 128,256,512,1024]
       [--ann-params connectivity=32,expansion_add=64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def mixture(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        x = centres[rng.integers(0, len(centres), m)] + 0.6 / np.sqrt(dim) * rng.standard_normal((m, dim), dtype=np.float32)
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top10(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), 10), np.int64)
    for i, q in enumerate(queries):
        s = data @ q
        top = np.argpartition(-s, 10)[:10]
        out[i] = top[np.argsort(-s[top])]
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]))


def bench_ours(
    root: Path, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, tag: str, sweep_ef: list[int],
    ann_params: dict | None = None,
) -> dict:
    from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

    store = DuckDBVectorStore(root / "ours.duckdb", lease_s=1.0, ann_params=ann_params)
    store.create_collection("bench", dim=data.shape[1])
    ids = [str(i) for i in range(len(data))]
    t = time.perf_counter()
    for lo in range(0, len(data), 50_000):
        store.upsert("bench", ids[lo : lo + 50_000], data[lo : lo + 50_000])
    ingest = len(data) / (time.perf_counter() - t)
    t = time.perf_counter()
    store.search("bench", queries[0], k=10)  # builds (and saves) the approximate index
    build = time.perf_counter() - t
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = store.search("bench", q, k=10)
        times.append((time.perf_counter() - t) * 1000)
        found.append([int(h.id) for h in hits])
    sweep = {}
    ann = store._tables["bench"].ann
    if ann is not None and sweep_ef:
        for ef in sweep_ef:  # recall vs latency at fixed search breadths, same index
            ann.fixed_expansion = ef
            st, sf = [], []
            for q in queries:
                t = time.perf_counter()
                hits = store.search("bench", q, k=10)
                st.append((time.perf_counter() - t) * 1000)
                sf.append([int(h.id) for h in hits])
            sweep[str(ef)] = {"p50_ms": round(statistics.median(st), 3), "recall_at_10": round(recall(sf, truth), 4)}
        ann.fixed_expansion = None
        expansion = ann.expansion(64)
    else:
        expansion = None
    store.close()
    t = time.perf_counter()
    reopened = DuckDBVectorStore(root / "ours.duckdb", ann_params=ann_params)
    reopened.search("bench", queries[0], k=10)
    reopen = time.perf_counter() - t
    reopened.close()
    return {
        f"p50_ms_{tag}": round(statistics.median(times), 3),
        f"p95_ms_{tag}": round(pct(times, 95), 3),
        f"recall_at_10_{tag}": round(recall(found, truth), 4),
        f"ingest_vectors_per_s_{tag}": round(ingest),
        f"index_build_s_{tag}": round(build, 2),
        f"reopen_first_search_s_{tag}": round(reopen, 2),
        f"expansion_search_{tag}": expansion,
        f"ef_sweep_{tag}": sweep,
    }


def bench_duckdb_sql(root: Path, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, tag: str, n_q: int) -> dict:
    import duckdb

    con = duckdb.connect(str(root / "ours.duckdb"), read_only=True)
    dim = data.shape[1]
    times, found = [], []
    for q in queries[:n_q]:
        t = time.perf_counter()
        rows = con.execute(
            f'SELECT id FROM "c_bench" ORDER BY array_cosine_similarity(vector, ?::FLOAT[{dim}]) DESC LIMIT 10',
            [q.tolist()],
        ).fetchall()
        times.append((time.perf_counter() - t) * 1000)
        found.append([int(r[0]) for r in rows])
    con.close()
    return {
        f"duckdb_sql_p50_ms_{tag}": round(statistics.median(times), 2),
        f"duckdb_sql_recall_at_10_{tag}": round(recall(found, truth[:n_q]), 4),
    }


def bench_numpy(data: np.ndarray, queries: np.ndarray, tag: str, n_q: int) -> dict:
    times = []
    for q in queries[:n_q]:
        t = time.perf_counter()
        s = data @ q
        np.argpartition(-s, 10)[:10]
        times.append((time.perf_counter() - t) * 1000)
    return {f"numpy_p50_ms_{tag}": round(statistics.median(times), 2)}


def bench_milvus(root: Path, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, tag: str, n_q: int) -> dict:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(root / f"milvus_{tag}.db"))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=data.shape[1])
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_collection("bench", schema=schema, index_params=index)
    t = time.perf_counter()
    for lo in range(0, len(data), 10_000):
        chunk = data[lo : lo + 10_000]
        client.insert("bench", [{"id": lo + j, "vector": v} for j, v in enumerate(chunk)])
    client.flush("bench")
    client.load_collection("bench")
    ingest = len(data) / (time.perf_counter() - t)
    client.search("bench", [queries[0].tolist()], limit=10)
    times, found = [], []
    for q in queries[:n_q]:
        t = time.perf_counter()
        res = client.search("bench", [q.tolist()], limit=10)
        times.append((time.perf_counter() - t) * 1000)
        found.append([int(h["id"]) for h in res[0]])
    client.close()
    return {
        f"milvus_lite_p50_ms_{tag}": round(statistics.median(times), 3),
        f"milvus_lite_recall_at_10_{tag}": round(recall(found, truth[:n_q]), 4),
        f"milvus_lite_ingest_vectors_per_s_{tag}": round(ingest),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sql-queries", type=int, default=10)
    ap.add_argument("--no-milvus", action="store_true")
    ap.add_argument("--milvus-queries", type=int, default=50, help="queries timed on Milvus Lite (slow per query)")
    ap.add_argument("--milvus-max", type=int, default=1_000_000, help="skip Milvus Lite above this size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ann-params", default="", help="usearch overrides, e.g. connectivity=32,expansion_add=64")
    ap.add_argument("--sweep-ef", default="128,256,512,1024", help="search breadths to sweep (empty: none)")
    args = ap.parse_args()
    sweep_ef = [int(x) for x in args.sweep_ef.split(",") if x]
    ann_params = {k: (v if k == "dtype" else int(v)) for k, v in (kv.split("=") for kv in args.ann_params.split(",") if kv)}
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((2000, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out: dict = {"dim": args.dim, "queries": args.queries, "cpus": os.cpu_count(), "ann_params": ann_params}
    for n in (int(s) for s in args.sizes.split(",")):
        tag = "1m" if n == 1_000_000 else ("100k" if n == 100_000 else str(n))
        data = mixture(n, args.dim, centres, rng)
        queries = mixture(args.queries, args.dim, centres, rng)
        truth = exact_top10(data, queries)
        with tempfile.TemporaryDirectory(prefix="lumina-vs-bench-") as tmp:
            root = Path(tmp)
            out |= bench_ours(root, data, queries, truth, tag, sweep_ef, ann_params)
            out |= bench_duckdb_sql(root, data, queries, truth, tag, args.sql_queries)
            out |= bench_numpy(data, queries, tag, 50)
            if not args.no_milvus and n <= args.milvus_max:
                try:
                    out |= bench_milvus(root, data, queries, truth, tag, args.milvus_queries)
                except ImportError:
                    out[f"milvus_lite_p50_ms_{tag}"] = None
        del data
    recalls = [v for k, v in out.items() if k.startswith("recall_at_10_")]
    out["recall_at_10"] = min(recalls) if recalls else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
