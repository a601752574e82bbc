"""Event stores: :class:`FileEventStore` (default, multi-process) and :class:`MemoryEventStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BufferedEventStore
from .file import FileEventStore
from .memory import MemoryEventStore

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["BufferedEventStore", "FileEventStore", "MemoryEventStore", "open_store"]


def open_store(settings: Settings | None = None, **overrides: Any) -> BufferedEventStore:
    """Open the event store that ``settings`` choose (``events.store``: ``file`` or ``memory``).

    ``overrides`` are passed to :func:`~lumina_lab.config.load_settings` when
    ``settings`` is not given.
    """
    from ...config import load_settings

    settings = settings or load_settings(**overrides)
    ev = settings.events
    common = {"batch_size": ev.batch_size, "flush_interval_s": ev.flush_interval_s}
    if ev.store == "memory":
        return MemoryEventStore(**common)
    return FileEventStore(settings.events_dir, fsync=ev.fsync, **common)
