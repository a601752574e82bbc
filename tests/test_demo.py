"""``run_demo``: the simulated workload is stored, summarised from the store, and reproducible."""

from __future__ import annotations

from lumina_lab import Lab
from lumina_lab.demo import CostLedger, run_demo


def test_demo_summary_comes_from_the_store() -> None:
    with Lab(profile="test") as lab:
        report = run_demo(lab, requests=3_000, seed=3, progress=False)
        assert report.events_stored >= 3_000
        assert report.by_type.set_index("type")["events"]["demo.request.finished"] == 3_000
        assert report.by_model["requests"].sum() == 3_000
        # the live projection and the one replayed from the store agree
        assert report.ledger.keys() == report.ledger_replayed.keys()
        for project, usd in report.ledger.items():
            assert abs(usd - report.ledger_replayed[project]) < 1e-9
        # the flaky subscriber's failures were dead-lettered and all replayed after the fix
        assert report.dead_letters == report.replayed
        assert len(lab.store.dead_letters()) == 0


def test_demo_is_deterministic_under_a_seed() -> None:
    with Lab(profile="test") as a, Lab(profile="test") as b:
        ra = run_demo(a, requests=1_000, seed=5, progress=False)
        rb = run_demo(b, requests=1_000, seed=5, progress=False)
    assert ra.ledger == rb.ledger
    assert ra.by_model.equals(rb.by_model)
    assert len(ra.budget_alerts) == len(rb.budget_alerts)


def test_budget_alerts_follow_spend() -> None:
    with Lab(profile="test") as lab:
        report = run_demo(lab, requests=2_000, seed=1, budget_usd=0.5, progress=False)
    for row in report.budget_alerts.itertuples():
        assert row.spent_usd >= row.threshold * 0.5


def test_cost_ledger_ignores_other_events() -> None:
    from lumina_lab.demo import DemoBudgetCrossed

    ledger = CostLedger()
    ledger.apply(DemoBudgetCrossed(project="p", threshold=0.5, spent_usd=1.0, budget_usd=2.0))
    assert ledger.spent == {}
