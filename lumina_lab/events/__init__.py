"""The event spine: typed, versioned events, the bus, and the event store.

>>> from lumina_lab.events import Event, event
>>> @event("docs.example.done")
... class ExampleDone(Event):
...     n: int
>>> ExampleDone(n=1).type
'docs.example.done'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import DeadLetterSink, EventBus, EventStore, Projection
from .bus import InProcessBus, Subscription
from .context import current_trace_ids, trace_scope
from .deadletter import DeadLetter, MemoryDeadLetters
from .ids import new_id
from .model import ENVELOPE_FIELDS, Event, event, set_default_source
from .registry import SchemaRegistry, default_registry, upcaster

if TYPE_CHECKING:
    from .store import FileEventStore, MemoryEventStore, open_store

__all__ = [
    "ENVELOPE_FIELDS",
    "DeadLetter",
    "DeadLetterSink",
    "Event",
    "EventBus",
    "EventStore",
    "FileEventStore",
    "InProcessBus",
    "MemoryDeadLetters",
    "MemoryEventStore",
    "Projection",
    "SchemaRegistry",
    "Subscription",
    "current_trace_ids",
    "default_registry",
    "event",
    "new_id",
    "open_store",
    "set_default_source",
    "trace_scope",
    "upcaster",
]

_LAZY = {"FileEventStore", "MemoryEventStore", "open_store"}


def __getattr__(name: str) -> Any:  # store modules import duckdb/pyarrow: load on first use
    if name in _LAZY:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'lumina_lab.events' has no attribute {name!r}")
