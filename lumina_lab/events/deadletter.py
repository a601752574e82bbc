"""Dead letters: events a subscriber could not handle after all its retries."""

from __future__ import annotations

import threading
import traceback as tb
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .ids import new_id
from .model import Event

__all__ = ["DeadLetter", "MemoryDeadLetters"]


class DeadLetter(BaseModel):
    """One event that a subscriber failed to handle, with the error.

    ``envelope`` is the event's wire form (see :meth:`Event.to_envelope`), so a
    dead letter can be stored, inspected and replayed later.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id)
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subscriber: str
    pattern: str
    event_id: str
    event_type: str
    envelope: dict[str, Any]
    error_type: str
    error: str
    traceback: str = ""
    attempts: int = 1

    @classmethod
    def from_failure(
        cls, event: Event, *, subscriber: str, pattern: str, exc: BaseException, attempts: int
    ) -> DeadLetter:
        """Build a dead letter for ``event`` that failed with ``exc`` after ``attempts`` tries."""
        return cls(
            subscriber=subscriber,
            pattern=pattern,
            event_id=event.id,
            event_type=event.type,
            envelope=event.to_envelope(),
            error_type=type(exc).__name__,
            error=str(exc),
            traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
            attempts=attempts,
        )


class MemoryDeadLetters:
    """Keeps dead letters in a list (the default sink when no store is attached)."""

    def __init__(self) -> None:
        self._items: list[DeadLetter] = []
        self._lock = threading.Lock()

    def put_dead_letters(self, letters: list[DeadLetter]) -> None:
        with self._lock:
            self._items.extend(letters)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        with self._lock:
            return iter(list(self._items))

    def take(self) -> list[DeadLetter]:
        """Remove and return all dead letters (for replay)."""
        with self._lock:
            items, self._items = self._items, []
        return items
