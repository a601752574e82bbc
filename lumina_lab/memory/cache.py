"""An LRU cache of search results, invalidated by writes (per collection)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

__all__ = ["CacheStats", "QueryCache"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    invalidations: int
    size: int
    capacity: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class QueryCache:
    """Least-recently-used results keyed by ``(collection, key)``; :meth:`invalidate` drops a collection's.

    >>> c = QueryCache(2)
    >>> c.put("docs", "q1", [1]); c.get("docs", "q1")
    [1]
    >>> c.invalidate("docs"); c.get("docs", "q1") is None
    True
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._data: OrderedDict[tuple[str, Hashable], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.invalidations = 0

    def get(self, collection: str, key: Hashable) -> Any | None:
        if self.capacity <= 0:
            return None
        with self._lock:
            try:
                value = self._data[(collection, key)]
            except KeyError:
                self.misses += 1
                return None
            self._data.move_to_end((collection, key))
            self.hits += 1
            return value

    def put(self, collection: str, key: Hashable, value: Any) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._data[(collection, key)] = value
            self._data.move_to_end((collection, key))
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def invalidate(self, collection: str | None = None) -> None:
        """Forget the results of ``collection`` (or of all collections)."""
        with self._lock:
            self.invalidations += 1
            if collection is None:
                self._data.clear()
            else:
                for key in [k for k in self._data if k[0] == collection]:
                    del self._data[key]

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.hits, self.misses, self.invalidations, len(self._data), self.capacity)
