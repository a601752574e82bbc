"""What NATS and RabbitMQ buses share: an :class:`~lumina_lab.events.InProcessBus` whose subscribers are fed
by broker consumers instead of by local publishes.

* **publish** encodes the event's wire form (:meth:`Event.to_envelope`) and sends it to the broker through
  one ordered outbox per bus; ``await publish`` returns once the broker has *confirmed* it (JetStream
  PubAck, RabbitMQ publisher confirm).  ``publish_nowait``/``publish_sync`` on the bus loop queue it;
  :meth:`drain` waits for the confirmations.  An event the broker refuses is raised to an awaiting caller,
  or dead-lettered (subscriber ``"publish"``) when nobody waits: it is never silently lost.
* **subscribe** creates a broker consumer (a JetStream consumer, a RabbitMQ queue) per subscription.
  Received events are decoded through the :class:`~lumina_lab.events.SchemaRegistry` (upcasting old
  schema versions) and go to the subscriber's local queue; the in-process worker calls the handler with
  the same retries and dead-lettering as :class:`InProcessBus`, and the broker message is acknowledged
  only after the handler succeeded or the event was dead-lettered.  A message that cannot be decoded
  (unknown type, newer schema, bad payload) is dead-lettered with its envelope.
* **ephemeral or durable**: by default each subscription has its own consumer that disappears with the bus
  (every bus sees every event, like in-process).  ``durable=True`` (or a name in ``durable_names``)
  makes a named consumer shared by every bus subscribing with that name: each event goes to one of them,
  and events published while none runs wait for the next one.
* **backpressure**: at most ``maxsize`` unacknowledged events are delivered to a ``block`` subscriber, so
  its local queue never overflows: the broker holds the rest.  ``drop_oldest`` subscribers take events
  without acknowledgements and drop the oldest locally, counted as in-process.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import traceback
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic_core import to_json

from ...errors import BusClosed, BusError, BusFull, BusTimeout, ConfigError, ValidationError
from ..base import Handler, Overflow
from ..bus import InProcessBus, Subscription, _on_loop
from ..deadletter import DeadLetter
from ..ids import new_id
from ..model import Event
from ..registry import SchemaRegistry, default_registry

__all__ = ["BrokerBus", "BrokerSubscription", "decode_envelope", "encode_event", "redact_url"]

log = logging.getLogger(__name__)
_NAMESPACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_WILD = frozenset("*?[")
INSTALL_HINT = "pip install 'lumina-lab[brokers]'"


def encode_event(event: Event) -> bytes:
    """The wire form of ``event``: its envelope as compact JSON (``payload`` nested)."""
    head = to_json(
        {
            "id": event.id,
            "type": event.event_type,
            "schema_version": event.event_version,
            "ts": event.ts,
            "source": event.source,
            "trace_id": event.trace_id,
            "span_id": event.span_id,
        }
    )
    return head[:-1] + b',"payload":' + event.payload_json_bytes() + b"}"


def decode_envelope(body: bytes) -> dict[str, Any]:
    """The envelope dict of a message body (raises on bad JSON or a non-object)."""
    env = json.loads(body)
    if not isinstance(env, dict):
        raise ValidationError(f"a message body must be a JSON object, got {type(env).__name__}")
    return env


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and reprs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def split_pattern(pattern: str) -> tuple[list[str], list[str]]:
    """Split a glob over event types into its literal leading tokens and the rest (from the first wildcard)."""
    tokens = pattern.split(".")
    for i, tok in enumerate(tokens):
        if _WILD & set(tok) or not _TOKEN_RE.match(tok):
            return tokens[:i], tokens[i:]
    return tokens, []


class BrokerSubscription(Subscription):
    """A :class:`~lumina_lab.events.Subscription` fed by a broker consumer.

    Attributes:
        durable: whether its consumer is shared by name and outlives the bus.
        consumer: the broker-side name (JetStream consumer, RabbitMQ queue).
        received: messages taken from the broker for it (including those for other types).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.durable = False
        self.consumer = ""
        self.received = 0
        self._ready: asyncio.Future[None] | None = None
        self._acks: dict[int, Any] = {}  # id(event) -> broker message, until handled
        self._handle: Any = None  # broker-specific consumer state
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing: asyncio.Task[Any] | None = None
        #: one ack covers all earlier messages (set by the broker bus when its consumer allows it)
        self.cumulative = False
        self._held: Any = None  # the last handled message whose ack is held back
        self._held_n = 0

    def stats(self) -> dict[str, Any]:
        row = super().stats()
        row.update(durable=self.durable, consumer=self.consumer, received=self.received)
        return row


class BrokerBus(InProcessBus):
    """Base class of :class:`NatsBus` and :class:`RabbitMQBus` (see the module docstring).

    Args:
        url: the broker's URL (default: :attr:`default_url`).
        namespace: separates labs on one broker: the JetStream stream / RabbitMQ exchange name
            (lowercase letters, digits, ``_``).
        registry: decodes received events (default: the process-wide registry).
        durable_names: subscriber names whose consumers are durable and shared (as ``durable=True``).
        connect_timeout_s: how long connecting may take before :class:`BusError`.
        publish_timeout_s: how long a broker confirmation may take before the publish fails.
        **bus_options: ``queue_size``, ``overflow``, ``retries``, ``retry_initial_s``, ``dead_letters``.
    """

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    default_url: ClassVar[str] = ""
    package: ClassVar[str] = ""  # the PyPI name of the client
    module: ClassVar[str] = ""  # its import name
    start_hint: ClassVar[str] = ""

    _subscription_cls = BrokerSubscription

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "lumina",
        registry: SchemaRegistry | None = None,
        durable_names: Iterable[str] = (),
        connect_timeout_s: float = 5.0,
        publish_timeout_s: float = 30.0,
        **bus_options: Any,
    ) -> None:
        self._require_client()
        if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
            raise ValidationError(
                f"broker namespace {namespace!r} must be lowercase letters, digits and _ (starting with a letter)",
                input=namespace,
                hint="e.g. namespace='lumina' or 'team_a'",
            )
        super().__init__(**bus_options)
        self.url = url or self.default_url
        self.namespace = namespace
        self.registry = registry if registry is not None else default_registry
        self.durable_names = frozenset(durable_names)
        self.connect_timeout_s = connect_timeout_s
        self.publish_timeout_s = publish_timeout_s
        self.uid = new_id().replace("-", "")[-12:]  # names this bus's ephemeral consumers
        self.confirmed = 0
        #: events the broker did not confirm and nobody awaited (also dead-lettered as subscriber "publish")
        self.unpublished = 0
        self._connected = False
        self._conn_lock: asyncio.Lock | None = None
        self._outbox: deque[tuple[Event, asyncio.Future[None] | None]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._unconfirmed = 0
        self._all_confirmed: asyncio.Event | None = None
        self._drain_waiting: Subscription | None = None  # whose broker backlog drain() waits for

    # ------------------------------------------------------------------ to implement
    async def _connect(self) -> None:
        """Open the connection and declare the stream / exchange."""
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def _send(self, event: Event) -> asyncio.Future[Any]:
        """Hand ``event`` to the client in publish order; return what resolves on the broker's confirmation."""
        raise NotImplementedError

    async def _open_consumer(self, sub: BrokerSubscription) -> None:
        """Create ``sub``'s broker consumer and start feeding :meth:`_receive`."""
        raise NotImplementedError

    async def _close_consumer(self, sub: BrokerSubscription) -> None:
        raise NotImplementedError

    async def _caught_up(self, sub: BrokerSubscription) -> None:
        """Return once everything the broker holds for ``sub`` now has been handled and acknowledged."""
        raise NotImplementedError

    async def _ack(self, sub: BrokerSubscription, messages: list[Any]) -> None:
        """Acknowledge each of ``messages``."""
        raise NotImplementedError

    async def _ack_upto(self, sub: BrokerSubscription, message: Any) -> None:
        """Acknowledge ``message`` and every earlier one of ``sub`` (for ``sub.cumulative`` consumers)."""
        raise NotImplementedError

    def _stale(self, message: Any) -> bool:
        """Whether ``message`` came through a connection that has since been lost (it cannot be acknowledged any
        more; the broker delivers it again)."""
        return False

    # ------------------------------------------------------------------ errors
    @classmethod
    def _require_client(cls) -> None:
        import importlib

        try:
            importlib.import_module(cls.module)
        except ImportError:
            raise ConfigError(
                f"events.bus = {cls.kind!r} needs the {cls.package} package, which is not installed",
                key="events.bus",
                value=cls.kind,
                hint=f"{INSTALL_HINT} (or pip install {cls.package}), or set events.bus = 'memory'",
            ) from None

    def _unreachable(self, exc: BaseException) -> BusError:
        detail = f"{type(exc).__name__}: {exc}".rstrip(": ") if str(exc) else type(exc).__name__
        return BusError(
            f"cannot reach the {self.label} server at {redact_url(self.url)} ({detail})",
            input=redact_url(self.url),
            hint=f"{self.start_hint}, or point events.bus_url (LUMINA_EVENTS__BUS_URL) at a running server, "
            "or use events.bus = 'memory'",
        )

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        """Connect and create every subscription's consumer now (raises :class:`BusError` if unreachable)."""
        if self._loop is None:
            self._bind(asyncio.get_running_loop())
        elif not _on_loop(self._loop):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.connect(), self._loop))
            return
        if self._closed:
            raise BusClosed("the bus is closed", hint="create a new bus")
        await self._ensure_connected()
        await self._wait_ready()

    def connect_sync(self, timeout: float | None = 60.0) -> None:
        """Synchronous :meth:`connect` (starts the bus's own loop thread if it has no loop yet)."""
        loop = self._ensure_loop_sync()
        if _on_loop(loop):
            raise BusError("connect_sync cannot wait inside the bus's loop", hint="await bus.connect()")
        asyncio.run_coroutine_threadsafe(self.connect(), loop).result(timeout)

    async def _ensure_connected(self) -> None:
        if self._connected:
            return
        if self._conn_lock is None:
            self._conn_lock = asyncio.Lock()
        async with self._conn_lock:
            if self._connected:
                return
            try:
                await asyncio.wait_for(self._connect(), self.connect_timeout_s + 5)
            except BusError:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise self._unreachable(exc) from None
            self._connected = True

    async def _wait_ready(self, subs: Sequence[Subscription] | None = None) -> None:
        for sub in list(self._subs if subs is None else subs):
            ready = getattr(sub, "_ready", None)
            if ready is not None:
                await asyncio.shield(ready)

    # ------------------------------------------------------------------ subscribe
    def subscribe(  # type: ignore[override]
        self,
        pattern: str,
        handler: Handler,
        *,
        name: str | None = None,
        maxsize: int | None = None,
        overflow: Overflow | None = None,
        batch: int | None = None,
        retries: int | None = None,
        durable: bool | None = None,
    ) -> BrokerSubscription:
        """Like :meth:`InProcessBus.subscribe`, with a broker consumer behind it.

        Args:
            durable: share a named, durable consumer with every bus that subscribes with this ``name``
                (each event goes to one of them, and waits at the broker while none runs).  Default:
                ``name in durable_names``; otherwise the consumer belongs to this bus and goes with it.
        """
        if durable is None:
            durable = name is not None and name in self.durable_names
        if durable and not name:
            raise ValidationError(
                f"a durable subscription to {pattern!r} needs a name",
                hint="pass name='...': buses subscribing with the same name share the consumer",
            )
        sub = self._new_subscription(pattern, handler, name, maxsize, overflow, batch, retries)
        assert isinstance(sub, BrokerSubscription)
        sub.durable = bool(durable)
        self._add_subscription(sub)
        loop = self._loop
        if loop is not None and not _on_loop(loop) and loop.is_running():
            # sync caller with a loop thread: wait until the consumer exists (events published after
            # subscribe returns reach it), and surface connection errors here
            asyncio.run_coroutine_threadsafe(self._wait_ready([sub]), loop).result(self.connect_timeout_s + 30)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach ``sub``: its consumer stops (a durable one stays on the broker); queued events are still handled."""
        super().unsubscribe(sub)
        if isinstance(sub, BrokerSubscription) and self._loop is not None and not self._closed:
            self._call_on_loop(self._schedule_close, sub)

    def _schedule_close(self, sub: BrokerSubscription) -> None:
        if sub._closing is None and self._loop is not None:
            sub._closing = self._loop.create_task(self._stop_consumer(sub))

    def has_subscribers(self, event_type: str) -> bool:
        """Always ``True``: subscribers in other processes are not known here."""
        return True

    def _start_worker(self, sub: Subscription) -> None:
        super()._start_worker(sub)
        if isinstance(sub, BrokerSubscription):
            loop = self._loop
            assert loop is not None
            sub._ready = loop.create_future()
            sub._ready.add_done_callback(_retrieve)
            sub._on_handled = functools.partial(self._handled, sub)
            sub._tasks.append(loop.create_task(self._start_consumer(sub), name=f"lumina-{self.kind}:{sub.name}"))

    async def _start_consumer(self, sub: BrokerSubscription) -> None:
        assert sub._ready is not None
        try:
            await self._ensure_connected()
            await self._open_consumer(sub)
        except asyncio.CancelledError:
            if not sub._ready.done():
                sub._ready.cancel()
            raise
        except Exception as exc:
            if not isinstance(exc, BusError):
                exc = BusError(
                    f"could not create the {self.label} consumer of subscriber {sub.name!r} ({sub.pattern!r}) "
                    f"at {redact_url(self.url)}: {type(exc).__name__}: {exc}",
                    hint="check the broker's log; a durable consumer of that name may exist with another pattern",
                )
            if not sub._ready.done():
                sub._ready.set_exception(exc)
            return
        if not sub._ready.done():
            sub._ready.set_result(None)

    async def _stop_consumer(self, sub: BrokerSubscription) -> None:
        try:
            if (
                sub._ready is not None
                and sub._ready.done()
                and not sub._ready.cancelled()
                and not sub._ready.exception()
            ):
                await self._flush_acks(sub)
                await self._close_consumer(sub)
        except Exception as exc:
            log.warning("closing the consumer of %r: %s", sub.name, exc)
        for task in sub._tasks:
            task.cancel()
        await asyncio.gather(*sub._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ receive / acknowledge
    def _decode(self, sub: BrokerSubscription, body: bytes) -> Event | None:
        """The event in ``body`` if it is for ``sub``; ``None`` for other types and for dead-lettered bodies."""
        sub.received += 1
        try:
            env = decode_envelope(body)
        except Exception as exc:
            self._dead_letter_raw(sub, {"body": body[:100_000].decode("utf-8", "replace")}, exc)
            return None
        type_ = env.get("type")
        if not isinstance(type_, str) or not sub.matches(type_):
            if isinstance(type_, str):
                return None  # a broader broker filter than the glob: not for this subscriber
            self._dead_letter_raw(sub, env, ValidationError("the message has no event 'type'"))
            return None
        try:
            return self.registry.load(env)
        except Exception as exc:
            self._dead_letter_raw(sub, env, exc)
            return None

    async def _receive(self, sub: BrokerSubscription, event: Event, message: Any) -> None:
        """Queue a decoded ``event`` for ``sub``'s worker (``message`` is acknowledged once it is handled)."""
        q = sub._queue
        assert q is not None
        if message is not None:
            sub._acks[id(event)] = message
        if q.has_room():
            q.put_nowait(event)
        else:
            await q.put(event)

    async def _handled(self, sub: BrokerSubscription, events: Sequence[Event]) -> None:
        """Called by the worker after ``events`` were handled or dead-lettered: acknowledge them."""
        acks = sub._acks
        messages = [m for m in (acks.pop(id(ev), None) for ev in events) if m is not None] if acks else []
        if sub.cumulative:
            # handled in delivery order: one ack covers every earlier message.  Held back while more
            # events wait here (up to 256); a crash before it means redelivery (at least once), never loss.
            # Messages from a lost connection cannot be acknowledged (the broker redelivers them).
            messages = [m for m in messages if not self._stale(m)]
            if messages:
                sub._held, sub._held_n = messages[-1], sub._held_n + len(messages)
            q = sub._queue
            if sub._held is None or (sub._held_n < 256 and q is not None and len(q)):
                return
            await self._flush_acks(sub)
            return
        if not messages:
            return
        try:
            await self._ack(sub, messages)
        except Exception as exc:  # the broker redelivers it: at least once
            log.warning("could not acknowledge %d message(s) of %r: %s", len(messages), sub.name, exc)

    async def _flush_acks(self, sub: BrokerSubscription) -> None:
        """Send the acknowledgement held back for ``sub`` (if any)."""
        last = sub._held
        if last is None:
            return
        n, sub._held, sub._held_n = sub._held_n, None, 0
        try:
            await self._ack_upto(sub, last)
        except Exception as exc:
            log.warning("could not acknowledge %d message(s) of %r: %s", n, sub.name, exc)

    def _dead_letter_raw(self, sub: BrokerSubscription, envelope: dict[str, Any], exc: BaseException) -> None:
        letter = DeadLetter(
            subscriber=sub.name,
            pattern=sub.pattern,
            event_id=str(envelope.get("id", "")),
            event_type=str(envelope.get("type", "")),
            envelope=envelope,
            error_type=type(exc).__name__,
            error=str(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            attempts=1,
        )
        sub.dead_lettered += 1
        log.warning("subscriber %r could not read event %r: %s; dead-lettered", sub.name, letter.event_id, exc)
        self._put_dead_letters([letter])

    # ------------------------------------------------------------------ publish
    async def publish(self, event: Event) -> None:
        """Send ``event`` to the broker; return once the broker has confirmed it."""
        if self._loop is None:
            self._bind(asyncio.get_running_loop())
        elif not _on_loop(self._loop):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.publish(event), self._loop))
            return
        self._check_open(event)
        await self._enqueue(event, True)  # type: ignore[misc]

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Send events in order, confirmations pipelined; return once all are confirmed."""
        if self._loop is None:
            self._bind(asyncio.get_running_loop())
        elif not _on_loop(self._loop):
            events = list(events)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.publish_many(events), self._loop))
            return
        pending: list[asyncio.Future[None]] = []
        for ev in events:
            self._check_open(ev)
            pending.append(self._enqueue(ev, True))  # type: ignore[arg-type]
            if len(pending) >= self.queue_size:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)

    def publish_nowait(self, event: Event) -> None:
        """Queue ``event`` for the broker without waiting (on the bus loop); :meth:`drain` waits for it.

        Raises:
            BusFull: ``queue_size`` events already wait for the broker's confirmation.
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
        if self._unconfirmed >= self.queue_size:
            raise BusFull(
                f"{self._unconfirmed} events wait for the {self.label} broker's confirmation; "
                f"event {event.type!r} was not published",
                hint="publish with `await bus.publish(...)` to wait, or raise queue_size",
            )
        self._enqueue(event, False)

    def _enqueue(self, event: Event, wait: bool) -> asyncio.Future[None] | None:
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[None] | None = loop.create_future() if wait else None
        self._outbox.append((event, fut))
        self.published += 1
        self._unconfirmed += 1
        if self._all_confirmed is None:
            self._all_confirmed = asyncio.Event()
        self._all_confirmed.clear()
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_loop(), name=f"lumina-{self.kind}:publish")
        return fut

    async def _send_loop(self) -> None:
        outbox = self._outbox
        while outbox:
            try:
                await self._ensure_connected()
                await self._wait_ready()
            except Exception as exc:
                while outbox:
                    ev, fut = outbox.popleft()
                    self._publish_failed(ev, fut, exc)
                return
            while outbox:
                ev, fut = outbox.popleft()
                try:
                    confirmation = await self._send(ev)
                except asyncio.CancelledError:
                    self._publish_failed(ev, fut, BusClosed("the bus closed before the event was sent"))
                    raise
                except Exception as exc:
                    self._publish_failed(ev, fut, exc)
                    continue
                confirmation.add_done_callback(functools.partial(self._confirmation, ev, fut))

    def _confirmation(self, event: Event, fut: asyncio.Future[None] | None, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            self._publish_failed(event, fut, BusError("the confirmation was cancelled"))
            return
        exc = done.exception()
        if exc is not None:
            self._publish_failed(event, fut, exc)
            return
        self.confirmed += 1
        if fut is not None and not fut.done():
            fut.set_result(None)
        self._settled()

    def _publish_failed(self, event: Event, fut: asyncio.Future[None] | None, exc: BaseException) -> None:
        if not isinstance(exc, BusError):
            exc = BusError(
                f"the {self.label} server at {redact_url(self.url)} did not confirm event {event.type!r} "
                f"({event.id}): {type(exc).__name__}: {exc}",
                hint="check that the server is up and the stream/exchange exists; publish the event again",
            )
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        else:
            self.unpublished += 1
            log.error("%s; dead-lettered as subscriber 'publish'", exc)
            self._put_dead_letters(
                [DeadLetter.from_failure(event, subscriber="publish", pattern=event.type, exc=exc, attempts=1)]
            )
        self._settled()

    def _settled(self) -> None:
        self._unconfirmed -= 1
        if self._unconfirmed <= 0 and self._all_confirmed is not None:
            self._unconfirmed = 0
            self._all_confirmed.set()

    # ------------------------------------------------------------------ drain / close
    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every event this bus published is confirmed, and every event the broker holds now for
        this bus's subscribers has been handled (or dead-lettered) and acknowledged.

        Args:
            timeout: give up after this many seconds with :class:`~lumina_lab.errors.BusTimeout` (a
                ``BusError`` and a ``TimeoutError``) naming what is still outstanding; ``None`` waits as long
                as it takes.  Nothing is lost on a timeout: unconfirmed events are still being sent (and
                dead-lettered if the broker never confirms them), unacknowledged ones stay at the broker.
        """
        self._drain_waiting = None
        try:
            await InProcessBus.drain(self, timeout)  # the loop hop and the timeout window; runs _drain below
        finally:
            self._drain_waiting = None

    async def _drain(self) -> None:
        if not self._connected and not self._outbox and not self._subs:
            return
        await self._wait_ready()
        while True:  # a handler may publish more: repeat until a pass finds nothing outstanding
            published = self.published
            if self._all_confirmed is not None:
                await self._all_confirmed.wait()
            for sub in list(self._subs):
                if isinstance(sub, BrokerSubscription) and sub._ready is not None and sub._ready.done():
                    self._drain_waiting = sub
                    await self._caught_up(sub)
                    self._drain_waiting = None
                    await self._flush_acks(sub)
            await InProcessBus._drain(self)
            if self.published == published and self._unconfirmed == 0:
                return

    def _drain_timeout(self, timeout: float) -> BusTimeout:
        """The error of a timed-out :meth:`drain`: what is outstanding, and what to do."""
        where = f"the {self.label} server at {redact_url(self.url)}"
        parts: list[str] = []
        if self._unconfirmed:
            unsent = len(self._outbox)
            parts.append(
                f"{self._unconfirmed} published event(s) not confirmed by {where}"
                + (f" ({unsent} not sent yet)" if unsent else "")
            )
        waiting = self._drain_waiting
        for sub in [*self._subs, *self._retiring]:
            q = sub._queue
            queued = len(q) if q is not None else 0
            busy = q is not None and not q.idle.is_set()
            unacked = len(sub._acks) if isinstance(sub, BrokerSubscription) else 0
            if not (busy or unacked or sub is waiting):
                continue
            bits = []
            if busy:
                bits.append(f"its handler is still running ({queued} more event(s) queued here)")
            if unacked:
                bits.append(f"{unacked} event(s) not acknowledged")
            if sub is waiting and not busy:
                bits.append(f"waiting for {where} to deliver what it holds for it")
            parts.append(f"subscriber {sub.name!r} ({sub.pattern!r}): " + ", ".join(bits))
        detail = "; ".join(parts) if parts else f"waiting for {where}"
        return BusTimeout(
            f"drain() did not finish within {timeout:g} s: {detail}",
            input=timeout,
            hint=f"a handler may be stuck or {where} unreachable (check its health); nothing is lost: "
            "unconfirmed events are still being sent (dead-lettered if never confirmed) and unacknowledged "
            "ones stay at the broker; call drain() again or with a longer timeout",
        )

    # close() and close_sync() are InProcessBus's; they run _close_on_loop below on the bus's loop
    async def _close_on_loop(self) -> None:
        """Handle what was published and is queued, acknowledge it, delete this bus's ephemeral consumers and
        disconnect.  Durable consumers stay on the broker."""
        if self._closed:
            return
        try:
            if self._connected:
                await self.drain()
        except Exception as exc:  # what was not handled stays at the broker (unacknowledged): not lost
            log.warning("closing %r: drain failed (%s); unhandled events stay at the broker", self, exc)
        finally:
            self._closed = True
            subs = [s for s in [*self._subs, *self._retiring] if isinstance(s, BrokerSubscription)]
            for sub in subs:
                if sub._closing is None:
                    sub._closing = asyncio.ensure_future(self._stop_consumer(sub))
            await asyncio.gather(*(s._closing for s in subs if s._closing is not None), return_exceptions=True)
            await self._cancel_workers()
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()
                await asyncio.gather(self._sender, return_exceptions=True)
            while self._outbox:  # never sent: raised to whoever awaits them, dead-lettered otherwise
                ev, fut = self._outbox.popleft()
                self._publish_failed(ev, fut, BusClosed(f"the bus closed before event {ev.type!r} was sent"))
            if self._connected:
                self._connected = False
                try:
                    await asyncio.wait_for(self._disconnect(), 10)
                except Exception as exc:
                    log.warning("disconnecting from %s: %s", redact_url(self.url), exc)

    # ------------------------------------------------------------------ helpers
    def _consumer_name(self, sub: BrokerSubscription, sep: str = "_") -> str:
        """Broker-side name: ``name`` for durable subscriptions, ``name`` + this bus's id otherwise."""
        base = re.sub(r"[^A-Za-z0-9_-]", "_", sub.name)[:120]
        if sub.durable:
            if base != sub.name:  # keep distinct names distinct
                base += "-" + hashlib.sha1(sub.name.encode()).hexdigest()[:8]
            return base
        return f"{base}{sep}{self.uid}"

    def __repr__(self) -> str:
        mode = "thread" if self._thread else ("loop" if self._loop else "unbound")
        return (
            f"{type(self).__name__}({redact_url(self.url)!r}, namespace={self.namespace!r}, "
            f"subscribers={len(self._subs)}, published={self.published}, confirmed={self.confirmed}, mode={mode!r})"
        )


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a readiness future's exception as seen (it is raised where it is awaited)."""
    if not fut.cancelled():
        fut.exception()
