"""Typed exceptions: messages that say how to fix the problem, a short notebook rendering,
and a hierarchy that lets callers catch broad or narrow."""

from __future__ import annotations

import pytest

from lumina_lab import errors
from lumina_lab.errors import (
    BudgetExceeded,
    BusClosed,
    BusError,
    BusFull,
    ConfigError,
    LuminaError,
    PolicyDenied,
    ProviderError,
    SchemaError,
    StoreError,
    ValidationError,
)


class TestMessage:
    def test_str_is_the_message_when_there_is_no_hint(self):
        assert str(LuminaError("queue_size must be positive")) == "queue_size must be positive"

    def test_str_adds_the_hint_on_its_own_fix_line(self):
        err = LuminaError("queue_size=0 must be positive", hint="use queue_size=1 or more")

        assert str(err) == "queue_size=0 must be positive\n  fix: use queue_size=1 or more"

    def test_message_hint_and_input_are_kept_as_attributes(self):
        err = ValidationError("bad maxsize", hint="use a positive integer", input=-3)

        assert (err.message, err.hint, err.input) == ("bad maxsize", "use a positive integer", -3)

    def test_args_hold_the_message_only(self):
        """``args`` is what pickling and ``repr`` use; the hint is not folded into it."""
        assert LuminaError("boom", hint="retry").args == ("boom",)

    def test_subclasses_render_the_hint_too(self):
        assert str(BusFull("full", hint="wait")).endswith("\n  fix: wait")


class TestIPythonRendering:
    def test_render_traceback_is_one_short_line_list(self):
        """IPython calls ``_render_traceback_`` and shows only these lines, not the stack."""
        lines = ConfigError("bad key", hint="fix it")._render_traceback_()

        assert isinstance(lines, list)
        assert len(lines) == 1

    def test_render_traceback_names_the_class_and_includes_message_and_hint(self):
        (line,) = SchemaError("unknown event type 'x.y'", hint="import it")._render_traceback_()

        assert "SchemaError" in line
        assert "unknown event type 'x.y'" in line
        assert "fix: import it" in line

    def test_render_traceback_uses_the_concrete_subclass_name(self):
        (line,) = BusClosed("closed")._render_traceback_()

        assert "BusClosed" in line
        assert "LuminaError" not in line


class TestConfigError:
    def test_keeps_key_value_and_allowed(self):
        err = ConfigError("bad", key="events.store", value="sqlite", allowed="one of 'file' or 'memory'")

        assert (err.key, err.value, err.allowed) == ("events.store", "sqlite", "one of 'file' or 'memory'")

    def test_value_is_also_the_generic_input(self):
        assert ConfigError("bad", key="k", value=42).input == 42

    def test_attributes_default_to_none(self):
        err = ConfigError("bad")

        assert (err.key, err.value, err.allowed, err.hint) == (None, None, None, None)


class TestHierarchy:
    @pytest.mark.parametrize(
        "cls",
        [
            ConfigError,
            ValidationError,
            SchemaError,
            ProviderError,
            BudgetExceeded,
            PolicyDenied,
            StoreError,
            BusError,
            BusFull,
            BusClosed,
        ],
    )
    def test_every_error_is_a_lumina_error(self, cls):
        assert issubclass(cls, LuminaError)

    def test_lumina_error_is_an_exception(self):
        assert issubclass(LuminaError, Exception)

    @pytest.mark.parametrize("cls", [ConfigError, ValidationError, SchemaError])
    def test_bad_input_errors_are_value_errors(self, cls):
        """Code that already catches ``ValueError`` keeps working."""
        assert issubclass(cls, ValueError)

    def test_schema_error_is_a_validation_error(self):
        assert issubclass(SchemaError, ValidationError)

    @pytest.mark.parametrize("cls", [BusFull, BusClosed])
    def test_bus_full_and_closed_are_bus_errors(self, cls):
        assert issubclass(cls, BusError)

    @pytest.mark.parametrize("cls", [ProviderError, BudgetExceeded, PolicyDenied, StoreError, BusError])
    def test_runtime_errors_are_not_value_errors(self, cls):
        assert not issubclass(cls, ValueError)

    def test_config_error_can_be_caught_as_value_error(self):
        with pytest.raises(ValueError, match="bad setting"):
            raise ConfigError("bad setting", key="k")

    def test_all_lists_every_public_error(self):
        public = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, LuminaError)}

        assert public == set(errors.__all__)
