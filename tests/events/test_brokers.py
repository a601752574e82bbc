"""Broker-backed buses (NATS JetStream, RabbitMQ) against the real servers on 127.0.0.1.

Each test gets its own namespace (JetStream stream / RabbitMQ exchange) and deletes it afterwards.  When a
server is down the tests fail in CI (``CI`` set; ``.ci/run`` starts the servers) and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from lumina_lab.config import load_settings
from lumina_lab.errors import BusClosed, BusError, BusTimeout, ConfigError, LuminaError, ValidationError
from lumina_lab.events import Event, MemoryDeadLetters, SchemaRegistry, event
from lumina_lab.events.brokers import open_bus
from lumina_lab.events.brokers.base import decode_envelope, encode_event, redact_url
from lumina_lab.events.brokers.nats import nats_filter
from lumina_lab.events.brokers.rabbitmq import binding_key

pytestmark = pytest.mark.timeout(120)

SERVERS = {
    "nats": ("nats://127.0.0.1:4222", 4222, "nats", "nats-server -js (JetStream)"),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672/", 5672, "aio_pika", "rabbitmq-server -detached"),
}
ROOT = Path(__file__).resolve().parents[2]

REG = SchemaRegistry()
OLD = SchemaRegistry()  # a producer still on schema v1 of brk.price.quoted


@event("brk.call.started", registry=REG)
class CallStarted(Event):
    n: int = 0


@event("brk.call.finished", registry=REG)
class CallFinished(Event):
    n: int = 0
    model: str = ""
    latency_ms: float = 0.0
    tags: list[str] = []
    usage: dict[str, int] = {}


@event("brk.tool.finished", registry=REG)
class ToolFinished(Event):
    n: int = 0


@event("mem.item.written", registry=REG)
class ItemWritten(Event):
    n: int = 0


@event("brk.price.quoted", version=1, registry=OLD)
class PriceV1(Event):
    usd: float


@event("brk.price.quoted", version=2, registry=REG)
class PriceV2(Event):
    amount: float
    currency: str


@REG.upcaster("brk.price.quoted", from_version=1)
def _price_v1_to_v2(payload: dict) -> dict:
    return {"amount": payload.pop("usd"), "currency": "USD"}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _unavailable(problem: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def _need_client(name: str) -> None:
    module = SERVERS[name][2]
    try:
        __import__(module)
    except ImportError:
        _unavailable(f"the {module} package is not installed: pip install -e '.[test]' (or '.[brokers]')")


@pytest.fixture(params=["nats", "rabbitmq"])
def kind(request) -> str:
    """The broker under test; fails in CI when its server or client is missing, skips elsewhere."""
    name = request.param
    url, port, _module, start = SERVERS[name]
    _need_client(name)
    problem = None
    if not _port_open(port):
        problem = f"no {name} server on 127.0.0.1:{port} ({url}): start it with `{start}` (.ci/run does)"
    if problem:
        _unavailable(problem)
    return name


@pytest.fixture
async def ns(kind):
    """A namespace of its own (stream / exchange), deleted afterwards with its durable queues."""
    name = "t" + uuid.uuid4().hex[:12]
    durable_queues: list[str] = []
    yield_value = Namespace(name, durable_queues)
    yield yield_value
    await _cleanup(kind, name, durable_queues)


class Namespace(str):
    def __new__(cls, value: str, durable_queues: list[str]):
        obj = super().__new__(cls, value)
        obj.durable_queues = durable_queues
        return obj

    def durable(self, name: str) -> str:
        """Register a durable subscriber name for clean-up; returns it."""
        self.durable_queues.append(f"{self}.{name}")
        return name


async def _cleanup(kind: str, namespace: str, queues: list[str]) -> None:
    with contextlib.suppress(Exception):
        if kind == "nats":
            import nats

            nc = await nats.connect(SERVERS["nats"][0], connect_timeout=5, max_reconnect_attempts=1)
            try:
                with contextlib.suppress(Exception):
                    await nc.jetstream().delete_stream(namespace.upper())
            finally:
                await nc.close()
        else:
            import aio_pika

            conn = await aio_pika.connect(SERVERS["rabbitmq"][0], timeout=5)
            try:
                for queue in queues:
                    ch = await conn.channel()
                    with contextlib.suppress(Exception):
                        await ch.queue_delete(queue)
                ch = await conn.channel()
                with contextlib.suppress(Exception):
                    await ch.exchange_delete(namespace)
            finally:
                await conn.close()


@pytest.fixture
async def make_bus(kind, ns):
    """Build buses on this test's namespace (fast retries); all are closed afterwards."""
    made = []

    def make(**kw):
        kw.setdefault("namespace", ns)
        kw.setdefault("registry", REG)
        kw.setdefault("retry_initial_s", 0.001)
        if kind == "rabbitmq":
            kw.setdefault("expires_s", 3600.0)  # durable queues of an interrupted run do not linger
        bus = open_bus(kind, SERVERS[kind][0], **kw)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.close(), 30)


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, item) -> None:
        self.events.append(item)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def ns(self) -> list[int]:
        return [e.n for e in self.events]


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------- pure mapping (no server)
class TestMapping:
    @pytest.mark.parametrize(
        ("pattern", "subject", "exact"),
        [
            ("brk.call.finished", "lumina.brk.call.finished", True),
            ("brk.*", "lumina.brk.>", True),
            ("brk.call.*", "lumina.brk.call.>", True),
            ("*", "lumina.>", True),
            ("*.finished", "lumina.>", False),
            ("brk*", "lumina.>", False),
            ("brk.*.finished", "lumina.brk.>", False),
        ],
    )
    def test_nats_filter_subjects(self, pattern, subject, exact):
        assert nats_filter("lumina", pattern) == (subject, exact)

    @pytest.mark.parametrize(
        ("pattern", "key", "exact"),
        [
            ("brk.call.finished", "brk.call.finished", True),
            ("brk.*", "brk.#", True),
            ("*", "#", True),
            ("*.finished", "#.finished", True),
            ("brk*", "#", False),
            ("brk.*.finished", "brk.#.finished", False),
            ("brk.c?ll.*", "brk.#", False),
        ],
    )
    def test_rabbitmq_binding_keys(self, pattern, key, exact):
        assert binding_key(pattern) == (key, exact)

    def test_wire_form_round_trips_through_the_registry(self):
        ev = CallFinished(n=3, model="m", latency_ms=1.5, tags=["a"], usage={"in": 2})

        assert REG.load(decode_envelope(encode_event(ev))) == ev
        assert decode_envelope(encode_event(ev))["schema_version"] == 1

    def test_urls_are_shown_without_passwords(self):
        assert redact_url("amqp://guest:s3cret@host:5672/vh") == "amqp://guest:***@host:5672/vh"
        assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


class TestConfiguration:
    def test_memory_is_the_default_bus(self):
        ev = load_settings().events

        assert (ev.bus, ev.bus_url, ev.bus_namespace) == ("memory", None, "lumina")

    def test_bus_and_url_come_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__BUS", "nats")
        monkeypatch.setenv("LUMINA_EVENTS__BUS_URL", "nats://broker:4222")

        ev = load_settings().events

        assert (ev.bus, ev.bus_url) == ("nats", "nats://broker:4222")

    def test_unknown_bus_names_the_choices(self):
        with pytest.raises(ConfigError) as info:
            load_settings(events={"bus": "kafka"})

        assert info.value.key == "events.bus"
        assert "'memory', 'nats' or 'rabbitmq'" in str(info.value)

    def test_bad_namespace_is_refused(self):
        with pytest.raises(ConfigError):
            load_settings(events={"bus_namespace": "Has Spaces"})

    def test_open_bus_refuses_unknown_kinds(self):
        with pytest.raises(ConfigError, match=r"events\.bus"):
            open_bus("kafka")

    @pytest.mark.parametrize(("bus", "module"), [("nats", "nats"), ("rabbitmq", "aio_pika")])
    def test_missing_client_names_the_extra(self, monkeypatch, bus, module):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed

        with pytest.raises(ConfigError) as info:
            open_bus(bus)

        assert "pip install 'lumina-lab[brokers]'" in str(info.value)
        assert info.value.key == "events.bus"

    def test_importing_lumina_lab_loads_no_broker_client(self):
        code = (
            "import sys, lumina_lab, lumina_lab.lab, lumina_lab.events.brokers\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('nats', 'aio_pika', 'aiormq')]\n"
            "assert not bad, bad\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


# ---------------------------------------------------------------------- against the servers
class TestRoundTrip:
    async def test_typed_event_arrives_equal(self, make_bus):
        bus = make_bus()
        rec = Recorder()
        bus.subscribe("brk.call.finished", rec)
        sent = CallFinished(n=7, model="gpt", latency_ms=12.5, tags=["x", "y"], usage={"in": 3, "out": 4})

        await bus.publish(sent)
        await bus.drain()

        assert rec.events == [sent]
        got = rec.events[0]
        assert type(got) is CallFinished and got is not sent
        assert (got.id, got.ts, got.source, got.trace_id) == (sent.id, sent.ts, sent.source, sent.trace_id)

    async def test_order_is_kept_per_subscriber(self, make_bus):
        bus = make_bus()
        rec = Recorder()
        bus.subscribe("brk.*", rec)

        await bus.publish_many([CallStarted(n=i) for i in range(300)])
        await bus.drain()

        assert rec.ns == list(range(300))

    async def test_old_schema_versions_are_upcast_on_receipt(self, make_bus):
        producer = make_bus(registry=OLD)
        consumer = make_bus()
        rec = Recorder()
        consumer.subscribe("brk.price.*", rec)
        await consumer.connect()

        await producer.publish(PriceV1(usd=2.5))
        await consumer.drain()

        assert len(rec.events) == 1
        assert isinstance(rec.events[0], PriceV2)
        assert (rec.events[0].amount, rec.events[0].currency) == (2.5, "USD")

    async def test_batch_handlers_get_lists(self, make_bus):
        bus = make_bus()
        batches: list[list] = []
        bus.subscribe("*", batches.append, batch=50)

        await bus.publish_many([ToolFinished(n=i) for i in range(120)])
        await bus.drain()

        assert [e.n for b in batches for e in b] == list(range(120))
        assert all(isinstance(b, list) and len(b) <= 50 for b in batches)

    async def test_publish_sync_from_synchronous_code(self, kind, ns):
        def run() -> list[int]:
            bus = open_bus(kind, SERVERS[kind][0], namespace=ns, registry=REG)
            rec = Recorder()
            bus.subscribe("brk.tool.*", rec)  # waits until the consumer exists
            for i in range(5):
                bus.publish_sync(ToolFinished(n=i))
            bus.drain_sync()
            bus.close_sync()
            return rec.ns

        assert await asyncio.to_thread(run) == [0, 1, 2, 3, 4]

    async def test_drop_oldest_subscribers_keep_the_latest(self, make_bus):
        bus = make_bus()
        gate = asyncio.Event()
        handled: list[int] = []

        async def live_view(ev) -> None:
            await gate.wait()
            handled.append(ev.n)

        sub = bus.subscribe("brk.*", live_view, maxsize=5, overflow="drop_oldest")
        await bus.publish_many([CallStarted(n=i) for i in range(50)])
        await asyncio.sleep(0.5)  # the view is stuck on its first event meanwhile
        gate.set()
        await bus.drain()

        # the worker's batch in hand, then the newest: the oldest were dropped (here, or by RabbitMQ's cap)
        assert handled[-1] == 49 and len(handled) < 50
        assert handled == sorted(handled) and handled[-5:] == [45, 46, 47, 48, 49]
        assert sub.dropped <= 50 - len(handled)

    async def test_closed_bus_refuses_events(self, make_bus):
        bus = make_bus()
        await bus.connect()
        await bus.close()

        with pytest.raises(BusClosed):
            await bus.publish(ToolFinished())


class TestRouting:
    PATTERNS = [
        ("brk.*", ["brk.call.started", "brk.call.finished", "brk.tool.finished"]),
        ("*", ["brk.call.started", "brk.call.finished", "brk.tool.finished", "mem.item.written"]),
        ("*.finished", ["brk.call.finished", "brk.tool.finished"]),
        ("brk.tool.finished", ["brk.tool.finished"]),
        ("brk.call.*", ["brk.call.started", "brk.call.finished"]),
        ("brk*", ["brk.call.started", "brk.call.finished", "brk.tool.finished"]),
        ("brk.*.finished", ["brk.call.finished", "brk.tool.finished"]),
        ("agent.*", []),
        ("brk", []),
    ]

    async def test_patterns_select_event_types_as_in_process(self, make_bus):
        bus = make_bus()
        recs = {}
        for pattern, _ in self.PATTERNS:
            recs[pattern] = Recorder()
            bus.subscribe(pattern, recs[pattern])

        await bus.publish_many([CallStarted(), CallFinished(), ToolFinished(), ItemWritten()])
        await bus.drain()

        assert {p: recs[p].types for p, _ in self.PATTERNS} == {p: expected for p, expected in self.PATTERNS}

    async def test_every_matching_subscriber_gets_the_event(self, make_bus):
        bus = make_bus()
        a, b = Recorder(), Recorder()
        bus.subscribe("brk.*", a)
        bus.subscribe("*", b)

        await bus.publish(CallFinished(n=1))
        await bus.drain()

        assert a.ns == b.ns == [1]


class TestAcrossProcesses:
    async def test_two_buses_see_each_others_events(self, make_bus):
        a, b = make_bus(), make_bus()
        seen_a, seen_b = Recorder(), Recorder()
        a.subscribe("*", seen_a)
        b.subscribe("*", seen_b)
        await a.connect()
        await b.connect()

        await a.publish(ToolFinished(n=1))
        await b.publish(ToolFinished(n=2))
        for bus in (a, b):
            await bus.drain()
        await a.drain()

        assert sorted(seen_a.ns) == sorted(seen_b.ns) == [1, 2]
        assert seen_a.events[0].id in {e.id for e in seen_b.events}

    async def test_events_from_another_process(self, kind, ns, make_bus):
        bus = make_bus(registry=None)  # the default registry, where the child's type is registered too
        got = Recorder()
        bus.subscribe("brk.child.*", got)
        await bus.connect()

        code = CHILD_PUBLISHER.format(kind=kind, url=SERVERS[kind][0], ns=ns)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT)
        assert await asyncio.wait_for(proc.wait(), 90) == 0

        await wait_for(lambda: len(got.events) == 20, what="20 events from the child")
        await bus.drain()
        assert [e.n for e in got.events] == list(range(20))
        assert {e.source for e in got.events} == {f"child-{kind}"}

    async def test_durable_subscribers_share_the_work(self, make_bus, ns):
        name = ns.durable("workers")
        a, b = make_bus(), make_bus()
        ra, rb = Recorder(), Recorder()
        a.subscribe("brk.*", ra, name=name, durable=True)
        b.subscribe("brk.*", rb, name=name, durable=True)
        await a.connect()
        await b.connect()

        await a.publish_many([CallStarted(n=i) for i in range(200)])
        await wait_for(lambda: len(ra.events) + len(rb.events) >= 200, what="200 events across two workers")
        await a.drain()
        await b.drain()

        assert sorted(ra.ns + rb.ns) == list(range(200))  # each event once


CHILD_PUBLISHER = textwrap.dedent(
    """
    import asyncio
    from lumina_lab.events import Event, event, set_default_source
    from lumina_lab.events.brokers import open_bus

    @event("brk.child.sent")
    class ChildSent(Event):
        n: int

    async def main():
        set_default_source("child-{kind}")
        bus = open_bus("{kind}", "{url}", namespace="{ns}")
        for i in range(20):
            await bus.publish(ChildSent(n=i))
        await bus.close()

    asyncio.run(main())
    """
)

CHILD_CONSUMER = textwrap.dedent(
    """
    import asyncio, sys, time
    from lumina_lab.events import Event, SchemaRegistry, event
    from lumina_lab.events.brokers import open_bus

    REG = SchemaRegistry()

    @event("brk.work.queued", registry=REG)
    class Work(Event):
        n: int

    out = open(sys.argv[1], "a", buffering=1)

    async def handle(ev):
        await asyncio.sleep(0.05)
        out.write(f"{{ev.n}}\\n")  # handled: the ack follows

    async def main():
        fast = {{"ack_wait_s": 1.0}} if "{kind}" == "nats" else {{}}  # NATS: redeliver unacked events soon
        bus = open_bus("{kind}", "{url}", namespace="{ns}", registry=REG, **fast)
        bus.subscribe("brk.work.*", handle, name="{name}", durable=True, maxsize=4)
        await bus.connect()
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@event("brk.work.queued", registry=REG)
class Work(Event):
    n: int


class TestNothingAcknowledgedIsLost:
    async def test_close_handles_everything_published_first(self, make_bus):
        bus = make_bus()
        done: list[int] = []

        async def slow(ev) -> None:
            await asyncio.sleep(0.001)
            done.append(ev.n)

        bus.subscribe("brk.*", slow, maxsize=16)
        await bus.publish_many([CallStarted(n=i) for i in range(200)])
        await bus.close()

        assert done == list(range(200))

    async def test_durable_subscription_gets_what_was_published_while_away(self, make_bus, ns):
        name = ns.durable("keeper")
        first = make_bus()
        first.subscribe("brk.*", Recorder(), name=name, durable=True)
        await first.connect()
        await first.close()  # the durable consumer stays on the broker

        publisher = make_bus()
        await publisher.publish_many([CallStarted(n=i) for i in range(10)])

        again = make_bus()
        rec = Recorder()
        again.subscribe("brk.*", rec, name=name, durable=True)
        await again.connect()
        await wait_for(lambda: len(rec.events) == 10, what="10 events kept while no subscriber ran")
        await again.drain()
        assert rec.ns == list(range(10))

    async def test_handled_and_dead_lettered_events_are_acknowledged(self, kind, make_bus, ns):
        """After drain, a durable consumer holds nothing: the next bus on it receives nothing again."""
        name = ns.durable("acked")
        dead = MemoryDeadLetters()
        fast = {"ack_wait_s": 0.5} if kind == "nats" else {}  # NATS: an unacked event would come back in 0.5 s
        first = make_bus(dead_letters=dead, retries=1, **fast)
        handled = Recorder()

        def handler(ev) -> None:
            if ev.n == 3:
                raise RuntimeError("poison")
            handled(ev)

        first.subscribe("brk.*", handler, name=name, durable=True)
        await first.publish_many([CallStarted(n=i) for i in range(10)])
        await first.drain()
        await first.close()
        assert handled.ns == [0, 1, 2, 4, 5, 6, 7, 8, 9] and [d.event_id for d in dead] != []

        again = make_bus()
        rec = Recorder()
        again.subscribe("brk.*", rec, name=name, durable=True)
        await again.connect()
        await asyncio.sleep(1.5)  # longer than a redelivery would take to show up here
        await again.drain()
        assert rec.events == []

    async def test_a_killed_consumer_loses_nothing(self, kind, ns, make_bus, tmp_path):
        """SIGKILL a consumer mid-stream: what it did not acknowledge is delivered to the next one."""
        name = ns.durable("crashy")
        handled_file = tmp_path / "handled.txt"
        code = CHILD_CONSUMER.format(kind=kind, url=SERVERS[kind][0], ns=ns, name=name)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, str(handled_file), cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )

        def handled() -> list[int]:
            return [int(x) for x in handled_file.read_text().split()] if handled_file.exists() else []

        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 90)
            assert line.strip() == b"ready", line
            publisher = make_bus()
            await publisher.publish_many([Work(n=i) for i in range(40)])
            await wait_for(lambda: len(handled()) >= 5, what="the child handling some events")
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 30)
        by_child = set(handled())
        assert len(by_child) < 40, "the child finished everything before the kill; nothing was tested"

        rest = Recorder()
        successor = make_bus()
        successor.subscribe("brk.work.*", rest, name=name, durable=True)
        await successor.connect()
        await wait_for(
            lambda: by_child | set(rest.ns) >= set(range(40)), timeout=60, what="every event handled by someone"
        )
        await successor.drain()
        assert by_child | set(rest.ns) == set(range(40))


class TestFailures:
    async def test_handler_retried_then_succeeds(self, make_bus):
        dead = MemoryDeadLetters()
        bus = make_bus(dead_letters=dead)
        calls = []

        def flaky(ev) -> None:
            calls.append(ev.n)
            if len(calls) <= 2:
                raise RuntimeError("not yet")

        sub = bus.subscribe("brk.tool.*", flaky)
        await bus.publish(ToolFinished(n=5))
        await bus.drain()

        assert calls == [5, 5, 5]
        assert (sub.delivered, sub.retried, sub.dead_lettered, len(dead)) == (1, 2, 0, 0)

    async def test_failing_handler_dead_letters_and_the_bus_goes_on(self, make_bus):
        dead = MemoryDeadLetters()
        bus = make_bus(dead_letters=dead, retries=2)
        ok = Recorder()

        def broken(ev) -> None:
            if ev.n == 1:
                raise ValueError(f"cannot handle {ev.n}")
            ok(ev)

        sub = bus.subscribe("brk.call.*", broken, name="broken")
        sent = [CallStarted(n=i) for i in range(3)]
        await bus.publish_many(sent)
        await bus.drain()

        assert ok.ns == [0, 2]
        [letter] = list(dead)
        assert (letter.subscriber, letter.pattern, letter.event_id) == ("broken", "brk.call.*", sent[1].id)
        assert (letter.error_type, letter.attempts) == ("ValueError", 3)
        assert REG.load(letter.envelope) == sent[1]  # replayable
        assert sub.dead_lettered == 1

        await asyncio.sleep(0.3)  # acknowledged: never delivered again
        await bus.drain()
        assert ok.ns == [0, 2] and len(dead) == 1

    async def test_unreadable_messages_are_dead_lettered_not_dropped(self, kind, ns, make_bus):
        dead = MemoryDeadLetters()
        bus = make_bus(dead_letters=dead)
        rec = Recorder()
        bus.subscribe("brk.*", rec, name="reader")
        await bus.connect()

        await _raw_publish(kind, ns, "brk.unknown.thing", b'{"id":"x1","type":"brk.unknown.thing","schema_version":1}')
        await _raw_publish(kind, ns, "brk.tool.finished", b'{"id":"x2","type":"brk.tool.finished","schema_version":9}')
        await bus.publish(ToolFinished(n=1))
        await bus.drain()

        assert rec.ns == [1]
        assert sorted((d.event_id, d.error_type) for d in dead) == [("x1", "SchemaError"), ("x2", "SchemaError")]
        assert all(d.subscriber == "reader" for d in dead)

    @pytest.mark.parametrize(
        ("bus_kind", "url"),
        [("nats", "nats://127.0.0.1:1"), ("rabbitmq", "amqp://guest:s3cret@127.0.0.1:1/")],
    )
    async def test_unreachable_server_names_the_url_and_the_fix(self, bus_kind, url):
        _need_client(bus_kind)
        bus = open_bus(bus_kind, url, connect_timeout_s=2)

        with pytest.raises(BusError) as info:
            await bus.connect()

        text = str(info.value)
        assert "127.0.0.1:1" in text and "s3cret" not in text
        assert "LUMINA_EVENTS__BUS_URL" in text
        assert isinstance(info.value, LuminaError)
        await bus.close()

    async def test_durable_needs_a_name(self, make_bus):
        with pytest.raises(ValidationError, match="needs a name"):
            make_bus().subscribe("*", Recorder(), durable=True)


class TestDrainTimeout:
    async def test_drain_names_what_is_outstanding_when_it_times_out(self, make_bus):
        release = asyncio.Event()

        async def stuck(ev) -> None:
            await release.wait()

        bus = make_bus()
        bus.subscribe("brk.call.*", stuck, name="stuck")
        await bus.publish_many([CallStarted(n=i) for i in range(3)])

        started = time.monotonic()
        with pytest.raises(BusTimeout) as info:
            await bus.drain(timeout=0.5)

        assert time.monotonic() - started < 1.5
        assert isinstance(info.value, BusError) and isinstance(info.value, TimeoutError)
        text = str(info.value)
        assert "within 0.5 s" in text and "subscriber 'stuck'" in text and "still running" in text
        assert "fix:" in text
        release.set()
        await bus.drain(timeout=30)  # nothing was lost: it finishes once the handler does

    async def test_drain_sync_raises_the_same_error(self, make_bus):
        bus = make_bus()
        release = asyncio.Event()

        async def stuck(ev) -> None:
            await release.wait()

        bus.subscribe("brk.call.*", stuck, name="stuck")
        await bus.publish(CallStarted(n=1))  # binds the bus to this loop: drain_sync waits on it from a thread

        with pytest.raises(BusTimeout, match="subscriber 'stuck'"):
            await asyncio.to_thread(bus.drain_sync, 0.3)
        release.set()
        await bus.drain(timeout=30)


def _rabbitmq_connection(name: str) -> str:
    """The process id (what ``rabbitmqctl close_connection`` takes) of the connection called ``name``."""
    out = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for line in out.splitlines():
        pid, _, props = line.partition("\t")
        if f'"{name}"' in props:
            return pid.strip()
    raise AssertionError(f"no RabbitMQ connection named {name!r}:\n{out}")


def _rabbitmq_consumers(queue: str) -> int:
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "consumers", "--formatter", "json", "-q"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return next((int(row["consumers"]) for row in json.loads(out) if row["name"] == queue), 0)


async def _close_rabbitmq_connection(bus) -> None:
    """Close ``bus``'s connection from the server side, as a broker restart or a network failure would."""
    conn = await asyncio.to_thread(_rabbitmq_connection, f"lumina-lab {bus.uid}")
    await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "close_connection", conn, "lumina-lab test: simulated connection loss"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("kind", ["rabbitmq"], indirect=True)
class TestRabbitMQReconnect:
    @pytest.fixture(autouse=True)
    def _need_rabbitmqctl(self):
        if shutil.which("rabbitmqctl") is None:
            _unavailable("rabbitmqctl is not on PATH: the test closes the bus's connection from the server side")

    async def test_bus_survives_its_connection_being_closed(self, make_bus):
        dead = MemoryDeadLetters()
        bus = make_bus(reconnect_interval_s=0.2, dead_letters=dead)
        rec = Recorder()
        sub = bus.subscribe("brk.call.*", rec, name="survivor")
        await bus.publish_many([CallStarted(n=i) for i in range(10)])
        await bus.drain(timeout=30)
        assert rec.ns == list(range(10))

        await _close_rabbitmq_connection(bus)
        for i in range(10, 20):  # while the loss is noticed and the connection re-established
            bus.publish_nowait(CallStarted(n=i))
        await bus.publish_many([CallStarted(n=i) for i in range(20, 30)])
        await bus.drain(timeout=30)

        assert sorted(rec.ns) == list(range(30)), "an event was lost or handled twice"
        assert bus.reconnects == 1
        assert (bus.published, bus.confirmed, bus.unpublished, len(dead)) == (30, 30, 0, 0)
        assert await asyncio.to_thread(_rabbitmq_consumers, sub.consumer) == 1  # restored once, not doubled

        await bus.publish(CallStarted(n=30))  # and it goes on
        await bus.drain(timeout=30)
        assert sorted(rec.ns) == list(range(31))
        started = time.monotonic()
        await bus.close()
        assert time.monotonic() - started < 5

    async def test_events_unacknowledged_at_the_loss_are_handled_once(self, make_bus, ns):
        """Close the connection while events are delivered but not handled: the broker delivers them again,
        and the copies of events this bus already has are acknowledged, not handled twice."""
        publisher = make_bus()
        bus = make_bus(reconnect_interval_s=0.2)
        handled: list[int] = []

        async def slow(ev) -> None:
            await asyncio.sleep(0.1)
            handled.append(ev.n)

        sub = bus.subscribe("brk.tool.*", slow, name=ns.durable("slow"), maxsize=16, durable=True)
        await bus.connect()
        await publisher.publish_many([ToolFinished(n=i) for i in range(40)])
        await wait_for(lambda: len(handled) >= 5, what="some events handled")

        await _close_rabbitmq_connection(bus)
        assert len(handled) < 35, "the handler finished (nearly) everything before the loss; nothing was tested"
        await wait_for(lambda: bus.reconnects == 1, what="the bus reconnecting")
        await bus.drain(timeout=60)

        assert sorted(handled) == list(range(40)), "an event was lost or handled twice"
        assert await asyncio.to_thread(_rabbitmq_consumers, sub.consumer) == 1
        await asyncio.sleep(0.5)  # everything was acknowledged: nothing comes again
        await bus.drain(timeout=30)
        assert len(handled) == 40


class FlakyProxy:
    """A TCP proxy in front of a broker that can cut every connection and refuse new ones (a network outage)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.up = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    async def start(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._streams |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._streams -= {writer, up_writer}

    def cut(self) -> None:
        """Drop every connection through the proxy and refuse new ones until :meth:`restore`."""
        self.up = False
        for stream in list(self._streams):
            stream.transport.abort()

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class TestOutage:
    async def test_bus_rides_out_a_network_outage(self, kind, ns):
        """Cut the network to the broker: publishes wait, drain(timeout=...) says what is outstanding, and
        once the network is back everything published is delivered once."""
        proxy = await FlakyProxy(SERVERS[kind][1]).start()
        url = SERVERS[kind][0].replace(f":{SERVERS[kind][1]}", f":{proxy.port}")
        options = {"reconnect_interval_s": 0.2} if kind == "rabbitmq" else {}
        bus = open_bus(kind, url, namespace=ns, registry=REG, publish_timeout_s=60, **options)
        rec = Recorder()
        try:
            bus.subscribe("brk.call.*", rec, name="outage")
            await bus.publish(CallStarted(n=0))
            await bus.drain(timeout=30)

            proxy.cut()
            for i in range(1, 6):
                bus.publish_nowait(CallStarted(n=i))
            with pytest.raises(BusTimeout, match="not confirmed") as info:
                await bus.drain(timeout=0.5)
            assert "fix:" in str(info.value) and str(proxy.port) in str(info.value)

            proxy.restore()
            await bus.drain(timeout=60)
            await bus.publish(CallStarted(n=6))
            await bus.drain(timeout=30)
            assert sorted(rec.ns) == list(range(7)), "an event was lost or handled twice"
            assert (bus.confirmed, bus.unpublished) == (7, 0)
        finally:
            started = time.monotonic()
            await asyncio.wait_for(bus.close(), 30)
            assert time.monotonic() - started < 10
            await proxy.stop()


async def _raw_publish(kind: str, namespace: str, routing: str, body: bytes) -> None:
    if kind == "nats":
        import nats

        nc = await nats.connect(SERVERS["nats"][0])
        try:
            await nc.jetstream().publish(f"{namespace}.{routing}", body)
        finally:
            await nc.close()
    else:
        import aio_pika

        conn = await aio_pika.connect(SERVERS["rabbitmq"][0])
        try:
            ch = await conn.channel()
            ex = await ch.get_exchange(namespace)
            await ex.publish(aio_pika.Message(body), routing_key=routing)
        finally:
            await conn.close()


@event("brk.lab.pinged")
class LabPinged(Event):
    n: int


@event("brk.child.sent")  # what the child process publishes (decoded with the default registry)
class ChildSent(Event):
    n: int


class TestLab:
    async def test_lab_publishes_through_the_configured_broker(self, kind, ns):
        from lumina_lab import Lab

        def run() -> tuple[str, list[str]]:
            with Lab(profile="test", events={"bus": kind, "bus_url": SERVERS[kind][0], "bus_namespace": ns}) as lab:
                lab.publish(LabPinged(n=1), LabPinged(n=2))
                return type(lab.bus).__name__, lab.query(type="brk.lab.pinged")["id"].tolist()

        bus_class, stored = await asyncio.to_thread(run)
        assert bus_class == {"nats": "NatsBus", "rabbitmq": "RabbitMQBus"}[kind]
        assert len(stored) == 2

    async def test_labs_sharing_a_home_store_each_event_once(self, kind, ns, tmp_path):
        """Processes on one home share a durable consumer for the file store: no duplicates."""
        from lumina_lab import Lab
        from lumina_lab.lab import _store_group

        events = {"store": "file", "bus": kind, "bus_url": SERVERS[kind][0], "bus_namespace": ns}
        home = tmp_path / "shared-home"

        def run() -> tuple[list[int], int]:
            with (
                Lab(profile="test", home=home, events=events) as one,
                Lab(profile="test", home=home, events=events) as two,
            ):
                ns.durable(_store_group(one.settings))
                one.publish(*(LabPinged(n=i) for i in range(3)))
                two.publish(*(LabPinged(n=i) for i in range(3, 5)))
                two.sync()
                one.sync()
                two.sync()
                frame = one.query(type="brk.lab.pinged")
                return sorted(frame["id"].tolist()), len(frame)

        ids, rows = await asyncio.to_thread(run)
        assert rows == len(set(ids)) == 5

    def test_lab_with_an_unreachable_broker_fails_at_once(self, kind):
        from lumina_lab import Lab

        url = {"nats": "nats://127.0.0.1:1", "rabbitmq": "amqp://guest:guest@127.0.0.1:1/"}[kind]
        t0 = time.monotonic()
        with pytest.raises(BusError, match=r"127\.0\.0\.1:1"):
            Lab(profile="test", events={"bus": kind, "bus_url": url})
        assert time.monotonic() - t0 < 30


class TestServedFeed:
    """`lumina serve` on a broker-bus lab: the log's recent past, then every process's events as the broker
    delivers them (another home stands for another machine), each once."""

    async def test_broker_feed_replays_the_backlog_then_forwards_live_events_once(self, kind, ns, tmp_path):
        from lumina_lab import Lab
        from lumina_lab.ui.feed import BrokerFeed, open_feed

        events = {"store": "file", "bus": kind, "bus_url": SERVERS[kind][0], "bus_namespace": ns}

        def run() -> tuple[list[tuple[str, int]], list[float], str]:
            with (
                Lab(profile="test", home=tmp_path / "server", events=events) as served,
                Lab(profile="test", home=tmp_path / "elsewhere", events=events) as other,
            ):
                served.publish(LabPinged(n=0))  # the recent past, in the served home's log
                served.sync()
                feed = open_feed(served, since="5m")
                assert isinstance(feed, BrokerFeed)
                got: list[tuple[str, int]] = []
                lags: list[float] = []

                def seen(e) -> None:
                    got.append((e.type, e.n))
                    lags.append(time.time() - e.ts.timestamp())

                feed.bus.subscribe("brk.lab.*", seen, name="dashboard")
                deadline = time.monotonic() + 20
                while not got and time.monotonic() < deadline:
                    time.sleep(0.02)
                for i in range(1, 4):
                    other.publish(LabPinged(n=i))
                    time.sleep(0.05)
                while len(got) < 4 and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(0.5)  # anything duplicated would have arrived by now
                feed.bus.drain_sync()
                text = repr(feed)
                feed.stop()
                return got, lags, text

        got, lags, text = await asyncio.to_thread(run)
        assert got == [("brk.lab.pinged", n) for n in range(4)]
        assert max(lags[1:]) < 2.0  # live events come from the broker, not a flush and a poll later
        assert text.startswith("BrokerFeed(running, published=4")
