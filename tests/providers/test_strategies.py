"""Routing strategies: how each ranks candidates, and how the learning and load-spreading
ones behave when driven through a Router."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from lumina_lab.clock import ManualClock
from lumina_lab.errors import ValidationError
from lumina_lab.providers import (
    STRATEGIES,
    Capabilities,
    Cascade,
    ChatRequest,
    Cheapest,
    Fastest,
    LeastBusy,
    Limits,
    Pricing,
    ProviderRegistry,
    ProviderState,
    RoundRobin,
    Router,
    SimulatedProvider,
    ThompsonBandit,
    WeightedScore,
)
from lumina_lab.providers.strategies import strategy_from_name

pytestmark = pytest.mark.timeout(30)


def sim(pid: str, **kw: Any) -> SimulatedProvider:
    kw.setdefault("pricing", Pricing(input_per_m=1.0, output_per_m=1.0))
    return SimulatedProvider("sim-model", id=pid, **kw)


def states(*providers: SimulatedProvider) -> list[ProviderState]:
    reg = ProviderRegistry(providers)
    return [reg[p.id] for p in providers]


def ids(ranked: list[ProviderState]) -> list[str]:
    return [s.id for s in ranked]


def measured(state: ProviderState, *latencies: float, ttft: float | None = None) -> ProviderState:
    for lat in latencies:
        state.stats.on_dispatch()
        state.stats.on_success(lat, ttft, 0.0)
    return state


class Logged(SimulatedProvider):
    """A simulated provider that appends its id to a shared log when called (dispatch order)."""

    def __init__(self, pid: str, log: list[str], **kw: Any) -> None:
        super().__init__("sim-model", id=pid, **kw)
        self.log = log

    async def ainvoke(self, request: ChatRequest):  # type: ignore[override]
        self.log.append(self.id)
        return await super().ainvoke(request)


# ---------------------------------------------------------------- Cheapest


def dispatch(strategy, candidates, request) -> str:
    """Rank, then commit the first choice as the router does at dispatch; return its id."""
    chosen = strategy.rank(candidates, request)[0]
    strategy.on_dispatch(chosen, request)
    return chosen.id


def test_cheapest_orders_by_predicted_cost() -> None:
    cands = states(
        sim("mid", pricing=Pricing(input_per_m=1, output_per_m=4)),
        sim("dear", pricing=Pricing(input_per_m=10, output_per_m=30)),
        sim("cheap", pricing=Pricing(input_per_m=0.1, output_per_m=0.4)),
    )
    assert ids(Cheapest().rank(cands, ChatRequest("hello"))) == ["cheap", "mid", "dear"]


def test_cheapest_predicts_with_input_estimate_and_max_tokens() -> None:
    cands = states(
        sim("dear-input", pricing=Pricing(input_per_m=10, output_per_m=0.1)),
        sim("dear-output", pricing=Pricing(input_per_m=0.1, output_per_m=10)),
    )
    short_prompt_long_answer = ChatRequest("hi", max_tokens=1_000)
    long_prompt_short_answer = ChatRequest("x" * 40_000, max_tokens=1)
    assert ids(Cheapest().rank(cands, short_prompt_long_answer)) == ["dear-input", "dear-output"]
    assert ids(Cheapest().rank(cands, long_prompt_short_answer)) == ["dear-output", "dear-input"]


def test_cheapest_breaks_ties_by_id() -> None:
    cands = states(sim("b"), sim("a"), sim("c"))
    assert ids(Cheapest().rank(cands, ChatRequest("x"))) == ["a", "b", "c"]


# ---------------------------------------------------------------- Fastest


@pytest.fixture
def timed() -> list[ProviderState]:
    """'spiky' is usually fast with a rare huge outlier; 'steady' is always 0.3 s; 'new' is unmeasured."""
    spiky, steady, new = states(sim("spiky"), sim("steady"), sim("new"))
    measured(spiky, 5.0, *[0.1] * 19, ttft=0.5)
    measured(steady, *[0.3] * 20, ttft=0.05)
    return [spiky, steady, new]


def test_fastest_by_ewma_latency_puts_unmeasured_providers_first(timed: list[ProviderState]) -> None:
    assert ids(Fastest("ewma").rank(timed, ChatRequest("x"))) == ["new", "spiky", "steady"]


def test_fastest_by_p95_latency_penalises_the_tail(timed: list[ProviderState]) -> None:
    assert ids(Fastest("p95").rank(timed, ChatRequest("x"))) == ["new", "steady", "spiky"]


def test_fastest_by_time_to_first_token(timed: list[ProviderState]) -> None:
    assert ids(Fastest("ttft").rank(timed, ChatRequest("x"))) == ["new", "steady", "spiky"]


def test_fastest_rejects_an_unknown_metric() -> None:
    with pytest.raises(ValidationError, match="metric='p50'"):
        Fastest("p50")


async def test_fastest_measures_every_provider_once_then_prefers_the_quickest() -> None:
    clock = ManualClock(autoadvance=True)
    reg = ProviderRegistry(
        [
            sim("slow", ttft_s=2.0, ttft_sigma=0, clock=clock),
            sim("quick", ttft_s=0.1, ttft_sigma=0, clock=clock),
        ],
        clock=clock,
    )
    router = Router(reg, Fastest(), clock=clock)
    first = [(await router.ainvoke("x")).provider for _ in range(2)]
    assert sorted(first) == ["quick", "slow"]
    assert [(await router.ainvoke("x")).provider for _ in range(5)] == ["quick"] * 5


# ---------------------------------------------------------------- WeightedScore


@pytest.fixture
def cheap_vs_good() -> list[ProviderState]:
    return states(
        sim("cheap-weak", pricing=Pricing(input_per_m=0.4, output_per_m=1.6), capabilities=Capabilities(chat=0.5)),
        sim("dear-strong", pricing=Pricing(input_per_m=2.0, output_per_m=8.0), capabilities=Capabilities(chat=1.0)),
    )


def test_weighted_score_favouring_cost_ranks_the_cheap_provider_first(cheap_vs_good: list[ProviderState]) -> None:
    ranked = WeightedScore(cost=1, latency=0, quality=0, success=0).rank(cheap_vs_good, ChatRequest("x"))
    assert ids(ranked) == ["cheap-weak", "dear-strong"]


def test_weighted_score_favouring_quality_ranks_the_strong_provider_first(
    cheap_vs_good: list[ProviderState],
) -> None:
    ranked = WeightedScore(cost=0, latency=0, quality=1, success=0).rank(cheap_vs_good, ChatRequest("x"))
    assert ids(ranked) == ["dear-strong", "cheap-weak"]


def test_weighted_score_quality_is_the_level_of_the_needed_capability() -> None:
    cands = states(
        sim("chatty", capabilities=Capabilities(chat=1, code=0.2)),
        sim("coder", capabilities=Capabilities(chat=0.5, code=1)),
    )
    only_quality = WeightedScore(cost=0, latency=0, quality=1, success=0)
    assert ids(only_quality.rank(cands, ChatRequest("x"))) == ["chatty", "coder"]
    assert ids(only_quality.rank(cands, ChatRequest("x", needs={"code"}))) == ["coder", "chatty"]


def test_weighted_score_latency_and_success_weights_use_the_statistics() -> None:
    fast, slow = states(sim("fast"), sim("slow"))
    measured(fast, 0.1)
    measured(slow, 1.0)
    fast.stats.on_dispatch()
    fast.stats.on_failure()  # fast but recently failing
    by_latency = WeightedScore(cost=0, latency=1, quality=0, success=0)
    by_success = WeightedScore(cost=0, latency=0, quality=0, success=1)
    assert ids(by_latency.rank([slow, fast], ChatRequest("x"))) == ["fast", "slow"]
    assert ids(by_success.rank([fast, slow], ChatRequest("x"))) == ["slow", "fast"]


# ---------------------------------------------------------------- LeastBusy


def test_least_busy_ranks_the_least_loaded_first() -> None:
    a, b, c = states(sim("a"), sim("b"), sim("c"))
    for _ in range(3):
        a.stats.on_dispatch()
    b.stats.on_dispatch()
    for _ in range(2):
        c.stats.on_dispatch()
    assert ids(LeastBusy().rank([a, b, c], ChatRequest("x"))) == ["b", "c", "a"]


def test_least_busy_measures_load_relative_to_max_concurrency() -> None:
    small, big = states(sim("small", limits=Limits(max_concurrency=2)), sim("big", limits=Limits(max_concurrency=10)))
    small.stats.on_dispatch()  # 1/2 busy
    for _ in range(3):
        big.stats.on_dispatch()  # 3/10 busy
    assert ids(LeastBusy().rank([small, big], ChatRequest("x"))) == ["big", "small"]


@pytest.mark.parametrize("caps", [(None,) * 7, (8,) * 7, (8, 8, 4, 8, None, 8, 2)])
def test_least_busy_ranks_by_load_then_rotation_whatever_the_capacities(caps: tuple[int | None, ...]) -> None:
    """The ranking is sorted by (in-flight / max_concurrency, (position - turn) % n), for every turn."""
    import random

    rng = random.Random(7)
    cands = states(*(sim(f"p{i}", limits=Limits(max_concurrency=c)) for i, c in enumerate(caps)))
    strategy = LeastBusy()
    n = len(cands)
    for turn in range(3 * n):
        for s in cands:
            s.stats.inflight = rng.randrange(3)  # many ties
        strategy._turn = turn
        expected = sorted(
            range(n), key=lambda i: (cands[i].stats.inflight / (cands[i].max_concurrency or 1), (i - turn) % n)
        )
        assert ids(strategy.rank(tuple(cands), ChatRequest("x"))) == [cands[i].id for i in expected]
        assert ids(strategy.rank(list(cands), ChatRequest("x"))) == [cands[i].id for i in expected]


def test_least_busy_rotates_among_equally_idle_providers() -> None:
    cands = states(sim("a"), sim("b"), sim("c"))
    strategy = LeastBusy()
    firsts = [dispatch(strategy, cands, ChatRequest("x")) for _ in range(6)]
    assert Counter(firsts) == {"a": 2, "b": 2, "c": 2}


async def test_least_busy_spreads_a_concurrent_burst_evenly() -> None:
    clock = ManualClock()
    providers = [sim(pid, ttft_s=1.0, ttft_sigma=0, clock=clock) for pid in ("a", "b", "c")]
    router = Router(ProviderRegistry(providers, clock=clock), LeastBusy(), clock=clock, timeout_s=None)
    tasks = [asyncio.create_task(router.ainvoke(f"q{i}")) for i in range(30)]
    while clock.sleepers < 30:  # every request dispatched and waiting for its answer
        await asyncio.sleep(0)
    assert [p.inflight for p in providers] == [10, 10, 10]
    clock.advance(1.0)
    responses = await asyncio.gather(*tasks)
    assert Counter(r.provider for r in responses) == {"a": 10, "b": 10, "c": 10}


# ---------------------------------------------------------------- RoundRobin


def expected_3_to_1(n: int) -> list[str]:
    return (["a", "a", "b", "a"] * (n // 4 + 1))[:n]


async def test_round_robin_interleaves_exactly_by_weight() -> None:
    log: list[str] = []
    router = Router(ProviderRegistry([Logged("a", log), Logged("b", log)]), RoundRobin({"a": 3, "b": 1}))
    served = [(await router.ainvoke(f"q{i}")).provider for i in range(40)]
    assert served == expected_3_to_1(40)
    assert Counter(served) == {"a": 30, "b": 10}


async def test_round_robin_interleaves_exactly_by_weight_when_launched_concurrently() -> None:
    clock = ManualClock()
    log: list[str] = []
    providers = [Logged(pid, log, ttft_s=1.0, ttft_sigma=0, clock=clock) for pid in ("a", "b")]
    router = Router(ProviderRegistry(providers, clock=clock), RoundRobin({"a": 3, "b": 1}), clock=clock, timeout_s=None)
    tasks = [asyncio.create_task(router.ainvoke(f"q{i}")) for i in range(40)]
    while clock.sleepers < 40:
        await asyncio.sleep(0)
    assert log == expected_3_to_1(40)
    clock.advance(1.0)
    responses = await asyncio.gather(*tasks)
    assert Counter(r.provider for r in responses) == {"a": 30, "b": 10}


def test_round_robin_default_weight_is_one() -> None:
    cands = states(sim("a"), sim("b"), sim("c"))
    rr = RoundRobin()
    assert [dispatch(rr, cands, ChatRequest("x")) for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


async def test_planning_a_request_does_not_advance_round_robin() -> None:
    router = Router(ProviderRegistry([sim("a"), sim("b")]), RoundRobin({"a": 3, "b": 1}))
    served = []
    for i in range(8):
        router.plan(ChatRequest("look before you leap"))
        served.append((await router.ainvoke(f"q{i}")).provider)
    assert served == expected_3_to_1(8)


# ---------------------------------------------------------------- Cascade


async def test_cascade_escalates_when_the_check_fails_and_stops_at_the_first_pass() -> None:
    weak = sim("weak", pricing=Pricing(input_per_m=0.1, output_per_m=0.1), quality=0.0)
    mid = sim("mid", pricing=Pricing(input_per_m=1, output_per_m=1), quality=1.0)
    strong = sim("strong", pricing=Pricing(input_per_m=10, output_per_m=10), quality=1.0)
    router = Router(ProviderRegistry([strong, weak, mid]), Cascade())
    response = await router.ainvoke("x")
    assert response.provider == "mid"
    assert response.tried == ["weak", "mid"]
    assert response.metadata["cascade_passed"] is True
    assert (weak.calls, mid.calls, strong.calls) == (1, 1, 0)


async def test_cascade_stays_on_the_cheapest_when_its_answer_passes() -> None:
    cheap = sim("cheap", pricing=Pricing(input_per_m=0.1, output_per_m=0.1))
    dear = sim("dear", pricing=Pricing(input_per_m=10, output_per_m=10))
    router = Router(ProviderRegistry([dear, cheap]), "cascade")
    response = await router.ainvoke("x")
    assert (response.provider, response.tried, dear.calls) == ("cheap", ["cheap"], 0)


async def test_cascade_returns_the_last_answer_when_none_passes_within_max_steps() -> None:
    ps = [sim(f"p{i}", pricing=Pricing(input_per_m=i + 1, output_per_m=i + 1), quality=0.0) for i in range(4)]
    router = Router(ProviderRegistry(ps), Cascade(max_steps=2))
    response = await router.ainvoke("x")
    assert response.provider == "p1"
    assert response.tried == ["p0", "p1"]
    assert response.metadata["cascade_passed"] is False
    assert [p.calls for p in ps] == [1, 1, 0, 0]


async def test_cascade_uses_a_custom_check() -> None:
    cheap = sim("cheap", pricing=Pricing(input_per_m=0.1, output_per_m=0.1), output_tokens=5)
    dear = sim("dear", pricing=Pricing(input_per_m=10, output_per_m=10), output_tokens=500)
    router = Router(ProviderRegistry([cheap, dear]), Cascade(lambda r: r.usage.output_tokens > 100))
    assert (await router.ainvoke("x")).provider == "dear"


# ---------------------------------------------------------------- ThompsonBandit


async def test_thompson_bandit_learns_to_prefer_the_better_provider() -> None:
    good = sim("good", quality=0.9, seed=1)
    bad = sim("bad", quality=0.2, seed=2)
    router = Router(ProviderRegistry([bad, good]), ThompsonBandit(seed=0))
    served = [(await router.ainvoke("x", task="summarise")).provider for _ in range(400)]
    assert Counter(served[-100:])["good"] >= 90
    expected = router.strategy.expected()  # type: ignore[attr-defined]
    assert expected[("summarise", "good")] > expected[("summarise", "bad")]


async def test_thompson_bandit_learns_per_task_context() -> None:
    bandit = ThompsonBandit(seed=0)
    router = Router(ProviderRegistry([sim("a"), sim("b")]), bandit)
    await router.ainvoke("x", task="code")
    await router.ainvoke("x", needs={"chat"})
    assert {ctx for ctx, _ in bandit.expected()} == {"code", "chat"}


async def test_feedback_overrides_the_automatic_reward() -> None:
    bandit = ThompsonBandit(seed=0)
    router = Router(ProviderRegistry([sim("only")]), bandit)
    response = await router.ainvoke("x", task="t")
    assert bandit.expected()[("t", "only")] == pytest.approx(2 / 3)  # Beta(1+1, 1): automatic success
    assert router.feedback(response.request_id, 0.0) is True
    assert bandit.expected()[("t", "only")] == pytest.approx(1 / 3)  # replaced, not added: Beta(1, 1+1)


async def test_fractional_feedback_counts_partially() -> None:
    bandit = ThompsonBandit(seed=0)
    router = Router(ProviderRegistry([sim("only")]), bandit)
    response = await router.ainvoke("x", task="t")
    router.feedback(response.request_id, 0.5)
    assert bandit.posteriors[("t", "only")] == [1.5, 1.5]


async def test_feedback_counts_once_per_request() -> None:
    bandit = ThompsonBandit(seed=0)
    router = Router(ProviderRegistry([sim("only")]), bandit)
    response = await router.ainvoke("x", task="t")
    assert router.feedback(response.request_id, 1.0) is True
    assert router.feedback(response.request_id, 0.0) is False
    assert router.feedback("unknown-request", 1.0) is False
    assert bandit.expected()[("t", "only")] == pytest.approx(2 / 3)


@pytest.mark.parametrize("reward", [-0.1, 1.5])
def test_feedback_outside_zero_one_is_rejected(reward: float) -> None:
    with pytest.raises(ValidationError, match="must be in"):
        ThompsonBandit().feedback("any", reward)


async def test_strategies_without_learning_ignore_feedback() -> None:
    router = Router(ProviderRegistry([sim("only")]), "cheapest")
    response = await router.ainvoke("x")
    assert router.feedback(response.request_id, 1.0) is False


# ---------------------------------------------------------------- by name


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_can_be_made_by_name(name: str) -> None:
    strategy = strategy_from_name(name)
    assert strategy.name == name


def test_strategy_from_name_passes_options_and_instances_through() -> None:
    assert strategy_from_name("fastest", metric="p95").metric == "p95"  # type: ignore[attr-defined]
    mine = Cheapest()
    assert strategy_from_name(mine) is mine


def test_unknown_strategy_name_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="unknown routing strategy 'fanciest'") as info:
        strategy_from_name("fanciest")
    assert "cheapest" in (info.value.hint or "")
