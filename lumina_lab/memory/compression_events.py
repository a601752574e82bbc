"""Events of memory consolidation and context compression (dashboards and the event log subscribe).

:func:`~lumina_lab.memory.consolidation.consolidate` publishes :class:`MemoryConsolidated` and
:func:`~lumina_lab.memory.compression.compress` publishes :class:`MemoryCompressed` on the bus
they are given (``bus=``), through :func:`lumina_lab.memory.events.emit`: only when someone
subscribes, and never raising into the operation.
"""

from __future__ import annotations

from ..events import Event, event
from .events import emit

__all__ = ["MemoryCompressed", "MemoryConsolidated", "emit"]


@event("memory.consolidated")
class MemoryConsolidated(Event):
    """A set of memory items was consolidated.

    ``items`` counts the items given; ``merged`` the duplicates folded into another item;
    ``superseded`` the facts replaced by a newer one (kept, marked); ``summarized`` the new
    semantic summaries and ``summarized_items`` the episodic items they cover.
    """

    items: int
    merged: int
    superseded: int
    summarized: int
    summarized_items: int = 0
    active: int = 0
    ms: float
    summarizer: str | None = None


@event("memory.compressed")
class MemoryCompressed(Event):
    """A context was compressed to a token budget.

    ``tokens_in`` is what everything would have cost, ``tokens_out`` what was kept
    (never more than ``budget_tokens``); ``ratio = tokens_out / tokens_in``.
    """

    items: int
    kept_items: int
    units: int
    kept_units: int
    tokens_in: int
    tokens_out: int
    budget_tokens: int
    ratio: float
    strategy: str
    kind: str
    query: bool
    ms: float
