"""Router: retries with exact timing, fallback, capability and policy filtering, breakers,
timeouts, hedging, streaming with mid-stream failover, events, and budgets."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from lumina_lab.clock import WALL, Clock, ManualClock
from lumina_lab.errors import (
    BudgetExceeded,
    NoProviderAvailable,
    PolicyDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ValidationError,
)
from lumina_lab.events import InProcessBus
from lumina_lab.providers import (
    Budget,
    BudgetManager,
    Capabilities,
    ChatRequest,
    ChatResponse,
    CostLedger,
    Limits,
    Pricing,
    ProviderRegistry,
    RetryPolicy,
    Router,
    SimulatedProvider,
    StreamChunk,
    Usage,
    predict_cost,
)

pytestmark = pytest.mark.timeout(60)

OK = "ok"


class Scripted:
    """A hand-written provider following the Provider protocol.

    Each call takes the next step of ``script`` (an exception to raise, or ``OK``);
    when the script is used up every call succeeds.  ``delay`` seconds are slept on
    ``clock`` before answering; a call cancelled meanwhile sets ``cancelled``.
    """

    def __init__(
        self,
        pid: str,
        script: list[Any] | None = None,
        *,
        price: float = 1.0,
        delay: float = 0.0,
        clock: Clock = WALL,
        words: tuple[str, ...] = ("one ", "two ", "three "),
    ) -> None:
        self.id = pid
        self.model = f"{pid}-model"
        self.capabilities = Capabilities()
        self.pricing = Pricing(input_per_m=price, output_per_m=price)
        self.limits = Limits()
        self.script = list(script or [])
        self.delay = delay
        self.clock = clock
        self.words = words
        self.calls = 0
        self.inflight = 0
        self.max_inflight = 0
        self.cancelled = False
        self.requests: list[ChatRequest] = []

    def _step(self) -> Any:
        return self.script.pop(0) if self.script else OK

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        self.requests.append(request)
        step = self._step()
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.delay:
                await self.clock.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.inflight -= 1
        if isinstance(step, BaseException):
            raise step
        return ChatResponse(
            text=f"answer from {self.id}",
            provider=self.id,
            model=self.model,
            usage=Usage(10, 5),
            cost_usd=self.pricing.cost(10, 5),
        )

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        self.requests.append(request)
        step = self._step()
        self.inflight += 1
        try:
            if self.delay:
                await self.clock.sleep(self.delay)
            if isinstance(step, BaseException):
                raise step
            for i, word in enumerate(self.words):
                yield StreamChunk(text=word, provider=self.id, index=i)
            yield StreamChunk(
                text="", provider=self.id, index=len(self.words), done=True, usage=Usage(10, len(self.words))
            )
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled = True
            raise
        finally:
            self.inflight -= 1


def unavailable(pid: str = "p") -> ProviderUnavailable:
    return ProviderUnavailable(f"{pid} answered 503", provider=pid, status=503)


def make_router(*providers: Any, clock: Clock = WALL, breaker: dict | None = None, **kw: Any) -> Router:
    registry = ProviderRegistry(providers, clock=clock, breaker=breaker)
    kw.setdefault("timeout_s", None)
    return Router(registry, kw.pop("strategy", "cheapest"), clock=clock, **kw)


async def until(condition: Callable[[], bool], *, spins: int = 10_000) -> None:
    """Let other tasks run until ``condition()`` holds (fails instead of hanging)."""
    for _ in range(spins):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(autoadvance=True)


# ---------------------------------------------------------------- retries


async def test_retries_sleep_as_the_retry_policy_says_then_succeed(clock: ManualClock) -> None:
    p = Scripted("p", [unavailable(), unavailable(), OK])
    router = make_router(p, clock=clock, retry=RetryPolicy(attempts=3, base_s=0.5, jitter=False))
    response = await router.ainvoke("hello")
    assert clock.slept == [0.5, 1.0]
    assert clock.now() == 1.5
    assert response.attempts == 3
    assert p.calls == 3
    assert response.tried == ["p"]


async def test_jittered_retry_delays_are_within_the_policy_bounds(clock: ManualClock) -> None:
    p = Scripted("p", [unavailable(), unavailable(), unavailable(), OK])
    router = make_router(p, clock=clock, retry=RetryPolicy(attempts=4, base_s=0.5, jitter=True), seed=3)
    await router.ainvoke("hello")
    assert len(clock.slept) == 3
    assert all(0 <= d <= cap for d, cap in zip(clock.slept, [0.5, 1.0, 2.0], strict=True))


async def test_rate_limited_with_retry_after_sleeps_exactly_that_long(clock: ManualClock) -> None:
    p = Scripted("p", [RateLimited("429", provider="p", status=429, retry_after=2.5), OK])
    router = make_router(p, clock=clock, retry=RetryPolicy(attempts=2, jitter=True))
    response = await router.ainvoke("hello")
    assert clock.slept == [2.5]
    assert response.attempts == 2


async def test_a_non_provider_exception_counts_as_a_provider_failure(clock: ManualClock) -> None:
    p = Scripted("p", [RuntimeError("socket closed"), OK])
    router = make_router(p, clock=clock, retry=RetryPolicy(attempts=2, jitter=False))
    response = await router.ainvoke("hello")
    assert response.attempts == 2
    assert router.registry["p"].stats.failures == 1


# ---------------------------------------------------------------- fallback


async def test_falls_back_to_the_next_provider_when_retries_are_exhausted(clock: ManualClock) -> None:
    cheap = Scripted("cheap", [unavailable("cheap")] * 5, price=0.1)
    dear = Scripted("dear", price=10)
    router = make_router(cheap, dear, clock=clock, retry=RetryPolicy(attempts=2, base_s=0.2, jitter=False))
    response = await router.ainvoke("hello")
    assert response.provider == "dear"
    assert response.tried == ["cheap", "dear"]
    assert response.attempts == 1
    assert (cheap.calls, dear.calls) == (2, 1)
    assert clock.slept == [0.2]


async def test_a_non_retryable_error_skips_retries_but_still_falls_back(clock: ManualClock) -> None:
    bad_request = ProviderError("cheap: 400 bad request", provider="cheap", status=400, retryable=False)
    cheap = Scripted("cheap", [bad_request], price=0.1)
    dear = Scripted("dear", price=10)
    router = make_router(cheap, dear, clock=clock, retry=RetryPolicy(attempts=5))
    response = await router.ainvoke("hello")
    assert (response.provider, response.tried) == ("dear", ["cheap", "dear"])
    assert cheap.calls == 1
    assert clock.slept == []


async def test_too_long_retry_after_falls_back_at_once(clock: ManualClock) -> None:
    cheap = Scripted("cheap", [RateLimited("429", provider="cheap", retry_after=600)], price=0.1)
    dear = Scripted("dear", price=10)
    router = make_router(cheap, dear, clock=clock, retry=RetryPolicy(attempts=3, max_retry_after_s=10))
    response = await router.ainvoke("hello")
    assert response.provider == "dear"
    assert clock.slept == []


async def test_when_every_provider_fails_the_error_lists_each_providers_error(clock: ManualClock) -> None:
    a = Scripted("a", [unavailable("a")], price=0.1)
    b = Scripted("b", [RateLimited("b: slow down", provider="b", retry_after=None)], price=1)
    router = make_router(a, b, clock=clock, retry=RetryPolicy(attempts=1))
    with pytest.raises(NoProviderAvailable) as info:
        await router.ainvoke("hello")
    message = info.value.message
    assert "a: ProviderUnavailable: a answered 503" in message
    assert "b: RateLimited: b: slow down" in message
    assert [type(e) for e in info.value.errors] == [ProviderUnavailable, RateLimited]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- filtering


async def test_no_provider_with_the_needed_capability_names_the_capability() -> None:
    router = make_router(Scripted("text-only"))
    with pytest.raises(NoProviderAvailable, match=r"no registered provider offers \['vision'\]") as info:
        await router.ainvoke("describe this picture", needs={"vision"})
    assert "text-only" in (info.value.hint or "")


async def test_context_and_language_requirements_appear_in_the_error() -> None:
    router = make_router(Scripted("small"))
    with pytest.raises(NoProviderAvailable, match="context window >= 1000000 and language 'ja'"):
        await router.ainvoke("x", min_context=1_000_000, language="ja")


async def test_a_policy_hook_vetoes_a_provider() -> None:
    cheap, dear = Scripted("cheap", price=0.1), Scripted("dear", price=10)
    router = make_router(cheap, dear, policy=lambda request, state: state.id != "cheap")
    assert router.plan(ChatRequest("x")).excluded == {"cheap": "denied by policy"}
    response = await router.ainvoke("x")
    assert response.provider == "dear" and cheap.calls == 0


async def test_policy_denied_raised_in_the_hook_is_recorded_as_the_reason() -> None:
    def policy(request: ChatRequest, state: Any) -> bool:
        if state.id == "cheap" and request.project == "secret":
            raise PolicyDenied("project 'secret' may not leave the EU")
        return True

    router = make_router(Scripted("cheap", price=0.1), Scripted("dear", price=10), policy=policy)
    decision = router.plan(ChatRequest("x", project="secret"))
    assert decision.excluded == {"cheap": "project 'secret' may not leave the EU"}
    assert decision.ranked == ["dear"]
    assert router.plan(ChatRequest("x", project="public")).ranked == ["cheap", "dear"]


async def test_when_policy_vetoes_everyone_the_error_gives_the_reasons() -> None:
    router = make_router(Scripted("a"), policy=lambda request, state: False)
    with pytest.raises(NoProviderAvailable, match="a: denied by policy"):
        await router.ainvoke("x")


async def test_an_open_breaker_excludes_a_provider(clock: ManualClock) -> None:
    cheap, dear = Scripted("cheap", price=0.1), Scripted("dear", price=10)
    router = make_router(cheap, dear, clock=clock, breaker={"min_calls": 1})
    router.registry["cheap"].breaker.record(False)
    decision = router.plan(ChatRequest("x"))
    assert decision.excluded == {"cheap": "circuit open"}
    assert decision.ranked == ["dear"]
    assert decision.chosen == "dear"
    assert (await router.ainvoke("x")).provider == "dear"
    assert cheap.calls == 0


async def test_plan_does_not_call_any_provider() -> None:
    a = Scripted("a")
    router = make_router(a)
    decision = router.plan(ChatRequest("x", max_tokens=100))
    assert decision.ranked == ["a"]
    assert decision.predicted_cost_usd["a"] == pytest.approx(predict_cost(a.pricing, ChatRequest("x", max_tokens=100)))
    assert a.calls == 0 and router.registry["a"].stats.dispatched == 0


def test_rank_is_the_plans_ranking_with_or_without_exclusions() -> None:
    clock = ManualClock()
    router = make_router(Scripted("cheap", price=0.1), Scripted("dear", price=10), clock=clock, breaker={"min_calls": 1})
    request = ChatRequest("x")
    ids = lambda states: [s.id for s in states]  # noqa: E731
    assert ids(router.rank(request)) == router.plan(request).ranked == ["cheap", "dear"]
    router.registry["cheap"].breaker.record(False)  # opens: excluded, which only the full pass words
    assert ids(router.rank(request)) == router.plan(request).ranked == ["dear"]


@pytest.mark.wrong_type_message
@pytest.mark.parametrize("method", ["plan", "rank"])
def test_planning_something_that_is_not_a_request_says_what_to_pass(method: str) -> None:
    router = make_router(Scripted("a"))
    with pytest.raises(ValidationError, match=r"route a ChatRequest, not str"):
        getattr(router, method)("x")


async def test_requests_wait_for_a_slot_instead_of_exceeding_max_concurrency() -> None:
    clock = ManualClock()
    p = Scripted("p", delay=1.0, clock=clock)
    p.limits = Limits(max_concurrency=2)
    router = make_router(p, clock=clock)
    tasks = [asyncio.create_task(router.ainvoke(f"q{i}")) for i in range(5)]
    await until(lambda: clock.sleepers == 2)
    assert (p.calls, p.inflight) == (2, 2)  # three requests wait
    clock.advance(1.0)
    await until(lambda: p.calls == 4 and clock.sleepers == 2)
    clock.advance(1.0)
    await until(lambda: p.calls == 5 and clock.sleepers == 1)
    clock.advance(1.0)
    responses = await asyncio.gather(*tasks)
    assert [r.provider for r in responses] == ["p"] * 5
    assert p.max_inflight == 2
    assert router.registry["p"].stats.inflight == 0


# ---------------------------------------------------------------- timeouts


async def test_timeout_on_a_manual_clock_cancels_the_provider_call() -> None:
    clock = ManualClock()
    slow = Scripted("slow", delay=10.0, clock=clock)
    router = make_router(slow, clock=clock, timeout_s=1.0, retry=RetryPolicy(attempts=1))
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: clock.sleepers == 2)  # the call and the timeout
    clock.advance(1.0)
    with pytest.raises(NoProviderAvailable, match=r"no answer within 1\.0s") as info:
        await task
    assert isinstance(info.value.errors[0], ProviderTimeout)  # type: ignore[attr-defined]
    assert slow.cancelled
    stats = router.registry["slow"].stats
    assert (stats.failures, stats.inflight) == (1, 0)


async def test_request_timeout_overrides_the_router_timeout() -> None:
    clock = ManualClock()
    slow = Scripted("slow", delay=10.0, clock=clock)
    router = make_router(slow, clock=clock, timeout_s=60.0, retry=RetryPolicy(attempts=1))
    task = asyncio.create_task(router.ainvoke("x", timeout_s=2.0))
    await until(lambda: clock.sleepers == 2)
    clock.advance(2.0)
    with pytest.raises(NoProviderAvailable, match=r"no answer within 2\.0s"):
        await task


async def test_an_answer_before_the_timeout_on_a_manual_clock_is_returned() -> None:
    clock = ManualClock()
    router = make_router(Scripted("p", delay=0.5, clock=clock), clock=clock, timeout_s=1.0)
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: clock.sleepers == 2)
    clock.advance(0.5)
    response = await task
    assert response.latency_s == 0.5


async def test_timeout_on_the_wall_clock() -> None:
    slow = Scripted("slow", delay=5.0)
    router = make_router(slow, timeout_s=0.05, retry=RetryPolicy(attempts=1))
    started = time.monotonic()
    with pytest.raises(NoProviderAvailable) as info:
        await router.ainvoke("x")
    assert time.monotonic() - started < 1.0
    assert isinstance(info.value.errors[0], ProviderTimeout)  # type: ignore[attr-defined]
    assert slow.cancelled


async def test_a_timed_out_provider_falls_back_to_the_next() -> None:
    slow = Scripted("slow", delay=5.0, price=0.1)
    quick = Scripted("quick", price=10)
    router = make_router(slow, quick, timeout_s=0.05, retry=RetryPolicy(attempts=1))
    response = await router.ainvoke("x")
    assert (response.provider, response.tried) == ("quick", ["slow", "quick"])


# ---------------------------------------------------------------- hedging


@pytest.fixture
def manual() -> ManualClock:
    return ManualClock()


async def test_a_slow_primary_gets_hedged_and_the_first_answer_wins(manual: ManualClock) -> None:
    primary = Scripted("primary", delay=5.0, clock=manual, price=0.1)
    backup = Scripted("backup", delay=1.0, clock=manual, price=10)
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5)
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: manual.sleepers == 2)  # primary call + hedge timer
    assert backup.calls == 0
    manual.advance(0.5)
    await until(lambda: backup.calls == 1 and manual.sleepers == 2)
    manual.advance(1.0)
    response = await task
    assert response.provider == "backup"
    assert response.hedged is True
    assert response.tried == ["primary", "backup"]
    assert primary.cancelled
    assert router.registry["primary"].stats.inflight == 0
    assert manual.now() == 1.5


async def test_the_primary_can_still_win_after_the_hedge_is_launched(manual: ManualClock) -> None:
    primary = Scripted("primary", delay=1.0, clock=manual, price=0.1)
    backup = Scripted("backup", delay=5.0, clock=manual, price=10)
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5)
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: manual.sleepers == 2)
    manual.advance(0.5)
    await until(lambda: backup.calls == 1)
    manual.advance(0.5)
    response = await task
    assert (response.provider, response.hedged) == ("primary", True)
    assert backup.cancelled


async def test_a_fast_primary_is_not_hedged(manual: ManualClock) -> None:
    primary = Scripted("primary", delay=0.2, clock=manual, price=0.1)
    backup = Scripted("backup", delay=0.1, clock=manual, price=10)
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5)
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: manual.sleepers == 2)
    manual.advance(0.2)
    response = await task
    assert (response.provider, response.hedged, response.tried) == ("primary", False, ["primary"])
    assert backup.calls == 0
    await until(lambda: manual.sleepers == 0)  # the hedge timer was cancelled


async def test_a_primary_failing_before_the_hedge_delay_falls_back(manual: ManualClock) -> None:
    bad = ProviderError("400", provider="primary", retryable=False)
    primary = Scripted("primary", [bad], clock=manual, price=0.1)
    backup = Scripted("backup", clock=manual, price=10)
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5)
    response = await router.ainvoke("x")
    assert (response.provider, response.hedged, response.tried) == ("backup", False, ["primary", "backup"])


async def test_when_the_primary_fails_before_the_hedge_and_the_backup_fails_each_error_is_kept(
    manual: ManualClock,
) -> None:
    primary = Scripted("primary", [ProviderError("primary: 400", provider="primary", retryable=False)], price=0.1)
    backup = Scripted("backup", [ProviderError("backup: 400", provider="backup", retryable=False)], price=10)
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5)
    with pytest.raises(NoProviderAvailable) as info:
        await router.ainvoke("x")
    assert "primary: ProviderError: primary: 400" in info.value.message
    assert "backup: ProviderError: backup: 400" in info.value.message


async def test_when_both_hedged_calls_fail_each_provider_gets_its_own_error(manual: ManualClock) -> None:
    primary = Scripted(
        "primary",
        [ProviderError("primary: 400", provider="primary", retryable=False)],
        delay=1.0,
        clock=manual,
        price=0.1,
    )
    backup = Scripted(
        "backup", [ProviderError("backup: 400", provider="backup", retryable=False)], delay=1.0, clock=manual
    )
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5)
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: manual.sleepers == 2)
    manual.advance(0.5)
    await until(lambda: backup.calls == 1)
    manual.advance(1.0)
    with pytest.raises(NoProviderAvailable) as info:
        await task
    assert "primary: ProviderError: primary: 400" in info.value.message
    assert "backup: ProviderError: backup: 400" in info.value.message


# ---------------------------------------------------------------- streaming


async def collect(stream: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


async def test_stream_yields_chunks_in_order_then_a_done_chunk() -> None:
    router = make_router(SimulatedProvider("gpt-4.1-mini", id="sim", output_tokens=20))
    chunks = await collect(router.astream("tell me"))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(not c.done for c in chunks[:-1])
    last = chunks[-1]
    assert last.done and last.finish_reason == "stop"
    assert last.usage is not None and last.usage.output_tokens == len(chunks) - 1
    assert {c.provider for c in chunks} == {"sim"}
    assert all(c.failover_from is None for c in chunks)


async def test_stream_fails_over_mid_answer_to_the_next_provider() -> None:
    breaking = SimulatedProvider("gpt-4.1-mini", id="breaking", break_rate=1.0, output_tokens=30, seed=1)
    healthy = SimulatedProvider("gpt-4.1", id="healthy", output_tokens=10)
    router = make_router(breaking, healthy)
    chunks = await collect(router.astream("tell me a story"))
    providers = [c.provider for c in chunks]
    switch = providers.index("healthy")
    assert switch >= 1 and providers[:switch] == ["breaking"] * switch
    assert providers[switch:] == ["healthy"] * (len(chunks) - switch)
    assert chunks[switch].failover_from == "breaking"
    assert all(c.failover_from is None for c in chunks if c is not chunks[switch])
    assert chunks[-1].done and chunks[-1].provider == "healthy"
    assert router.registry["breaking"].stats.failures == 1


async def test_the_failover_provider_is_asked_to_continue_the_partial_answer() -> None:
    breaking = Scripted("breaking", price=0.1)

    async def broken_stream(request: ChatRequest) -> AsyncIterator[StreamChunk]:
        breaking.calls += 1
        yield StreamChunk("Once ", "breaking", 0)
        yield StreamChunk("upon ", "breaking", 1)
        raise ProviderUnavailable("connection reset", provider="breaking")

    breaking.astream = broken_stream  # type: ignore[method-assign]
    healthy = Scripted("healthy", price=10, words=("a ", "time."))
    router = make_router(breaking, healthy)
    request = ChatRequest("tell me a story", project="tales")
    chunks = await collect(router.astream(request))
    assert "".join(c.text for c in chunks) == "Once upon a time."
    follow_up = healthy.requests[0]
    assert (follow_up.id, follow_up.project) == (request.id, "tales")
    assert follow_up.messages[0].content == "tell me a story"  # type: ignore[union-attr]
    assert follow_up.messages[-2].role == "assistant"  # type: ignore[union-attr]
    assert follow_up.messages[-2].content == "Once upon "  # type: ignore[union-attr]
    assert follow_up.messages[-1].role == "user"  # type: ignore[union-attr]


async def test_consumer_stopping_early_cancels_the_provider_stream() -> None:
    sim = SimulatedProvider("gpt-4.1-mini", id="sim", output_tokens=50)
    budgets = BudgetManager([Budget(limit_usd=1.0)])
    router = make_router(sim, budgets=budgets)
    async with contextlib.aclosing(router.astream("tell me")) as stream:
        async for chunk in stream:
            if chunk.index == 2:
                break
    assert sim.cancelled == 1
    assert sim.inflight == 0
    assert router.registry["sim"].stats.inflight == 0
    assert budgets.status()["held_usd"].sum() == 0


async def test_consumer_breaking_out_of_async_for_releases_the_call_once_the_stream_is_dropped() -> None:
    sim = SimulatedProvider("gpt-4.1-mini", id="sim", output_tokens=50)
    router = make_router(sim)
    stream = router.astream("tell me")
    async for _chunk in stream:
        break
    del stream, _chunk  # the asyncio asyncgen finalizer schedules aclose()
    await until(lambda: sim.inflight == 0)
    assert sim.cancelled == 1
    assert router.registry["sim"].stats.inflight == 0


async def test_a_stream_that_hangs_before_its_first_chunk_times_out_and_fails_over() -> None:
    hung = Scripted("hung", delay=30.0, price=0.1)
    healthy = Scripted("healthy", price=10)
    router = make_router(hung, healthy, timeout_s=0.05)
    chunks = await asyncio.wait_for(collect(router.astream("x")), 1.0)
    assert {c.provider for c in chunks} == {"healthy"}
    assert chunks[0].failover_from == "hung"
    assert hung.cancelled
    assert router.registry["hung"].stats.failures == 1


async def test_a_stream_that_stalls_between_chunks_times_out_on_a_manual_clock() -> None:
    clock = ManualClock()
    stalling = Scripted("stalling", price=0.1, clock=clock)

    async def stalled_stream(request: ChatRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk("Once ", "stalling", 0)
        try:
            await clock.sleep(30.0)
        except asyncio.CancelledError:
            stalling.cancelled = True
            raise
        yield StreamChunk("never", "stalling", 1)

    stalling.astream = stalled_stream  # type: ignore[method-assign]
    healthy = Scripted("healthy", price=10, words=("upon ", "a time."), clock=clock)
    router = make_router(stalling, healthy, clock=clock, timeout_s=1.0)
    task = asyncio.create_task(collect(router.astream("x")))
    await until(lambda: clock.sleepers >= 2)  # the stalled provider and the timeout
    clock.advance(1.0)
    chunks = await asyncio.wait_for(task, 5.0)
    assert "".join(c.text for c in chunks) == "Once upon a time."
    assert [c.failover_from for c in chunks if c.failover_from] == ["stalling"]
    assert stalling.cancelled


# ---------------------------------------------------------------- events


class Recorder:
    """A store-less subscriber that keeps every event it receives."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type.removeprefix("provider.") for e in self.events]

    def of(self, event_type: str) -> list[Any]:
        return [e for e in self.events if e.type == event_type]


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus()
    yield bus
    await bus.close()


@pytest.fixture
def recorder(bus: InProcessBus) -> Recorder:
    rec = Recorder()
    bus.subscribe("provider.*", rec, name="provider-events")
    bus.subscribe("budget.*", rec, name="budget-events")
    return rec


async def settled(bus: InProcessBus) -> None:
    for _ in range(5):  # events published from create_task (breaker, budget) need a turn
        await asyncio.sleep(0)
    await bus.drain()


async def test_a_successful_call_emits_routed_started_finished(bus: InProcessBus, recorder: Recorder) -> None:
    router = make_router(Scripted("p"), bus=bus)
    response = await router.ainvoke("x", project="demo")
    await settled(bus)
    assert recorder.types == ["request.routed", "call.started", "call.finished"]
    routed, started, finished = recorder.events
    assert routed.chosen == "p" and routed.candidates == ["p"] and routed.project == "demo"
    assert started.attempt == 1 and started.provider == "p"
    assert finished.cost_usd == response.cost_usd and finished.request_id == response.request_id


async def test_a_retry_emits_failed_and_retry_scheduled(
    bus: InProcessBus, recorder: Recorder, clock: ManualClock
) -> None:
    router = make_router(Scripted("p", [unavailable()]), clock=clock, bus=bus, retry=RetryPolicy(jitter=False))
    await router.ainvoke("x")
    await settled(bus)
    assert recorder.types == [
        "request.routed",
        "call.started",
        "call.failed",
        "retry.scheduled",
        "call.started",
        "call.finished",
    ]
    failed = recorder.of("provider.call.failed")[0]
    assert (failed.error_type, failed.retryable, failed.attempt) == ("ProviderUnavailable", True, 1)
    retry = recorder.of("provider.retry.scheduled")[0]
    assert (retry.attempt, retry.delay_s, retry.reason) == (2, 0.2, "ProviderUnavailable")


async def test_a_fallback_emits_fallback_used(bus: InProcessBus, recorder: Recorder, clock: ManualClock) -> None:
    router = make_router(
        Scripted("a", [unavailable("a")], price=0.1),
        Scripted("b", price=10),
        clock=clock,
        bus=bus,
        retry=RetryPolicy(attempts=1),
    )
    await router.ainvoke("x")
    await settled(bus)
    assert recorder.types == [
        "request.routed",
        "call.started",
        "call.failed",
        "fallback.used",
        "call.started",
        "call.finished",
    ]
    used = recorder.of("provider.fallback.used")[0]
    assert (used.failed, used.next) == ("a", "b")
    assert used.reason == "ProviderUnavailable: a answered 503"


async def test_hedging_emits_hedge_launched(bus: InProcessBus, recorder: Recorder, manual: ManualClock) -> None:
    primary = Scripted("primary", delay=5.0, clock=manual, price=0.1)
    backup = Scripted("backup", delay=1.0, clock=manual, price=10)
    router = make_router(primary, backup, clock=manual, hedge_after_s=0.5, bus=bus)
    task = asyncio.create_task(router.ainvoke("x"))
    await until(lambda: manual.sleepers == 2)
    manual.advance(0.5)
    await until(lambda: backup.calls == 1)
    manual.advance(1.0)
    await task
    await settled(bus)
    hedge = recorder.of("provider.hedge.launched")
    assert [(h.primary, h.hedge, h.after_s) for h in hedge] == [("primary", "backup", 0.5)]
    finished = recorder.of("provider.call.finished")
    assert [f.provider for f in finished] == ["backup"]


async def test_breaker_transitions_emit_breaker_changed(
    bus: InProcessBus, recorder: Recorder, clock: ManualClock
) -> None:
    p = Scripted("p", [unavailable()] * 2)
    router = make_router(p, clock=clock, bus=bus, retry=RetryPolicy(attempts=1), breaker={"min_calls": 2, "open_s": 10})
    for _ in range(2):
        with pytest.raises(NoProviderAvailable):
            await router.ainvoke("x")
    clock.advance(10)
    await router.ainvoke("x")  # the half-open probe succeeds
    await settled(bus)
    changes = recorder.of("provider.breaker.changed")
    assert [(c.provider, c.old, c.new) for c in changes] == [
        ("p", "closed", "open"),
        ("p", "open", "half_open"),
        ("p", "half_open", "closed"),
    ]
    assert changes[0].failure_rate == 1.0


async def test_a_stream_failover_emits_stream_failover(bus: InProcessBus, recorder: Recorder) -> None:
    breaking = SimulatedProvider("gpt-4.1-mini", id="breaking", break_rate=1.0, output_tokens=30)
    healthy = SimulatedProvider("gpt-4.1", id="healthy", output_tokens=10)
    router = make_router(breaking, healthy, bus=bus)
    chunks = await collect(router.astream("x"))
    await settled(bus)
    assert recorder.types == ["call.started", "call.failed", "stream.failover", "call.started", "call.finished"]
    failover = recorder.of("provider.stream.failover")[0]
    received = sum(len(c.text) for c in chunks if c.provider == "breaking")
    assert (failover.failed, failover.next, failover.chars_received) == ("breaking", "healthy", received)
    assert failover.reason.startswith("StreamBroken")
    assert recorder.of("provider.call.finished")[0].stream is True


async def test_no_events_are_built_without_subscribers(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = InProcessBus()
    bus.subscribe("memory.*", Recorder())  # a subscriber, but not to provider events
    built: list[str] = []
    from lumina_lab.providers import events as ev

    for cls in (ev.RequestRouted, ev.CallStarted, ev.CallFinished):
        original = cls.__init__

        def spy(self: Any, *a: Any, _orig: Any = original, _name: str = cls.__name__, **kw: Any) -> None:
            built.append(_name)
            _orig(self, *a, **kw)

        monkeypatch.setattr(cls, "__init__", spy)
    router = make_router(Scripted("p"), bus=bus)
    await router.ainvoke("x")
    assert built == []
    await bus.close()


# ---------------------------------------------------------------- budgets


def cost_of_one(price: float = 1.0, **request: Any) -> float:
    return predict_cost(Pricing(input_per_m=price, output_per_m=price), ChatRequest("x", **request))


async def test_a_hard_budget_refuses_before_calling_the_provider() -> None:
    p = Scripted("p")
    predicted = cost_of_one(max_tokens=100)
    actual = p.pricing.cost(10, 5)
    budgets = BudgetManager([Budget(limit_usd=predicted + actual / 2)])
    router = make_router(p, budgets=budgets)
    await router.ainvoke("x", max_tokens=100)
    assert p.calls == 1
    with pytest.raises(BudgetExceeded, match="would be exceeded") as info:
        await router.ainvoke("x", max_tokens=100)
    assert p.calls == 1  # refused before the call
    assert "max_tokens" in (info.value.hint or "")
    assert budgets.spent() == pytest.approx(actual)


async def test_a_budget_refusal_emits_budget_exceeded(bus: InProcessBus, recorder: Recorder) -> None:
    router = make_router(Scripted("p"), budgets=BudgetManager([Budget(limit_usd=0.0)]), bus=bus)
    with pytest.raises(BudgetExceeded):
        await router.ainvoke("x", project="demo")
    await settled(bus)
    exceeded = recorder.of("budget.exceeded")
    assert len(exceeded) == 1 and exceeded[0].project == "demo"
    assert recorder.of("provider.call.started") == []


async def test_a_soft_warning_is_emitted_once_when_spend_crosses_soft_ratio(
    bus: InProcessBus, recorder: Recorder
) -> None:
    p = Scripted("p")
    actual = p.pricing.cost(10, 5)  # 15e-6 per call
    limit = 10 * actual + cost_of_one(max_tokens=10)  # room for 10 calls; warn from 0.5 * limit
    budgets = BudgetManager([Budget(limit_usd=limit, soft_ratio=0.5)])
    router = make_router(p, budgets=budgets, bus=bus)
    warnings_after_each_call = []
    for _ in range(8):
        await router.ainvoke("x", max_tokens=10)
        await settled(bus)
        warnings_after_each_call.append(len(recorder.of("budget.warning")))
    crossing_call = math.ceil(0.5 * limit / actual)
    assert crossing_call == 6
    assert warnings_after_each_call == [0] * 5 + [1] * 3
    warning = recorder.of("budget.warning")[0]
    assert warning.spent_usd == pytest.approx(6 * actual)
    assert warning.limit_usd == limit
    assert warning.budget == "all/total"


async def test_money_is_held_during_a_call_and_released_when_it_fails() -> None:
    clock = ManualClock()
    p = Scripted("p", [unavailable()], delay=1.0, clock=clock)
    budgets = BudgetManager([Budget(limit_usd=1.0)])
    router = make_router(p, clock=clock, budgets=budgets, retry=RetryPolicy(attempts=1))
    task = asyncio.create_task(router.ainvoke("x", max_tokens=100))
    await until(lambda: clock.sleepers == 1)
    assert budgets.status()["held_usd"].sum() == pytest.approx(cost_of_one(max_tokens=100))
    clock.advance(1.0)
    with pytest.raises(NoProviderAvailable):
        await task
    status = budgets.status()
    assert status["held_usd"].sum() == 0
    assert status["spent_usd"].sum() == 0


async def test_a_per_project_budget_gives_each_project_its_own_bucket() -> None:
    p = Scripted("p")
    room_for_one_call = cost_of_one(max_tokens=100) + p.pricing.cost(10, 5) / 2
    budgets = BudgetManager([Budget(limit_usd=room_for_one_call, scope="project")])
    router = make_router(p, budgets=budgets)
    await router.ainvoke("x", max_tokens=100, project="search")
    with pytest.raises(BudgetExceeded):
        await router.ainvoke("x", max_tokens=100, project="search")
    await router.ainvoke("x", max_tokens=100, project="chat")  # its own limit
    await router.ainvoke("x", max_tokens=100)  # no project: this budget does not apply
    await router.ainvoke("x", max_tokens=100)
    status = budgets.status().set_index("bucket")
    assert sorted(status.index) == ["chat|-", "search|-"]
    assert status.loc["search|-", "spent_usd"] == pytest.approx(p.pricing.cost(10, 5))


async def test_a_keyed_project_budget_applies_to_that_project_only() -> None:
    budgets = BudgetManager([Budget(limit_usd=0.0, scope="project", key="search")])
    router = make_router(Scripted("p"), budgets=budgets)
    await router.ainvoke("x", project="chat")
    with pytest.raises(BudgetExceeded):
        await router.ainvoke("x", project="search")


def test_cached_bucket_keys_follow_changes_to_the_budgets_and_the_day() -> None:
    day = 86_400.0
    now = [0.0]
    budgets = BudgetManager([Budget(limit_usd=1.0, scope="project", period="day")], wall=lambda: now[0])
    request = ChatRequest("x", project="search")
    assert budgets.reserve(request, 0.1).buckets == ["project=*/day|search|1970-01-01"]
    now[0] = day + 5
    assert budgets.reserve(request, 0.1).buckets == ["project=*/day|search|1970-01-02"]
    budgets.add(Budget(limit_usd=1.0, name="all"))
    assert budgets.reserve(request, 0.1).buckets == ["project=*/day|search|1970-01-02", "all|*|-"]
    budgets.budgets[1] = Budget(limit_usd=1.0, name="every")  # changed in place: the cache notices too
    assert budgets.reserve(request, 0.1).buckets[1] == "every|*|-"
    assert budgets.reserve(ChatRequest("x", project="chat"), 0.1).buckets[0] == "project=*/day|chat|1970-01-02"


@pytest.mark.parametrize("threadsafe", [True, False])
def test_bucket_keys_are_cached_per_principal_within_a_project(threadsafe: bool) -> None:
    budgets = BudgetManager([Budget(limit_usd=0.25, scope="principal")], threadsafe=threadsafe)
    for _ in range(2):  # the second round hits the cache
        for who in ("ann", "bob"):
            assert budgets.reserve(ChatRequest("x", principal=who, project="p"), 0.1).buckets == [
                f"principal=*/total|{who}|-"
            ]
    with pytest.raises(BudgetExceeded):  # each principal's own bucket holds 0.2 of 0.25
        budgets.reserve(ChatRequest("x", principal="ann", project="p"), 0.1)
    held = budgets.reserve(ChatRequest("x", principal="cy", project="p"), 0.1)
    assert budgets.settle(held, 0.05) == [] and budgets.spent() == pytest.approx(0.05)


async def test_a_thousand_concurrent_requests_never_overspend_the_budget() -> None:
    providers = [
        SimulatedProvider("gpt-4.1-mini", id=f"sim-{i}", ttft_s=0.002, output_tokens=60, seed=i) for i in range(3)
    ]
    request = ChatRequest("what is the capital of France?", max_tokens=64)
    per_call = predict_cost(providers[0].pricing, request)
    limit = 300 * per_call
    budgets = BudgetManager([Budget(limit_usd=limit)])
    router = Router(ProviderRegistry(providers), "round_robin", budgets=budgets, seed=0)
    rng = random.Random(0)

    async def one(delay: float) -> ChatResponse | BaseException:
        await asyncio.sleep(delay)
        try:
            return await router.ainvoke(request.prompt_text, max_tokens=64)
        except BudgetExceeded as exc:
            return exc

    results = await asyncio.wait_for(asyncio.gather(*(one(rng.random() * 0.05) for _ in range(1000))), 30)
    responses = [r for r in results if isinstance(r, ChatResponse)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(responses) + len(refused) == 1000
    assert len(responses) >= 300 and refused
    spent = budgets.spent()
    assert spent <= limit + 1e-12
    assert spent == pytest.approx(sum(r.cost_usd for r in responses))
    assert budgets.status()["held_usd"].sum() == pytest.approx(0, abs=1e-15)
    assert sum(p.calls for p in providers) == len(responses)


async def test_a_cost_ledger_fed_by_call_finished_events_matches_the_responses(bus: InProcessBus) -> None:
    ledger = CostLedger()
    bus.subscribe("provider.call.finished", ledger.apply)
    providers = [SimulatedProvider(model, id=model) for model in ("gpt-4.1-mini", "gpt-4.1")]
    router = make_router(*providers, strategy="round_robin", bus=bus)
    responses = [await router.ainvoke(f"question {i}", project="p1" if i % 2 else "p2") for i in range(10)]
    chunks = await collect(router.astream("a streamed one", project="p1"))
    await settled(bus)
    stream_provider = chunks[-1].provider
    assert stream_provider in ("gpt-4.1-mini", "gpt-4.1")
    stream_cost = router.registry[stream_provider].provider.pricing.cost(
        chunks[-1].usage.input_tokens,  # type: ignore[union-attr]
        chunks[-1].usage.output_tokens,  # type: ignore[union-attr]
    )
    assert len(ledger.rows) == 11
    assert ledger.total_usd == pytest.approx(sum(r.cost_usd for r in responses) + stream_cost)
    by_provider = ledger.by("provider").set_index("provider")["cost_usd"]
    for pid in ("gpt-4.1-mini", "gpt-4.1"):
        expected = sum(r.cost_usd for r in responses if r.provider == pid)
        expected += stream_cost if stream_provider == pid else 0.0
        assert by_provider[pid] == pytest.approx(expected)
    by_project = ledger.by("project").set_index("project")["cost_usd"]
    assert by_project.sum() == pytest.approx(ledger.total_usd)
    assert Counter(r.provider for r in responses) == {"gpt-4.1-mini": 5, "gpt-4.1": 5}


async def test_quick_failures_of_a_burst_do_not_trip_a_flaky_provider() -> None:
    """Errors return before answers: judged against the calls that started earlier, 30% errors stay below 50%."""
    from lumina_lab.providers import RetryPolicy

    clock = ManualClock()
    flaky = SimulatedProvider("gpt-4.1-mini", id="flaky", ttft_s=1.0, ttft_sigma=0, error_rate=0.3, seed=1, clock=clock)
    registry = ProviderRegistry([flaky], clock=clock, breaker={"min_calls": 5, "failure_rate": 0.5})
    router = Router(registry, clock=clock, retry=RetryPolicy(attempts=1), timeout_s=None)
    tasks = [asyncio.create_task(router.ainvoke(f"q{i}")) for i in range(200)]
    while clock.sleepers + sum(t.done() for t in tasks) < 200:
        await asyncio.sleep(0)
    assert registry["flaky"].breaker.state == "closed"
    clock.advance(2.0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = sum(isinstance(r, Exception) for r in results)
    assert 30 < failures < 90
    assert registry["flaky"].breaker.state == "closed"


async def test_a_provider_that_is_down_trips_within_min_calls_even_in_a_burst() -> None:
    from lumina_lab.providers import RetryPolicy

    clock = ManualClock()
    dead = SimulatedProvider("gpt-4.1-mini", id="dead", down=True, clock=clock)
    registry = ProviderRegistry([dead], clock=clock, breaker={"min_calls": 5, "failure_rate": 0.5})
    router = Router(registry, clock=clock, retry=RetryPolicy(attempts=1), timeout_s=None)
    results = await asyncio.gather(*(router.ainvoke(f"q{i}") for i in range(200)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    assert registry["dead"].breaker.state == "open"
    assert dead.calls <= 5 + 1  # 5 failures open it; later requests never reach the provider
