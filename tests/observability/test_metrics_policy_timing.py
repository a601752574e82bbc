"""Policy decision timings (the ``ms`` of ``policy.decided``) become a Prometheus histogram per enforcement point."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lumina_lab.errors import PolicyDenied
from lumina_lab.events import InProcessBus
from lumina_lab.observability import Metrics
from lumina_lab.policy import DictEntities, PolicyDecided, PolicyEngine, PolicyGate, acting_as

NAME = "lumina_policy_decision_duration_seconds"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_decision_timings_fill_the_histogram_by_point() -> None:
    m = Metrics()
    m.apply(PolicyDecided(principal="u", action="call", resource="t", decision="allow", point="tool", ms=0.3))
    m.apply(PolicyDecided(principal="u", action="call", resource="t", decision="deny", point="tool", ms=2.0))
    m.apply(PolicyDecided(principal="u", action="use", resource="p", decision="allow", point="router", ms=40.0))
    m.apply(PolicyDecided(principal="u", action="use", resource="p", decision="allow", point="router"))  # untimed: counted only
    s = _samples(m.exposition())
    tool = (("point", "tool"),)
    assert s[(f"{NAME}_count", tool)] == 2
    assert s[(f"{NAME}_sum", tool)] == pytest.approx(0.0023)
    assert s[(f"{NAME}_bucket", (("le", "0.0005"), ("point", "tool")))] == 1
    assert s[(f"{NAME}_bucket", (("le", "0.0025"), ("point", "tool")))] == 2
    assert s[(f"{NAME}_count", (("point", "router"),))] == 1
    assert s[("lumina_policy_decisions_total", (("decision", "allow"), ("point", "router")))] == 2


def test_an_enforcement_point_feeds_the_histogram_through_the_bus() -> None:
    bus = InProcessBus()
    m = Metrics()
    bus.subscribe("policy.*", m.apply)
    engine = PolicyEngine(
        '@id("staff") permit(principal, action == Action::"call", resource) when { principal.role == "staff" };',
        [DictEntities("User", {"ann": {"role": "staff"}, "ian": {"role": "intern"}}), DictEntities("Tool", {"search": {}})],
        bus=bus,
    )
    gate = PolicyGate(engine)
    for who in ("ann", "ann", "ian"):
        with acting_as(who):
            try:
                gate.check("search")
            except PolicyDenied:
                pass
    bus.drain_sync()
    bus.close_sync()
    s = _samples(m.exposition())
    assert s[(f"{NAME}_count", (("point", "tool"),))] == 3
    assert 0 < s[(f"{NAME}_sum", (("point", "tool"),))] < 5.0
    assert s[(f"{NAME}_bucket", (("le", "+Inf"), ("point", "tool")))] == 3
    assert s[("lumina_policy_denials_total", (("point", "tool"),))] == 1
