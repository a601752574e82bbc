"""Events per second through the broker-backed buses, published → handled, against the raw clients.

Prints one JSON line.  For each broker (NATS JetStream on 127.0.0.1:4222, RabbitMQ on 127.0.0.1:5672):

* ``{broker}_bus_per_s`` — typed events published with ``await bus.publish_many`` (broker-confirmed),
  received by one subscriber, decoded through the schema registry, handled and acknowledged, until
  ``drain()`` returns;
* ``{broker}_raw_per_s`` — the anchor: the same bodies (bytes prepared beforehand) published with the
  client's confirmed publish (``js.publish_async`` / a publisher-confirm channel) and consumed with
  manual acks, no decoding: what the client alone can do on this machine in the same run;
* ``inprocess_bus_per_s`` — the in-process bus, for scale.

Usage: python benchmarks/bus_throughput.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from lumina_lab.events import Event, InProcessBus, SchemaRegistry, event
from lumina_lab.events.brokers import open_bus
from lumina_lab.events.brokers.base import encode_event

REG = SchemaRegistry()
NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@event("bench.call.finished", registry=REG)
class CallFinished(Event):
    user: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float


def _events(n: int) -> list[CallFinished]:
    return [
        CallFinished(user=f"u{i % 50}", model="gpt-4.1-mini", input_tokens=400 + i % 300, output_tokens=120,
                     latency_ms=800.0 + i % 400)
        for i in range(n)
    ]  # fmt: skip


async def through_bus(bus, n: int) -> float:
    events = _events(n)
    handled = 0

    def count(_ev) -> None:
        nonlocal handled
        handled += 1

    bus.subscribe("bench.*", count)
    if hasattr(bus, "connect"):
        await bus.connect()
    t0 = time.perf_counter()
    await bus.publish_many(events)
    await bus.drain()
    dt = time.perf_counter() - t0
    assert handled == n, (handled, n)
    await bus.close()
    return n / dt


async def raw_nats(n: int, stream: str) -> float:
    import nats
    from nats.js import api

    bodies = [encode_event(e) for e in _events(n)]
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    done = asyncio.Event()
    got = 0

    async def on_msg(msg) -> None:
        nonlocal got
        await msg.ack()
        got += 1
        if got == n:
            done.set()

    await js.subscribe(
        f"{stream.lower()}.bench.call.finished",
        cb=on_msg,
        manual_ack=True,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW, max_ack_pending=10_000),
    )
    t0 = time.perf_counter()
    futures = [await js.publish_async(f"{stream.lower()}.bench.call.finished", b) for b in bodies]
    await asyncio.gather(*futures)
    await done.wait()
    dt = time.perf_counter() - t0
    await js.delete_stream(stream)
    await nc.close()
    return n / dt


async def raw_rabbitmq(n: int, exchange_name: str) -> float:
    import aio_pika

    bodies = [encode_event(e) for e in _events(n)]
    conn = await aio_pika.connect(AMQP_URL)
    pub = await conn.channel(publisher_confirms=True)
    exchange = await pub.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC)
    sub = await conn.channel()
    await sub.set_qos(prefetch_count=10_000)
    queue = await sub.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="bench.#")
    done = asyncio.Event()
    got = 0

    async def consume() -> None:
        nonlocal got
        async with queue.iterator() as it:
            async for message in it:
                await message.ack()
                got += 1
                if got == n:
                    done.set()
                    return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    tasks = [
        asyncio.ensure_future(
            exchange.publish(
                aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                "bench.call.finished",
                mandatory=False,
            )
        )
        for b in bodies
    ]
    await asyncio.gather(*tasks)
    await done.wait()
    dt = time.perf_counter() - t0
    await consumer
    await pub.exchange_delete(exchange_name)
    await conn.close()
    return n / dt


async def main(n: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    out: dict = {"events": n}
    out["inprocess_bus_per_s"] = round(await through_bus(InProcessBus(), n))
    nats_ns = f"bench{tag}"
    out["nats_bus_per_s"] = round(await through_bus(open_bus("nats", NATS_URL, namespace=nats_ns, registry=REG), n))
    import nats

    nc = await nats.connect(NATS_URL)
    await nc.jetstream().delete_stream(nats_ns.upper())
    await nc.close()
    out["nats_raw_per_s"] = round(await raw_nats(n, f"RAW{tag.upper()}"))
    rmq_ns = f"bench{tag}"
    out["rabbitmq_bus_per_s"] = round(
        await through_bus(open_bus("rabbitmq", AMQP_URL, namespace=rmq_ns, registry=REG), n)
    )
    import aio_pika

    conn = await aio_pika.connect(AMQP_URL)
    await (await conn.channel()).exchange_delete(rmq_ns)
    await conn.close()
    out["rabbitmq_raw_per_s"] = round(await raw_rabbitmq(n, f"raw{tag}"))
    out["nats_ratio_bus_to_raw"] = round(out["nats_bus_per_s"] / out["nats_raw_per_s"], 2)
    out["rabbitmq_ratio_bus_to_raw"] = round(out["rabbitmq_bus_per_s"] / out["rabbitmq_raw_per_s"], 2)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.events))))
