"""Circuit breaker and retry policy (both read time from an injected clock)."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

from .._pickling import reduce_frozen
from ..clock import WALL, Clock
from ..errors import ProviderError, RateLimited, ValidationError, shown

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy", "check_seconds"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Per-provider breaker over the failure rate of its last ``window`` calls.

    * **closed**: calls pass; when a *failure* leaves at least ``min_calls``
      outcomes in the window with a failure rate of ``failure_rate`` or more,
      it opens (a success never opens a breaker: under a burst, errors come
      back before answers, and the answers arriving later must not trip it on
      a window still full of those early errors).  With ``min_calls`` small it
      trips even when a provider is the only one.
    * **open**: calls are refused for ``open_s`` seconds.
    * **half_open**: exactly one probe call passes; success closes the
      breaker (window cleared), failure opens it again.

    Args:
        on_change: called with ``(old, new, failure_rate)`` on every transition.
    """

    def __init__(
        self,
        *,
        window: int = 20,
        min_calls: int = 5,
        failure_rate: float = 0.5,
        open_s: float = 30.0,
        clock: Clock = WALL,
        on_change: Callable[[str, str, float], None] | None = None,
    ) -> None:
        if not 0 < failure_rate <= 1:
            raise ValidationError(f"failure_rate={failure_rate!r} must be in (0, 1]")
        if min_calls < 1 or window < min_calls:
            raise ValidationError(f"need 1 <= min_calls ({min_calls}) <= window ({window})")
        self.window = window
        self.min_calls = min_calls
        self.failure_rate = failure_rate
        self.open_s = open_s
        self.clock = clock
        self.on_change = on_change
        self.state: BreakerState = "closed"
        self.opened_at = 0.0
        self.probe_in_flight = False
        self.granted_probe = False  # whether the last allow() granted the half-open probe
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._failures = 0
        self.transitions: list[tuple[float, str, str]] = []

    @property
    def current_failure_rate(self) -> float:
        return self._failures / len(self._outcomes) if self._outcomes else 0.0

    def _set(self, new: BreakerState) -> None:
        old = self.state
        if old == new:
            return
        self.state = new
        self.transitions.append((self.clock.now(), old, new))
        if new == "open":
            self.opened_at = self.clock.now()
        if self.on_change is not None:
            self.on_change(old, new, self.current_failure_rate)

    def available(self) -> bool:
        """Whether a call may be attempted now (without claiming the half-open probe)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            return self.clock.now() - self.opened_at >= self.open_s
        return not self.probe_in_flight

    def allow(self) -> bool:
        """Claim permission for one call; in half-open only one caller gets it."""
        state = self.state
        self.granted_probe = False
        if state == "closed":
            return True
        if state == "open":
            if self.clock.now() - self.opened_at < self.open_s:
                return False
            self._set("half_open")
        if self.probe_in_flight:
            return False
        self.probe_in_flight = True
        self.granted_probe = True
        return True

    def record(self, success: bool, probe: bool | None = None, pending: int = 0) -> None:
        """Record the outcome of a call that :meth:`allow` let through.

        ``probe`` says whether that call was the half-open probe (read
        :attr:`granted_probe` right after :meth:`allow`).  In half-open only the
        probe's outcome counts; calls that started earlier are ignored.  Without
        ``probe``, an outcome in half-open is taken for the probe's.

        ``pending`` is the number of calls to this provider that started
        *before* this one and are still in flight.  They count as not yet
        failed when the failure rate is judged, so the first quick failures of
        a burst do not trip a provider whose earlier calls are still on their
        way (errors often come back faster than answers).  A provider that is
        down fails its calls in the order they started, nothing older is
        pending, and the breaker opens within ``min_calls`` failures.
        """
        state = self.state
        if state == "closed":  # the usual case first
            outcomes = self._outcomes
            if len(outcomes) == outcomes.maxlen and not outcomes[0]:
                self._failures -= 1
            outcomes.append(success)
            if success:
                return
            self._failures += 1
            n = len(outcomes)
            if n >= self.min_calls and self._failures / (n + pending) >= self.failure_rate:
                self._set("open")
            return
        if state == "half_open":
            if probe is None:
                probe = self.probe_in_flight
            if not probe:
                return
            self.probe_in_flight = False
            if success:
                self._outcomes.clear()
                self._failures = 0
                self._set("closed")
            else:
                self._set("open")
        # open: a call that started before the breaker opened does not count

    def release_probe(self, probe: bool = True) -> None:
        """A half-open probe ended without an outcome (e.g. cancelled): let another probe through."""
        if self.state == "half_open" and probe:
            self.probe_in_flight = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failure_rate={self.current_failure_rate:.2f})"


def check_seconds(name: str, value: Any, *, allow_none: bool = False, positive: bool = False, owner: str = "") -> None:
    """Raise a :class:`~lumina_lab.errors.ValidationError` naming ``name`` (of ``owner``) unless ``value``
    is a finite number of seconds >= 0 (> 0 with ``positive``), or None when ``allow_none``."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        raise ValidationError(
            f"{owner}{name}={shown(value)} must be a number of seconds {'> 0' if positive else '>= 0'}"
            + (" (or None)" if allow_none else ""),
            input=value,
            hint=f"e.g. {name}=30",
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one provider before falling back to the next.

    Delay before retry ``n`` (1-based): ``min(max_s, base_s * 2**(n-1))`` with
    full jitter (uniform in ``[0, that]``) when ``jitter``; a ``RateLimited``
    error's ``retry_after`` is honoured if it is at most ``max_retry_after_s``
    (beyond that the router falls back at once).
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickles compiled too (see lumina_lab._pickling)
        return reduce_frozen(self)

    attempts: int = 2
    base_s: float = 0.2
    max_s: float = 5.0
    jitter: bool = True
    max_retry_after_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, Integral) or self.attempts < 1:
            raise ValidationError(
                f"RetryPolicy attempts={self.attempts!r} must be a whole number >= 1",
                input=self.attempts,
                hint="attempts counts the first call: attempts=1 never retries",
            )
        for name in ("base_s", "max_s", "max_retry_after_s"):
            check_seconds(name, getattr(self, name), owner="RetryPolicy ")

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float | None:
        """Seconds to wait before retry ``attempt`` (1-based), or None to stop retrying here."""
        if attempt >= self.attempts:
            return None
        if isinstance(error, ProviderError) and not error.retryable:
            return None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after_s else None
        cap = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return rng.uniform(0, cap) if self.jitter else cap


class RateLimiter:
    """Client-side RPM/TPM limiter over a sliding 60-second window.

    The router checks :meth:`available` when planning and calls :meth:`record`
    at dispatch (no await in between), so concurrent requests never push a
    provider past its declared limits and into 429s.
    """

    def __init__(self, *, rpm: int | None = None, tpm: int | None = None, clock: Clock = WALL) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def _trim(self, now: float) -> None:
        ev = self._events
        while ev and now - ev[0][0] >= 60.0:
            _, tokens = ev.popleft()
            self._tokens -= tokens

    def available(self, tokens: int = 0) -> bool:
        """Whether one more request of ``tokens`` fits in the last minute's limits."""
        self._trim(self.clock.now())
        if self.rpm is not None and len(self._events) >= self.rpm:
            return False
        return not (self.tpm is not None and self._events and self._tokens + tokens > self.tpm)

    def record(self, tokens: int = 0) -> None:
        self._events.append((self.clock.now(), tokens))
        self._tokens += tokens

    def wait_s(self) -> float:
        """Seconds until the oldest request leaves the window (0 if there is room)."""
        now = self.clock.now()
        self._trim(now)
        return 0.0 if not self._events else max(0.0, 60.0 - (now - self._events[0][0]))

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm}, tpm={self.tpm}, in_window={len(self._events)})"
