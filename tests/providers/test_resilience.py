"""CircuitBreaker transitions on simulated time, and RetryPolicy delays."""

from __future__ import annotations

import random

import pytest

from lumina_lab.clock import ManualClock
from lumina_lab.errors import (
    NoProviderAvailable,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ValidationError,
)
from lumina_lab.providers import CircuitBreaker, ProviderRegistry, RetryPolicy, Router, SimulatedProvider

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=100.0)


@pytest.fixture
def changes() -> list[tuple[str, str, float]]:
    return []


@pytest.fixture
def breaker(clock: ManualClock, changes: list) -> CircuitBreaker:
    return CircuitBreaker(
        window=10,
        min_calls=4,
        failure_rate=0.5,
        open_s=30.0,
        clock=clock,
        on_change=lambda *a: changes.append(a),
    )


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.min_calls):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == "open"


# ---------------------------------------------------------------- CircuitBreaker: closed


def test_a_new_breaker_is_closed_and_lets_calls_through(breaker: CircuitBreaker) -> None:
    assert breaker.state == "closed"
    assert breaker.available() and breaker.allow() and breaker.allow()


def test_breaker_stays_closed_below_min_calls_even_if_everything_fails(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.min_calls - 1):
        breaker.record(False)
    assert breaker.state == "closed"
    assert breaker.current_failure_rate == 1.0


def test_breaker_opens_at_min_calls_when_the_failure_rate_is_reached(
    breaker: CircuitBreaker, clock: ManualClock
) -> None:
    for ok in (True, False, True):
        breaker.record(ok)
    assert breaker.state == "closed"
    breaker.record(False)  # 4 calls, 2 failures: 50% >= 50%
    assert breaker.state == "open"
    assert breaker.opened_at == clock.now()
    assert breaker.transitions == [(100.0, "closed", "open")]


def test_breaker_stays_closed_while_the_failure_rate_is_below_the_threshold(breaker: CircuitBreaker) -> None:
    for ok in [True, True, False] * 5:
        breaker.record(ok)
    assert breaker.state == "closed"
    assert breaker.current_failure_rate == pytest.approx(0.4)  # 4 failures in the last 10 outcomes


def test_a_success_never_opens_the_breaker(breaker: CircuitBreaker) -> None:
    """Answers that arrive after a burst of quick errors must not trip it; the next failure does."""
    for ok in (False, False, False, True):  # 4 calls, 75% failures, min_calls reached by the success
        breaker.record(ok)
    assert breaker.state == "closed"
    breaker.record(False)
    assert breaker.state == "open"


def test_old_outcomes_leave_the_window(clock: ManualClock) -> None:
    breaker = CircuitBreaker(window=4, min_calls=2, failure_rate=0.75, clock=clock)
    rates = []
    for ok in (False, True, True, True, True, False, False):
        breaker.record(ok)
        rates.append(breaker.current_failure_rate)
    assert rates == [1.0, 0.5, 1 / 3, 0.25, 0.0, 0.25, 0.5]
    assert breaker.state == "closed"
    breaker.record(False)  # window: ok, fail, fail, fail
    assert breaker.state == "open"


async def test_breaker_trips_for_the_only_provider_and_the_router_then_refuses() -> None:
    clock = ManualClock(autoadvance=True)
    down = SimulatedProvider("m", id="only", down=True, clock=clock)
    registry = ProviderRegistry([down], clock=clock, breaker={"min_calls": 3, "open_s": 60})
    router = Router(registry, retry=RetryPolicy(attempts=1), clock=clock)
    for _ in range(3):
        with pytest.raises(NoProviderAvailable, match="ProviderUnavailable"):
            await router.ainvoke("x")
    assert registry["only"].breaker.state == "open"
    with pytest.raises(NoProviderAvailable, match="only: circuit open"):
        await router.ainvoke("x")
    assert down.calls == 3


# ---------------------------------------------------------------- CircuitBreaker: open


def test_open_breaker_refuses_calls_until_open_s_has_passed(breaker: CircuitBreaker, clock: ManualClock) -> None:
    trip(breaker)
    clock.advance(29.9)
    assert not breaker.available()
    assert not breaker.allow()
    assert breaker.state == "open"


def test_outcomes_of_calls_started_before_opening_are_ignored(breaker: CircuitBreaker) -> None:
    trip(breaker)
    breaker.record(True)
    assert breaker.state == "open"


# ---------------------------------------------------------------- CircuitBreaker: half-open


def test_after_open_s_exactly_one_probe_is_let_through(breaker: CircuitBreaker, clock: ManualClock) -> None:
    trip(breaker)
    clock.advance(30.0)
    assert breaker.available()
    assert breaker.allow() is True
    assert breaker.state == "half_open"
    assert breaker.allow() is False
    assert not breaker.available()


def test_probe_success_closes_the_breaker_and_clears_the_window(breaker: CircuitBreaker, clock: ManualClock) -> None:
    trip(breaker)
    clock.advance(30.0)
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == "closed"
    assert breaker.current_failure_rate == 0.0
    for _ in range(breaker.min_calls - 1):  # a fresh window: old failures do not count
        breaker.record(False)
    assert breaker.state == "closed"


def test_probe_failure_opens_again_with_a_new_opened_at(breaker: CircuitBreaker, clock: ManualClock) -> None:
    trip(breaker)
    first_opened = breaker.opened_at
    clock.advance(31.0)
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"
    assert breaker.opened_at == first_opened + 31.0
    clock.advance(29.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_a_late_outcome_of_a_call_started_before_opening_is_not_taken_for_the_probe(
    breaker: CircuitBreaker, clock: ManualClock
) -> None:
    assert breaker.allow()  # a long call, admitted while closed, still running
    trip(breaker)
    clock.advance(30.0)
    assert breaker.allow()  # the probe
    assert breaker.granted_probe
    breaker.record(True, probe=False)  # ...but this is the long call finishing, not the probe
    assert breaker.state == "half_open"
    assert not breaker.allow()
    breaker.record(True, probe=True)  # the probe's own answer closes it
    assert breaker.state == "closed"


def test_released_probe_lets_another_probe_through(breaker: CircuitBreaker, clock: ManualClock) -> None:
    trip(breaker)
    clock.advance(30.0)
    assert breaker.allow()
    breaker.release_probe()  # e.g. the probe call was cancelled
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_on_change_is_called_with_old_new_and_failure_rate(
    breaker: CircuitBreaker, clock: ManualClock, changes: list
) -> None:
    trip(breaker)
    clock.advance(30.0)
    breaker.allow()
    breaker.record(False)
    clock.advance(30.0)
    breaker.allow()
    breaker.record(True)
    assert changes == [
        ("closed", "open", 1.0),
        ("open", "half_open", 1.0),
        ("half_open", "open", 1.0),
        ("open", "half_open", 1.0),
        ("half_open", "closed", 0.0),
    ]
    assert [(t, old, new) for t, old, new in breaker.transitions] == [
        (100.0, "closed", "open"),
        (130.0, "open", "half_open"),
        (130.0, "half_open", "open"),
        (160.0, "open", "half_open"),
        (160.0, "half_open", "closed"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_rate": 0}, {"failure_rate": 1.5}, {"min_calls": 0}, {"window": 3, "min_calls": 5}],
)
def test_invalid_breaker_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        CircuitBreaker(**kwargs)


# ---------------------------------------------------------------- RetryPolicy
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, r"RetryPolicy attempts=0 must be a whole number >= 1"),
        pytest.param({"attempts": "3"}, r"RetryPolicy attempts='3' must be a whole number >= 1", marks=pytest.mark.wrong_type_message),
        pytest.param({"attempts": 2.5}, r"RetryPolicy attempts=2.5", marks=pytest.mark.wrong_type_message),
        ({"base_s": -1}, r"RetryPolicy base_s=-1 must be a number of seconds >= 0"),
        ({"max_s": float("nan")}, r"RetryPolicy max_s=nan"),
        pytest.param({"max_retry_after_s": "10"}, r"RetryPolicy max_retry_after_s='10'", marks=pytest.mark.wrong_type_message),
    ],
)
def test_invalid_retry_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": -1}, r"timeout_s=-1 must be a number of seconds > 0 \(or None\)"),
        ({"timeout_s": 0}, r"timeout_s=0 must be a number of seconds > 0"),
        ({"hedge_after_s": -0.5}, r"hedge_after_s=-0.5 must be a number of seconds >= 0 \(or None\)"),
        pytest.param({"retry": 3}, r"retry=3 is not a RetryPolicy", marks=pytest.mark.wrong_type_message),
    ],
)
def test_invalid_router_timings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Router(ProviderRegistry([SimulatedProvider("gpt-4.1-mini")]), **kwargs)
    Router(ProviderRegistry([SimulatedProvider("gpt-4.1-mini")]), timeout_s=None, hedge_after_s=0)  # both allowed



ERR = ProviderUnavailable("boom", provider="p")


def test_retry_delay_grows_exponentially_up_to_max_s() -> None:
    policy = RetryPolicy(attempts=8, base_s=0.5, max_s=3.0, jitter=False)
    rng = random.Random(0)
    assert [policy.delay(n, ERR, rng) for n in range(1, 8)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]


def test_no_retry_once_attempts_are_used_up() -> None:
    policy = RetryPolicy(attempts=3, jitter=False)
    rng = random.Random(0)
    assert policy.delay(2, ERR, rng) is not None
    assert policy.delay(3, ERR, rng) is None
    assert RetryPolicy(attempts=1).delay(1, ERR, rng) is None


@pytest.mark.parametrize("attempt,cap", [(1, 0.2), (2, 0.4), (3, 0.8), (6, 5.0)])
def test_full_jitter_stays_within_zero_and_the_exponential_cap(attempt: int, cap: float) -> None:
    policy = RetryPolicy(attempts=10, base_s=0.2, max_s=5.0, jitter=True)
    rng = random.Random(42)
    delays = [policy.delay(attempt, ERR, rng) for _ in range(2_000)]
    assert all(0.0 <= d <= cap for d in delays)  # type: ignore[operator]
    assert min(delays) < 0.05 * cap and max(delays) > 0.95 * cap  # type: ignore[type-var,operator]


def test_jitter_is_reproducible_under_a_seeded_random() -> None:
    policy = RetryPolicy(attempts=10)
    a, b = random.Random(7), random.Random(7)
    assert [policy.delay(3, ERR, a) for _ in range(5)] == [policy.delay(3, ERR, b) for _ in range(5)]


def test_retry_after_is_honoured_exactly_even_with_jitter() -> None:
    policy = RetryPolicy(attempts=3, jitter=True, max_retry_after_s=10.0)
    err = RateLimited("slow down", provider="p", retry_after=2.5)
    assert policy.delay(1, err, random.Random(0)) == 2.5


def test_too_long_retry_after_means_no_retry_here() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after_s=10.0)
    assert policy.delay(1, RateLimited("later", retry_after=10.0), random.Random(0)) == 10.0
    assert policy.delay(1, RateLimited("much later", retry_after=10.5), random.Random(0)) is None


def test_rate_limited_without_retry_after_backs_off_exponentially() -> None:
    policy = RetryPolicy(attempts=3, base_s=0.2, jitter=False)
    assert policy.delay(2, RateLimited("429"), random.Random(0)) == 0.4


@pytest.mark.parametrize(
    "error",
    [ProviderError("bad request", status=400, retryable=False), NoProviderAvailable("nobody")],
    ids=["retryable=False", "NoProviderAvailable"],
)
def test_non_retryable_errors_are_not_retried(error: ProviderError) -> None:
    assert RetryPolicy(attempts=5).delay(1, error, random.Random(0)) is None
