"""The LRU query cache."""

from __future__ import annotations

from lumina_lab.memory.cache import QueryCache


def test_lru_evicts_the_least_recent_and_counts():
    c = QueryCache(2)
    c.put("a", 1, "one")
    c.put("a", 2, "two")
    assert c.get("a", 1) == "one"  # 1 is now the most recent
    c.put("b", 3, "three")  # evicts ("a", 2)
    assert c.get("a", 2) is None and c.get("b", 3) == "three"
    s = c.stats()
    assert (s.hits, s.misses, s.size) == (2, 1, 2) and s.hit_rate == 2 / 3


def test_invalidation_is_per_collection_and_zero_capacity_disables():
    c = QueryCache(10)
    c.put("a", 1, "x")
    c.put("b", 1, "y")
    c.invalidate("a")
    assert c.get("a", 1) is None and c.get("b", 1) == "y"
    c.invalidate()
    assert c.get("b", 1) is None and c.stats().invalidations == 2
    off = QueryCache(0)
    off.put("a", 1, "x")
    assert off.get("a", 1) is None
