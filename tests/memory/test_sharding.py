"""Hash-partitioned shards: stable placement, exact scatter-gather top-k, stats."""

from __future__ import annotations

import numpy as np

from lumina_lab.memory.filters import F
from lumina_lab.memory.sharding import ShardedVectorStore, shard_of
from lumina_lab.memory.stores.memory import MemoryVectorStore


def test_placement_is_stable_and_spread():
    assert shard_of("doc-1", 4) == shard_of("doc-1", 4)
    counts = np.bincount([shard_of(f"id{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 850  # roughly a quarter each


def test_scatter_gather_equals_one_big_store():
    rng = np.random.default_rng(5)
    v = rng.normal(size=(500, 12)).astype(np.float32)
    ids = [f"i{j}" for j in range(500)]
    meta = [{"g": j % 3} for j in range(500)]
    single = MemoryVectorStore()
    sharded = ShardedVectorStore([MemoryVectorStore() for _ in range(4)])
    for s in (single, sharded):
        s.create_collection("c", dim=12)
        s.upsert("c", ids, v, metadata=meta)
    for q in rng.normal(size=(20, 12)):
        assert [h.id for h in sharded.search("c", q, k=15)] == [h.id for h in single.search("c", q, k=15)]
        assert [h.id for h in sharded.search("c", q, k=5, where=F.g == 1)] == [
            h.id for h in single.search("c", q, k=5, where=F.g == 1)
        ]
    per_shard = [s.count("c") for s in sharded.shards]
    assert sum(per_shard) == 500 and min(per_shard) > 80
    assert [s.count("c") for s in sharded.shards] == [sum(shard_of(i, 4) == j for i in ids) for j in range(4)]
    stats = sharded.stats()
    assert stats["shards"] == 4 and stats["searches"] == 40 and stats["items"]["c"] == per_shard
    assert len(stats["mean_shard_ms"]) == 4
    assert sharded.delete("c", where=F.g == 0) == single.delete("c", where=F.g == 0)
    assert sharded.count("c") == single.count("c")
    assert "4 shards" in repr(sharded)
    sharded.close()
