"""Events of the policy lab: decisions at enforcement points, denials, shadow differences, new versions."""

from __future__ import annotations

import asyncio
from typing import Any

from ..events import Event, event

__all__ = ["PolicyDecided", "PolicyDeniedEvent", "PolicyShadowDiff", "PolicyVersionPublished", "aemit", "emit"]


@event("policy.decided")
class PolicyDecided(Event):
    """A decision at an enforcement point (or by the engine when asked to record every decision).

    ``ms``: how long deciding took, in milliseconds (entities, cache and Cedar; for a decision made in a
    batch, the batch's time divided by its size); ``None`` in events written before it was recorded.
    """

    principal: str
    action: str
    resource: str
    context: dict[str, Any] = {}
    decision: str
    policies: list[str] = []
    annotations: dict[str, str] = {}
    errors: list[str] = []
    point: str = "engine"
    version: int | None = None
    ms: float | None = None


@event("policy.denied")
class PolicyDeniedEvent(Event):
    """An enforcement point refused an action (the caller got :class:`~lumina_lab.errors.PolicyDenied`).

    ``ms``: how long deciding took, in milliseconds (as in :class:`PolicyDecided`).
    """

    principal: str
    action: str
    resource: str
    context: dict[str, Any] = {}
    policies: list[str] = []
    annotations: dict[str, str] = {}
    errors: list[str] = []
    explanation: str
    point: str = "engine"
    version: int | None = None
    ms: float | None = None


@event("policy.shadow.diff")
class PolicyShadowDiff(Event):
    """A candidate policy version decided a live request differently from the live version."""

    principal: str
    action: str
    resource: str
    context: dict[str, Any] = {}
    live: str
    candidate: str
    live_policies: list[str] = []
    candidate_policies: list[str] = []
    live_version: int | None = None
    candidate_version: int | None = None
    explanation: str = ""


@event("policy.version.published")
class PolicyVersionPublished(Event):
    """A new policy version was published to a policy store."""

    version: int
    digest: str
    policies: int
    templates: int = 0
    links: int = 0
    message: str = ""
    path: str | None = None


def _wants(bus: Any, cls: type[Event]) -> bool:
    return bus is not None and bus.has_subscribers(cls.event_type)


def emit(bus: Any, event: Event) -> None:
    """Publish ``event`` from synchronous code on any thread (never blocks the bus loop itself)."""
    loop = getattr(bus, "_loop", None)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is loop:
        try:
            bus.publish_nowait(event)
        except Exception:  # a full 'block' subscriber: hand it to the loop instead of failing the caller
            running.create_task(bus.publish(event))
    else:
        bus.publish_sync(event)


async def aemit(bus: Any, event: Event) -> None:
    """Publish ``event`` from async code."""
    await bus.publish(event)
