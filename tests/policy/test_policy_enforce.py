"""Enforcement points: the provider router, memory search, tool calls, and ``lab.policy``."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumina_lab.errors import NoProviderAvailable, PolicyDenied, ValidationError
from lumina_lab.events import InProcessBus
from lumina_lab.policy import (
    DictEntities,
    MemoryGate,
    PolicyEngine,
    PolicyGate,
    RouterPolicy,
    acting_as,
    current_principal,
    provider_entities,
)
from lumina_lab.providers import ChatRequest, Pricing, ProviderRegistry, Router, SimulatedProvider

ROUTING = """
@id("anyone-any-provider")
permit (principal, action == Action::"use_provider", resource);

@id("confidential-only-on-approved")
forbid (principal, action == Action::"use_provider", resource)
when { context.classification == "confidential" && !resource.approved };

@id("per-call-cap-by-role")
forbid (principal, action == Action::"use_provider", resource)
when { context.predicted_cost_micro_usd > principal.max_call_micro_usd };

@id("budget-by-role")
forbid (principal, action == Action::"use_provider", resource)
when { context.spent_micro_usd + context.predicted_cost_micro_usd > principal.budget_micro_usd };
"""


def _registry() -> ProviderRegistry:
    reg = ProviderRegistry()
    reg.register(SimulatedProvider("cheap", id="cheap", pricing=Pricing(input_per_m=0.1, output_per_m=0.4), output_tokens=20))
    reg.register(SimulatedProvider("vetted", id="vetted", pricing=Pricing(input_per_m=1.0, output_per_m=4.0), output_tokens=20))
    reg.register(SimulatedProvider("premium", id="premium", pricing=Pricing(input_per_m=10.0, output_per_m=40.0), output_tokens=20))
    return reg


def _router_engine(reg: ProviderRegistry, bus: InProcessBus | None = None) -> PolicyEngine:
    roles = {
        "intern": {"max_call_micro_usd": 5_000, "budget_micro_usd": 20_000},
        "staff": {"max_call_micro_usd": 1_000_000, "budget_micro_usd": 10_000_000},
    }
    users = DictEntities("User", {"ian": roles["intern"], "sue": roles["staff"], "anonymous": roles["intern"]})
    providers = provider_entities(reg, extra={"cheap": {"approved": False}, "vetted": {"approved": True}, "premium": {"approved": True}})
    return PolicyEngine(ROUTING, [users, providers], bus=bus)


def test_the_router_keeps_confidential_requests_on_approved_providers() -> None:
    reg = _registry()
    router = Router(reg, "cheapest", policy=RouterPolicy(_router_engine(reg)))
    public = router.plan(ChatRequest("hello", principal="sue", max_tokens=100))
    assert public.ranked == ["cheap", "vetted", "premium"] and not public.excluded
    secret = router.plan(ChatRequest("hello", principal="sue", max_tokens=100, metadata={"classification": "confidential"}))
    assert secret.ranked == ["vetted", "premium"]
    assert 'forbidden by policy1 "confidential-only-on-approved"' in secret.excluded["cheap"]


async def test_budgets_per_role_cap_calls_and_spend_and_denials_are_events() -> None:
    bus = InProcessBus()
    denied: list = []
    bus.subscribe("policy.denied", denied.append)
    reg = _registry()
    spent = {"ian": 0.0}
    router = Router(reg, "cheapest", policy=RouterPolicy(_router_engine(reg, bus), spent=lambda r: spent.get(r.principal or "", 0.0)))
    big = ChatRequest("x" * 4000, principal="ian", max_tokens=2000)
    plan = router.plan(big)
    assert plan.ranked == ["cheap"]  # the intern's per-call cap rules out the dearer ones
    assert "per-call-cap-by-role" in plan.excluded["premium"]
    answer = await router.ainvoke(ChatRequest("short question", principal="ian", max_tokens=50))
    assert answer.provider == "cheap"
    spent["ian"] = 0.02  # the whole intern budget spent
    with pytest.raises(NoProviderAvailable, match="budget-by-role"):
        await router.ainvoke(ChatRequest("another", principal="ian", max_tokens=50))
    assert router.plan(ChatRequest("another", principal="sue", max_tokens=50)).ranked[0] == "cheap"
    await bus.drain()
    assert denied and {e.point for e in denied} == {"router"}
    assert any(e.resource == 'Provider::"premium"' and "per-call-cap-by-role" in e.explanation for e in denied)
    await bus.close()


def test_an_unknown_principal_stops_routing_loudly() -> None:
    reg = _registry()
    router = Router(reg, "cheapest", policy=RouterPolicy(_router_engine(reg)))
    with pytest.raises(ValidationError, match='unknown principal User::"mallory"'):
        router.plan(ChatRequest("hi", principal="mallory"))
    assert router.plan(ChatRequest("hi")).ranked  # no principal: acts as User::"anonymous"


MEMORY = """
@id("everyone-reads-public") permit(principal, action == Action::"read", resource) when { resource.area != "policy" };
@id("admins-read-all") permit(principal, action == Action::"read", resource) when { principal.role == "admin" };
@id("hr-only-hr") forbid(principal, action == Action::"read", resource in Collection::"hr") unless { principal.dept == "hr" };
"""


def _memory_engine(bus: InProcessBus | None = None) -> PolicyEngine:
    users = DictEntities("User", {"admin": {"role": "admin", "dept": "it"}, "intern": {"role": "intern", "dept": "it"}, "hana": {"role": "intern", "dept": "hr"}})
    return PolicyEngine(MEMORY, [users, DictEntities("Collection", {"hr": {}})], bus=bus)


def test_memory_search_results_are_filtered_to_what_the_principal_may_read() -> None:
    from lumina_lab.memory import VectorMemory

    bus = InProcessBus()
    denied: list = []
    bus.subscribe("policy.denied", denied.append)
    gate = MemoryGate(_memory_engine(bus))
    mem = VectorMemory(backend="memory", policy=gate)
    c = mem.collection("docs")
    texts = ["Cedar policies decide who may call which provider.", "DuckDB keeps vectors in one file.", "Routers fall back when a breaker opens."]
    c.add(texts, [{"area": "policy"}, {"area": "memory"}, {"area": "routing"}], ids=["p", "m", "r"])
    assert "p" in c.search("Cedar policies provider", k=3, principal="admin").ids
    res = c.search("Cedar policies provider", k=3, principal="intern")
    assert "p" not in res.ids and res.denied == 1
    bus.drain_sync()
    assert [(e.resource, e.point) for e in denied] == [('Memory::"p"', "memory")]
    bus.close_sync()


def test_memory_gate_on_plain_results_and_collections() -> None:
    gate = MemoryGate(_memory_engine())
    results = [
        {"id": "a", "metadata": {"area": "memory", "collection": "hr"}},
        {"id": "b", "metadata": {"area": "memory", "collection": "eng", "score": 0.5, "when": object()}},
    ]
    assert [r["id"] for r in gate.filter("intern", results)] == ["b"]
    assert [r["id"] for r in gate.filter("hana", results)] == ["a", "b"]
    assert gate.allowed("admin", results) == [False, True]  # the forbid beats the admin's permit
    with pytest.raises(PolicyDenied, match="hr-only-hr"):
        gate.check("intern", results[0])
    with acting_as("hana"):
        assert gate.filter(None, results) == results


def test_tool_calls_are_checked_before_they_run() -> None:
    engine = PolicyEngine(
        """@id("search-for-all") permit(principal, action == Action::"call", resource == Tool::"search");
           @id("shell-for-ops") permit(principal in Group::"ops", action == Action::"call", resource == Tool::"shell")
           when { context.args_len < 100 };""",
        [DictEntities("User", {"ann": {}, "ops1": {}}, parents={"ops1": ['Group::"ops"']}), DictEntities("Group", {"ops": {}}), DictEntities("Tool", {"search": {}, "shell": {}})],
    )
    gate = PolicyGate(engine)
    ran: list[str] = []

    @gate.tool(context=lambda args, kwargs: {"args_len": len(args[0])})
    def shell(cmd: str) -> str:
        ran.append(cmd)
        return "ok"

    @gate.tool(name="search", context=lambda a, k: {"args_len": 0})
    async def web(q: str) -> str:
        return q

    with pytest.raises(ValidationError, match="no principal"):
        shell("ls")
    with acting_as("ann"):
        assert current_principal() == "ann"
        with pytest.raises(PolicyDenied, match="default deny"):
            shell("ls")
    with acting_as('User::"ops1"'):
        assert shell("ls") == "ok"
        with pytest.raises(PolicyDenied):
            shell("x" * 200)
    assert ran == ["ls"]
    assert gate.allowed("search", principal="ann") and not gate.allowed("shell", principal="ann")
    assert gate.check("shell", principal="ops1", context={"args_len": 1}).determining == ["shell-for-ops"]


async def test_async_tools_are_checked_too() -> None:
    engine = PolicyEngine('permit(principal, action, resource == Tool::"search");', [DictEntities("User", {"ann": {}}), DictEntities("Tool", {"search": {}, "rm": {}})])
    gate = PolicyGate(engine)

    @gate
    async def search(q: str) -> str:
        return q.upper()

    @gate.tool
    async def rm(path: str) -> None:
        raise AssertionError("must not run")

    with acting_as("ann"):
        assert await search("hi") == "HI"
        with pytest.raises(PolicyDenied):
            await rm("/")


def test_lab_policy_publishes_versions_and_its_gates_follow_the_live_one(tmp_path: Path) -> None:
    from lumina_lab import Lab

    with Lab(profile="test", home=tmp_path) as lab:
        lab.policy.entities.add(DictEntities("User", {"ann": {}})).add(DictEntities("Tool", {"search": {}}))
        with pytest.raises(ValidationError, match="no policy version is published"):
            lab.policy.engine  # noqa: B018
        lab.policy.publish('forbid(principal, action, resource);', message="closed")
        gate = lab.policy.gate()
        with acting_as("ann"), pytest.raises(PolicyDenied):
            gate.check("search")
        lab.policy.publish('permit(principal, action == Action::"call", resource);', message="open")
        with acting_as("ann"):
            assert gate.check("search").allowed  # the same gate, the new live version
        lab.router.policy = lab.policy.router_policy(lab.providers)
        plan = lab.route("hello", principal="ann")
        assert not plan.ranked and all("default deny" in why for why in plan.excluded.values())
        stored = lab.sql("SELECT count(*) AS n FROM events WHERE type = 'policy.denied'")
        assert stored["n"][0] >= 2
        assert "PolicyLab(live v2, 2 versions" in repr(lab.policy)
    with Lab(profile="test", home=tmp_path) as lab:
        assert [v.message for v in lab.policy.store] == ["closed", "open"]  # kept under LUMINA_HOME/policies
