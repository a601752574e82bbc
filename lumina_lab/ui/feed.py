"""Events from every process, on a local bus: what ``lumina serve`` shows.

Each notebook kernel is its own process with its own in-process bus; what they publish reaches the
shared event log (the file store). :class:`StoreFeed` follows that log (``store.tail(follow=True)``) on
a thread and republishes each event, typed and upgraded, on a bus of its own — a bus *without* the
store attached, so nothing is stored twice. Dashboards subscribe to that bus exactly as they subscribe
to ``lab.bus`` in a notebook.

When the lab's bus is a broker (``events.bus = "nats"`` or ``"rabbitmq"``), every process's events
already pass through it: :class:`BrokerFeed` replays the recent past from the log, then forwards what
the broker delivers, within milliseconds instead of a flush and a poll later.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["BrokerFeed", "StoreFeed", "open_feed"]

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


class BrokerFeed:
    """The recent past from ``store``, then every event the broker bus ``source`` delivers, on :attr:`bus`.

    It subscribes to the broker first and holds what arrives while the log's backlog (``since``)
    is replayed; then it lets the held events through, skipping those the backlog already had
    (by id), and forwards the rest as they come.

    Args:
        store: the event store (for the backlog).
        source: a broker bus (``lab.bus`` with ``events.bus = "nats"`` or ``"rabbitmq"``).
        bus: where to publish (default: a new ``InProcessBus`` with ``drop_oldest`` queues).
        since: replay the log from this long ago (``"5m"``), or None for only new events.
        type: glob over event types to follow.
    """

    def __init__(
        self, store: Any, source: Any, *, bus: Any = None, since: str | None = "5m", type: str | None = None
    ) -> None:
        from ..events.bus import InProcessBus

        self.store = store
        self.source = source
        self.bus = bus if bus is not None else InProcessBus(queue_size=20_000, overflow="drop_oldest", retries=0)
        self.since = since
        self.type = type
        self.published = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._held: list[Any] | None = []  # live events that arrive while the backlog is replayed
        self._replayed: set[str] = set()  # ids of the backlog's last seconds (the only possible overlap)
        self._sub: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> BrokerFeed:
        """Subscribe to the broker and replay the backlog (idempotent); return self."""
        if self._sub is None:
            from ..events.ids import new_id

            self._subscribed_at = _now()
            self._sub = self.source.subscribe(self.type or "*", self._live, name=f"lumina-serve-{new_id()[-8:]}")
            self._thread = threading.Thread(target=self._replay, name="lumina-broker-feed", daemon=True)
            self._thread.start()
        return self

    def _forward(self, event: Any) -> None:
        try:
            self.bus.publish_sync(event, timeout=5.0)
            self.published += 1
        except Exception as exc:  # a closed local bus (the server stopping)
            self.failed += 1
            log.debug("broker feed dropped %s: %s", getattr(event, "type", event), exc)

    def _live(self, event: Any) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(event)
                return
        if event.id not in self._replayed:
            self._forward(event)

    def _replay(self) -> None:
        from datetime import timedelta

        if self.since is not None:
            registry = self.store.registry
            overlap_from = self._subscribed_at - timedelta(seconds=30)  # clocks and flushes lag a little
            try:
                rows, _ = self.store._tail_rows(None, self.type, _as_time(self.since))
            except Exception as exc:
                log.warning("broker feed could not read the log's backlog: %s", exc)
                rows = []
            for row in rows:
                try:
                    event = registry.load(row)
                except Exception as exc:  # an unknown event type from a newer process: skip it
                    self.failed += 1
                    log.debug("broker feed skipped %s: %s", row.get("type"), exc)
                    continue
                ts = event.ts if event.ts.tzinfo is not None else event.ts.replace(tzinfo=overlap_from.tzinfo)
                if ts >= overlap_from:
                    self._replayed.add(event.id)
                self._forward(event)
        with self._lock:
            held, self._held = self._held or [], None
        for event in held:
            if event.id not in self._replayed:
                self._forward(event)

    def stop(self) -> None:
        """Stop forwarding (the broker bus and the local bus stay open)."""
        if self._sub is not None:
            self.source.unsubscribe(self._sub)
            self._sub = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __repr__(self) -> str:
        running = "running" if self._sub is not None else "stopped"
        return f"BrokerFeed({running}, published={self.published}, skipped={self.failed})"


def open_feed(lab: Any, *, since: str | None = "5m", poll_s: float = 0.05) -> StoreFeed | BrokerFeed:
    """The right feed of every process's events for ``lab``: its broker bus if it has one, else its event log."""
    from ..events.brokers.base import BrokerBus

    if isinstance(lab.bus, BrokerBus):
        return BrokerFeed(lab.store, lab.bus, since=since).start()
    return StoreFeed(lab.store, since=since, poll_s=poll_s).start()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _as_time(value: Any) -> Any:
    from ..events.store.base import _as_time as as_time

    return as_time(value, "since")
