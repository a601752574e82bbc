"""The protocols at the seams of the event spine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol, runtime_checkable

from .deadletter import DeadLetter
from .model import Event

__all__ = ["DeadLetterSink", "EventBus", "EventStore", "Handler", "Overflow", "Projection"]

Overflow = Literal["block", "drop_oldest"]
Handler = Callable[[Any], Awaitable[None] | None]


@runtime_checkable
class DeadLetterSink(Protocol):
    """Where dead letters go (the event store, or memory)."""

    def put_dead_letters(self, letters: list[DeadLetter]) -> None: ...


@runtime_checkable
class EventBus(Protocol):
    """Publish typed events to subscribers chosen by topic pattern."""

    async def publish(self, event: Event) -> None: ...

    def publish_sync(self, event: Event) -> None: ...

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        name: str | None = None,
        maxsize: int | None = None,
        overflow: Overflow | None = None,
        batch: int | None = None,
    ) -> Any: ...

    async def drain(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class EventStore(Protocol):
    """Append-only event log, queryable with SQL."""

    def append(self, events: Iterable[Event]) -> None: ...

    def flush(self) -> int: ...

    def query(self, where: str | None = None, **filters: Any) -> Any: ...

    def sql(self, query: str, params: Any = None) -> Any: ...

    def close(self) -> None: ...


@runtime_checkable
class Projection(Protocol):
    """A view built by folding events, e.g. a cost ledger or provider statistics."""

    def apply(self, event: Event) -> None: ...
