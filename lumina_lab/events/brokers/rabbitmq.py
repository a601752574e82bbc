"""The event bus on RabbitMQ (aio-pika).

* One durable **topic exchange** per namespace (``lumina``); an event is published with its type as
  routing key (``provider.call.finished``), persistent, on a channel with **publisher confirms**.
* **Patterns** become binding keys: literal words stay, and from the first wildcard on, ``*`` (which in
  our globs spans dots) becomes ``#``: ``provider.*`` → ``provider.#``, ``*.finished`` → ``#.finished``,
  ``prov*`` → ``#``.  The glob is checked here as well; messages of other types are acknowledged and skipped.
* One **queue** per subscription, on its own channel with ``prefetch`` = the subscriber's queue bound:
  ephemeral (exclusive, auto-delete, ``{namespace}.{name}.{bus id}``) or durable (``{namespace}.{name}``,
  shared by every bus subscribing with that name, deleted by RabbitMQ after ``expires_s`` unused).
  ``block`` subscribers ack after the handler; ``drop_oldest`` subscribers consume without acks from a
  queue capped at their bound (``x-max-length``, oldest dropped first).
* :meth:`drain` sends a *barrier* message through each subscription's own queue: when it comes back,
  everything queued before it has been delivered here, and the local queue is then handled and acked.
* **Connection loss** (broker restart, network blip, ``rabbitmqctl close_connection``): the connection is an
  aio-pika ``RobustConnection``, which reconnects every ``reconnect_interval_s`` and re-opens the channels,
  re-declaring the exchange, queues, bindings, QoS and consumers (same consumer tags: no duplicates).
  While it is down, new events wait in the outbox (up to ``publish_timeout_s`` after the loss, then they fail
  like an unconfirmed publish: raised or dead-lettered); publishes whose confirmation was lost are sent again
  once every channel is back, so a publish still returns only on a broker confirm (at least once: the
  broker may then hold a copy twice).  Messages delivered but not acknowledged before the loss come again;
  copies of an event this subscription already has (same event id) are acknowledged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, ClassVar

from ...errors import BusClosed, BusError
from ..model import Event
from .base import _TOKEN_RE, _WILD, BrokerBus, BrokerSubscription, encode_event, redact_url, split_pattern

__all__ = ["RabbitMQBus", "binding_key"]

log = logging.getLogger(__name__)
_BARRIER = "x-lumina-barrier"


def _connection_lost(exc: BaseException) -> bool:
    """Whether a publish failed because the connection or channel went away (not because the broker refused it)."""
    from aio_pika.exceptions import DeliveryError
    from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError

    if isinstance(exc, DeliveryError | TimeoutError):
        return False
    return isinstance(exc, AMQPConnectionError | ChannelInvalidStateError | ConnectionError)


def binding_key(pattern: str) -> tuple[str, bool]:
    """The topic-exchange binding key for a glob ``pattern``, and whether it selects exactly the same types.

    Literal words stay; every word with a wildcard becomes ``#`` (our ``*`` spans dots, like ``#``).
    """
    literal, rest = split_pattern(pattern)
    words = list(literal)
    for tok in rest:
        if _WILD & set(tok) or not _TOKEN_RE.match(tok):
            if not words or words[-1] != "#":
                words.append("#")
        else:
            words.append(tok)
    exact = not rest or (rest == ["*"] and bool(literal)) or (rest[0] == "*" and not literal and "#" not in words[1:])
    return ".".join(words), exact


class RabbitMQBus(BrokerBus):
    """:class:`~lumina_lab.events.EventBus` on RabbitMQ.

    Args:
        url: ``amqp://user:password@host:5672/vhost`` (``amqps://`` for TLS).
        exchange: exchange name (default: the namespace).
        expires_s: how long an unused durable queue is kept (default a week).
        reconnect_interval_s: pause between reconnection attempts after the connection is lost.
        **options: see :class:`~lumina_lab.events.brokers.base.BrokerBus`.

    >>> bus = RabbitMQBus("amqp://guest:guest@127.0.0.1:5672/", namespace="demo")   # doctest: +SKIP
    """

    kind: ClassVar[str] = "rabbitmq"
    label: ClassVar[str] = "RabbitMQ"
    default_url: ClassVar[str] = "amqp://guest:guest@127.0.0.1:5672/"
    package: ClassVar[str] = "aio-pika"
    module: ClassVar[str] = "aio_pika"
    start_hint: ClassVar[str] = "start it (`rabbitmq-server -detached`)"

    def __init__(
        self,
        url: str | None = None,
        *,
        exchange: str | None = None,
        expires_s: float = 7 * 86_400.0,
        reconnect_interval_s: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self.exchange_name = exchange or self.namespace
        self.expires_s = expires_s
        self.reconnect_interval_s = reconnect_interval_s
        #: how often the connection was lost and re-established
        self.reconnects = 0
        self._conn: Any = None
        self._channel: Any = None
        self._exchange: Any = None
        self._link_up: asyncio.Event | None = None  # set while connected with every channel restored
        self._link_lost: asyncio.Future[None] | None = None  # resolves when the current connection drops
        self._down_since: float | None = None
        self._stopping = False
        self._publishing: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ connection
    async def _connect(self) -> None:
        import aio_pika
        from aio_pika.connection import make_url

        loop = asyncio.get_running_loop()
        conn = aio_pika.RobustConnection(
            make_url(self.url),
            client_properties={"connection_name": f"lumina-lab {self.uid}"},
            reconnect_interval=self.reconnect_interval_s,
        )
        try:
            await conn.connect(timeout=self.connect_timeout_s)
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        except BaseException:
            await conn.close()
            raise
        self._stopping = False
        self._link_up = asyncio.Event()
        self._link_up.set()
        self._link_lost = loop.create_future()
        self._down_since = None
        conn.close_callbacks.add(self._on_link_lost)
        conn.reconnect_callbacks.add(self._on_link_back)
        self._conn, self._channel, self._exchange = conn, channel, exchange

    def _on_link_lost(self, _conn: Any, exc: BaseException | None = None) -> None:
        """The connection dropped (or is being closed): hold publishes until every channel is back."""
        if self._link_up is None or not self._link_up.is_set():
            return
        self._link_up.clear()
        self._down_since = asyncio.get_running_loop().time()
        if self._link_lost is not None and not self._link_lost.done():
            self._link_lost.set_result(None)
        if not self._stopping:
            log.warning(
                "lost the connection to RabbitMQ at %s (%s); reconnecting every %g s",
                redact_url(self.url),
                exc,
                self.reconnect_interval_s,
            )

    def _on_link_back(self, _conn: Any) -> None:
        """Reconnected, with every channel, queue, binding and consumer restored (aio-pika's reconnect callback)."""
        if self._stopping or self._link_up is None:
            return
        self.reconnects += 1
        self._link_lost = asyncio.get_running_loop().create_future()
        self._down_since = None
        self._link_up.set()
        log.warning("reconnected to RabbitMQ at %s", redact_url(self.url))

    async def _link_ready(self) -> None:
        """Return once the connection is up; raise :class:`BusError` when it has been down ``publish_timeout_s``."""
        link = self._link_up
        if link is None or self._stopping:
            raise BusClosed("the bus is closing")
        if link.is_set():
            return
        loop = asyncio.get_running_loop()
        since = self._down_since if self._down_since is not None else loop.time()
        left = since + self.publish_timeout_s - loop.time()
        try:
            if left <= 0:
                raise TimeoutError
            await asyncio.wait_for(link.wait(), left)
        except TimeoutError:
            raise BusError(
                f"the connection to the RabbitMQ server at {redact_url(self.url)} has been down for "
                f"{loop.time() - since:.0f} s (still reconnecting every {self.reconnect_interval_s:g} s)",
                hint="check that the server is up; events that fail meanwhile are dead-lettered (subscriber "
                "'publish') and can be published again",
            ) from None
        if self._stopping:
            raise BusClosed("the bus is closing")

    async def _disconnect(self) -> None:
        self._stopping = True
        conn, self._conn, self._channel, self._exchange = self._conn, None, None, None
        if conn is not None:
            conn.reconnect_callbacks.discard(self._on_link_back)
        if self._link_up is not None:
            self._link_up.set()  # wake what waits for the link: it sees the bus closing
        tasks = list(self._publishing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if conn is not None and not conn.is_closed:
            await conn.close()

    def _stale(self, message: Any) -> bool:
        try:
            message.channel  # noqa: B018 - raises once the channel it came through is closed
        except Exception:
            return True
        return False

    # ------------------------------------------------------------------ publish
    async def _send(self, event: Event) -> asyncio.Future[Any]:
        import aio_pika

        await self._link_ready()  # while the connection is down, the outbox holds what follows
        message = aio_pika.Message(
            encode_event(event),
            content_type="application/json",
            message_id=event.id,
            type=event.event_type,
            headers={"schema_version": event.event_version},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # tasks start in creation order and aio-pika serialises frames under a FIFO lock: order is kept
        task = asyncio.ensure_future(self._publish(message, event.event_type))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return task

    async def _publish(self, message: Any, routing_key: str) -> Any:
        """Publish ``message`` until the broker confirms it, sending it again after a reconnect."""
        from aio_pika.exceptions import DeliveryError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout_s
        while True:
            exchange = self._exchange
            if exchange is None or self._stopping:
                raise BusClosed("the bus closed before the broker confirmed the event")
            try:
                return await exchange.publish(
                    message, routing_key=routing_key, mandatory=False, timeout=max(0.001, deadline - loop.time())
                )
            except (DeliveryError, TimeoutError):  # refused by the broker, or no confirmation in time
                raise
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    raise
                exc: BaseException = ConnectionError("the connection was closed")  # aio-pika cancelled it
            except Exception as err:
                if not _connection_lost(err):
                    raise
                exc = err
            if self._stopping or loop.time() >= deadline:
                raise exc
            log.debug(
                "publish to RabbitMQ interrupted (%s: %s); sending again once reconnected", type(exc).__name__, exc
            )
            if self._link_up is not None and self._link_up.is_set():
                await asyncio.sleep(0.05)  # the loss may not be noticed yet
            await self._link_ready()

    # ------------------------------------------------------------------ consume
    async def _open_consumer(self, sub: BrokerSubscription) -> None:
        key, _exact = binding_key(sub.pattern)
        acked = sub.overflow == "block"
        name = f"{self.namespace}.{self._consumer_name(sub, sep='.')}"
        sub.consumer = name
        channel = await self._conn.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=min(sub.maxsize, 65_535))
            arguments: dict[str, Any] = {}
            if not acked:
                arguments.update({"x-max-length": sub.maxsize, "x-overflow": "drop-head"})
            if sub.durable:  # shared by name: use it as it was declared (its arguments cannot change)
                from aio_pika.exceptions import ChannelNotFoundEntity

                try:
                    queue = await channel.declare_queue(name, passive=True)
                except ChannelNotFoundEntity:  # closes the channel: take a new one
                    await _close_quietly(channel)  # or the robust connection would re-open it
                    channel = await self._conn.channel(publisher_confirms=False)
                    await channel.set_qos(prefetch_count=min(sub.maxsize, 65_535))
                    arguments["x-expires"] = int(self.expires_s * 1000)
                    queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            else:
                queue = await channel.declare_queue(name, exclusive=True, auto_delete=True, arguments=arguments)
            await queue.bind(self.exchange_name, routing_key=key)
            iterator = queue.iterator(no_ack=not acked)
            await iterator.consume()
        except BaseException:
            await channel.close()
            raise
        state = _Consumer(channel, queue, iterator, keep=min(sub.maxsize, 65_535) + 1024)
        sub._handle = state
        sub.cumulative = acked  # one channel per subscription: delivery tags are ours alone
        assert self._loop is not None
        sub._tasks.append(self._loop.create_task(self._consume(sub, state, acked), name=f"lumina-rabbitmq:{sub.name}"))

    async def _consume(self, sub: BrokerSubscription, state: _Consumer, acked: bool) -> None:
        try:
            await self._consume_messages(sub, state, acked)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not state.closing:
                log.warning("the RabbitMQ consumer of %r stopped: %s: %s", sub.name, type(exc).__name__, exc)

    async def _consume_messages(self, sub: BrokerSubscription, state: _Consumer, acked: bool) -> None:
        while True:
            await self._consume_until_interrupted(sub, state, acked)
            if state.closing or self._stopping or self._closed:
                return
            # aio-pika's robust iterator stops when the connection stays down a long time: wait and go on
            log.debug("the RabbitMQ consumer of %r paused; resuming once reconnected", sub.name)
            await asyncio.sleep(self.reconnect_interval_s)
            if self._link_up is not None:
                await self._link_up.wait()

    async def _consume_until_interrupted(self, sub: BrokerSubscription, state: _Consumer, acked: bool) -> None:
        async for message in state.iterator:
            try:
                headers = message.headers or {}
                token = headers.get(_BARRIER)
                if token is not None:
                    if acked:
                        await message.ack()
                    waiter = state.barriers.pop(str(token), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                    continue
                if await self._is_copy(sub, state, message, acked):
                    continue
                event = self._decode(sub, message.body)
                if event is None:
                    if acked:
                        await message.ack()
                    continue
                if acked:
                    state.pending[event.id] = event
                await self._receive(sub, event, message if acked else None)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one message stop the subscription
                log.exception("subscriber %r: receiving a RabbitMQ message failed", sub.name)

    async def _is_copy(self, sub: BrokerSubscription, state: _Consumer, message: Any, acked: bool) -> bool:
        """Whether ``message`` carries an event this subscription already received (a redelivery after a lost
        connection, or a publish sent again after its confirmation was lost); settle it if so."""
        event_id = message.message_id
        if not event_id:
            return False
        seen = state.seen
        if event_id not in seen:
            seen[event_id] = None
            if len(seen) > state.keep:
                seen.popitem(last=False)
            return False
        if acked:
            event = state.pending.get(event_id)
            held = sub._acks.get(id(event)) if event is not None else None
            if held is not None and self._stale(held):
                sub._acks[id(event)] = message  # acknowledged through the live channel once handled
            else:
                await message.ack()  # handled (or queued with a live ack) already
        log.debug("subscriber %r: skipped a second copy of event %s", sub.name, event_id)
        return True

    async def _handled(self, sub: BrokerSubscription, events: Any) -> None:
        state = sub._handle
        if isinstance(state, _Consumer) and state.pending:
            for ev in events:
                state.pending.pop(ev.id, None)
        await super()._handled(sub, events)

    async def _ack(self, sub: BrokerSubscription, messages: list[Any]) -> None:
        for message in messages:
            if not self._stale(message):  # from a lost connection: the broker delivers it again
                await message.ack()

    async def _ack_upto(self, sub: BrokerSubscription, message: Any) -> None:
        if not self._stale(message):
            await message.ack(multiple=True)

    async def _caught_up(self, sub: BrokerSubscription) -> None:
        import aio_pika

        state = sub._handle
        if state is None:
            return
        loop = asyncio.get_running_loop()
        for attempt in range(200):  # a durable queue may hand our barrier to another bus: send again
            await self._link_ready()
            lost = self._link_lost
            token = f"{self.uid}-{id(sub)}-{attempt}-{loop.time()}"
            waiter: asyncio.Future[None] = loop.create_future()
            state.barriers[token] = waiter
            try:
                try:
                    await self._channel.default_exchange.publish(
                        aio_pika.Message(b"", headers={_BARRIER: token}),
                        routing_key=sub.consumer,
                        timeout=self.publish_timeout_s,
                    )
                except Exception as exc:
                    if not _connection_lost(exc):
                        raise
                    await asyncio.sleep(0.05)
                    continue  # send it again once reconnected
                wait = {waiter} if lost is None else {waiter, lost}
                await asyncio.wait(
                    wait, timeout=0.5 if sub.durable else self.publish_timeout_s, return_when="FIRST_COMPLETED"
                )
                if waiter.done():
                    break
                if lost is not None and lost.done():
                    continue  # the barrier went with the connection: send another
                if not sub.durable:
                    raise BusError(
                        f"subscriber {sub.name!r} did not receive its drain barrier from {redact_url(self.url)}",
                        hint="check the RabbitMQ server's health",
                    )
            finally:
                state.barriers.pop(token, None)
        q = sub._queue
        if q is not None and not q.idle.is_set():
            await q.idle.wait()
        await self._flush_acks(sub)

    async def _close_consumer(self, sub: BrokerSubscription) -> None:
        state, sub._handle = sub._handle, None
        if state is None:
            return
        state.closing = True
        if self._conn is None or self._conn.is_closed:
            return
        if self._link_up is None or not self._link_up.is_set():  # reconnecting: keep it from being restored
            await asyncio.wait_for(_close_quietly(state.channel), 10)
            return
        try:
            await asyncio.wait_for(state.iterator.close(), 10)
        finally:
            if not state.channel.is_closed:
                await state.channel.close()


class _Consumer:
    __slots__ = ("barriers", "channel", "closing", "iterator", "keep", "pending", "queue", "seen")

    def __init__(self, channel: Any, queue: Any, iterator: Any, keep: int) -> None:
        self.channel = channel
        self.queue = queue
        self.iterator = iterator
        self.barriers: dict[str, asyncio.Future[None]] = {}
        self.closing = False
        #: ids of the last ``keep`` events received (to recognise a copy delivered again)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.keep = keep
        #: event id -> event, for received events not handled yet (acknowledged subscriptions)
        self.pending: dict[str, Event] = {}


async def _close_quietly(channel: Any) -> None:
    try:
        await channel.close()
    except Exception as exc:
        log.debug("closing a RabbitMQ channel: %s", exc)
