"""Schema registry: every event type with its current version, and upcasters.

Reading an event written under an older schema version upgrades its payload
step by step (v1 → v2 → ...) through registered upcasters.  An unknown type,
a version newer than the registered one, or a missing upcaster is a
:class:`~lumina_lab.errors.SchemaError` — never a silent dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic

from ..errors import SchemaError
from .model import Event

__all__ = ["SchemaRegistry", "Upcaster", "default_registry", "upcaster"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class SchemaRegistry:
    """Maps event types to their model class and upcasters.

    >>> reg = SchemaRegistry()
    >>> reg.types()
    {}
    """

    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[Event]) -> None:
        """Register ``cls`` (decorated with :func:`~lumina_lab.events.event`) as current."""
        name, version = cls.event_type, cls.event_version
        existing = self._models.get(name)
        if existing is not None and existing is not cls:
            same_class = existing.__qualname__ == cls.__qualname__ and existing.__module__ == cls.__module__
            if version < existing.event_version or (version == existing.event_version and not same_class):
                raise SchemaError(
                    f"event type {name!r} v{version} clashes with {existing.__module__}.{existing.__qualname__} "
                    f"(v{existing.event_version})",
                    hint="choose another type name, or declare a newer version (and an upcaster to it)",
                )
        self._models[name] = cls

    def add_upcaster(self, type: str, from_version: int, fn: Upcaster) -> None:
        """Register ``fn`` turning a ``from_version`` payload into a ``from_version + 1`` payload."""
        self._upcasters[(type, from_version)] = fn

    def upcaster(self, type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`add_upcaster`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self.add_upcaster(type, from_version, fn)
            return fn

        return decorate

    def types(self) -> dict[str, int]:
        """``{type: current version}`` of every registered event type."""
        return {name: cls.event_version for name, cls in sorted(self._models.items())}

    def model_for(self, type: str) -> type[Event]:
        """The current model class of ``type``."""
        try:
            return self._models[type]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "(none)"
            raise SchemaError(
                f"unknown event type {type!r}",
                input=type,
                hint=f"import the module that defines it, or register it with @event({type!r}); known types: {known}",
            ) from None

    def upgrade(self, type: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Upgrade ``payload`` of ``type`` from ``version`` to the current version."""
        cls = self.model_for(type)
        current = cls.event_version
        if version > current:
            raise SchemaError(
                f"event {type!r} has schema version {version}, newer than this code's {current}",
                hint="upgrade lumina_lab (or the package that defines the event) to read it",
            )
        while version < current:
            fn = self._upcasters.get((type, version))
            if fn is None:
                raise SchemaError(
                    f"no upcaster for event {type!r} from version {version} to {version + 1}",
                    hint=f"register one with @upcaster({type!r}, from_version={version})",
                )
            payload = fn(dict(payload))
            version += 1
        return payload

    def load(self, envelope: Mapping[str, Any]) -> Event:
        """Build the current-version event from a stored or wire ``envelope``.

        ``envelope`` has ``type``, ``schema_version``, the envelope fields and
        ``payload`` (a mapping or a JSON string).
        """
        try:
            type_, version = envelope["type"], int(envelope["schema_version"])
        except (KeyError, TypeError, ValueError):
            raise SchemaError(
                "an event envelope needs 'type' and an integer 'schema_version'",
                input=dict(envelope),
            ) from None
        payload = envelope.get("payload") or {}
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload)
        payload = self.upgrade(type_, version, dict(payload))
        cls = self.model_for(type_)
        data = {k: envelope[k] for k in ("id", "ts", "source", "trace_id", "span_id") if k in envelope}
        if isinstance(data.get("ts"), datetime) and data["ts"].tzinfo is None:
            data["ts"] = data["ts"].replace(tzinfo=UTC)
        data.update(payload)
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise SchemaError(
                f"stored event {envelope.get('id')!r} of type {type_!r} does not match its schema "
                f"(v{cls.event_version}): {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}",
                hint="register an upcaster for the version it was written with",
            ) from None


default_registry = SchemaRegistry()


def upcaster(type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register an upcaster in the default registry.

    >>> @upcaster("demo.thing.done", from_version=1)      # doctest: +SKIP
    ... def _v1_to_v2(payload): return {**payload, "unit": "ms"}
    """
    return default_registry.upcaster(type, from_version)
