"""The schema registry: event types with their current version, loading stored envelopes,
and upcasting old payloads step by step.  Anything it cannot read is a SchemaError."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime

import pytest

from lumina_lab.errors import SchemaError, ValidationError
from lumina_lab.events import Event, SchemaRegistry, default_registry, event, new_id, upcaster


@pytest.fixture
def reg() -> SchemaRegistry:
    return SchemaRegistry()


def envelope(type_: str, version: int, payload, **extra):
    return {
        "id": new_id(),
        "type": type_,
        "schema_version": version,
        "ts": "2024-05-01T12:00:00+00:00",
        "source": "lab:1",
        "trace_id": None,
        "span_id": None,
        "payload": payload,
        **extra,
    }


def latency_event_v3(reg: SchemaRegistry, type_: str) -> type[Event]:
    """Version 3 of an event whose v1 had ``latency_s``, v2 ``latency_ms``, v3 adds ``unit``."""

    @event(type_, version=3, registry=reg)
    class LatencyMeasured(Event):
        provider: str
        latency_ms: float
        unit: str

    return LatencyMeasured


def event_class_with_field(field: str) -> type[Event]:
    """An Event subclass declaring ``field`` (pydantic warns when it shadows a property)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return type("Shadowing", (Event,), {"__annotations__": {field: str}, "__module__": __name__})


class TestRegister:
    def test_new_registry_is_empty(self, reg):
        assert reg.types() == {}

    def test_event_decorator_registers_type_and_version(self, reg):
        @event("test_registry.register.done", version=2, registry=reg)
        class Done(Event):
            n: int

        assert reg.types() == {"test_registry.register.done": 2}
        assert reg.model_for("test_registry.register.done") is Done

    def test_types_lists_every_type_sorted(self, reg):
        @event("test_registry.types.zeta", registry=reg)
        class Zeta(Event):
            pass

        @event("test_registry.types.alpha", version=4, registry=reg)
        class Alpha(Event):
            pass

        assert list(reg.types().items()) == [("test_registry.types.alpha", 4), ("test_registry.types.zeta", 1)]

    def test_private_registry_does_not_touch_the_default_registry(self, reg):
        @event("test_registry.private_only.done", registry=reg)
        class Done(Event):
            pass

        assert "test_registry.private_only.done" not in default_registry.types()

    def test_without_registry_argument_the_default_registry_is_used(self):
        @event("test_registry.default_used.done")
        class Done(Event):
            pass

        assert default_registry.model_for("test_registry.default_used.done") is Done

    def test_another_class_cannot_take_a_registered_type(self, reg):
        @event("test_registry.clash.done", registry=reg)
        class First(Event):
            pass

        with pytest.raises(SchemaError, match=r"'test_registry.clash.done'") as info:

            @event("test_registry.clash.done", registry=reg)
            class Second(Event):
                pass

        assert "First" in str(info.value)  # names the class that holds the type
        assert reg.model_for("test_registry.clash.done") is First

    def test_a_newer_version_becomes_the_current_class(self, reg):
        @event("test_registry.newer.done", registry=reg)
        class DoneV1(Event):
            pass

        @event("test_registry.newer.done", version=2, registry=reg)
        class DoneV2(Event):
            pass

        assert reg.types() == {"test_registry.newer.done": 2}
        assert reg.model_for("test_registry.newer.done") is DoneV2

    def test_an_older_version_cannot_replace_a_newer_one(self, reg):
        @event("test_registry.older.done", version=2, registry=reg)
        class DoneV2(Event):
            pass

        with pytest.raises(SchemaError, match=r"'test_registry.older.done' v1"):

            @event("test_registry.older.done", version=1, registry=reg)
            class DoneV1(Event):
                pass

        assert reg.model_for("test_registry.older.done") is DoneV2

    def test_redefining_the_same_class_replaces_it(self, reg):
        """Re-running a notebook cell defines a new class with the same qualified name."""

        def define() -> type[Event]:
            @event("test_registry.redefine.done", registry=reg)
            class Done(Event):
                n: int

            return Done

        define()
        second = define()

        assert reg.model_for("test_registry.redefine.done") is second


class TestLoadCurrentVersion:
    def test_load_builds_the_event_from_a_dict_payload(self, reg):
        Done = latency_event_v3(reg, "test_registry.load_dict.done")
        env = envelope(Done.event_type, 3, {"provider": "p", "latency_ms": 5.0, "unit": "ms"})

        e = reg.load(env)

        assert isinstance(e, Done)
        assert (e.provider, e.latency_ms, e.unit) == ("p", 5.0, "ms")

    def test_load_accepts_a_json_string_payload(self, reg):
        Done = latency_event_v3(reg, "test_registry.load_json.done")
        payload = json.dumps({"provider": "p", "latency_ms": 5.0, "unit": "ms"})

        e = reg.load(envelope(Done.event_type, 3, payload))

        assert (e.provider, e.latency_ms, e.unit) == ("p", 5.0, "ms")

    def test_load_accepts_a_json_bytes_payload(self, reg):
        Done = latency_event_v3(reg, "test_registry.load_bytes.done")
        payload = json.dumps({"provider": "p", "latency_ms": 5.0, "unit": "ms"}).encode()

        assert reg.load(envelope(Done.event_type, 3, payload)).provider == "p"

    def test_load_keeps_the_envelope_fields(self, reg):
        Done = latency_event_v3(reg, "test_registry.load_envelope.done")
        env = envelope(
            Done.event_type,
            3,
            {"provider": "p", "latency_ms": 5.0, "unit": "ms"},
            trace_id="a" * 32,
            span_id="b" * 16,
        )

        e = reg.load(env)

        assert e.id == env["id"]
        assert e.ts == datetime(2024, 5, 1, 12, tzinfo=UTC)
        assert (e.source, e.trace_id, e.span_id) == ("lab:1", "a" * 32, "b" * 16)

    def test_to_envelope_then_load_round_trips(self, reg):
        Done = latency_event_v3(reg, "test_registry.round_trip.done")
        original = Done(provider="p", latency_ms=1.5, unit="ms")

        assert reg.load(original.to_envelope()) == original

    def test_naive_datetime_ts_is_read_as_utc(self, reg):
        Done = latency_event_v3(reg, "test_registry.naive_ts.done")
        env = envelope(Done.event_type, 3, {"provider": "p", "latency_ms": 1.0, "unit": "ms"})
        env["ts"] = datetime(2024, 5, 1, 12, 0)

        assert reg.load(env).ts == datetime(2024, 5, 1, 12, tzinfo=UTC)

    def test_schema_version_may_be_a_numeric_string(self, reg):
        Done = latency_event_v3(reg, "test_registry.version_str.done")

        e = reg.load(envelope(Done.event_type, "3", {"provider": "p", "latency_ms": 1.0, "unit": "ms"}))

        assert e.provider == "p"


class TestUpcasting:
    def test_v1_payload_is_upcast_through_v2_to_v3(self, reg):
        type_ = "test_registry.upcast_chain.done"
        Done = latency_event_v3(reg, type_)
        steps = []

        @reg.upcaster(type_, from_version=1)
        def v1_to_v2(payload):
            steps.append("1->2")
            return {"provider": payload["provider"], "latency_ms": payload["latency_s"] * 1000}

        @reg.upcaster(type_, from_version=2)
        def v2_to_v3(payload):
            steps.append("2->3")
            return {**payload, "unit": "ms"}

        e = reg.load(envelope(type_, 1, {"provider": "p", "latency_s": 1.5}))

        assert isinstance(e, Done)
        assert (e.provider, e.latency_ms, e.unit) == ("p", 1500.0, "ms")
        assert steps == ["1->2", "2->3"]

    def test_only_the_missing_steps_run(self, reg):
        type_ = "test_registry.upcast_partial.done"
        latency_event_v3(reg, type_)
        steps = []
        reg.add_upcaster(type_, 1, lambda p: steps.append("1->2") or p)
        reg.add_upcaster(type_, 2, lambda p: steps.append("2->3") or {**p, "unit": "ms"})

        e = reg.load(envelope(type_, 2, {"provider": "p", "latency_ms": 3.0}))

        assert e.unit == "ms"
        assert steps == ["2->3"]

    def test_current_version_runs_no_upcaster(self, reg):
        type_ = "test_registry.upcast_none.done"
        latency_event_v3(reg, type_)
        steps = []
        reg.add_upcaster(type_, 2, lambda p: steps.append("2->3") or p)

        reg.load(envelope(type_, 3, {"provider": "p", "latency_ms": 3.0, "unit": "s"}))

        assert steps == []

    def test_upcasters_do_not_mutate_the_callers_payload(self, reg):
        type_ = "test_registry.upcast_copy.done"
        latency_event_v3(reg, type_)

        @reg.upcaster(type_, from_version=2)
        def v2_to_v3(payload):
            payload["unit"] = "ms"
            return payload

        stored = {"provider": "p", "latency_ms": 3.0}
        reg.load(envelope(type_, 2, stored))

        assert stored == {"provider": "p", "latency_ms": 3.0}

    def test_upgrade_returns_the_current_payload(self, reg):
        type_ = "test_registry.upgrade.done"
        latency_event_v3(reg, type_)
        reg.add_upcaster(type_, 2, lambda p: {**p, "unit": "ms"})

        assert reg.upgrade(type_, 2, {"provider": "p", "latency_ms": 1.0}) == {
            "provider": "p",
            "latency_ms": 1.0,
            "unit": "ms",
        }

    def test_module_level_upcaster_registers_in_the_default_registry(self):
        type_ = "test_registry.default_upcaster.done"

        @event(type_, version=2)
        class Done(Event):
            unit: str

        @upcaster(type_, from_version=1)
        def v1_to_v2(payload):
            return {**payload, "unit": "ms"}

        assert default_registry.load(envelope(type_, 1, {})).unit == "ms"


class TestLoadErrors:
    def test_unknown_type_names_the_type(self, reg):
        with pytest.raises(SchemaError, match=r"unknown event type 'test_registry.never_registered.done'"):
            reg.load(envelope("test_registry.never_registered.done", 1, {}))

    def test_unknown_type_hint_lists_known_types(self, reg):
        latency_event_v3(reg, "test_registry.known_listed.done")

        with pytest.raises(SchemaError) as info:
            reg.model_for("test_registry.unknown_listed.done")

        assert "test_registry.known_listed.done" in info.value.hint
        assert info.value.input == "test_registry.unknown_listed.done"

    def test_newer_version_than_the_code_is_an_error(self, reg):
        type_ = "test_registry.too_new.done"
        latency_event_v3(reg, type_)

        with pytest.raises(SchemaError, match=r"schema version 4, newer than this code's 3"):
            reg.load(envelope(type_, 4, {"provider": "p", "latency_ms": 1.0, "unit": "ms"}))

    def test_missing_upcaster_is_an_error_naming_the_step(self, reg):
        type_ = "test_registry.missing_step.done"
        latency_event_v3(reg, type_)
        reg.add_upcaster(type_, 1, lambda p: p)

        with pytest.raises(SchemaError, match=r"no upcaster for event '.*missing_step.done' from version 2 to 3"):
            reg.load(envelope(type_, 1, {"provider": "p", "latency_s": 1.0}))

    def test_payload_not_matching_the_schema_is_an_error(self, reg):
        type_ = "test_registry.mismatch.done"
        latency_event_v3(reg, type_)
        env = envelope(type_, 3, {"provider": "p", "latency_ms": "fast", "unit": "ms"})

        with pytest.raises(SchemaError) as info:
            reg.load(env)

        msg = str(info.value)
        assert env["id"] in msg
        assert type_ in msg
        assert "latency_ms" in msg

    def test_payload_missing_a_field_is_an_error(self, reg):
        type_ = "test_registry.missing_field.done"
        latency_event_v3(reg, type_)

        with pytest.raises(SchemaError, match="unit"):
            reg.load(envelope(type_, 3, {"provider": "p", "latency_ms": 1.0}))

    @pytest.mark.parametrize("missing", ["type", "schema_version"])
    def test_envelope_without_type_or_version_is_an_error(self, reg, missing):
        env = envelope("test_registry.no_key.done", 1, {})
        del env[missing]

        with pytest.raises(SchemaError, match="'type' and an integer 'schema_version'"):
            reg.load(env)

    def test_non_integer_schema_version_is_an_error(self, reg):
        with pytest.raises(SchemaError, match="schema_version"):
            reg.load(envelope("test_registry.bad_version.done", "two", {}))

    def test_schema_errors_are_validation_errors(self, reg):
        with pytest.raises(ValidationError):
            reg.load(envelope("test_registry.still_unknown.done", 1, {}))


class TestEventDecoratorValidation:
    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "provider",
            "Provider.call",
            "provider.Call",
            "provider.",
            ".provider",
            "provider..call",
            "provider.call-finished",
            "1provider.call",
            "provider.call finished",
        ],
    )
    def test_rejects_type_names_that_are_not_dotted_lowercase(self, reg, bad):
        with pytest.raises(SchemaError, match="is not a dotted lowercase name") as info:
            event(bad, registry=reg)

        assert repr(bad) in str(info.value)
        assert info.value.input == bad

    def test_rejects_a_non_string_type(self, reg):
        with pytest.raises(SchemaError, match="42"):
            event(42, registry=reg)

    @pytest.mark.parametrize("version", [0, -1, "2", 1.0])
    def test_rejects_versions_that_are_not_positive_integers(self, reg, version):
        with pytest.raises(SchemaError, match="must be an integer >= 1"):
            event("test_registry.bad_version.done", version=version, registry=reg)

    def test_rejects_classes_that_are_not_events(self, reg):
        class NotAnEvent:
            pass

        with pytest.raises(SchemaError, match="decorates Event subclasses"):
            event("test_registry.not_event.done", registry=reg)(NotAnEvent)

    @pytest.mark.parametrize("field", ["type", "payload", "schema_version"])
    def test_rejects_reserved_payload_field_names(self, reg, field):
        cls = event_class_with_field(field)

        with pytest.raises(SchemaError, match=rf"reserved field\(s\) \['{field}'\]"):
            event(f"test_registry.reserved_{field}.done", registry=reg)(cls)

        assert reg.types() == {}

    @pytest.mark.parametrize("field", ["source", "id"])
    def test_rejects_payload_fields_that_redeclare_envelope_fields(self, reg, field):
        cls = event_class_with_field(field)

        with pytest.raises(SchemaError, match="reserved"):
            event(f"test_registry.redeclare_{field}.done", registry=reg)(cls)

    def test_rejected_class_is_not_registered(self, reg):
        with pytest.raises(SchemaError):
            event("Bad-Name", registry=reg)

        assert reg.types() == {}
