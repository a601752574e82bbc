"""Event types used by the event-store tests (importable by child processes too)."""

from __future__ import annotations

from lumina_lab.events import Event, event


@event("test.store.tick")
class Tick(Event):
    n: int
    who: str = ""


@event("test.store.other")
class Other(Event):
    label: str = ""
