"""Events of the memory area: writes and searches with their timings (dashboards subscribe to these)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..events import Event, event

if TYPE_CHECKING:
    from ..events.bus import InProcessBus

__all__ = ["MemorySearched", "MemoryWritten", "emit"]

log = logging.getLogger(__name__)


@event("memory.written")
class MemoryWritten(Event):
    """Items were upserted, deleted or cleared in a collection."""

    collection: str
    op: str  # upsert | delete | clear | ingest
    count: int
    ms: float
    backend: str


@event("memory.searched")
class MemorySearched(Event):
    """A collection was searched."""

    collection: str
    mode: str  # vector | keyword | hybrid
    k: int
    hits: int
    ms: float
    backend: str
    cache_hit: bool = False
    filtered: bool = False
    shards: int = 1
    principal: str | None = None
    denied: int = 0


def emit(bus: InProcessBus | None, cls: type[Event], **fields: Any) -> None:
    """Publish ``cls(**fields)`` if anyone listens; never raises into the caller's memory operation."""
    if bus is None or not bus.has_subscribers(cls.event_type):
        return
    try:
        bus.publish_sync(cls(**fields), timeout=5.0)
    except Exception as exc:  # a full or closed bus must not fail a search
        log.warning("could not publish %s: %s", cls.event_type, exc)
