"""The in-process asynchronous event bus (the default :class:`EventBus`).

Semantics, each covered by ``tests/events/test_bus.py``:

* **Topics** are event types; a subscriber gives a glob pattern
  (``provider.*``, ``*.failed``, ``*``).
* **Order**: each subscriber receives events in the order they were published.
* **Backpressure**: every subscriber has a bounded queue.  When it is full the
  subscriber's explicit policy applies: ``block`` makes ``await publish`` wait
  for space (memory never grows), ``drop_oldest`` discards the oldest queued
  event and counts it (for live views that only need the latest).
* **Failures**: a handler that raises is retried with exponential backoff and
  jitter (tenacity); after the last retry the event goes to the dead-letter
  sink (the event store when one is attached) with the error and traceback.
* **Sync code**: :meth:`InProcessBus.publish_sync` works from any thread.  A
  bus first used from sync code runs its own event-loop thread; a bus first
  used from async code runs on that loop.
"""

from __future__ import annotations

import asyncio
import atexit
import fnmatch
import inspect
import itertools
import logging
import re
import threading
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from ..errors import BusClosed, BusError, BusFull, BusTimeout, ValidationError
from .base import DeadLetterSink, Handler, Overflow
from .deadletter import DeadLetter, MemoryDeadLetters
from .model import Event

__all__ = ["InProcessBus", "Subscription"]

log = logging.getLogger(__name__)
_OVERFLOWS = ("block", "drop_oldest")


class _BoundedQueue:
    """FIFO with a bound and an overflow policy; used on the bus loop only.

    Blocked putters park their item with their waiter, and a consumer that
    frees space moves parked items in arrival order, so no later publisher
    can overtake a blocked one.
    """

    __slots__ = ("_getter", "_putters", "dropped", "high_water", "idle", "items", "loop", "maxsize", "overflow")

    def __init__(self, maxsize: int, overflow: Overflow, loop: asyncio.AbstractEventLoop) -> None:
        self.items: deque[Event] = deque()
        self.maxsize = maxsize
        self.overflow = overflow
        self.loop = loop
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[tuple[Event, asyncio.Future[None]]] = deque()
        self.dropped = 0
        self.high_water = 0
        self.idle = asyncio.Event()  # set while nothing is queued or being handled
        self.idle.set()

    def __len__(self) -> int:
        return len(self.items) + len(self._putters)

    def has_room(self) -> bool:
        return self.overflow == "drop_oldest" or (not self._putters and len(self.items) < self.maxsize)

    def put_nowait(self, item: Event) -> None:
        items = self.items
        if len(items) >= self.maxsize or self._putters:
            if self.overflow != "drop_oldest":
                raise BusFull("queue full")
            if items:
                items.popleft()
                self.dropped += 1
        items.append(item)
        self.idle.clear()
        if len(items) > self.high_water:
            self.high_water = len(items)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def put(self, item: Event) -> None:
        if self.has_room():
            self.put_nowait(item)
            return
        fut = self.loop.create_future()
        self._putters.append((item, fut))
        self.idle.clear()
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)
        await fut

    async def get_batch(self, max_items: int) -> list[Event]:
        if not self.items and not self._putters:
            self._getter = self.loop.create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        items = self.items
        n = min(max_items, len(items)) if items else 0
        batch = [items.popleft() for _ in range(n)]
        while self._putters and len(items) < self.maxsize:
            item, fut = self._putters.popleft()
            items.append(item)
            if not fut.done():
                fut.set_result(None)
        if not batch:  # everything was parked: take from what we just moved
            n = min(max_items, len(items))
            batch = [items.popleft() for _ in range(n)]
        return batch


class Subscription:
    """A handler attached to a topic pattern, with its queue and counters.

    Attributes:
        name: unique name (used for dead letters and replay).
        pattern: glob over event types.
        delivered: events handled successfully.
        dropped: events discarded by the ``drop_oldest`` policy.
        retried: handler calls retried after a failure.
        dead_lettered: events sent to the dead-letter sink.
    """

    def __init__(
        self,
        bus: InProcessBus,
        name: str,
        pattern: str,
        handler: Handler,
        maxsize: int,
        overflow: Overflow,
        batch: int | None,
        retries: int,
        retry_initial_s: float,
    ) -> None:
        self.bus = bus
        self.name = name
        self.pattern = pattern
        self.handler = handler
        self.maxsize = maxsize
        self.overflow: Overflow = overflow
        self.batch = batch
        self.retries = retries
        self.retry_initial_s = retry_initial_s
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.delivered = 0
        self.retried = 0
        self.dead_lettered = 0
        self.active = True
        #: ``async (events) -> None`` called after events were handled or dead-lettered (broker acks)
        self._on_handled: Callable[[Sequence[Event]], Awaitable[None]] | None = None
        self._queue: _BoundedQueue | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> int:
        return self._queue.dropped if self._queue is not None else 0

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def matches(self, event_type: str) -> bool:
        return self.bus._regex(self.pattern).match(event_type) is not None

    def unsubscribe(self) -> None:
        """Stop receiving new events; queued ones are still handled."""
        self.bus.unsubscribe(self)

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pattern": self.pattern,
            "overflow": self.overflow,
            "maxsize": self.maxsize,
            "queued": self.queued,
            "high_water": self._queue.high_water if self._queue is not None else 0,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
        }

    def __repr__(self) -> str:
        return (
            f"Subscription({self.name!r}, pattern={self.pattern!r}, overflow={self.overflow!r}, "
            f"delivered={self.delivered}, dropped={self.dropped}, dead_lettered={self.dead_lettered})"
        )


class InProcessBus:
    """Asynchronous publish/subscribe inside one process.

    Args:
        queue_size: default bound of each subscriber's queue.
        overflow: default policy when a queue is full (``block`` or ``drop_oldest``).
        retries: default number of retries of a failing handler before dead-lettering.
        retry_initial_s: first backoff delay (doubles each retry, with jitter, capped at 1 s).
        dead_letters: where dead letters go; by default a :class:`MemoryDeadLetters`.

    >>> bus = InProcessBus()
    >>> seen = []
    >>> sub = bus.subscribe("demo.*", seen.append)
    """

    def __init__(
        self,
        *,
        queue_size: int = 10_000,
        overflow: Overflow = "block",
        retries: int = 3,
        retry_initial_s: float = 0.01,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        _check_overflow(overflow)
        self.queue_size = _check_positive("queue_size", queue_size)
        self.overflow: Overflow = overflow
        self.retries = retries
        self.retry_initial_s = retry_initial_s
        self.dead_letters: DeadLetterSink = dead_letters if dead_letters is not None else MemoryDeadLetters()
        self._subs: list[Subscription] = []
        self._retiring: set[Subscription] = set()
        self._route_cache: dict[str, tuple[Subscription, ...]] = {}
        self._regex_cache: dict[str, re.Pattern[str]] = {}
        self._names = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bind_lock = threading.Lock()
        self._closed = False
        self.published = 0
        #: dead letters the sink could not take (kept here instead of being lost)
        self.lost_dead_letters = MemoryDeadLetters()

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        name: str | None = None,
        maxsize: int | None = None,
        overflow: Overflow | None = None,
        batch: int | None = None,
        retries: int | None = None,
    ) -> Subscription:
        """Call ``handler`` for every event whose type matches ``pattern``.

        Args:
            pattern: glob over event types (``*`` matches across dots).
            handler: sync or async callable taking one event (or, with
                ``batch``, a list of up to ``batch`` events).
            name: unique subscriber name (default ``sub-N``).
            maxsize: bound of its queue (default: the bus's ``queue_size``).
            overflow: ``block`` or ``drop_oldest`` when the queue is full.
            batch: deliver lists of up to this many events.
            retries: retries of a failing handler before dead-lettering.
        """
        sub = self._new_subscription(pattern, handler, name, maxsize, overflow, batch, retries)
        self._add_subscription(sub)
        return sub

    _subscription_cls: type[Subscription] = Subscription  # broker buses use a subclass

    def _new_subscription(
        self,
        pattern: str,
        handler: Handler,
        name: str | None,
        maxsize: int | None,
        overflow: Overflow | None,
        batch: int | None,
        retries: int | None,
    ) -> Subscription:
        """Check the arguments of :meth:`subscribe` and build the subscription (not yet attached)."""
        if self._closed:
            raise BusClosed("the bus is closed", hint="create a new bus")
        if not isinstance(pattern, str) or not pattern:
            raise ValidationError(f"subscription pattern {pattern!r} must be a non-empty string")
        if not callable(handler):
            raise ValidationError(f"handler {handler!r} for {pattern!r} is not callable")
        overflow = self.overflow if overflow is None else overflow
        _check_overflow(overflow)
        name = name or f"sub-{next(self._names)}"
        if any(s.name == name for s in self._subs):
            raise ValidationError(f"a subscriber named {name!r} already exists", hint="pass another name=")
        return self._subscription_cls(
            self,
            name,
            pattern,
            handler,
            _check_positive("maxsize", maxsize if maxsize is not None else self.queue_size),
            overflow,
            _check_positive("batch", batch) if batch is not None else None,
            self.retries if retries is None else retries,
            self.retry_initial_s,
        )

    def _add_subscription(self, sub: Subscription) -> None:
        """Attach ``sub``; its worker starts now if the bus has a loop, else when it gets one.

        With a loop, ``sub`` joins the routing on that loop, together with its queue: an event
        published meanwhile (on the loop) never finds a subscriber without one.
        """
        loop = self._loop
        if loop is None:
            self._subs.append(sub)
            self._route_cache.clear()
            return

        def attach() -> None:
            self._subs.append(sub)
            self._route_cache.clear()
            self._start_worker(sub)

        if _on_loop(loop):
            attach()
            return
        done = threading.Event()

        def start() -> None:
            try:
                attach()
            finally:
                done.set()

        loop.call_soon_threadsafe(start)
        done.wait(5)

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach ``sub``; events already queued for it are still handled."""
        if sub in self._subs:
            self._subs.remove(sub)
            self._route_cache.clear()
            if sub._task is not None and not sub._task.done():
                self._retiring.add(sub)  # its worker still handles what is queued
        sub.active = False
        if sub._queue is not None and self._loop is not None:
            self._call_on_loop(self._wake_getter, sub)

    def has_subscribers(self, event_type: str) -> bool:
        """Whether any subscriber would receive events of ``event_type`` (cheap; lets callers skip building them)."""
        return bool(self._route(event_type))

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    def _regex(self, pattern: str) -> re.Pattern[str]:
        rx = self._regex_cache.get(pattern)
        if rx is None:
            rx = self._regex_cache[pattern] = re.compile(fnmatch.translate(pattern))
        return rx

    def _route(self, event_type: str) -> tuple[Subscription, ...]:
        subs = self._route_cache.get(event_type)
        if subs is None:
            subs = self._route_cache[event_type] = tuple(s for s in self._subs if s.matches(event_type))
        return subs

    # ------------------------------------------------------------------ publish
    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber's queue.

        Waits while a ``block`` subscriber's queue is full (backpressure).
        """
        if self._loop is None:
            self._bind(asyncio.get_running_loop())
        elif not _on_loop(self._loop):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.publish(event), self._loop))
            return
        self._check_open(event)
        self.published += 1
        for sub in self._route(event.event_type):
            q = sub._queue
            assert q is not None
            if q.has_room():
                q.put_nowait(event)
            else:
                await q.put(event)

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Publish events in order (one call for many)."""
        for ev in events:
            await self.publish(ev)

    def publish_nowait(self, event: Event) -> None:
        """Publish without waiting; must run on the bus loop.

        Raises:
            BusFull: a ``block`` subscriber's queue is full (nothing was delivered).
        """
        self._check_open(event)
        if self._loop is None:
            try:
                self._bind(asyncio.get_running_loop())
            except RuntimeError:
                raise BusError(
                    "publish_nowait runs on the bus's event loop, and no loop is running here",
                    hint="use bus.publish_sync(...) from synchronous code",
                ) from None
        elif not _on_loop(self._loop):
            raise BusError(
                "publish_nowait was called off the bus's event loop",
                hint="use bus.publish_sync(...) from other threads",
            )
        subs = self._route(event.event_type)
        for sub in subs:
            if sub._queue is None or not sub._queue.has_room():
                raise BusFull(
                    f"subscriber {sub.name!r} ({sub.pattern!r}) is full ({sub.maxsize} queued, "
                    f"policy 'block'); event {event.type!r} was not published",
                    hint="publish with `await bus.publish(...)` to wait for space, give the subscriber "
                    "a larger maxsize, or use overflow='drop_oldest' for live views",
                )
        self.published += 1
        for sub in subs:
            sub._queue.put_nowait(event)  # type: ignore[union-attr]

    def publish_sync(self, event: Event, *, timeout: float | None = 30.0) -> None:
        """Publish from synchronous code (any thread).

        From a thread other than the bus loop's, waits for queue space like
        ``await publish``.  On the bus loop's own thread it cannot wait, and
        raises :class:`BusFull` if a ``block`` subscriber is full.
        """
        self._check_open(event)
        loop = self._ensure_loop_sync()
        if _on_loop(loop):
            self.publish_nowait(event)
        else:
            asyncio.run_coroutine_threadsafe(self.publish(event), loop).result(timeout)

    def publish_many_sync(self, events: Iterable[Event], *, timeout: float | None = None) -> None:
        """Publish many events from synchronous code, in order, with backpressure."""
        if self._closed:
            raise BusClosed("the bus is closed; the events were not published", hint="create a new bus")
        loop = self._ensure_loop_sync()
        events = list(events)
        if _on_loop(loop):
            for ev in events:
                self.publish_nowait(ev)
        else:
            asyncio.run_coroutine_threadsafe(self.publish_many(events), loop).result(timeout)

    def _check_open(self, event: Event) -> None:
        if self._closed:
            raise BusClosed("the bus is closed; the event was not published", hint="create a new bus")
        if not isinstance(event, Event) or not event.event_type:
            raise ValidationError(
                f"only registered events can be published, got {type(event).__name__}",
                input=event,
                hint="subclass lumina_lab.events.Event and decorate it with @event('area.thing.happened')",
            )

    # ------------------------------------------------------------------ drain / close
    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued event has been handled (or dead-lettered).

        Args:
            timeout: give up after this many seconds with :class:`~lumina_lab.errors.BusTimeout` (a
                ``BusError`` and a ``TimeoutError``) naming the subscribers still busy; ``None`` waits as
                long as it takes.  Nothing is lost on a timeout: the queued events are still handled.
        """
        if self._loop is None:
            return
        if not _on_loop(self._loop):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.drain(timeout), self._loop))
            return
        if timeout is None:
            await self._drain()
            return
        window = asyncio.timeout(timeout)
        try:
            async with window:
                await self._drain()
        except TimeoutError:
            if not window.expired():
                raise
            raise self._drain_timeout(timeout) from None

    async def _drain(self) -> None:
        # a handler may publish to another subscriber: repeat until one pass finds all idle
        while True:
            waited = False
            for sub in [*self._subs, *self._retiring]:
                q = sub._queue
                if q is not None and not q.idle.is_set():
                    waited = True
                    await q.idle.wait()
            if not waited:
                return

    def _drain_timeout(self, timeout: float) -> BusTimeout:
        """The error of a timed-out :meth:`drain`: the subscribers still busy, and what to do."""
        busy = []
        for sub in [*self._subs, *self._retiring]:
            q = sub._queue
            if q is not None and not q.idle.is_set():
                busy.append(f"subscriber {sub.name!r} ({sub.pattern!r}): its handler is still running ({len(q)} more event(s) queued)")
        detail = "; ".join(busy) or "handlers still running"
        return BusTimeout(
            f"drain() did not finish within {timeout:g} s: {detail}",
            input=timeout,
            hint="fix: a handler that blocks (a lock, a network call without a timeout) holds its subscriber; "
            "wait longer (drain(timeout=None)) or unsubscribe it",
        )

    def drain_sync(self, timeout: float | None = 60.0) -> None:
        """Synchronous :meth:`drain`, from any thread but the bus loop's (:class:`~lumina_lab.errors.BusTimeout`
        after ``timeout`` s; nothing queued is lost)."""
        loop = self._loop
        if loop is None or self._closed:
            return
        if _on_loop(loop):
            raise BusError(
                "cannot wait for the bus from inside its own event loop",
                hint="use `await bus.drain()` in async code",
            )
        done = asyncio.run_coroutine_threadsafe(self.drain(timeout), loop)
        done.result(None if timeout is None else timeout + 5.0)

    async def close(self) -> None:
        """Handle what is queued, stop the workers and refuse new events."""
        if self._closed:
            return
        loop = self._loop
        if loop is None:
            self._closed = True
            return
        if _on_loop(loop):
            await self._close_on_loop()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close_on_loop(), loop))
        self._stop_thread()

    def close_sync(self, timeout: float | None = 60.0) -> None:
        """Synchronous :meth:`close` (after ``timeout`` s the workers are stopped anyway)."""
        if self._closed:
            return
        loop = self._loop
        if loop is None:
            self._closed = True
            return
        if _on_loop(loop):
            raise BusError("cannot close the bus synchronously from its own loop", hint="await bus.close()")
        try:
            asyncio.run_coroutine_threadsafe(self._close_on_loop(), loop).result(timeout)
        finally:
            self._closed = True
            asyncio.run_coroutine_threadsafe(self._cancel_workers(), loop).result(timeout)
            self._stop_thread()

    async def _close_on_loop(self) -> None:
        """The closing steps, on the bus's loop (:meth:`close` and :meth:`close_sync` run them there)."""
        await self._drain()
        self._closed = True
        await self._cancel_workers()

    async def _cancel_workers(self) -> None:
        tasks = [s._task for s in [*self._subs, *self._retiring] if s._task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ dead letters
    async def redeliver(self, letter: DeadLetter, event: Event) -> None:
        """Send a dead-lettered ``event`` again to the subscriber that failed it."""
        sub = next((s for s in self._subs if s.name == letter.subscriber), None)
        if sub is None:
            raise BusError(
                f"no subscriber named {letter.subscriber!r} to redeliver event {letter.event_id!r} to",
                hint="subscribe the handler again with the same name=, then replay",
            )
        if self._loop is None:
            self._bind(asyncio.get_running_loop())
        elif not _on_loop(self._loop):
            fut = asyncio.run_coroutine_threadsafe(self.redeliver(letter, event), self._loop)
            await asyncio.wrap_future(fut)
            return
        await sub._queue.put(event)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ workers
    def _start_worker(self, sub: Subscription) -> None:
        loop = self._loop
        assert loop is not None
        sub._queue = _BoundedQueue(sub.maxsize, sub.overflow, loop)
        sub._task = loop.create_task(self._work(sub), name=f"lumina-bus:{sub.name}")

    @staticmethod
    def _wake_getter(sub: Subscription) -> None:
        q = sub._queue
        if q is not None and q._getter is not None and not q._getter.done():
            q._getter.set_result(None)

    async def _work(self, sub: Subscription) -> None:
        q = sub._queue
        assert q is not None
        take = sub.batch or 256
        while True:
            if not sub.active and not len(q):
                q.idle.set()
                self._retiring.discard(sub)
                return
            batch = await q.get_batch(take)
            if batch:
                done = sub._on_handled  # broker buses acknowledge here: after success or dead-lettering
                if sub.batch:
                    await self._deliver(sub, batch, len(batch))
                    if done is not None:
                        await done(batch)
                else:
                    for ev in batch:
                        await self._deliver(sub, ev, 1)
                        if done is not None:
                            await done((ev,))
            if not len(q):
                q.idle.set()

    async def _deliver(self, sub: Subscription, payload: Any, n: int) -> None:
        try:
            result = sub.handler(payload)
            if sub.is_async or inspect.isawaitable(result):
                await result
            sub.delivered += n
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            first = exc
        await self._retry(sub, payload, n, first)

    async def _retry(self, sub: Subscription, payload: Any, n: int, first: Exception) -> None:
        from tenacity import AsyncRetrying, RetryError, stop_after_attempt, wait_exponential, wait_random

        attempts = 1
        exc: BaseException = first
        if sub.retries > 0:
            await asyncio.sleep(sub.retry_initial_s)
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(sub.retries),
                    wait=wait_exponential(multiplier=sub.retry_initial_s * 2, max=1.0)
                    + wait_random(0, sub.retry_initial_s),
                    reraise=False,
                ):
                    with attempt:
                        attempts += 1
                        sub.retried += 1
                        result = sub.handler(payload)
                        if sub.is_async or inspect.isawaitable(result):
                            await result
                sub.delivered += n
                return
            except RetryError as err:
                exc = err.last_attempt.exception() or first
        events = payload if isinstance(payload, list) else [payload]
        letters = [
            DeadLetter.from_failure(ev, subscriber=sub.name, pattern=sub.pattern, exc=exc, attempts=attempts)
            for ev in events
        ]
        sub.dead_lettered += len(letters)
        log.warning(
            "subscriber %r failed on %d event(s) after %d attempt(s): %s: %s; dead-lettered",
            sub.name,
            len(letters),
            attempts,
            type(exc).__name__,
            exc,
        )
        self._put_dead_letters(letters)

    def _put_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Hand ``letters`` to the sink; if it fails, keep them on :attr:`lost_dead_letters`."""
        try:
            self.dead_letters.put_dead_letters(letters)
        except Exception as sink_exc:
            self.lost_dead_letters.put_dead_letters(letters)  # never lose a letter
            warnings.warn(
                f"dead-letter sink failed ({sink_exc}); {len(letters)} dead letter(s) kept in memory "
                "on bus.lost_dead_letters",
                RuntimeWarning,
                stacklevel=1,
            )

    # ------------------------------------------------------------------ loop management
    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._bind_lock:
            if self._loop is not None:
                return
            self._loop = loop
        for sub in self._subs:
            if sub._task is None:
                self._start_worker(sub)

    def _ensure_loop_sync(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._bind_lock:
                if self._loop is None and self._thread is None:
                    self._start_thread()
        assert self._loop is not None
        return self._loop

    def _start_thread(self) -> None:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._loop = loop
            for sub in self._subs:
                if sub._task is None:
                    self._start_worker(sub)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="lumina-bus", daemon=True)
        self._thread.start()
        ready.wait()
        atexit.register(self._atexit)

    def _stop_thread(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is not None and loop is not None and thread is not threading.current_thread():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            self._thread = None

    def _atexit(self) -> None:
        try:
            self.close_sync(timeout=10)
        except Exception as exc:
            log.warning("bus did not close cleanly at exit: %s", exc)

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        if _on_loop(loop):
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ introspection
    def stats(self) -> list[dict[str, Any]]:
        """One row of counters per subscriber."""
        return [s.stats() for s in self._subs]

    def __repr__(self) -> str:
        mode = "thread" if self._thread else ("loop" if self._loop else "unbound")
        return f"InProcessBus(subscribers={len(self._subs)}, published={self.published}, mode={mode!r})"

    def _repr_html_(self) -> str:
        rows = self.stats()
        if not rows:
            return f"<p>{self!r} — no subscribers</p>"
        head = "".join(f"<th>{k}</th>" for k in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r.values()) + "</tr>" for r in rows)
        return f"<p>{self!r}</p><table><tr>{head}</tr>{body}</table>"


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _check_overflow(overflow: Any) -> None:
    if overflow not in _OVERFLOWS:
        raise ValidationError(
            f"overflow={overflow!r} is not a policy",
            input=overflow,
            hint="use 'block' (wait for space) or 'drop_oldest' (live views)",
        )


def _check_positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"{name}={value!r} must be a positive integer", input=value)
    return value
