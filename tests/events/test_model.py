"""The Event envelope: UUIDv7 ids, UTC timestamps, source, trace context and wire form."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pydantic
import pytest
from opentelemetry.sdk.trace import TracerProvider

from lumina_lab.events import (
    ENVELOPE_FIELDS,
    Event,
    SchemaRegistry,
    current_trace_ids,
    event,
    new_id,
    set_default_source,
    trace_scope,
)
from lumina_lab.events.ids import id_time_ms

REG = SchemaRegistry()


@event("test_model.call.finished", version=2, registry=REG)
class CallFinished(Event):
    provider: str
    latency_ms: float = 0.0


def is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


@pytest.fixture
def restore_source():
    yield
    set_default_source(None)


class TestIds:
    def test_id_is_a_canonical_uuid7_string(self):
        eid = CallFinished(provider="p").id

        u = uuid.UUID(eid)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert str(u) == eid  # lowercase, hyphenated

    def test_every_event_gets_its_own_id(self):
        assert CallFinished(provider="p").id != CallFinished(provider="p").id

    def test_ids_are_unique_and_strictly_increasing_within_a_process(self):
        ids = [new_id() for _ in range(100_000)]

        assert all(a < b for a, b in pairwise(ids))
        assert len(set(ids)) == len(ids)

    def test_text_order_equals_numeric_order(self):
        """Lowercase hex text sorts like the number, so ``ORDER BY id`` is time order."""
        ids = [new_id() for _ in range(5_000)]

        numbers = [uuid.UUID(i).int for i in ids]
        assert all(a < b for a, b in pairwise(numbers))

    def test_ids_from_many_threads_are_unique(self):
        out: list[list[str]] = [[] for _ in range(4)]

        def make(slot: list[str]) -> None:
            slot.extend(new_id() for _ in range(10_000))

        threads = [threading.Thread(target=make, args=(slot,)) for slot in out]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        all_ids = [i for slot in out for i in slot]
        assert len(set(all_ids)) == 40_000
        assert all(all(a < b for a, b in pairwise(slot)) for slot in out)

    def test_id_time_ms_is_close_to_now(self):
        before = time.time() * 1000
        eid = new_id()
        after = time.time() * 1000

        # the counter may borrow a few future milliseconds after a burst of ids
        assert before - 1 <= id_time_ms(eid) <= after + 1000

    def test_id_time_ms_reads_the_event_id(self):
        e = CallFinished(provider="p")

        assert abs(id_time_ms(e.id) - e.ts.timestamp() * 1000) < 1000


class TestTimestampAndSource:
    def test_ts_is_timezone_aware_utc(self):
        ts = CallFinished(provider="p").ts

        assert ts.tzinfo is not None
        assert ts.utcoffset() == timedelta(0)

    def test_ts_is_now(self):
        ts = CallFinished(provider="p").ts

        assert abs(datetime.now(UTC) - ts) < timedelta(seconds=5)

    def test_source_defaults_to_host_and_pid(self, restore_source):
        set_default_source(None)

        assert CallFinished(provider="p").source == f"{socket.gethostname()}:{os.getpid()}"

    def test_set_default_source_names_later_events(self, restore_source):
        set_default_source("worker-7")

        assert CallFinished(provider="p").source == "worker-7"

    def test_set_default_source_none_restores_host_and_pid(self, restore_source):
        set_default_source("worker-7")
        set_default_source(None)

        assert CallFinished(provider="p").source == f"{socket.gethostname()}:{os.getpid()}"

    def test_explicit_source_wins_over_default(self, restore_source):
        set_default_source("worker-7")

        assert CallFinished(provider="p", source="replayer").source == "replayer"


class TestShape:
    def test_type_and_schema_version_come_from_the_decorator(self):
        e = CallFinished(provider="p")

        assert (e.type, e.schema_version) == ("test_model.call.finished", 2)

    def test_to_envelope_has_envelope_fields_type_version_and_payload(self):
        e = CallFinished(provider="openai", latency_ms=12.5)

        env = e.to_envelope()

        assert set(env) == ENVELOPE_FIELDS | {"type", "schema_version", "payload"}
        assert env["id"] == e.id
        assert env["type"] == "test_model.call.finished"
        assert env["schema_version"] == 2
        assert env["source"] == e.source
        assert env["payload"] == {"provider": "openai", "latency_ms": 12.5}

    def test_envelope_ts_is_an_iso_string_of_the_same_instant(self):
        e = CallFinished(provider="p")

        ts = e.to_envelope()["ts"]

        assert isinstance(ts, str)
        assert datetime.fromisoformat(ts) == e.ts

    def test_envelope_is_json_serialisable(self):
        e = CallFinished(provider="p")

        assert json.loads(json.dumps(e.to_envelope())) == e.to_envelope()

    def test_payload_excludes_envelope_fields(self):
        assert CallFinished(provider="p", latency_ms=1.0).payload() == {"provider": "p", "latency_ms": 1.0}

    def test_payload_json_is_the_payload_as_a_json_object(self):
        e = CallFinished(provider="p", latency_ms=1.0)

        assert json.loads(e.payload_json()) == e.payload()

    def test_events_are_frozen(self):
        e = CallFinished(provider="p")

        with pytest.raises(pydantic.ValidationError, match="frozen"):
            e.provider = "q"

    def test_envelope_fields_are_frozen_too(self):
        e = CallFinished(provider="p")

        with pytest.raises(pydantic.ValidationError):
            e.id = new_id()

    def test_unknown_payload_fields_are_rejected(self):
        with pytest.raises(pydantic.ValidationError, match="latency_s"):
            CallFinished(provider="p", latency_s=1.0)

    def test_events_with_equal_fields_are_equal(self):
        e = CallFinished(provider="p")

        assert e.model_copy() == e


class TestTraceContext:
    def test_no_trace_ids_outside_any_scope_or_span(self):
        e = CallFinished(provider="p")

        assert (e.trace_id, e.span_id) == (None, None)
        assert current_trace_ids() == (None, None)

    def test_trace_scope_stamps_a_new_trace_id_and_span_id(self):
        with trace_scope() as tid:
            e = CallFinished(provider="p")

        assert e.trace_id == tid
        assert is_hex(tid, 32)
        assert is_hex(e.span_id, 16)

    def test_trace_scope_with_given_ids(self):
        with trace_scope("a" * 32, "b" * 16):
            e = CallFinished(provider="p")

        assert (e.trace_id, e.span_id) == ("a" * 32, "b" * 16)

    def test_trace_scope_ends_with_the_block(self):
        with trace_scope():
            pass

        assert CallFinished(provider="p").trace_id is None

    def test_nested_trace_scope_restores_the_outer_one(self):
        with trace_scope("1" * 32, "2" * 16):
            with trace_scope("3" * 32, "4" * 16):
                inner = CallFinished(provider="p")
            outer = CallFinished(provider="p")

        assert (inner.trace_id, inner.span_id) == ("3" * 32, "4" * 16)
        assert (outer.trace_id, outer.span_id) == ("1" * 32, "2" * 16)

    def test_explicit_trace_id_wins_over_the_scope(self):
        with trace_scope("1" * 32):
            e = CallFinished(provider="p", trace_id="f" * 32)

        assert e.trace_id == "f" * 32
        assert e.span_id is None

    async def test_trace_scope_is_private_to_each_async_task(self):
        async def make(tid: str) -> CallFinished:
            with trace_scope(tid):
                await asyncio.sleep(0.01)
                return CallFinished(provider="p")

        a, b = await asyncio.gather(make("a" * 32), make("b" * 32))

        assert (a.trace_id, b.trace_id) == ("a" * 32, "b" * 32)

    def test_active_opentelemetry_span_is_stamped(self):
        tracer = TracerProvider().get_tracer(__name__)

        with tracer.start_as_current_span("llm.call") as span:
            e = CallFinished(provider="p")
        ctx = span.get_span_context()

        assert is_hex(e.trace_id, 32)
        assert is_hex(e.span_id, 16)
        assert e.trace_id == f"{ctx.trace_id:032x}"
        assert e.span_id == f"{ctx.span_id:016x}"

    def test_child_span_shares_the_trace_id_but_not_the_span_id(self):
        tracer = TracerProvider().get_tracer(__name__)

        with tracer.start_as_current_span("parent"):
            parent = CallFinished(provider="p")
            with tracer.start_as_current_span("child"):
                child = CallFinished(provider="p")

        assert child.trace_id == parent.trace_id
        assert child.span_id != parent.span_id

    def test_opentelemetry_span_takes_precedence_over_trace_scope(self):
        tracer = TracerProvider().get_tracer(__name__)

        with trace_scope("1" * 32), tracer.start_as_current_span("op") as span:
            e = CallFinished(provider="p")

        assert e.trace_id == f"{span.get_span_context().trace_id:032x}"

    def test_trace_scope_applies_again_once_the_span_ends(self):
        tracer = TracerProvider().get_tracer(__name__)

        with trace_scope("1" * 32):
            with tracer.start_as_current_span("op"):
                pass
            e = CallFinished(provider="p")

        assert e.trace_id == "1" * 32
