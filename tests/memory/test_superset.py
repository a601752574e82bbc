"""The shared over-fetch loop of the Milvus and Weaviate adapters."""

from __future__ import annotations

from lumina_lab.memory.base import Hit
from lumina_lab.memory.filters import F
from lumina_lab.memory.stores.superset import TopK, best, first_limit, overfetch, recheck


def catalogue(n: int = 100) -> list[Hit]:
    return [Hit(f"i{j:03d}", 1.0 - j / n, "", {"g": j % 10}) for j in range(n)]


def fake_fetch(items: list[Hit], f, calls: list[int]):
    def fetch(limit: int) -> tuple[list[Hit], int]:
        calls.append(limit)
        got = items[:limit]
        return [h for h in got if recheck(f, h.metadata)], len(got)

    return fetch


def test_unfiltered_asks_for_exactly_k():
    calls: list[int] = []
    hits = overfetch(fake_fetch(catalogue(), None, calls), 5, filtered=False, max_limit=1000, scan=lambda: [])
    assert calls == [5] and [h.id for h in hits] == ["i000", "i001", "i002", "i003", "i004"]


def test_a_selective_filter_widens_then_scans():
    f = F.g == 3
    calls: list[int] = []
    hits = overfetch(fake_fetch(catalogue(), f, calls), 5, filtered=True, max_limit=1000, scan=lambda: [])
    assert calls == [37, 148] and [h.id for h in hits] == ["i003", "i013", "i023", "i033", "i043"]
    calls.clear()
    scanned = overfetch(fake_fetch(catalogue(), f, calls), 5, filtered=True, max_limit=40, scan=lambda: ["scan"])
    # The database returned a full window of 40 with only 4 matches: fall back to the exact scan.
    assert calls == [37, 40] and scanned == ["scan"]
    assert first_limit(10, True, 16) == 16 and first_limit(10, False, 16) == 10


def test_best_and_topk_order_by_score_then_id():
    hits = [Hit("b", 0.5, "", {}), Hit("a", 0.5, "", {}), Hit("c", 0.9, "", {})]
    assert [h.id for h in best(hits, 2)] == ["c", "a"]
    top = TopK(3)
    for j in range(3000):
        top.add([(float(j % 500), f"x{j:04d}", "", {})])
    assert [(h.score, h.id) for h in top.hits()] == [(499.0, "x0499"), (499.0, "x0999"), (499.0, "x1499")]
    assert recheck(None, None) and recheck(F.g == 1, {"g": 1}) and not recheck(F.g == 1, None)
