"""``Lab`` wires the provider runtime: configured providers, router, budgets, and sync helpers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lumina_lab import Lab
from lumina_lab.cli import main
from lumina_lab.errors import BudgetExceeded, ConfigError, NoProviderAvailable


def test_default_providers_are_simulated_stand_ins() -> None:
    with Lab(profile="test") as lab:
        table = lab.providers.table()
        assert set(table["id"]) == {"sim-gpt-4.1-mini", "sim-gemini-2.5-flash", "sim-gpt-4.1", "sim-claude-3-7-sonnet"}
        assert (table["in_usd_per_m"] > 0).all()  # priced from the shipped snapshot


def test_ask_answers_and_records_events() -> None:
    with Lab(profile="test") as lab:
        response = lab.ask("hello", max_tokens=20, project="search")
        assert response.text and response.provider in lab.providers
        assert response.cost_usd > 0
        types = set(lab.query(type="provider.*")["type"])
    assert {"provider.request.routed", "provider.call.started", "provider.call.finished"} <= types


def test_route_explains_without_calling() -> None:
    with Lab(profile="test") as lab:
        decision = lab.route("write code", needs={"code"}, max_tokens=100)
        assert decision.chosen == decision.ranked[0]
        assert all(lab.providers[p].stats.calls == 0 for p in decision.ranked)
        costs = [decision.predicted_cost_usd[p] for p in decision.ranked]
        assert costs == sorted(costs)  # cheapest strategy by default


def test_strategy_and_providers_come_from_settings() -> None:
    providers = [{"kind": "simulated", "id": "only", "model": "gpt-4.1-mini"}]
    with Lab(profile="test", providers=providers, routing={"strategy": "fastest"}) as lab:
        assert lab.router.strategy.name == "fastest"
        assert lab.ask("hi", max_tokens=5).provider == "only"
        with pytest.raises(NoProviderAvailable, match="vision"):
            lab.ask("look", needs={"vision"})


def test_configured_budget_is_a_hard_stop() -> None:
    budgets = [{"limit_usd": 0.000001, "scope": "project", "key": "tight"}]
    with Lab(profile="test", budgets=budgets) as lab:
        with pytest.raises(BudgetExceeded, match="would be exceeded"):
            lab.ask("hello", max_tokens=100, project="tight")
        assert lab.ask("hello", max_tokens=100, project="other").text


def test_bad_provider_config_is_a_config_error() -> None:
    with (
        Lab(profile="test", providers=[{"kind": "carrier-pigeon", "model": "x"}]) as lab,
        pytest.raises(ConfigError, match=r"providers\[0\]\.kind"),
    ):
        _ = lab.providers


def test_cli_providers_and_ask() -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["providers", "--format", "csv"])
    assert listed.exit_code == 0, listed.output
    assert "sim-gpt-4.1-mini" in listed.output
    routed = runner.invoke(main, ["ask", "write a parser", "--needs", "code", "--route-only"])
    assert routed.exit_code == 0, routed.output
    assert routed.output.startswith("strategy: cheapest")
    answered = runner.invoke(main, ["ask", "hello", "--max-tokens", "10"])
    assert answered.exit_code == 0, answered.output
    bad = runner.invoke(main, ["ask", "x", "--needs", "telepathy"])
    assert bad.exit_code == 2 and "telepathy" in bad.output
