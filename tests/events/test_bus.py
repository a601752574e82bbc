"""InProcessBus: topic patterns, per-subscriber order, backpressure, retries and dead
letters, batches, and use from synchronous code and other threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from lumina_lab.errors import BusClosed, BusError, BusFull, ValidationError
from lumina_lab.events import Event, InProcessBus, MemoryDeadLetters, SchemaRegistry, event

pytestmark = pytest.mark.timeout(30)

REG = SchemaRegistry()


@event("provider.call.started", registry=REG)
class CallStarted(Event):
    n: int = 0


@event("provider.call.finished", registry=REG)
class CallFinished(Event):
    n: int = 0


@event("tool.run.finished", registry=REG)
class ToolFinished(Event):
    n: int = 0


@event("memory.item.written", registry=REG)
class ItemWritten(Event):
    n: int = 0


class Recorder:
    """A sync handler that keeps what it receives."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, item) -> None:
        self.events.append(item)

    @property
    def ns(self) -> list[int]:
        return [e.n for e in self.events]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


class GatedHandler:
    """An async handler that signals when it starts and waits for ``gate`` before finishing."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.ns: list[int] = []

    async def __call__(self, ev) -> None:
        self.started.set()
        await self.gate.wait()
        self.ns.append(ev.n)


def failing(times: int, calls: list[int] | None = None) -> Callable:
    """A sync handler that raises on its first ``times`` calls."""
    state = {"calls": 0}

    def handler(ev) -> None:
        state["calls"] += 1
        if calls is not None:
            calls.append(ev.n)
        if state["calls"] <= times:
            raise RuntimeError(f"boom {ev.n}")

    return handler


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


@pytest.fixture
def dead_letters() -> MemoryDeadLetters:
    return MemoryDeadLetters()


@pytest.fixture
async def bus(dead_letters):
    """A bus bound to the test's event loop, closed afterwards."""
    b = InProcessBus(retry_initial_s=0.001, dead_letters=dead_letters)
    yield b
    await asyncio.wait_for(b.close(), 10)


@pytest.fixture
def sync_bus():
    """A bus used only from sync code: it runs its own event-loop thread."""
    b = InProcessBus(retry_initial_s=0.001)
    yield b
    b.close_sync(timeout=10)


# ---------------------------------------------------------------------- topics
class TestTopics:
    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("provider.*", ["provider.call.started", "provider.call.finished"]),
            ("*", ["provider.call.started", "provider.call.finished", "tool.run.finished", "memory.item.written"]),
            ("*.finished", ["provider.call.finished", "tool.run.finished"]),
            ("tool.run.finished", ["tool.run.finished"]),
            ("provider.call.*", ["provider.call.started", "provider.call.finished"]),
            ("agent.*", []),
            ("provider", []),
        ],
    )
    async def test_pattern_selects_event_types(self, bus, pattern, expected):
        rec = Recorder()
        bus.subscribe(pattern, rec)

        await bus.publish_many([CallStarted(), CallFinished(), ToolFinished(), ItemWritten()])
        await bus.drain()

        assert rec.types == expected

    async def test_star_matches_across_dots(self, bus):
        rec = Recorder()
        bus.subscribe("provider*", rec)

        await bus.publish(CallFinished())
        await bus.drain()

        assert rec.types == ["provider.call.finished"]

    async def test_every_matching_subscriber_gets_the_event(self, bus):
        a, b, c = Recorder(), Recorder(), Recorder()
        bus.subscribe("provider.*", a)
        bus.subscribe("*", b)
        bus.subscribe("tool.*", c)

        ev = CallStarted(n=1)
        await bus.publish(ev)
        await bus.drain()

        assert a.events == [ev]
        assert b.events == [ev]
        assert c.events == []

    async def test_event_without_subscribers_is_counted_as_published(self, bus):
        await bus.publish(CallStarted())

        assert bus.published == 1

    async def test_subscription_added_later_sees_only_later_events(self, bus):
        await bus.publish(CallStarted(n=1))
        rec = Recorder()
        bus.subscribe("*", rec)
        await bus.publish(CallStarted(n=2))
        await bus.drain()

        assert rec.ns == [2]


# ---------------------------------------------------------------------- order
class TestOrder:
    async def test_each_subscriber_receives_events_in_publish_order(self, bus):
        kinds = [CallStarted, CallFinished, ToolFinished]
        events = [kinds[i % 3](n=i) for i in range(3_000)]
        everything, providers, tools = Recorder(), Recorder(), Recorder()

        async def slow_providers(ev):
            if ev.n % 7 == 0:
                await asyncio.sleep(0)
            providers(ev)

        bus.subscribe("*", everything, maxsize=16)
        bus.subscribe("provider.*", slow_providers, maxsize=5)
        bus.subscribe("tool.*", tools, maxsize=100)

        for ev in events:
            await bus.publish(ev)
        await bus.drain()

        assert everything.events == events
        assert providers.events == [e for e in events if e.type.startswith("provider.")]
        assert tools.events == [e for e in events if e.type == "tool.run.finished"]

    async def test_order_is_kept_between_concurrent_publishers_on_one_subscriber(self, bus):
        """Publishers blocked on a full queue are served first come, first served."""
        rec = Recorder()
        bus.subscribe("*", rec, maxsize=2)

        async def publish_range(start: int) -> None:
            for i in range(start, start + 100):
                await bus.publish(CallStarted(n=i))

        await asyncio.gather(publish_range(0), publish_range(1000))
        await bus.drain()

        assert [n for n in rec.ns if n < 1000] == list(range(100))
        assert [n for n in rec.ns if n >= 1000] == list(range(1000, 1100))


# ---------------------------------------------------------------------- backpressure
class TestBlockPolicy:
    async def test_publisher_waits_while_a_block_subscriber_is_full(self, bus):
        handler = GatedHandler()
        sub = bus.subscribe("*", handler, maxsize=2, overflow="block")

        publishing = asyncio.create_task(bus.publish_many([CallStarted(n=i) for i in range(10)]))
        await asyncio.wait_for(handler.started.wait(), 5)
        await asyncio.sleep(0.05)

        assert not publishing.done()
        assert bus.published < 10

        handler.gate.set()
        await asyncio.wait_for(publishing, 5)
        await bus.drain()
        assert handler.ns == list(range(10))
        assert sub.stats()["high_water"] <= 2

    async def test_slow_handler_bounds_the_queue_and_loses_nothing(self, bus):
        received = []

        async def slow(ev):
            await asyncio.sleep(0.001)
            received.append(ev.n)

        sub = bus.subscribe("*", slow, maxsize=3, overflow="block")

        await bus.publish_many(CallStarted(n=i) for i in range(100))
        await bus.drain()

        assert received == list(range(100))
        stats = sub.stats()
        assert 1 <= stats["high_water"] <= 3
        assert stats["dropped"] == 0
        assert stats["delivered"] == 100
        assert stats["queued"] == 0

    async def test_block_is_the_default_policy(self, bus):
        assert bus.subscribe("*", Recorder()).overflow == "block"

    async def test_bus_default_policy_applies_to_new_subscriptions(self):
        b = InProcessBus(overflow="drop_oldest", queue_size=7)
        sub = b.subscribe("*", Recorder())

        assert (sub.overflow, sub.maxsize) == ("drop_oldest", 7)
        await b.close()


class TestDropOldestPolicy:
    async def test_full_queue_drops_the_oldest_and_counts_it(self, bus):
        handler = GatedHandler()
        sub = bus.subscribe("*", handler, maxsize=3, overflow="drop_oldest")
        await bus.publish(CallStarted(n=0))
        await asyncio.wait_for(handler.started.wait(), 5)  # event 0 is being handled

        await bus.publish_many(CallStarted(n=i) for i in range(1, 10))
        handler.gate.set()
        await bus.drain()

        assert handler.ns == [0, 7, 8, 9]  # survivors in order, newest kept
        assert sub.dropped == 6
        assert sub.stats()["dropped"] == 6
        assert sub.stats()["high_water"] <= 3
        assert sub.delivered == 4

    async def test_publisher_never_waits(self, bus):
        handler = GatedHandler()
        bus.subscribe("*", handler, maxsize=5, overflow="drop_oldest")

        await asyncio.wait_for(bus.publish_many(CallStarted(n=i) for i in range(1_000)), 2)

        assert bus.published == 1_000
        handler.gate.set()

    async def test_only_the_full_subscriber_drops(self, bus):
        handler = GatedHandler()
        live = bus.subscribe("*", handler, maxsize=1, overflow="drop_oldest")
        rec = Recorder()
        complete = bus.subscribe("*", rec, maxsize=100)

        await bus.publish(CallStarted(n=0))
        await asyncio.wait_for(handler.started.wait(), 5)
        await bus.publish_many(CallStarted(n=i) for i in range(1, 20))
        handler.gate.set()
        await bus.drain()

        assert rec.ns == list(range(20))
        assert complete.dropped == 0
        assert live.dropped == 18
        assert handler.ns == [0, 19]


class TestPublishNowait:
    async def test_raises_bus_full_when_a_block_subscriber_is_full(self, bus):
        handler = GatedHandler()
        bus.subscribe("*", handler, name="slow", maxsize=1, overflow="block")
        await bus.publish(CallStarted(n=0))
        await asyncio.wait_for(handler.started.wait(), 5)
        await bus.publish(CallStarted(n=1))  # fills the queue

        with pytest.raises(BusFull, match="subscriber 'slow'") as info:
            bus.publish_nowait(CallStarted(n=2))

        assert "'provider.call.started' was not published" in str(info.value)
        handler.gate.set()

    async def test_bus_full_delivers_to_no_subscriber(self, bus):
        handler = GatedHandler()
        bus.subscribe("*", handler, maxsize=1, overflow="block")
        rec = Recorder()
        bus.subscribe("*", rec, maxsize=100)
        await bus.publish(CallStarted(n=0))
        await asyncio.wait_for(handler.started.wait(), 5)
        await bus.publish(CallStarted(n=1))

        with pytest.raises(BusFull):
            bus.publish_nowait(CallStarted(n=2))
        handler.gate.set()
        await bus.drain()

        assert bus.published == 2
        assert rec.ns == [0, 1]
        assert handler.ns == [0, 1]

    async def test_delivers_when_there_is_room(self, bus):
        rec = Recorder()
        bus.subscribe("*", rec)
        await bus.publish(CallStarted(n=0))  # binds the bus to this loop

        bus.publish_nowait(CallStarted(n=1))
        await bus.drain()

        assert rec.ns == [0, 1]

    async def test_drop_oldest_subscribers_never_make_it_raise(self, bus):
        handler = GatedHandler()
        bus.subscribe("*", handler, maxsize=1, overflow="drop_oldest")
        await bus.publish(CallStarted(n=0))
        await asyncio.wait_for(handler.started.wait(), 5)

        for i in range(1, 10):
            bus.publish_nowait(CallStarted(n=i))
        handler.gate.set()
        await bus.drain()

        assert handler.ns == [0, 9]

    async def test_first_publish_nowait_in_async_code_delivers(self, bus):
        rec = Recorder()
        bus.subscribe("*", rec)

        bus.publish_nowait(CallStarted(n=1))
        await bus.drain()

        assert rec.ns == [1]


# ---------------------------------------------------------------------- failures
class TestFailures:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_failing_handler_is_retried_then_dead_lettered(self, bus, dead_letters, kind):
        calls = []

        def sync_handler(ev):
            calls.append(ev.n)
            raise RuntimeError(f"boom {ev.n}")

        async def async_handler(ev):
            sync_handler(ev)

        handler = sync_handler if kind == "sync" else async_handler
        sub = bus.subscribe("provider.*", handler, name="ledger", retries=2)
        ev = CallStarted(n=7)

        await bus.publish(ev)
        await bus.drain()

        assert calls == [7, 7, 7]  # first try + 2 retries
        (letter,) = list(dead_letters)
        assert letter.subscriber == "ledger"
        assert letter.pattern == "provider.*"
        assert letter.event_id == ev.id
        assert letter.event_type == "provider.call.started"
        assert letter.envelope == ev.to_envelope()
        assert letter.error_type == "RuntimeError"
        assert letter.error == "boom 7"
        assert "RuntimeError: boom 7" in letter.traceback
        assert letter.attempts == 3
        assert (sub.retried, sub.dead_lettered, sub.delivered) == (2, 1, 0)

    async def test_bus_retries_setting_is_the_default(self, dead_letters):
        b = InProcessBus(retries=3, retry_initial_s=0.001, dead_letters=dead_letters)
        b.subscribe("*", failing(times=100))

        await b.publish(CallStarted())
        await b.drain()
        await b.close()

        assert [d.attempts for d in dead_letters] == [4]

    async def test_zero_retries_dead_letters_after_one_attempt(self, bus, dead_letters):
        calls = []
        sub = bus.subscribe("*", failing(times=100, calls=calls), retries=0)

        await bus.publish(CallStarted(n=1))
        await bus.drain()

        assert calls == [1]
        assert [d.attempts for d in dead_letters] == [1]
        assert sub.retried == 0

    async def test_handler_that_fails_once_then_succeeds_is_not_dead_lettered(self, bus, dead_letters):
        calls = []
        sub = bus.subscribe("*", failing(times=1, calls=calls), retries=3)

        await bus.publish(CallStarted(n=1))
        await bus.drain()

        assert calls == [1, 1]
        assert len(dead_letters) == 0
        assert (sub.retried, sub.delivered, sub.dead_lettered) == (1, 1, 0)

    async def test_later_events_are_still_delivered_after_a_dead_letter(self, bus, dead_letters):
        seen = []

        def handler(ev):
            if ev.n == 1:
                raise ValueError("bad event")
            seen.append(ev.n)

        bus.subscribe("*", handler, retries=1)

        await bus.publish_many(CallStarted(n=i) for i in range(4))
        await bus.drain()

        assert seen == [0, 2, 3]
        assert [d.envelope["payload"]["n"] for d in dead_letters] == [1]

    async def test_failure_of_one_subscriber_does_not_affect_another(self, bus, dead_letters):
        rec = Recorder()
        bus.subscribe("*", failing(times=100), name="broken", retries=0)
        bus.subscribe("*", rec, name="fine")

        await bus.publish(CallStarted(n=1))
        await bus.drain()

        assert rec.ns == [1]
        assert [d.subscriber for d in dead_letters] == ["broken"]

    async def test_failed_batch_dead_letters_every_event_in_it(self, bus, dead_letters):
        def handler(batch):
            raise RuntimeError(f"batch of {len(batch)}")

        sub = bus.subscribe("*", handler, batch=10, retries=0)
        events = [CallStarted(n=i) for i in range(3)]

        await bus.publish_many(events)
        await bus.drain()

        assert [d.event_id for d in dead_letters] == [e.id for e in events]
        assert sub.dead_lettered == 3

    async def test_dead_letter_sink_failure_keeps_the_letters(self):
        class BrokenSink:
            def put_dead_letters(self, letters):
                raise OSError("disk full")

        b = InProcessBus(retries=0, dead_letters=BrokenSink())
        b.subscribe("*", failing(times=100))

        with pytest.warns(RuntimeWarning, match="disk full"):
            await b.publish(CallStarted(n=3))
            await b.drain()
        await b.close()

        assert [d.envelope["payload"]["n"] for d in b.lost_dead_letters] == [3]


class TestRedeliver:
    async def test_redeliver_sends_the_event_back_to_the_named_subscriber(self, bus, dead_letters):
        broken = True
        fixed = []

        def handler(ev):
            if broken:
                raise RuntimeError("not yet")
            fixed.append(ev)

        bus.subscribe("*", handler, name="ledger", retries=0)
        others = Recorder()
        bus.subscribe("*", others, name="audit")
        ev = CallStarted(n=5)
        await bus.publish(ev)
        await bus.drain()
        (letter,) = dead_letters.take()

        broken = False
        await bus.redeliver(letter, REG.load(letter.envelope))
        await bus.drain()

        assert [e.id for e in fixed] == [ev.id]
        assert fixed[0] == ev
        assert others.events == [ev]  # the other subscriber is not sent it again
        assert len(dead_letters) == 0

    async def test_redeliver_without_that_subscriber_raises_bus_error(self, bus, dead_letters):
        sub = bus.subscribe("*", failing(times=100), name="gone", retries=0)
        await bus.publish(CallStarted())
        await bus.drain()
        (letter,) = dead_letters.take()
        sub.unsubscribe()

        with pytest.raises(BusError, match="no subscriber named 'gone'"):
            await bus.redeliver(letter, REG.load(letter.envelope))


# ---------------------------------------------------------------------- batches and handlers
class TestBatches:
    async def test_batch_subscriber_gets_lists_no_longer_than_the_batch(self, bus):
        batches = []
        sub = bus.subscribe("*", batches.append, batch=4)
        events = [CallStarted(n=i) for i in range(10)]

        await bus.publish_many(events)
        await bus.drain()

        assert all(isinstance(b, list) for b in batches)
        assert all(1 <= len(b) <= 4 for b in batches)
        assert any(len(b) > 1 for b in batches)
        assert [e for b in batches for e in b] == events
        assert sub.delivered == 10

    async def test_async_batch_handler(self, bus):
        seen = []

        async def handler(batch):
            await asyncio.sleep(0)
            seen.extend(e.n for e in batch)

        bus.subscribe("*", handler, batch=3)

        await bus.publish_many(CallStarted(n=i) for i in range(7))
        await bus.drain()

        assert seen == list(range(7))


class TestHandlers:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_sync_and_async_handlers_receive_events(self, bus, kind):
        seen = []

        def sync_handler(ev):
            seen.append(ev.n)

        async def async_handler(ev):
            await asyncio.sleep(0)
            seen.append(ev.n)

        bus.subscribe("*", sync_handler if kind == "sync" else async_handler)

        await bus.publish_many(CallStarted(n=i) for i in range(3))
        await bus.drain()

        assert seen == [0, 1, 2]

    async def test_callable_object_with_async_call_is_awaited(self, bus):
        handler = GatedHandler()
        handler.gate.set()
        bus.subscribe("*", handler)

        await bus.publish(CallStarted(n=1))
        await bus.drain()

        assert handler.ns == [1]

    async def test_sync_handler_returning_an_awaitable_is_awaited(self, bus):
        seen = []

        async def work(ev):
            seen.append(ev.n)

        bus.subscribe("*", lambda ev: work(ev))

        await bus.publish(CallStarted(n=4))
        await bus.drain()

        assert seen == [4]


# ---------------------------------------------------------------------- sync code
class TestSyncUse:
    def test_publish_sync_and_drain_sync_from_plain_code(self, sync_bus):
        rec = Recorder()
        sync_bus.subscribe("*", rec)

        for i in range(3):
            sync_bus.publish_sync(CallStarted(n=i))
        sync_bus.drain_sync()

        assert rec.ns == [0, 1, 2]

    def test_handlers_run_on_the_bus_thread(self, sync_bus):
        threads = []
        sync_bus.subscribe("*", lambda ev: threads.append(threading.current_thread()))

        sync_bus.publish_sync(CallStarted())
        sync_bus.drain_sync()

        assert threads[0] is not threading.current_thread()
        assert threads[0].name == "lumina-bus"

    def test_publish_many_sync_keeps_order(self, sync_bus):
        rec = Recorder()
        sync_bus.subscribe("*", rec, maxsize=4)

        sync_bus.publish_many_sync(CallStarted(n=i) for i in range(500))
        sync_bus.drain_sync()

        assert rec.ns == list(range(500))

    def test_async_handlers_work_in_sync_mode(self, sync_bus):
        seen = []

        async def handler(ev):
            await asyncio.sleep(0.001)
            seen.append(ev.n)

        sync_bus.subscribe("*", handler)

        sync_bus.publish_many_sync(CallStarted(n=i) for i in range(5))
        sync_bus.drain_sync()

        assert seen == list(range(5))

    def test_subscribe_after_the_bus_thread_started(self, sync_bus):
        sync_bus.publish_sync(CallStarted(n=0))
        rec = Recorder()
        sync_bus.subscribe("*", rec)

        sync_bus.publish_sync(CallStarted(n=1))
        sync_bus.drain_sync()

        assert rec.ns == [1]

    def test_publish_sync_from_other_threads(self, sync_bus):
        rec = Recorder()
        sync_bus.subscribe("*", rec, maxsize=8)

        def worker(base: int) -> None:
            for i in range(base, base + 50):
                sync_bus.publish_sync(CallStarted(n=i))

        threads = [threading.Thread(target=worker, args=(base,)) for base in (0, 1000, 2000, 3000)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        sync_bus.drain_sync()

        assert len(rec.ns) == 200
        for base in (0, 1000, 2000, 3000):
            assert [n for n in rec.ns if base <= n < base + 50] == list(range(base, base + 50))

    def test_publish_sync_waits_for_room_from_another_thread(self, sync_bus):
        seen = []

        def slow(ev):
            time.sleep(0.002)
            seen.append(ev.n)

        sub = sync_bus.subscribe("*", slow, maxsize=2, overflow="block")

        sync_bus.publish_many_sync(CallStarted(n=i) for i in range(30))
        sync_bus.drain_sync()

        assert seen == list(range(30))
        assert sub.stats()["high_water"] <= 2

    def test_close_sync_handles_queued_events_first(self):
        b = InProcessBus()
        seen = []
        b.subscribe("*", lambda ev: (time.sleep(0.001), seen.append(ev.n)))

        b.publish_many_sync(CallStarted(n=i) for i in range(20))
        b.close_sync()

        assert seen == list(range(20))

    @pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
    def test_publish_sync_after_close_sync_raises_bus_closed(self):
        b = InProcessBus()
        b.publish_sync(CallStarted())  # starts the bus thread
        b.close_sync()

        try:
            b.publish_sync(CallStarted())
        except Exception as exc:
            raised = type(exc)
        else:
            raised = None

        assert raised is BusClosed

    def test_publish_sync_on_a_closed_unused_bus_starts_no_thread(self):
        b = InProcessBus()
        b.close_sync()

        with pytest.raises(BusClosed):
            b.publish_sync(CallStarted())

        assert b._thread is None

    def test_drain_sync_inside_a_handler_raises_instead_of_deadlocking(self, sync_bus):
        errors = []

        def handler(ev):
            try:
                sync_bus.drain_sync()
            except BusError as exc:
                errors.append(exc)

        sync_bus.subscribe("*", handler)
        sync_bus.publish_sync(CallStarted())
        sync_bus.drain_sync()

        assert len(errors) == 1
        assert "own event loop" in str(errors[0])

    def test_drain_sync_on_an_unused_bus_returns(self):
        b = InProcessBus()

        b.drain_sync()
        b.close_sync()

    def test_chained_publish_from_a_sync_handler_is_drained(self, sync_bus):
        rec = Recorder()
        sync_bus.subscribe("tool.*", rec)

        def forward(ev):
            time.sleep(0.01)
            sync_bus.publish_sync(ToolFinished(n=ev.n))  # on the bus thread: never waits

        sync_bus.subscribe("provider.*", forward)

        sync_bus.publish_sync(CallStarted(n=3))
        sync_bus.drain_sync()

        assert rec.ns == [3]


# ---------------------------------------------------------------------- misuse
class TestValidation:
    async def test_publishing_a_non_event_raises_validation_error(self, bus):
        with pytest.raises(ValidationError, match="got dict"):
            await bus.publish({"type": "provider.call.started"})

    async def test_publishing_an_undecorated_event_raises_validation_error(self, bus):
        class Loose(Event):
            pass

        with pytest.raises(ValidationError, match="only registered events"):
            await bus.publish(Loose())

    async def test_publish_nowait_rejects_non_events(self, bus):
        with pytest.raises(ValidationError):
            bus.publish_nowait("provider.call.started")

    def test_publish_sync_rejects_non_events(self, sync_bus):
        with pytest.raises(ValidationError):
            sync_bus.publish_sync(42)

    async def test_rejected_event_is_not_counted(self, bus):
        with pytest.raises(ValidationError):
            await bus.publish(object())

        assert bus.published == 0

    @pytest.mark.parametrize(
        "bad",
        [
            "newest",
            "BLOCK",
            "",
        ],
    )
    async def test_bad_overflow_in_subscribe_raises_validation_error_naming_it(self, bus, bad):
        with pytest.raises(ValidationError, match=f"overflow={bad!r}") as info:
            bus.subscribe("*", Recorder(), overflow=bad)

        assert info.value.input == bad
        assert bus.subscriptions == []

    @pytest.mark.parametrize("bad", ["newest", None])
    def test_bad_overflow_in_constructor_raises_validation_error_naming_it(self, bad):
        with pytest.raises(ValidationError, match=f"overflow={bad!r} is not a policy"):
            InProcessBus(overflow=bad)

    @pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
    async def test_bad_maxsize_raises_validation_error_naming_it(self, bus, bad):
        with pytest.raises(ValidationError, match=f"maxsize={bad!r} must be a positive integer") as info:
            bus.subscribe("*", Recorder(), maxsize=bad)

        assert info.value.input == bad

    @pytest.mark.parametrize("bad", [0, -5, 2.0])
    def test_bad_queue_size_raises_validation_error_naming_it(self, bad):
        with pytest.raises(ValidationError, match=f"queue_size={bad!r}"):
            InProcessBus(queue_size=bad)

    @pytest.mark.parametrize("bad", [0, -1])
    async def test_bad_batch_raises_validation_error_naming_it(self, bus, bad):
        with pytest.raises(ValidationError, match=f"batch={bad!r}"):
            bus.subscribe("*", Recorder(), batch=bad)

    @pytest.mark.parametrize("pattern", ["", None, 3])
    async def test_pattern_must_be_a_non_empty_string(self, bus, pattern):
        with pytest.raises(ValidationError, match="pattern"):
            bus.subscribe(pattern, Recorder())

    async def test_handler_must_be_callable(self, bus):
        with pytest.raises(ValidationError, match="not callable"):
            bus.subscribe("*", "print")

    async def test_duplicate_subscriber_names_are_rejected(self, bus):
        bus.subscribe("*", Recorder(), name="ledger")

        with pytest.raises(ValidationError, match="'ledger' already exists"):
            bus.subscribe("tool.*", Recorder(), name="ledger")

        assert [s.name for s in bus.subscriptions] == ["ledger"]

    async def test_default_names_are_unique(self, bus):
        a = bus.subscribe("*", Recorder())
        b = bus.subscribe("*", Recorder())

        assert a.name != b.name

    async def test_a_name_is_free_again_after_unsubscribe(self, bus):
        bus.subscribe("*", Recorder(), name="ledger").unsubscribe()

        assert bus.subscribe("*", Recorder(), name="ledger").name == "ledger"


class TestClose:
    async def test_publish_after_close_raises_bus_closed(self, bus):
        await bus.publish(CallStarted())
        await bus.close()

        with pytest.raises(BusClosed, match="closed"):
            await bus.publish(CallStarted())

    async def test_subscribe_after_close_raises_bus_closed(self, bus):
        await bus.close()

        with pytest.raises(BusClosed):
            bus.subscribe("*", Recorder())

    async def test_close_handles_queued_events_first(self, bus):
        seen = []

        async def slow(ev):
            await asyncio.sleep(0.001)
            seen.append(ev.n)

        bus.subscribe("*", slow)
        await bus.publish_many(CallStarted(n=i) for i in range(10))

        await bus.close()

        assert seen == list(range(10))

    async def test_close_twice_is_harmless(self, bus):
        await bus.close()
        await bus.close()

    def test_close_sync_on_an_unused_bus_closes_it(self):
        b = InProcessBus()

        b.close_sync()

        with pytest.raises(BusClosed):
            b.subscribe("*", Recorder())


class TestUnsubscribe:
    async def test_unsubscribe_stops_delivery(self, bus):
        rec = Recorder()
        sub = bus.subscribe("*", rec)
        await bus.publish(CallStarted(n=1))
        await bus.drain()

        sub.unsubscribe()
        await bus.publish(CallStarted(n=2))
        await bus.drain()

        assert rec.ns == [1]
        assert sub not in bus.subscriptions

    async def test_events_queued_before_unsubscribe_are_still_handled(self, bus):
        handler = GatedHandler()
        sub = bus.subscribe("*", handler)
        await bus.publish_many(CallStarted(n=i) for i in range(3))
        await asyncio.wait_for(handler.started.wait(), 5)

        sub.unsubscribe()
        handler.gate.set()

        await wait_for(lambda: len(handler.ns) == 3)
        assert handler.ns == [0, 1, 2]

    async def test_drain_waits_for_events_queued_before_unsubscribe(self, bus):
        handler = GatedHandler()
        sub = bus.subscribe("*", handler)
        await bus.publish_many(CallStarted(n=i) for i in range(3))
        await asyncio.wait_for(handler.started.wait(), 5)
        sub.unsubscribe()
        asyncio.get_running_loop().call_later(0.05, handler.gate.set)

        await bus.drain()

        assert handler.ns == [0, 1, 2]


class TestDrain:
    async def test_drain_waits_for_a_slow_handler(self, bus):
        seen = []

        async def slow(ev):
            await asyncio.sleep(0.02)
            seen.append(ev.n)

        bus.subscribe("*", slow)
        await bus.publish(CallStarted(n=1))

        await bus.drain()

        assert seen == [1]

    async def test_drain_waits_for_events_published_by_handlers(self, bus):
        """A handler of the first subscriber publishes to a second one, subscribed earlier."""
        second = []

        async def record(ev):
            await asyncio.sleep(0.02)
            second.append(ev.n)

        async def forward(ev):
            await asyncio.sleep(0.02)
            await bus.publish(ToolFinished(n=ev.n * 10))

        bus.subscribe("tool.*", record, name="second")
        bus.subscribe("provider.*", forward, name="first")

        await bus.publish(CallStarted(n=4))
        await bus.drain()

        assert second == [40]

    async def test_drain_waits_for_retries_to_finish(self, bus, dead_letters):
        bus.subscribe("*", failing(times=100), retries=3)

        await bus.publish(CallStarted())
        await bus.drain()

        assert len(dead_letters) == 1

    async def test_drain_on_an_unused_bus_returns(self, bus):
        await asyncio.wait_for(bus.drain(), 1)


class TestStats:
    async def test_stats_rows_have_every_counter(self, bus):
        bus.subscribe("provider.*", Recorder(), name="a", maxsize=5)
        await bus.publish(CallStarted())
        await bus.drain()

        (row,) = bus.stats()

        assert row == {
            "name": "a",
            "pattern": "provider.*",
            "overflow": "block",
            "maxsize": 5,
            "queued": 0,
            "high_water": 1,
            "delivered": 1,
            "dropped": 0,
            "retried": 0,
            "dead_lettered": 0,
        }


class TestDrainTimeout:
    """drain(timeout=...) gives up with BusTimeout naming the busy subscriber; nothing queued is lost."""

    async def test_drain_timeout_names_the_busy_subscriber_and_loses_nothing(self):
        from lumina_lab.errors import BusTimeout

        bus = InProcessBus()
        gate = asyncio.Event()
        seen: list[int] = []

        async def slow(e) -> None:
            await gate.wait()
            seen.append(e.n)

        bus.subscribe("provider.*", slow, name="stuck")
        for i in range(3):
            await bus.publish(CallStarted(n=i))
        t0 = time.perf_counter()
        with pytest.raises(BusTimeout, match=r"within 0\.3 s: subscriber 'stuck' \('provider\.\*'\)") as info:
            await bus.drain(timeout=0.3)
        assert time.perf_counter() - t0 < 1.5
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, BusError)
        gate.set()
        await bus.drain(timeout=5)
        assert seen == [0, 1, 2]
        await bus.close()

    def test_drain_sync_raises_the_same_error(self):
        from lumina_lab.errors import BusTimeout

        bus = InProcessBus()
        seen: list[int] = []

        async def slow(e) -> None:  # sync handlers run on the bus loop: an async one lets the timeout fire
            await asyncio.sleep(1.0)
            seen.append(e.n)

        bus.subscribe("provider.*", slow, name="slow")
        bus.publish_sync(CallStarted(n=1))
        with pytest.raises(BusTimeout, match="subscriber 'slow'"):
            bus.drain_sync(timeout=0.3)
        bus.drain_sync(timeout=10)
        assert seen == [1]
        bus.close_sync()


def test_subscribing_from_another_thread_while_events_flow_loses_nothing_and_never_crashes():
    """A dashboard subscribes from a server thread while the bus loop publishes: the new subscriber joins the
    routing together with its queue, so a publish never meets a subscriber without one."""
    bus = InProcessBus()
    published = 2_000
    stop = threading.Event()

    async def pump() -> None:
        for i in range(published):
            await bus.publish(CallStarted(n=i))
            if i % 50 == 0:
                await asyncio.sleep(0)

    bus.subscribe("provider.*", lambda e: None, name="first")  # gives the bus its loop thread
    bus.publish_sync(CallStarted(n=-1))
    loop = bus._loop
    counts: list[Recorder] = []

    def subscribe_many() -> None:
        for k in range(40):
            rec = Recorder()
            counts.append(rec)
            bus.subscribe("provider.*", rec, name=f"late-{k}")
            if stop.is_set():
                return

    t = threading.Thread(target=subscribe_many)
    fut = asyncio.run_coroutine_threadsafe(pump(), loop)
    t.start()
    fut.result(30)  # an AssertionError here was the race
    stop.set()
    t.join(10)
    bus.drain_sync(timeout=10)
    assert all(r.ns == sorted(r.ns) for r in counts)  # each late subscriber sees a gap-free tail, in order
    assert all(not r.ns or r.ns == list(range(r.ns[0], published)) for r in counts)
    bus.close_sync()
