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
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from ...errors import BusError
from ..model import Event
from .base import _TOKEN_RE, _WILD, BrokerBus, BrokerSubscription, encode_event, redact_url, split_pattern

__all__ = ["RabbitMQBus", "binding_key"]

log = logging.getLogger(__name__)
_BARRIER = "x-lumina-barrier"


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
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self.exchange_name = exchange or self.namespace
        self.expires_s = expires_s
        self._conn: Any = None
        self._channel: Any = None
        self._exchange: Any = None

    # ------------------------------------------------------------------ connection
    async def _connect(self) -> None:
        import aio_pika
        from aio_pika.connection import make_url

        conn = aio_pika.Connection(make_url(self.url), client_properties={"connection_name": f"lumina-lab {self.uid}"})
        try:
            await conn.connect(timeout=self.connect_timeout_s)
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        except BaseException:
            await conn.close()
            raise
        self._conn, self._channel, self._exchange = conn, channel, exchange

    async def _disconnect(self) -> None:
        conn, self._conn, self._channel, self._exchange = self._conn, None, None, None
        if conn is not None and not conn.is_closed:
            await conn.close()

    # ------------------------------------------------------------------ publish
    async def _send(self, event: Event) -> asyncio.Future[Any]:
        import aio_pika

        message = aio_pika.Message(
            encode_event(event),
            content_type="application/json",
            message_id=event.id,
            type=event.event_type,
            headers={"schema_version": event.event_version},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # tasks start in creation order and aio-pika serialises frames under a FIFO lock: order is kept
        return asyncio.ensure_future(
            self._exchange.publish(
                message, routing_key=event.event_type, mandatory=False, timeout=self.publish_timeout_s
            )
        )

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
        state = _Consumer(channel, queue, iterator)
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
                event = self._decode(sub, message.body)
                if event is None:
                    if acked:
                        await message.ack()
                    continue
                await self._receive(sub, event, message if acked else None)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one message stop the subscription
                log.exception("subscriber %r: receiving a RabbitMQ message failed", sub.name)

    async def _ack(self, sub: BrokerSubscription, messages: list[Any]) -> None:
        for message in messages:
            await message.ack()

    async def _ack_upto(self, sub: BrokerSubscription, message: Any) -> None:
        await message.ack(multiple=True)

    async def _caught_up(self, sub: BrokerSubscription) -> None:
        import aio_pika

        state = sub._handle
        if state is None:
            return
        loop = asyncio.get_running_loop()
        for attempt in range(200):  # a durable queue may hand our barrier to another bus: send again
            token = f"{self.uid}-{id(sub)}-{attempt}-{loop.time()}"
            waiter: asyncio.Future[None] = loop.create_future()
            state.barriers[token] = waiter
            await self._channel.default_exchange.publish(
                aio_pika.Message(b"", headers={_BARRIER: token}),
                routing_key=sub.consumer,
                timeout=self.publish_timeout_s,
            )
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 0.5 if sub.durable else self.publish_timeout_s)
                break
            except TimeoutError:
                state.barriers.pop(token, None)
                if not sub.durable:
                    raise BusError(
                        f"subscriber {sub.name!r} did not receive its drain barrier from {redact_url(self.url)}",
                        hint="check the RabbitMQ server's health",
                    ) from None
        q = sub._queue
        if q is not None and not q.idle.is_set():
            await q.idle.wait()
        await self._flush_acks(sub)

    async def _close_consumer(self, sub: BrokerSubscription) -> None:
        state, sub._handle = sub._handle, None
        if state is None or self._conn is None or self._conn.is_closed:
            return
        state.closing = True
        try:
            await asyncio.wait_for(state.iterator.close(), 10)
        finally:
            if not state.channel.is_closed:
                await state.channel.close()


class _Consumer:
    __slots__ = ("barriers", "channel", "closing", "iterator", "queue")

    def __init__(self, channel: Any, queue: Any, iterator: Any) -> None:
        self.channel = channel
        self.queue = queue
        self.iterator = iterator
        self.barriers: dict[str, asyncio.Future[None]] = {}
        self.closing = False
