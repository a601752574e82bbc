"""ProviderRegistry: run-time registration, the capability index and its cache, health probes,
the summary table, configuration entries and entry-point discovery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lumina_lab.clock import ManualClock
from lumina_lab.errors import ConfigError, ValidationError
from lumina_lab.providers import (
    Capabilities,
    ChatRequest,
    ProviderRegistry,
    ProviderState,
    Router,
    SimulatedProvider,
)
from lumina_lab.providers.registry import ENTRY_POINT_GROUP

pytestmark = pytest.mark.timeout(30)


def sim(pid: str, **kw: Any) -> SimulatedProvider:
    return SimulatedProvider("gpt-4.1-mini", id=pid, **kw)


@pytest.fixture
def registry() -> ProviderRegistry:
    return ProviderRegistry(
        [
            sim("chat-small", capabilities=Capabilities(chat=1, context_window=8_000)),
            sim(
                "coder",
                capabilities=Capabilities(chat=1, code=0.9, context_window=128_000, languages={"en", "de"}),
            ),
            SimulatedProvider(
                "gpt-4.1",
                id="vision",
                capabilities=Capabilities(chat=1, code=0.4, vision=1, context_window=32_000, languages={"*"}),
            ),
        ]
    )


def ids(states: tuple[ProviderState, ...]) -> list[str]:
    return [s.id for s in states]


# ---------------------------------------------------------------- registration


def test_providers_can_be_registered_and_unregistered_at_run_time(registry: ProviderRegistry) -> None:
    state = registry.register(sim("late"))
    assert isinstance(state, ProviderState)
    assert "late" in registry and registry["late"] is state and len(registry) == 4
    registry.unregister("late")
    assert "late" not in registry and len(registry) == 3


def test_registering_a_duplicate_id_is_refused(registry: ProviderRegistry) -> None:
    with pytest.raises(ValidationError, match="already registered") as info:
        registry.register(sim("coder"))
    assert "replace=True" in (info.value.hint or "")


def test_replace_true_swaps_the_provider_for_an_id(registry: ProviderRegistry) -> None:
    new = sim("coder", capabilities=Capabilities(chat=1))
    registry.register(new, replace=True)
    assert registry["coder"].provider is new
    assert "coder" not in ids(registry.candidates(ChatRequest("x", needs={"code"})))


def test_an_object_that_is_not_a_provider_is_refused_with_a_clear_message(registry: ProviderRegistry) -> None:
    class NotAProvider:
        id = "nope"
        model = "m"

    with pytest.raises(ValidationError, match="is not a provider: it has no 'capabilities'") as info:
        registry.register(NotAProvider())  # type: ignore[arg-type]
    assert "BaseProvider" in (info.value.hint or "")
    assert "nope" not in registry


def test_unregistering_an_unknown_id_names_the_registered_ones(registry: ProviderRegistry) -> None:
    with pytest.raises(ValidationError, match="no provider 'ghost'") as info:
        registry.unregister("ghost")
    assert "coder" in (info.value.hint or "")


def test_looking_up_an_unknown_id_raises_validation_error(registry: ProviderRegistry) -> None:
    with pytest.raises(ValidationError, match="no provider 'ghost'"):
        registry["ghost"]


def test_each_provider_gets_a_breaker_with_the_registry_options_and_clock() -> None:
    clock = ManualClock()
    reg = ProviderRegistry([sim("a")], clock=clock, breaker={"min_calls": 2, "open_s": 7})
    breaker = reg["a"].breaker
    assert (breaker.min_calls, breaker.open_s, breaker.clock) == (2, 7, clock)


def test_breaker_changes_are_reported_with_the_provider_id() -> None:
    seen: list[tuple] = []
    reg = ProviderRegistry(
        [sim("a")], clock=ManualClock(), breaker={"min_calls": 1}, on_breaker_change=lambda *a: seen.append(a)
    )
    reg["a"].breaker.record(False)
    assert seen == [("a", "closed", "open", 1.0)]


# ---------------------------------------------------------------- candidates


def test_candidates_without_needs_are_all_providers(registry: ProviderRegistry) -> None:
    assert sorted(ids(registry.candidates(ChatRequest("x")))) == ["chat-small", "coder", "vision"]


def test_candidates_by_capability(registry: ProviderRegistry) -> None:
    assert ids(registry.candidates(ChatRequest("x", needs={"code"}))) == ["coder", "vision"]
    assert ids(registry.candidates(ChatRequest("x", needs={"code", "vision"}))) == ["vision"]


def test_candidates_by_minimum_capability_level(registry: ProviderRegistry) -> None:
    assert ids(registry.candidates(ChatRequest("x", needs={"code": 0.5}))) == ["coder"]


def test_candidates_by_context_window(registry: ProviderRegistry) -> None:
    assert sorted(ids(registry.candidates(ChatRequest("x", min_context=30_000)))) == ["coder", "vision"]
    assert ids(registry.candidates(ChatRequest("x", min_context=100_000))) == ["coder"]


def test_candidates_by_language(registry: ProviderRegistry) -> None:
    assert sorted(ids(registry.candidates(ChatRequest("x", language="de")))) == ["coder", "vision"]
    assert ids(registry.candidates(ChatRequest("x", language="fr"))) == ["vision"]  # declares '*'


def test_candidates_pinned_by_provider_id_or_model_name(registry: ProviderRegistry) -> None:
    assert ids(registry.candidates(ChatRequest("x", model="coder"))) == ["coder"]
    assert ids(registry.candidates(ChatRequest("x", model="gpt-4.1"))) == ["vision"]
    assert ids(registry.candidates(ChatRequest("x", model="unknown-model"))) == []


def test_candidates_are_cached_per_requirement(registry: ProviderRegistry) -> None:
    first = registry.candidates(ChatRequest("x", needs={"code"}))
    assert registry.candidates(ChatRequest("another prompt", needs={"code"})) is first


def test_register_invalidates_the_candidate_cache(registry: ProviderRegistry) -> None:
    before = registry.candidates(ChatRequest("x", needs={"code"}))
    registry.register(sim("coder-2", capabilities=Capabilities(code=1)))
    after = registry.candidates(ChatRequest("x", needs={"code"}))
    assert "coder-2" not in ids(before)
    assert "coder-2" in ids(after)


def test_unregister_invalidates_the_candidate_cache(registry: ProviderRegistry) -> None:
    assert "coder" in ids(registry.candidates(ChatRequest("x", needs={"code"})))
    registry.unregister("coder")
    assert ids(registry.candidates(ChatRequest("x", needs={"code"}))) == ["vision"]


@pytest.mark.parametrize("needs", [{"telepathy"}, {"telepathy": 0.5}])
def test_unknown_capability_raises_validation_error(registry: ProviderRegistry, needs: Any) -> None:
    with pytest.raises(ValidationError, match="unknown capability 'telepathy'") as info:
        registry.candidates(ChatRequest("x", needs=needs))
    assert "code" in (info.value.hint or "")


# ---------------------------------------------------------------- health probes


class Probed(SimulatedProvider):
    """A simulated provider with an active health check."""

    def __init__(self, pid: str, answer: Any) -> None:
        super().__init__("gpt-4.1-mini", id=pid)
        self.answer = answer

    async def aprobe(self) -> bool:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


async def test_probe_marks_providers_healthy_or_unhealthy() -> None:
    reg = ProviderRegistry([Probed("up", True), Probed("sick", False), Probed("broken", RuntimeError("boom"))])
    result = await reg.probe()
    assert result == {"up": True, "sick": False, "broken": False}
    assert reg["up"].healthy and reg["up"].last_probe_error is None
    assert not reg["sick"].healthy and reg["sick"].last_probe_error == "probe answered not ok"
    assert not reg["broken"].healthy and reg["broken"].last_probe_error == "RuntimeError: boom"


async def test_probe_leaves_providers_without_aprobe_as_they_are() -> None:
    reg = ProviderRegistry([sim("plain")])
    assert await reg.probe() == {"plain": True}
    assert reg["plain"].healthy


async def test_probe_that_takes_too_long_counts_as_unhealthy() -> None:
    class Slow(Probed):
        async def aprobe(self) -> bool:
            await asyncio.sleep(10)
            return True

    reg = ProviderRegistry([Slow("slow", True)])
    assert await reg.probe(timeout_s=0.01) == {"slow": False}
    assert reg["slow"].last_probe_error is not None and "TimeoutError" in reg["slow"].last_probe_error


async def test_a_provider_recovers_when_its_probe_succeeds_again() -> None:
    p = Probed("flaky", False)
    reg = ProviderRegistry([p])
    await reg.probe()
    p.answer = True
    await reg.probe()
    assert reg["flaky"].healthy and reg["flaky"].last_probe_error is None


async def test_unhealthy_providers_are_excluded_by_the_router() -> None:
    reg = ProviderRegistry([Probed("up", True), Probed("sick", False)])
    await reg.probe()
    router = Router(reg)
    decision = router.plan(ChatRequest("x"))
    assert decision.ranked == ["up"]
    assert decision.excluded["sick"].startswith("unhealthy")
    response = await router.ainvoke("x")
    assert response.provider == "up"


# ---------------------------------------------------------------- table


def test_table_has_one_row_per_provider_with_declaration_breaker_health_and_stats(
    registry: ProviderRegistry,
) -> None:
    df = registry.table()
    assert list(df.columns) == [
        "id",
        "model",
        "capabilities",
        "context",
        "in_usd_per_m",
        "out_usd_per_m",
        "breaker",
        "healthy",
        "calls",
        "inflight",
        "success_rate",
        "ewma_success",
        "ewma_latency_ms",
        "p95_latency_ms",
        "ewma_ttft_ms",
        "ewma_cost_usd",
    ]
    row = df.set_index("id").loc["vision"]
    assert row["model"] == "gpt-4.1"
    assert row["capabilities"] == "chat,code,vision"
    assert row["context"] == 32_000
    assert row["breaker"] == "closed"
    assert bool(row["healthy"]) is True
    assert list(df["id"]) == ["chat-small", "coder", "vision"]


# ---------------------------------------------------------------- configuration


def test_load_config_registers_simulated_providers_on_the_registry_clock() -> None:
    clock = ManualClock()
    reg = ProviderRegistry(clock=clock)
    added = reg.load_config(
        [
            {"kind": "simulated", "model": "gpt-4.1-mini", "id": "cfg-a", "error_rate": 0.1},
            {"kind": "simulated", "model": "gpt-4.1"},
        ]
    )
    assert added == ["cfg-a", "gpt-4.1"]
    provider = reg["cfg-a"].provider
    assert isinstance(provider, SimulatedProvider)
    assert provider.error_rate == 0.1 and provider.clock is clock


def test_load_config_with_a_bad_kind_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        ProviderRegistry().load_config([{"kind": "carrier-pigeon", "model": "m"}])
    err = info.value
    assert err.key == "providers[0].kind"
    assert "providers[0].kind" in err.message and "carrier-pigeon" in err.message
    assert "simulated" in (err.allowed or "")


def test_load_config_without_kind_is_a_bad_kind() -> None:
    with pytest.raises(ConfigError) as info:
        ProviderRegistry().load_config([{"model": "m"}])
    assert info.value.key == "providers[0].kind"


def test_load_config_without_a_model_names_the_entry() -> None:
    with pytest.raises(ConfigError, match="needs a 'model'") as info:
        ProviderRegistry().load_config([{"kind": "simulated", "model": "m"}, {"kind": "simulated"}])
    assert info.value.key == "providers[1].model"


def test_load_config_with_an_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        ProviderRegistry().load_config([{"kind": "simulated", "model": "m", "wings": 2}])
    assert info.value.key == "providers[0]"
    assert "wings" in info.value.message


# ---------------------------------------------------------------- entry points


class FakeEntryPoint:
    def __init__(self, name: str, obj: Any) -> None:
        self.name = name
        self.value = f"fake_pkg:{name}"
        self.group = ENTRY_POINT_GROUP
        self._obj = obj

    def load(self) -> Any:
        if isinstance(self._obj, BaseException):
            raise self._obj
        return self._obj


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: FakeEntryPoint) -> list[str]:
    groups: list[str] = []

    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return list(eps)

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    return groups


def test_discover_entry_points_registers_what_a_factory_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = fake_entry_points(monkeypatch, FakeEntryPoint("acme", lambda: sim("acme-1")))
    reg = ProviderRegistry()
    assert reg.discover_entry_points() == ["acme-1"]
    assert groups == [ENTRY_POINT_GROUP]
    assert "acme-1" in reg


def test_discover_entry_points_accepts_a_provider_object_or_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(
        monkeypatch,
        FakeEntryPoint("obj", sim("object-1")),
        FakeEntryPoint("many", lambda: [sim("list-1"), sim("list-2")]),
    )
    reg = ProviderRegistry()
    assert reg.discover_entry_points() == ["object-1", "list-1", "list-2"]
    assert len(reg) == 3


def test_discover_entry_points_replaces_providers_already_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    new = sim("acme-1")
    fake_entry_points(monkeypatch, FakeEntryPoint("acme", lambda: new))
    reg = ProviderRegistry([sim("acme-1")])
    reg.discover_entry_points()
    assert reg["acme-1"].provider is new


def test_an_entry_point_that_fails_to_load_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, FakeEntryPoint("broken", ImportError("no module named acme")))
    with pytest.raises(ConfigError, match="entry point 'broken'") as info:
        ProviderRegistry().discover_entry_points()
    assert info.value.key == "broken"
    assert "no module named acme" in info.value.message


async def test_monitor_probes_on_its_clock_and_marks_health_changes() -> None:
    from lumina_lab.clock import ManualClock
    from lumina_lab.providers import ProviderRegistry, SimulatedProvider

    class Probed(SimulatedProvider):
        ok = True

        async def aprobe(self) -> bool:
            return self.ok

    clock = ManualClock(autoadvance=True)
    p = Probed("gpt-4.1-mini", id="p", clock=clock)
    registry = ProviderRegistry([p], clock=clock)
    await registry.monitor(10.0, rounds=2)
    assert registry["p"].healthy and clock.slept == [10.0]
    p.ok = False
    await registry.monitor(10.0, rounds=1)
    assert not registry["p"].healthy
