"""Alert rules on the metrics stream fire and clear as events, on a manual clock."""

from __future__ import annotations

import pytest

from lumina_lab.clock import ManualClock
from lumina_lab.errors import ConfigError
from lumina_lab.events import InProcessBus
from lumina_lab.observability import AlertRule, Observability, rules_from_config
from lumina_lab.providers import Budget, BudgetManager, ChatRequest
from lumina_lab.providers import events as pev


def _calls(n_ok: int, n_failed: int, provider: str = "a") -> list[pev.CallFinished | pev.CallFailed]:
    ok = [
        pev.CallFinished(
            request_id=f"ok-{i}",
            provider=provider,
            model="m",
            attempt=1,
            input_tokens=3,
            output_tokens=4,
            cost_usd=0.001,
            latency_s=0.2,
        )
        for i in range(n_ok)
    ]
    failed = [
        pev.CallFailed(
            request_id=f"bad-{i}",
            provider=provider,
            model="m",
            attempt=1,
            error_type="ProviderTimeout",
            error="slow",
            retryable=True,
            latency_s=1.0,
        )
        for i in range(n_failed)
    ]
    return [*ok, *failed]


@pytest.fixture
def setup():
    clock = ManualClock(1000.0)
    bus = InProcessBus()
    seen: list = []
    bus.subscribe("alert.*", seen.append)
    obs = Observability(
        bus,
        alerts=[
            {"name": "errors", "expr": "error_rate > 0.2 for 10s", "severity": "critical"},
            {"name": "budget", "expr": "budget_remaining_usd < 5"},
        ],
        clock=clock,
        tick_s=3600,  # the test drives time
    )
    yield clock, bus, obs, seen
    obs.close()
    bus.close_sync()


def test_error_rate_alert_fires_after_its_period_and_clears(setup) -> None:
    clock, bus, obs, seen = setup
    bus.publish_many_sync(_calls(5, 5))
    bus.drain_sync()
    assert obs.evaluate_alerts() == []  # 0.5 > 0.2, but not for 10 s yet
    clock.advance(6)
    assert obs.evaluate_alerts() == []
    clock.advance(4.5)
    (fired,) = obs.evaluate_alerts()
    assert (fired.type, fired.rule, fired.severity) == ("alert.fired", "errors", "critical")
    assert fired.value == pytest.approx(0.5) and fired.threshold == 0.2 and fired.pending_s == pytest.approx(10.5)
    assert obs.evaluate_alerts() == []  # fires once
    assert obs.snapshot()["alerts_firing"] == 1
    clock.advance(1)
    bus.publish_many_sync(_calls(100, 0))  # healthy traffic: 5 / 110 failed in the window
    bus.drain_sync()  # the subscriber evaluates rules after each batch it folds
    bus.drain_sync()
    assert [e.type for e in seen] == ["alert.fired", "alert.resolved"]
    assert seen[1].rule == "errors" and seen[1].fired_s == pytest.approx(1.0)
    assert obs.snapshot()["alerts_firing"] == 0
    assert 'lumina_alerts_firing{alert="errors"} 0.0' in obs.metrics.exposition()


def test_a_condition_that_stops_without_traffic_clears_when_the_window_slides(setup) -> None:
    clock, bus, obs, _ = setup
    bus.publish_many_sync(_calls(0, 4))
    bus.drain_sync()
    clock.advance(11)
    assert [e.type for e in obs.evaluate_alerts()] == ["alert.fired"]
    clock.advance(61)  # nothing happened for a minute: the window is empty, the rate is 0
    assert [e.type for e in obs.evaluate_alerts()] == ["alert.resolved"]


def test_budget_alert_reads_the_live_budget_manager(setup) -> None:
    clock, bus, obs, seen = setup
    period = {"mgr": BudgetManager([Budget(10.0, name="team")])}
    obs.watch(budgets=lambda: period["mgr"])
    assert obs.snapshot()["budget_remaining_usd"] == 10.0
    mgr = period["mgr"]
    mgr.settle(mgr.reserve(ChatRequest("x"), 1.0), 6.5)
    clock.advance(1)
    (fired,) = obs.evaluate_alerts()
    assert (fired.rule, fired.value) == ("budget", pytest.approx(3.5))
    period["mgr"] = BudgetManager([Budget(10.0, name="team")])  # a new period
    clock.advance(1)
    (resolved,) = obs.evaluate_alerts()
    assert resolved.type == "alert.resolved" and resolved.value == 10.0
    bus.drain_sync()
    assert [e.rule for e in seen] == ["budget", "budget"]


def test_callable_rules_and_nested_metrics() -> None:
    clock = ManualClock()
    obs = Observability(None, clock=clock, tick_s=3600)
    try:
        obs.add_alert(AlertRule("breakers", lambda s: s["breakers_open"] >= 1, for_s=5))
        obs.add_alert("sim-a errors", "providers.sim-a.error_rate >= 0.5")
        obs.metrics.apply_many([pev.BreakerChanged(provider="sim-a", old="closed", new="open", failure_rate=0.9)])
        obs.metrics.apply_many(_calls(1, 1, provider="sim-a"))
        assert [e.rule for e in obs.evaluate_alerts()] == ["sim-a errors"]
        clock.advance(5)
        assert [e.rule for e in obs.evaluate_alerts()] == ["breakers"]
        assert sorted(obs.alerts.firing) == ["breakers", "sim-a errors"]
    finally:
        obs.close()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"name": "x", "expr": "error_rate >> 0.2"}], "cannot read expr"),
        ([{"name": "x", "expr": "error_rate > 0.2 for ten seconds"}], "cannot read expr"),
        ([{"name": "x", "expr": "error_rate > 1"}, {"name": "x", "expr": "request_rate < 1"}], "unique"),
        ([{"name": "x", "expression": "error_rate > 1"}], "alerts\\[0\\]"),
    ],
)
def test_bad_rules_are_config_errors(entries, message) -> None:
    with pytest.raises(ConfigError, match=message):
        rules_from_config(entries)


def test_durations_in_expressions() -> None:
    assert AlertRule("a", "ttft_avg_s >= 1.5 for 2m").for_s == 120
    assert AlertRule("b", "request_rate < 1e-3 for 250ms").for_s == 0.25
    assert AlertRule("c", "calls_total > 5", for_s=7).for_s == 7
