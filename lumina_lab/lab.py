"""The :class:`Lab`: one object that wires configuration, the bus and the event store.

>>> lab = Lab(profile="test")          # doctest: +SKIP
>>> lab.publish(SomethingHappened(x=1))  # doctest: +SKIP
>>> lab.query(type="something.*")        # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .events.bus import InProcessBus
from .events.model import Event, set_default_source

if TYPE_CHECKING:
    import pandas as pd

    from .events.store import BufferedEventStore

__all__ = ["Lab"]


class Lab:
    """Lumina Lab in one process: settings, the event bus, and the event store attached to it.

    Args:
        profile: ``dev``, ``test`` or ``prod`` (see :mod:`lumina_lab.config`).
        home: ``LUMINA_HOME`` for this lab (default ``~/.lumina``).
        settings: ready :class:`~lumina_lab.config.Settings` (then the other arguments are ignored).
        **overrides: any other setting, e.g. ``events={"store": "memory"}``.
    """

    def __init__(
        self,
        *,
        profile: str | None = None,
        home: str | Path | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            if profile is not None:
                overrides["profile"] = profile
            if home is not None:
                overrides["home"] = home
            settings = load_settings(**overrides)
        self.settings = settings
        if settings.source:
            set_default_source(settings.source)
        ev = settings.events
        from .events.store import open_store

        self.store: BufferedEventStore = open_store(settings)
        self.bus = InProcessBus(queue_size=ev.queue_size, overflow=ev.overflow, retries=ev.handler_retries)
        self.store.attach(self.bus)

    # sync helpers for notebooks and scripts ------------------------------------------------
    def publish(self, *events: Event) -> None:
        """Publish events from synchronous code (waits for queue space)."""
        if len(events) == 1:
            self.bus.publish_sync(events[0])
        else:
            self.bus.publish_many_sync(events)

    async def apublish(self, *events: Event) -> None:
        """Publish events from async code."""
        for ev in events:
            await self.bus.publish(ev)

    def sync(self) -> int:
        """Wait until every published event is handled and stored; return events stored."""
        self.bus.drain_sync()
        return self.store.flush()

    async def async_sync(self) -> int:
        """Async :meth:`sync`."""
        await self.bus.drain()
        return await self.store.aflush()

    def query(self, where: str | None = None, **filters: Any) -> pd.DataFrame:
        """Stored events (after :meth:`sync`); see :meth:`BufferedEventStore.query`."""
        self.sync()
        return self.store.query(where, **filters)

    def sql(self, query: str, params: Any = None) -> pd.DataFrame:
        """SQL over ``events``, ``dead_letters``, ``dead_marks`` (after :meth:`sync`)."""
        self.sync()
        return self.store.sql(query, params)

    def close(self) -> None:
        """Handle and store everything published, then release resources."""
        try:
            self.bus.close_sync()
        finally:
            self.store.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab(profile={self.settings.profile!r}, home={str(self.settings.home)!r}, store={self.store!r})"

    def _repr_html_(self) -> str:
        s = self.settings
        return (
            f"<b>Lumina Lab</b> — profile <code>{s.profile}</code>, home <code>{s.home}</code><br>"
            f"event store: {self.store!r}<br>bus: {self.bus!r}"
        )
