"""Events of conversation memory: remembered, recalled, consolidated, compressed.

:class:`~lumina_lab.memory.conversation.ConversationMemory` publishes them on the bus it
is given, through :func:`lumina_lab.memory.events.emit` (only when someone subscribes, and
never raising into the memory operation).  ``memory.consolidated`` and ``memory.compressed``
are declared once, beside :func:`~lumina_lab.memory.consolidation.consolidate` and
:func:`~lumina_lab.memory.compression.compress` which publish them too; they are re-exported
here so the four conversation-memory events import from one place.
"""

from __future__ import annotations

from ..events import Event, event
from .compression_events import MemoryCompressed, MemoryConsolidated
from .events import emit

__all__ = ["MemoryCompressed", "MemoryConsolidated", "MemoryRecalled", "MemoryRemembered", "emit"]


@event("memory.remembered")
class MemoryRemembered(Event):
    """Items were written to a conversation memory.

    ``kinds`` counts them by kind (``turn``, ``document``, ``fact``); ``entities`` is the number
    of entity mentions linked in the semantic graph; ``ms`` covers embedding, storing and indexing.
    """

    memory: str
    count: int
    level: str
    kinds: dict[str, int]
    entities: int = 0
    ms: float
    backend: str


@event("memory.recalled")
class MemoryRecalled(Event):
    """A conversation memory was asked to recall.

    ``steps`` are the recall steps that ran; ``tokens`` the estimated tokens of the returned
    items; ``budget_tokens`` the budget asked for, if any; ``context`` whether it was for
    :meth:`~lumina_lab.memory.conversation.ConversationMemory.context`.
    """

    memory: str
    k: int
    hits: int
    level: str | None = None
    steps: list[str]
    tokens: int
    budget_tokens: int | None = None
    context: bool = False
    ms: float
