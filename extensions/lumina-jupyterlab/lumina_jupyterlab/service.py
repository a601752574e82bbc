"""One :class:`LuminaService` per Jupyter server: the status reader, and the live feed fanned out to WebSockets.

All reading is :class:`lumina_lab.status.StatusReader` (pure logic, in ``lumina_lab``); this module only runs it
off the Tornado loop (DuckDB queries block) and pushes new events to connected clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lumina_lab.status import EventFeed, StatusReader

log = logging.getLogger(__name__)


class FeedClient(Protocol):
    """A connected WebSocket (see :class:`~lumina_jupyterlab.handlers.EventSocketHandler`)."""

    def send_events(self, events: list[dict[str, Any]]) -> None: ...

    def close_feed(self) -> None: ...


class LuminaService:
    """The server's window on Lumina: a lazily opened :class:`StatusReader` and the live event pump.

    Args:
        poll_interval: seconds between looks at the shared event store while clients are connected.
        log: the server's logger.
    """

    def __init__(self, *, poll_interval: float = 0.5, log: logging.Logger | Any = log) -> None:
        self.poll_interval = poll_interval
        self.log = log
        self._reader: StatusReader | None = None
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lumina-status")
        self._open_lock = asyncio.Lock()
        self.clients: set[FeedClient] = set()
        self._pump: asyncio.Task[None] | None = None
        self._feed: EventFeed | None = None
        self.polls = 0
        self.pushed = 0
        self._closed = False
        self._metrics: Any = None
        from datetime import UTC, datetime

        self.started = datetime.now(UTC)  # /lumina/metrics counts events from the server's start

    def describe(self) -> str:
        home = os.environ.get("LUMINA_HOME") or "~/.lumina"
        return f"LUMINA_HOME={home}"

    # ------------------------------------------------------------------ reading
    async def reader(self) -> StatusReader:
        """The reader, opened on first use (a bad ``lumina.toml`` raises its ``ConfigError`` each time)."""
        if self._reader is None:
            async with self._open_lock:
                if self._reader is None:
                    from lumina_lab.status import StatusReader

                    self._reader = await self._in_thread(StatusReader)
        return self._reader

    async def _in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def call(self, method: str, **kwargs: Any) -> Any:
        """``StatusReader.<method>(**kwargs)`` in a worker thread."""
        reader = await self.reader()
        return await self._in_thread(getattr(reader, method), **kwargs)

    async def metrics(self) -> bytes:
        """The Prometheus text of every process's events since the server started (caught up in a thread)."""
        from lumina_lab.observability.server import StoreMetrics, exposition

        reader = await self.reader()
        if self._metrics is None:
            self._metrics = StoreMetrics(reader.store, since=self.started)
        return await self._in_thread(exposition, self._metrics)

    def server_info(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "poll_interval_s": self.poll_interval,
            "polls": self.polls,
            "pushed": self.pushed,
        }

    # ------------------------------------------------------------------ live feed
    async def subscribe(self, client: FeedClient) -> None:
        """Start pushing new events to ``client`` (the pump starts with the first client)."""
        reader = await self.reader()
        if self._feed is None:
            self._feed = await self._in_thread(reader.feed)
        self.clients.add(client)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._run())

    def unsubscribe(self, client: FeedClient) -> None:
        self.clients.discard(client)

    async def _run(self) -> None:
        """Poll the shared store while anyone listens; fan new events out (each client filters its own)."""
        try:
            while self.clients and not self._closed:
                feed = self._feed
                if feed is None:
                    break
                try:
                    events = await self._in_thread(feed.poll)
                except Exception as exc:  # a transient read error must not end the feed
                    self.log.warning("Lumina: reading new events failed: %s", exc)
                    events = []
                self.polls += 1
                if events:
                    self.pushed += len(events)
                    for client in list(self.clients):
                        try:
                            client.send_events(events)
                        except Exception as exc:
                            self.log.info("Lumina: dropping a feed client: %s", exc)
                            self.clients.discard(client)
                if len(events) < feed.max_batch:
                    await asyncio.sleep(self.poll_interval)
        finally:
            if not self.clients:
                self._feed = None  # the next subscriber starts from its own "now" (its backlog covers the gap)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        """Stop the pump, close the clients, release the event and vector stores."""
        self._closed = True
        for client in list(self.clients):
            try:
                client.close_feed()
            except Exception:
                pass
        self.clients.clear()
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            try:
                await self._pump
            except (asyncio.CancelledError, Exception):
                pass
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await self._in_thread(reader.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
