"""The :class:`Event` base model and the :func:`event` decorator that registers types.

An event is a frozen pydantic model.  The *envelope* (``id``, ``ts``,
``source``, ``trace_id``, ``span_id``) is common to all events; the class
declares the ``type`` (a dotted name such as ``provider.call.finished``), its
``schema_version`` and the payload fields::

    @event("provider.call.finished", version=2)
    class CallFinished(Event):
        provider: str
        latency_ms: float
"""

from __future__ import annotations

import builtins
import inspect
import os
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SchemaError
from .context import current_trace_ids
from .ids import new_id

if TYPE_CHECKING:
    from .registry import SchemaRegistry

__all__ = ["ENVELOPE_FIELDS", "Event", "default_source", "event", "set_default_source"]

ENVELOPE_FIELDS = frozenset({"id", "ts", "source", "trace_id", "span_id"})
_ENVELOPE_SET = set(ENVELOPE_FIELDS)
_RESERVED = ENVELOPE_FIELDS | {"type", "schema_version", "payload"}
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_source: str | None = None


def default_source() -> str:
    """The ``source`` stamped on events of this process (``host:pid`` unless set)."""
    global _source
    if _source is None:
        _source = f"{socket.gethostname()}:{os.getpid()}"
    return _source


def set_default_source(name: str | None) -> None:
    """Name this process on its events (``None`` restores ``host:pid``)."""
    global _source
    _source = name


def _forget_source_after_fork() -> None:
    global _source
    if _source is not None and _source.endswith(f":{os.getppid()}"):
        _source = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_source_after_fork)


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base class of every event.  Subclass it and decorate with :func:`event`.

    Envelope fields are filled automatically: a sortable unique ``id``
    (UUIDv7), the UTC timestamp ``ts``, the process ``source`` and, when a
    span is active, its ``trace_id`` and ``span_id``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = ""
    event_version: ClassVar[int] = 0

    id: str = Field(default_factory=new_id)
    ts: datetime = Field(default_factory=_now)
    source: str = Field(default_factory=default_source)
    trace_id: str | None = None
    span_id: str | None = None

    def __init__(self, **data: Any) -> None:
        if "trace_id" not in data:
            data["trace_id"], span_id = current_trace_ids()
            data.setdefault("span_id", span_id)
        super().__init__(**data)

    @property
    def type(self) -> str:
        """The dotted event type, e.g. ``provider.call.finished``."""
        return self.event_type

    @property
    def schema_version(self) -> int:
        """The schema version of this event's payload."""
        return self.event_version

    def payload(self) -> dict[str, Any]:
        """The payload fields as JSON-compatible data."""
        return self.model_dump(mode="json", exclude=ENVELOPE_FIELDS)

    def payload_json(self) -> str:
        """The payload fields as a JSON object string."""
        return self.__pydantic_serializer__.to_json(self, exclude=_ENVELOPE_SET).decode()

    def payload_json_bytes(self) -> bytes:
        """The payload fields as UTF-8 JSON bytes (the fast path used by stores)."""
        return self.__pydantic_serializer__.to_json(self, exclude=_ENVELOPE_SET)

    def to_envelope(self) -> dict[str, Any]:
        """The wire form: envelope fields, ``type``, ``schema_version`` and ``payload``."""
        return {
            "id": self.id,
            "type": self.event_type,
            "schema_version": self.event_version,
            "ts": self.ts.isoformat(),
            "source": self.source,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "payload": self.payload(),
        }


E = TypeVar("E", bound=type[Event])


def event(type: str, *, version: int = 1, registry: SchemaRegistry | None = None) -> Callable[[E], E]:
    """Class decorator: give an :class:`Event` subclass its type and version and register it.

    Args:
        type: dotted lowercase name, e.g. ``"memory.item.written"``.
        version: schema version of the payload (start at 1; bump on change and
            register an upcaster from the old version).
        registry: where to register (default: the process-wide registry).
    """
    if not isinstance(type, str) or not _TYPE_RE.match(type):
        raise SchemaError(
            f"event type {type!r} is not a dotted lowercase name",
            input=type,
            hint="use names like 'provider.call.finished' (letters, digits, _; at least one dot)",
        )
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"event version {version!r} for {type!r} must be an integer >= 1", input=version)

    def decorate(cls: E) -> E:
        if not (isinstance(cls, builtins.type) and issubclass(cls, Event)):
            raise SchemaError(f"@event({type!r}) decorates Event subclasses, not {cls!r}", input=cls)
        declared: set[str] = set()
        for klass in cls.__mro__:
            if klass is Event or not (isinstance(klass, builtins.type) and issubclass(klass, Event)):
                continue
            declared.update(inspect.get_annotations(klass))
        clash = _RESERVED & declared
        if clash:
            raise SchemaError(
                f"event {type!r} declares reserved field(s) {sorted(clash)}",
                hint="rename the payload field(s); these names belong to the envelope",
            )
        cls.event_type = type
        cls.event_version = version
        from .registry import default_registry

        (registry or default_registry).register(cls)
        return cls

    return decorate
