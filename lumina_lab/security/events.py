"""Audit events of the security area: every key-ring change, every value that failed to open, every
login to the served dashboards.

They go on the bus the :class:`~lumina_lab.security.keys.KeyRing` was given (and from there to
the event store, like every event).  Keys themselves never appear in an event: only their ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..events import Event, event, upcaster

if TYPE_CHECKING:
    from ..events.bus import InProcessBus

__all__ = [
    "AccessRefused",
    "DecryptFailed",
    "KeyCreated",
    "KeyRetired",
    "KeyRotated",
    "LoginAttempted",
    "ValuesRewrapped",
    "audit",
]

log = logging.getLogger(__name__)


@event("security.key.created")
class KeyCreated(Event):
    """A key ring was created with its first key (``path``: where it is kept, if in a file)."""

    key_id: str
    path: str | None = None


@event("security.key.rotated")
class KeyRotated(Event):
    """A new key became the active one: new values are sealed with it; old ones still open."""

    key_id: str
    previous: str
    keys: int


@event("security.key.retired")
class KeyRetired(Event):
    """A key left the key ring: values still sealed with it can no longer be opened."""

    key_id: str
    keys: int


@event("security.values.rewrapped")
class ValuesRewrapped(Event):
    """Sealed values had their data keys wrapped again with the active key (payloads untouched)."""

    where: str
    count: int
    key_id: str
    ms: float


@event("security.decrypt.failed")
class DecryptFailed(Event):
    """A sealed value did not open: ``reason`` is ``unknown key`` or ``altered`` (authentication failed)."""

    key_id: str
    context: str
    reason: str


@event("security.login", version=2)
class LoginAttempted(Event):
    """Someone tried to log in to the served dashboards: ``ok``, and if not, ``reason`` (``password``,
    ``code``, ``code reused``, ``unknown user``; for an OAuth login the provider's error, e.g.
    ``access_denied``); ``remote`` is the client's address; ``method`` is how: ``password`` or
    ``oauth:<provider>`` (e.g. ``oauth:github``).  The user of a refused OAuth login is unknown (``""``).

    Version 2 added ``method`` (version 1 events were all password logins)."""

    user: str
    ok: bool
    reason: str = ""
    remote: str | None = None
    method: str = "password"


@event("security.access.refused")
class AccessRefused(Event):
    """A request for a protected endpoint of ``lumina serve`` was turned away: ``resource`` (``/metrics``),
    ``reason`` (``unknown token``: a bearer token that is not, or no longer, valid; ``not logged in``;
    ``no credentials``; ``tokens file unreadable``) and ``remote``, the client's address.  The token
    itself is never in the event."""

    resource: str
    reason: str
    remote: str | None = None


@upcaster("security.login", from_version=1)
def _login_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "method": "password"}


def audit(bus: InProcessBus | Callable[[], InProcessBus | None] | None, cls: type[Event], **fields: Any) -> None:
    """Publish an audit event if there is a bus; a full or closed bus is logged, never raised.

    ``bus`` may also be a function that returns the bus (a server's, made on first use): if it fails,
    the event is lost and the log says so, and the request being audited goes on."""
    if callable(bus) and not hasattr(bus, "publish_sync"):
        try:
            bus = bus()
        except Exception as exc:
            log.warning("no bus for audit event %s: %s", cls.event_type, exc)
            return
    if bus is None:
        return
    try:
        bus.publish_sync(cls(**fields), timeout=5.0)
    except Exception as exc:
        log.warning("could not publish audit event %s: %s", cls.event_type, exc)
