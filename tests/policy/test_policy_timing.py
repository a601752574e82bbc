"""Decision events carry how long deciding took (``ms``), at every enforcement point that publishes them."""

from __future__ import annotations

import pytest

from lumina_lab.errors import PolicyDenied
from lumina_lab.events import InProcessBus, default_registry
from lumina_lab.policy import (
    DictEntities,
    MemoryGate,
    PolicyDecided,
    PolicyDeniedEvent,
    PolicyEngine,
    PolicyGate,
    acting_as,
)

POLICIES = """
@id("staff-tools") permit(principal, action == Action::"call", resource) when { principal.role == "staff" };
@id("no-shell") forbid(principal, action, resource == Tool::"shell") when { principal.role != "admin" };
@id("read-public") permit(principal, action == Action::"read", resource) when { resource.public };
"""


def _engine(bus: InProcessBus, **kw: object) -> PolicyEngine:
    users = DictEntities("User", {"ann": {"role": "staff"}, "ian": {"role": "intern"}})
    tools = DictEntities("Tool", {"search": {}, "shell": {}})
    return PolicyEngine(POLICIES, [users, tools], bus=bus, **kw)  # type: ignore[arg-type]


def _seen(bus: InProcessBus) -> list:
    seen: list = []
    bus.subscribe("policy.*", seen.append)
    return seen


def _timed(ev: object) -> bool:
    ms = getattr(ev, "ms", None)
    return isinstance(ms, float) and 0.0 <= ms < 5_000.0


def test_authorize_times_its_decision_in_the_decided_and_denied_events() -> None:
    bus = InProcessBus()
    seen = _seen(bus)
    gate = PolicyGate(_engine(bus))
    with acting_as("ann"):
        gate.check("search")
        with pytest.raises(PolicyDenied, match="no-shell"):
            gate.check("shell")
    bus.drain_sync()
    assert [ev.type for ev in seen] == ["policy.decided", "policy.decided", "policy.denied"]
    assert all(_timed(ev) for ev in seen), [ev.ms for ev in seen]
    assert seen[1].ms == seen[2].ms  # one decision, one timing
    assert all(ev.point == "tool" for ev in seen)
    bus.close_sync()


async def test_async_enforcement_and_recorded_evaluations_are_timed_too() -> None:
    bus = InProcessBus()
    seen = _seen(bus)
    engine = _engine(bus, record="all")
    assert (await engine.aauthorize('User::"ann"', "call", 'Tool::"search"', point="agent")).allowed
    assert (await engine.aevaluate('User::"ian"', "call", 'Tool::"search"')).decision == "deny"
    assert engine.evaluate('User::"ann"', "call", 'Tool::"search"').allowed
    await bus.drain()
    assert [(ev.type, ev.point) for ev in seen] == [
        ("policy.decided", "agent"), ("policy.decided", "engine"), ("policy.decided", "engine")
    ]
    assert all(_timed(ev) for ev in seen)
    await bus.close()


def test_memory_gate_denials_carry_each_decision_s_share_of_the_batch() -> None:
    bus = InProcessBus()
    seen = _seen(bus)
    gate = MemoryGate(_engine(bus))
    hits = [{"id": f"m{i}", "metadata": {"public": i % 2 == 0}} for i in range(6)]
    assert [h["id"] for h in gate.filter("ann", hits)] == ["m0", "m2", "m4"]
    bus.drain_sync()
    assert [ev.type for ev in seen] == ["policy.denied"] * 3
    assert all(_timed(ev) and ev.point == "memory" for ev in seen)
    bus.close_sync()


def test_events_written_before_timings_existed_still_load() -> None:
    old = PolicyDecided(principal='User::"a"', action='Action::"call"', resource='Tool::"t"', decision="allow").to_envelope()
    del old["payload"]["ms"]
    loaded = default_registry.load(old)
    assert isinstance(loaded, PolicyDecided) and loaded.ms is None and loaded.decision == "allow"
    denied = PolicyDeniedEvent(principal="u", action="a", resource="r", explanation="no", ms=0.25)
    assert default_registry.load(denied.to_envelope()).ms == 0.25
