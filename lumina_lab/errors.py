"""Typed exceptions for Lumina Lab.

Every error a user can cause is a :class:`LuminaError` whose message names the
input that was wrong and says how to fix it.  In a notebook, IPython shows
these as one short message instead of a deep traceback (see
:meth:`LuminaError._render_traceback_`); the ``lumina`` CLI prints the message
and exits with status 2.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExceeded",
    "BusClosed",
    "BusError",
    "BusFull",
    "BusTimeout",
    "CircuitOpen",
    "CollectionNotFound",
    "ConfigError",
    "DecryptionError",
    "LuminaError",
    "NoProviderAvailable",
    "PolicyDenied",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "SchemaError",
    "SecurityError",
    "StoreError",
    "StreamBroken",
    "ValidationError",
]


class LuminaError(Exception):
    """Base class of every error raised on purpose by Lumina Lab.

    Args:
        message: what went wrong, naming the offending input.
        hint: how to fix it (shown on its own line, prefixed ``fix:``).
        input: the offending value, kept for programmatic access.
    """

    def __init__(self, message: str, *, hint: str | None = None, input: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.input = input

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message

    def _render_traceback_(self) -> list[str]:
        """IPython hook: show the message, not the stack, for user mistakes."""
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


class ConfigError(LuminaError, ValueError):
    """Invalid configuration: a setting, environment variable or ``lumina.toml`` key."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        value: Any = None,
        allowed: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, input=value)
        self.key = key
        self.value = value
        self.allowed = allowed


class ValidationError(LuminaError, ValueError):
    """An argument or a piece of data does not have the required shape."""


class SchemaError(ValidationError):
    """An event type or schema version is unknown, or cannot be upgraded."""


class ProviderError(LuminaError):
    """A model provider failed or cannot serve the request.

    Attributes:
        provider: id of the provider that failed (if one did).
        retryable: whether trying again (here or elsewhere) may succeed.
        status: HTTP status when the failure came from HTTP.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.status = status
        if retryable is not None:
            self.retryable = retryable


class RateLimited(ProviderError):
    """The provider refused for rate (HTTP 429); ``retry_after`` seconds if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""


class ProviderUnavailable(ProviderError):
    """The provider is down or answered with a server error."""


class StreamBroken(ProviderError):
    """A stream ended before its final chunk."""


class NoProviderAvailable(ProviderError):
    """No registered provider can serve the request (capabilities, policy, breakers, budget)."""

    retryable = False


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: calls are refused until it half-opens."""


class BudgetExceeded(LuminaError):
    """A hard budget limit would be crossed by this request."""


class PolicyDenied(LuminaError):
    """A policy decision denied the action."""


class StoreError(LuminaError):
    """A store (events, vectors, spans) cannot be opened, read or written."""


class CollectionNotFound(StoreError, KeyError):
    """A vector-store collection that does not exist was named."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return LuminaError.__str__(self)


class SecurityError(LuminaError):
    """A key ring or an encrypted value could not be used (missing key, bad key file)."""


class DecryptionError(SecurityError):
    """A sealed value could not be opened: its key is not in the key ring, or it was altered."""


class BusError(LuminaError):
    """The event bus was used in a way it cannot serve."""


class BusFull(BusError):
    """A subscriber's queue is full and the caller cannot wait for space."""


class BusTimeout(BusError, TimeoutError):
    """Waiting for the bus (``drain(timeout=...)``) took longer than allowed; the message names what is outstanding."""


class BusClosed(BusError):
    """The bus has been closed; no more events are accepted."""


def shown(value: object) -> str:
    """``repr(value)`` for an error message, a whole float written as an int: ``2.0`` shows as ``2``.

    A compiled build (:mod:`lumina_lab.compiled`) turns an int passed for a float parameter into a
    float before the check that names it; this keeps the message the user's own number either way.
    """
    if type(value) is float and value.is_integer() and abs(value) < 1e15:
        return repr(int(value))
    return repr(value)
