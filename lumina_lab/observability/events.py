"""Events of the observability area: user-level spans (notebook runs) and alerts.

Spans of routed requests, provider attempts, memory operations and policy
decisions are *derived* from the events those areas already publish; the only
spans announced by events of their own are the ones code opens explicitly
(``lab.run(...)``, :meth:`Observability.span`), so that they travel the same
bus, land in the same event log and keep their order with the events they
enclose.
"""

from __future__ import annotations

from typing import Any

from ..events import Event, event

__all__ = ["AlertFired", "AlertResolved", "SpanEnded", "SpanStarted"]


@event("span.started")
class SpanStarted(Event):
    """A span opened by code (a notebook run, a block of work).  The envelope's ids are the span's own."""

    name: str
    kind: str = "run"
    parent_id: str | None = None
    session: str | None = None
    attributes: dict[str, Any] = {}


@event("span.ended")
class SpanEnded(Event):
    """The span with the envelope's ``trace_id``/``span_id`` ended."""

    name: str
    kind: str = "run"
    parent_id: str | None = None
    status: str = "ok"  # ok | error
    error: str | None = None
    duration_s: float = 0.0
    attributes: dict[str, Any] = {}


@event("alert.fired")
class AlertFired(Event):
    """An alert rule's condition has held for its ``for`` period."""

    rule: str
    expr: str
    severity: str = "warning"
    value: float | None = None
    threshold: float | None = None
    pending_s: float = 0.0
    description: str = ""


@event("alert.resolved")
class AlertResolved(Event):
    """A firing alert's condition no longer holds."""

    rule: str
    expr: str
    severity: str = "warning"
    value: float | None = None
    fired_s: float = 0.0
