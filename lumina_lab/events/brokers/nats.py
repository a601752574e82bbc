"""The event bus on NATS JetStream (nats-py).

* One **stream** per namespace, ``LUMINA`` for namespace ``lumina``, holding subjects ``lumina.>``; an
  event of type ``provider.call.finished`` is published on ``lumina.provider.call.finished`` with
  ``Nats-Msg-Id`` = the event id (JetStream drops a re-sent duplicate inside its duplicate window) and
  acknowledged by a PubAck.
* **Patterns** become consumer filter subjects where NATS can say the same thing: ``provider.call.finished``
  → ``lumina.provider.call.finished``, ``provider.*`` → ``lumina.provider.>``.  Globs NATS cannot express
  (``*.finished``, ``prov*``) filter on the longest literal prefix (``lumina.>``), and the glob is checked
  here; messages of other types are acknowledged and skipped.
* One **push consumer** per subscription: ephemeral (named after the subscriber and this bus, deleted on
  close, and by the server after ``inactive_threshold`` if the process dies) or durable (named after the
  subscriber, with a deliver group, so every bus subscribing with that name shares it).  ``block``
  subscribers ack explicitly after the handler (``max_ack_pending`` = the queue bound); ``drop_oldest``
  subscribers use ``AckPolicy.NONE`` and drop locally.
* **Connection loss**: nats-py reconnects by itself (without limit once connected), re-subscribing and
  sending what was published meanwhile.  Publishes whose PubAck had not come when the connection dropped
  may have been lost on the wire: they are sent again after the reconnect with the same ``Nats-Msg-Id``,
  so JetStream keeps one copy (within its two-minute duplicate window).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from typing import Any, ClassVar

from ..model import Event
from .base import BrokerBus, BrokerSubscription, encode_event, split_pattern

__all__ = ["NatsBus", "nats_filter"]

log = logging.getLogger(__name__)


def nats_filter(namespace: str, pattern: str) -> tuple[str, bool]:
    """The JetStream filter subject for a glob ``pattern``, and whether it is exact (no local check needed)."""
    literal, rest = split_pattern(pattern)
    prefix = ".".join([namespace, *literal])
    if not rest:
        return prefix, True
    return f"{prefix}.>", rest == ["*"]


class NatsBus(BrokerBus):
    """:class:`~lumina_lab.events.EventBus` on NATS JetStream.

    Args:
        url: ``nats://host:4222`` (several, comma-separated, for a cluster; credentials in the URL).
        stream: stream name (default: the namespace in capitals).
        max_age_s: how long the stream keeps events (default one day).
        ack_wait_s: how long a delivered event may stay unacknowledged (handler plus retries) before
            JetStream delivers it again.
        inactive_s: how long an idle durable consumer is kept (default a week).
        **options: see :class:`~lumina_lab.events.brokers.base.BrokerBus`.

    >>> bus = NatsBus("nats://127.0.0.1:4222", namespace="demo")   # doctest: +SKIP
    """

    kind: ClassVar[str] = "nats"
    label: ClassVar[str] = "NATS"
    default_url: ClassVar[str] = "nats://127.0.0.1:4222"
    package: ClassVar[str] = "nats-py"
    module: ClassVar[str] = "nats"
    start_hint: ClassVar[str] = "start it with JetStream (`nats-server -js`)"

    def __init__(
        self,
        url: str | None = None,
        *,
        stream: str | None = None,
        max_age_s: float = 86_400.0,
        ack_wait_s: float = 60.0,
        inactive_s: float = 7 * 86_400.0,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self.stream = stream or self.namespace.upper()
        self.max_age_s = max_age_s
        self.ack_wait_s = ack_wait_s
        self.inactive_s = inactive_s
        self._nc: Any = None
        self._js: Any = None
        #: publishes waiting for their PubAck: (deadline, future, subject, body, headers)
        self._inflight: deque[tuple[float, asyncio.Future[Any], str, bytes, dict[str, str]]] = deque()
        self._resending: asyncio.Task[None] | None = None
        #: how often the connection was lost and re-established
        self.reconnects = 0
        self._watchdog: asyncio.Task[None] | None = None

    def subject(self, event_type: str) -> str:
        """The subject events of ``event_type`` are published on."""
        return f"{self.namespace}.{event_type}"

    # ------------------------------------------------------------------ connection
    async def _connect(self) -> None:
        import nats
        from nats.errors import NoRespondersError
        from nats.js import api
        from nats.js.errors import NotFoundError, ServiceUnavailableError

        from ...errors import BusError

        async def on_error(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        async def on_disconnected() -> None:
            log.warning("disconnected from NATS at %s; reconnecting", self._safe_url)

        async def on_reconnected() -> None:
            self.reconnects += 1
            log.warning("reconnected to NATS at %s", self._safe_url)
            if self._inflight and (self._resending is None or self._resending.done()):
                self._resending = asyncio.get_running_loop().create_task(self._resend_inflight())

        nc = await nats.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=f"lumina-lab {self.uid}",
            connect_timeout=self.connect_timeout_s,
            max_reconnect_attempts=1,  # for the first connection: fail fast with a clear error
            reconnect_time_wait=0.2,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
        nc.options["max_reconnect_attempts"] = -1  # once connected, ride out broker restarts
        nc.options["reconnect_time_wait"] = 1.0
        js = nc.jetstream(timeout=self.connect_timeout_s)
        try:
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(
                    api.StreamConfig(
                        name=self.stream,
                        subjects=[f"{self.namespace}.>"],
                        retention=api.RetentionPolicy.LIMITS,
                        storage=api.StorageType.FILE,
                        max_age=self.max_age_s,
                        duplicate_window=120.0,
                        description="Lumina Lab events",
                    )
                )
        except (NoRespondersError, ServiceUnavailableError) as exc:
            await nc.close()
            raise BusError(
                f"the NATS server at {self._safe_url} has no JetStream ({type(exc).__name__})",
                input=self._safe_url,
                hint="start nats-server with -js (JetStream), or use events.bus = 'rabbitmq' or 'memory'",
            ) from None
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js

    async def _disconnect(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._resending is not None:
            self._resending.cancel()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                if nc.is_connected:  # not while reconnecting: nothing can be flushed then
                    await nc.flush(timeout=5)
            finally:
                await nc.close()

    @property
    def _safe_url(self) -> str:
        from .base import redact_url

        return redact_url(self.url)

    # ------------------------------------------------------------------ publish
    async def _send(self, event: Event) -> asyncio.Future[Any]:
        subject, body, headers = self.subject(event.event_type), encode_event(event), {"Nats-Msg-Id": event.id}
        fut = await self._js.publish_async(subject, body, headers=headers)
        if not fut.done():  # a PubAck that never comes fails the publish instead of hanging drain()
            loop = asyncio.get_running_loop()
            self._inflight.append((loop.time() + self.publish_timeout_s, fut, subject, body, headers))
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = loop.create_task(self._expire_unconfirmed())
        return fut

    async def _expire_unconfirmed(self) -> None:
        """Fail publishes whose PubAck is overdue (one task, not a timer per message)."""
        inflight = self._inflight
        loop = asyncio.get_running_loop()
        while inflight:
            while inflight and inflight[0][1].done():
                inflight.popleft()
            if not inflight:
                return
            deadline, fut = inflight[0][:2]
            if loop.time() >= deadline:
                inflight.popleft()
                fut.set_exception(TimeoutError(f"no PubAck from JetStream within {self.publish_timeout_s} s"))
                continue
            await asyncio.sleep(min(1.0, deadline - loop.time()))

    async def _resend_inflight(self) -> None:
        """After a reconnect: send every publish still waiting for its PubAck again (same ``Nats-Msg-Id``)."""
        js = self._js
        for _deadline, fut, subject, body, headers in list(self._inflight):
            if fut.done() or js is None:
                continue
            try:
                again = await js.publish_async(subject, body, headers=headers)
            except Exception as exc:  # left to the PubAck deadline
                log.debug("could not send %s to NATS again: %s", headers.get("Nats-Msg-Id"), exc)
                continue
            again.add_done_callback(functools.partial(_settle_from, fut))

    # ------------------------------------------------------------------ consume
    async def _open_consumer(self, sub: BrokerSubscription) -> None:
        from nats.js import api
        from nats.js.errors import NotFoundError

        js = self._js
        subject, _exact = nats_filter(self.namespace, sub.pattern)
        name = self._consumer_name(sub)
        sub.consumer = name
        acked = sub.overflow == "block"
        config = None
        if sub.durable:
            try:
                config = (await js.consumer_info(self.stream, name)).config
            except NotFoundError:
                config = None
            if config is not None and config.filter_subject not in (None, subject):
                from ...errors import BusError

                raise BusError(
                    f"durable consumer {name!r} on stream {self.stream!r} filters {config.filter_subject!r}, "
                    f"not {subject!r} (pattern {sub.pattern!r})",
                    hint=f"subscribe under another name, or delete it: `nats consumer rm {self.stream} {name}`",
                )
        if config is None:
            config = api.ConsumerConfig(
                name=name,
                durable_name=name if sub.durable else None,
                deliver_subject=self._nc.new_inbox(),
                deliver_group=name if sub.durable else None,
                deliver_policy=api.DeliverPolicy.NEW,
                # explicit acks: with AckPolicy.ALL the ack of a skipped (other type) or undecodable
                # message would acknowledge earlier events that still wait to be handled
                ack_policy=api.AckPolicy.EXPLICIT if acked else api.AckPolicy.NONE,
                ack_wait=self.ack_wait_s if acked else None,
                max_ack_pending=sub.maxsize if acked else None,
                max_deliver=-1,
                filter_subject=subject,
                inactive_threshold=self.inactive_s if sub.durable else 60.0,
                description=f"lumina subscriber {sub.name!r} ({sub.pattern!r})",
            )
            info = await js.add_consumer(self.stream, config=config)
            config = info.config
        auto_ack = config.ack_policy != api.AckPolicy.NONE

        async def on_message(msg: Any) -> None:
            try:
                event = self._decode(sub, msg.data)
                if event is None:
                    if auto_ack:
                        await msg.ack()
                    return
                await self._receive(sub, event, msg if auto_ack else None)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one message stop the subscription
                log.exception("subscriber %r: receiving a NATS message failed", sub.name)

        sub._handle = await js.subscribe_bind(
            stream=self.stream,
            config=config,
            consumer=name,
            cb=on_message,
            manual_ack=True,
            pending_msgs_limit=max(4 * sub.maxsize, 65_536),
        )

    async def _ack(self, sub: BrokerSubscription, messages: list[Any]) -> None:
        for msg in messages:
            await msg.ack()

    async def _ack_upto(self, sub: BrokerSubscription, message: Any) -> None:
        raise NotImplementedError("NATS consumers here acknowledge each message")

    async def _caught_up(self, sub: BrokerSubscription) -> None:
        psub = sub._handle
        if psub is None:
            return
        while True:
            q = sub._queue
            if q is not None and not q.idle.is_set():
                await q.idle.wait()
            info = await self._js.consumer_info(self.stream, sub.consumer)
            here = psub._sub._pending_queue.qsize() if psub._sub is not None else 0
            if info.num_pending == 0 and info.num_ack_pending == 0 and here == 0 and (q is None or q.idle.is_set()):
                if sub.overflow == "block" or sub.durable:
                    return  # acked after handling: nothing pending or unacknowledged means all handled
                # no acks: everything the server delivered must have reached us
                if info.delivered is None or (info.delivered.consumer_seq or 0) <= sub.received:
                    return
            await asyncio.sleep(0.005)

    async def _close_consumer(self, sub: BrokerSubscription) -> None:
        from nats.js.errors import NotFoundError

        psub, sub._handle = sub._handle, None
        # while reconnecting, leave it: closing the connection ends the subscription, and the server deletes
        # an ephemeral consumer after its inactive_threshold
        if psub is not None and self._nc is not None and self._nc.is_connected:
            await psub.unsubscribe()
            if not sub.durable:
                try:
                    await self._js.delete_consumer(self.stream, sub.consumer)
                except NotFoundError:
                    pass


def _settle_from(original: asyncio.Future[Any], again: asyncio.Future[Any]) -> None:
    """Confirm ``original`` with the PubAck of the same message sent ``again`` (failures are left to its deadline)."""
    if original.done() or again.cancelled() or again.exception() is not None:
        return
    original.set_result(again.result())
