"""Filtered search through a database that narrows a filter only to a *superset* (Milvus, Weaviate).

The adapters translate a :class:`~lumina_lab.memory.filters.Filter` into the database's own
filter where they can do so exactly or more loosely (never more strictly), re-check each
returned item with :meth:`Filter.matches <lumina_lab.memory.filters.Filter.matches>`, and so
must over-fetch: ask for more than ``k``, widen while too few survive, and scan exactly once
the database's result window is exhausted. This module holds that loop once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..base import Hit
from ..filters import Filter

__all__ = ["TopK", "best", "first_limit", "overfetch", "recheck"]


def best(hits: list[Hit], k: int) -> list[Hit]:
    """The ``k`` best hits, by score then id (the order every backend returns)."""
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits[:k]


def recheck(f: Filter | None, metadata: Mapping[str, Any] | None) -> bool:
    """Whether an item the database returned for the superset filter really matches ``f``."""
    return f is None or f.matches(metadata or {})


def first_limit(k: int, filtered: bool, max_limit: int) -> int:
    """How many results to ask for first: ``k`` unfiltered, else ``max(4k, k + 32)`` within the window."""
    return k if not filtered else min(max_limit, max(4 * k, k + 32))


def overfetch(
    fetch: Callable[[int], tuple[list[Hit], int]],
    k: int,
    *,
    filtered: bool,
    max_limit: int,
    scan: Callable[[], list[Hit]],
) -> list[Hit]:
    """Top-``k`` hits that pass the re-check, widening the request until enough survive.

    Args:
        fetch: ``fetch(limit)`` asks the database for its top ``limit`` and returns the hits that
            passed :func:`recheck`, and how many the database returned before the re-check.
        k: hits wanted.
        filtered: whether a filter is in force (an unfiltered request asks for exactly ``k``).
        max_limit: the database's largest result window.
        scan: the exact fallback once the window is exhausted and still too few hits survive.
    """
    limit = first_limit(k, filtered, max_limit)
    while True:
        hits, got = fetch(limit)
        if len(hits) >= k or got < limit:  # enough, or the database has nothing more to give
            return best(hits, k)
        if limit >= max_limit:
            return scan()
        limit = min(max_limit, limit * 4)


class TopK:
    """The ``k`` best ``(score, id, text, metadata)`` seen in a scan, kept small as rows stream by."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._items: list[tuple[float, str, str, dict[str, Any]]] = []

    def add(self, items: Iterable[tuple[float, str, str, dict[str, Any]]]) -> None:
        self._items.extend(items)
        if len(self._items) > 4 * self.k + 1024:
            self._prune()

    def _prune(self) -> None:
        self._items.sort(key=lambda t: (-t[0], t[1]))
        del self._items[self.k :]

    def hits(self) -> list[Hit]:
        self._prune()
        return [Hit(i, s, t, md) for s, i, t, md in self._items]
