"""Events from every process on the machine, on a local bus: what ``lumina serve`` shows.

Each notebook kernel is its own process with its own in-process bus; what they publish reaches the
shared event log (the file store). :class:`StoreFeed` follows that log (``store.tail(follow=True)``) on
a thread and republishes each event, typed and upgraded, on a bus of its own — a bus *without* the
store attached, so nothing is stored twice. Dashboards subscribe to that bus exactly as they subscribe
to ``lab.bus`` in a notebook.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["StoreFeed"]

log = logging.getLogger(__name__)


class StoreFeed:
    """Follow ``store`` and publish what lands there on :attr:`bus`.

    Args:
        store: an event store (``lab.store``; the file store sees every process).
        bus: where to publish (default: a new ``InProcessBus`` with ``drop_oldest`` queues).
        since: start this long ago (``"5m"``), or None for only new events.
        poll_s: how often the log is looked at.
        type: glob over event types to follow.
    """

    def __init__(
        self, store: Any, *, bus: Any = None, since: str | None = "5m", poll_s: float = 0.05, type: str | None = None
    ) -> None:
        from ..events.bus import InProcessBus

        self.store = store
        self.bus = bus if bus is not None else InProcessBus(queue_size=20_000, overflow="drop_oldest", retries=0)
        self.since = since
        self.poll_s = poll_s
        self.type = type
        self.published = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StoreFeed:
        """Start following (idempotent); return self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lumina-store-feed", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        from datetime import UTC, datetime

        registry = self.store.registry
        since = _as_time(self.since) if self.since is not None else datetime.now(UTC)
        state: Any = None
        while not self._stop.is_set():
            try:
                rows, state = self.store._tail_rows(state, self.type, since)
            except Exception as exc:  # a segment merged away mid-read, a closed store: try again
                log.warning("event feed could not read the log: %s", exc)
                rows = []
            for row in rows:
                try:
                    self.bus.publish_sync(registry.load(row), timeout=5.0)
                    self.published += 1
                except Exception as exc:  # an unknown event type from a newer process: skip it
                    self.failed += 1
                    log.debug("event feed skipped %s: %s", row.get("type"), exc)
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        """Stop following (the bus stays open)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __repr__(self) -> str:
        running = "running" if self._thread is not None else "stopped"
        return f"StoreFeed({running}, published={self.published}, skipped={self.failed})"


def _as_time(value: Any) -> Any:
    from ..events.store.base import _as_time as as_time

    return as_time(value, "since")
