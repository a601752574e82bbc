"""Fault injection: 10,000 requests through a router over flaky, slow and dead providers.

Everything runs on a :class:`ManualClock` moved forward by a driver task, so
timeouts, retries and breaker periods are simulated seconds and the test takes
a few real seconds.  Providers fail 30% of the time and hang 5% of the time
(the router's timeout cancels them); one provider is hard down.  Every request
must end with an answer or a :class:`LuminaError`, the dead provider's breaker
must open within its threshold and keep it out until its open period ends,
and after the outage is fixed the provider must be served again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from lumina_lab.clock import ManualClock
from lumina_lab.errors import LuminaError, ProviderError
from lumina_lab.providers import (
    ChatResponse,
    Pricing,
    ProviderRegistry,
    RetryPolicy,
    Router,
    SimulatedProvider,
)

pytestmark = pytest.mark.timeout(120)

N_REQUESTS = 10_000
CONCURRENCY = 200
TIMEOUT_S = 1.0  # router timeout (simulated seconds); hanging calls hang 30 s
# 0.8: the hung calls of the opening burst (5%) all time out at the same simulated instant, so a
# 20-call window briefly holds ~50% failures on healthy-but-flaky providers
BREAKER = {"window": 20, "min_calls": 5, "failure_rate": 0.8, "open_s": 1.0}
TICK_S = 0.01


class Fleet:
    """Four providers behind a round-robin router, on one manual clock, with breaker changes logged."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        flaky = {
            # answers take simulated time and errors come back at once: the breakers must judge each
            # error against the calls that started before it, or a 200-wide burst would trip them all
            "ttft_s": 0.2,
            "error_rate": 0.3,
            "timeout_rate": 0.05,
            "hang_s": 30.0,
            "clock": self.clock,
        }
        self.dead = SimulatedProvider("sim", id="dead", down=True, clock=self.clock, seed=0)
        self.flaky = [SimulatedProvider("sim", id=f"flaky-{i}", seed=i + 1, **flaky) for i in range(3)]
        for p in (self.dead, *self.flaky):
            p.pricing = Pricing(input_per_m=1.0, output_per_m=1.0)
        # (time, provider, old, new, dispatched calls, failed calls) at each breaker transition
        self.changes: list[tuple[float, str, str, str, int, int]] = []
        self.registry = ProviderRegistry(
            [self.dead, *self.flaky], clock=self.clock, breaker=BREAKER, on_breaker_change=self._changed
        )
        self.router = Router(
            self.registry,
            "round_robin",
            retry=RetryPolicy(attempts=2, base_s=0.01, max_s=0.05),
            timeout_s=TIMEOUT_S,
            clock=self.clock,
            seed=0,
        )

    def _changed(self, pid: str, old: str, new: str, rate: float) -> None:
        stats = self.registry[pid].stats
        self.changes.append((self.clock.now(), pid, old, new, stats.dispatched, stats.failures))

    def changes_of(self, pid: str) -> list[tuple[float, str, str, int, int]]:
        return [(t, old, new, dispatched, failed) for t, p, old, new, dispatched, failed in self.changes if p == pid]

    async def run(self, n: int, *, first: int = 0) -> list[ChatResponse | LuminaError]:
        """Send ``n`` requests (at most CONCURRENCY at once) while time moves; collect the outcomes."""
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> ChatResponse | LuminaError:
            async with sem:
                try:
                    return await self.router.ainvoke(f"request {i}", max_tokens=32)
                except LuminaError as exc:
                    return exc

        tasks = [asyncio.ensure_future(one(first + i)) for i in range(n)]
        driver = asyncio.ensure_future(self._drive(lambda: all(t.done() for t in tasks)))
        try:
            return await asyncio.wait_for(asyncio.gather(*tasks), timeout=90)
        finally:
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)

    async def _drive(self, finished: Callable[[], bool]) -> None:
        while not finished():
            for _ in range(4):
                await asyncio.sleep(0)
            self.clock.advance(TICK_S)
            assert self.clock.now() < 100_000, "simulated time ran away: something never finishes"

    async def advance(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK_S)):
            self.clock.advance(TICK_S)
            await asyncio.sleep(0)


@pytest.fixture(scope="module")
def outcome() -> dict[str, Any]:
    """Run the whole scenario once (outage, then recovery) and share what happened."""

    async def scenario() -> dict[str, Any]:
        fleet = Fleet()
        during = await fleet.run(N_REQUESTS)
        leftover_sleepers = fleet.clock.sleepers
        inflight_after_outage = {s.id: s.stats.inflight for s in fleet.registry}
        changes_during = fleet.changes_of("dead")
        dead_calls_during = fleet.dead.calls

        fleet.dead.down = False  # the outage is fixed
        await fleet.advance(BREAKER["open_s"])
        after = await fleet.run(400, first=N_REQUESTS)
        return {
            "fleet": fleet,
            "during": during,
            "after": after,
            "leftover_sleepers": leftover_sleepers,
            "inflight_after_outage": inflight_after_outage,
            "changes_during": changes_during,
            "dead_calls_during": dead_calls_during,
        }

    return asyncio.run(scenario())


# ---------------------------------------------------------------- every request ends


def test_every_request_ends_with_an_answer_or_a_lumina_error(outcome: dict[str, Any]) -> None:
    during = outcome["during"]
    assert len(during) == N_REQUESTS
    kinds = Counter(type(r).__name__ for r in during)
    answered = kinds["ChatResponse"]
    assert all(isinstance(r, (ChatResponse, LuminaError)) for r in during), kinds
    assert answered + sum(isinstance(r, LuminaError) for r in during) == N_REQUESTS


def test_most_requests_are_still_answered_thanks_to_retries_and_fallback(outcome: dict[str, Any]) -> None:
    answered = [r for r in outcome["during"] if isinstance(r, ChatResponse)]
    assert len(answered) >= 0.95 * N_REQUESTS
    assert all(r.provider != "dead" for r in answered)
    assert any(len(r.tried) > 1 for r in answered)  # some needed a fallback
    assert any(r.attempts > 1 for r in answered)  # some needed a retry


def test_failed_requests_report_provider_errors(outcome: dict[str, Any]) -> None:
    failed = [r for r in outcome["during"] if isinstance(r, LuminaError)]
    assert all(isinstance(r, ProviderError) for r in failed)


def test_nothing_is_left_hanging(outcome: dict[str, Any]) -> None:
    fleet: Fleet = outcome["fleet"]
    assert outcome["leftover_sleepers"] == 0  # every hanging call was cancelled by its timeout
    assert set(outcome["inflight_after_outage"].values()) == {0}
    assert [p.inflight for p in (fleet.dead, *fleet.flaky)] == [0, 0, 0, 0]
    assert sum(p.cancelled for p in fleet.flaky) > 0  # hangs happened and were cancelled


# ---------------------------------------------------------------- the dead provider's breaker


def test_the_dead_providers_breaker_opens_within_its_threshold(outcome: dict[str, Any]) -> None:
    fleet: Fleet = outcome["fleet"]
    breaker = fleet.registry["dead"].breaker
    t, old, new = breaker.transitions[0]
    assert (old, new) == ("closed", "open")
    opened = outcome["changes_during"][0]
    assert opened[1:3] == ("closed", "open")
    failed_when_opened = opened[4]
    assert failed_when_opened <= BREAKER["min_calls"]
    assert t < 1.0  # within the first simulated second of the outage


def test_an_open_breaker_keeps_the_dead_provider_out_until_open_s_has_passed(outcome: dict[str, Any]) -> None:
    changes = outcome["changes_during"]
    opens = [i for i, c in enumerate(changes) if c[2] == "open"]
    assert len(opens) >= 2  # it opened, was probed after open_s, and opened again
    for i in opens:
        if i + 1 == len(changes):
            continue
        t_open, _, _, dispatched_at_open, _ = changes[i]
        t_half, old, new, dispatched_at_half_open, _ = changes[i + 1]
        assert (old, new) == ("open", "half_open")
        assert t_half - t_open >= BREAKER["open_s"]
        assert dispatched_at_half_open == dispatched_at_open  # no call while open


def test_each_half_open_period_lets_exactly_one_probe_through(outcome: dict[str, Any]) -> None:
    changes = outcome["changes_during"]
    probes = 0
    for before, after in itertools.pairwise(changes):
        if before[2] == "half_open":
            assert after[1:3] == ("half_open", "open")  # still down: the probe failed
            assert after[3] - before[3] == 1
            probes += 1
    assert probes >= 1
    fleet: Fleet = outcome["fleet"]
    # everything the dead provider received: the first calls before the breaker opened, then one per probe
    assert outcome["dead_calls_during"] == changes[0][3] + probes
    assert fleet.registry["dead"].stats.dispatched >= outcome["dead_calls_during"]


# ---------------------------------------------------------------- recovery


def test_after_the_outage_the_breaker_closes_and_the_provider_serves_again(outcome: dict[str, Any]) -> None:
    fleet: Fleet = outcome["fleet"]
    breaker = fleet.registry["dead"].breaker
    assert breaker.state == "closed"
    assert breaker.transitions[-1][1:] == ("half_open", "closed")
    after = outcome["after"]
    assert len(after) == 400
    served = Counter(r.provider for r in after if isinstance(r, ChatResponse))
    assert served["dead"] >= 50  # its round-robin share again
    assert fleet.registry["dead"].stats.successes == served["dead"]
