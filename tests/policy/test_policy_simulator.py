"""The simulator: decision matrices, diffs of versions (what changes and why), coverage, explanations, shadow mode."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from policy_helpers import REPO, assert_same_as_cedar, reference

from lumina_lab.events import InProcessBus
from lumina_lab.policy import (
    DictEntities,
    EntityStore,
    PolicyEngine,
    PolicyShadowDiff,
    PolicyStore,
    RequestSet,
    Schema,
    Simulator,
)

sys.path.insert(0, str(REPO / "benchmarks"))
import policy_simulation as bench  # the benchmark's realistic policy set and traffic

V1 = """
@id("staff-read") permit(principal, action == Action::"read", resource) when { principal.role == "staff" };
@id("owner-all") permit(principal, action, resource) when { resource.owner == principal };
@id("legacy") permit(principal, action == Action::"archive", resource) when { principal.role == "archivist" };
@id("no-secret") forbid(principal, action == Action::"read", resource) when { resource.secret };
"""
V2 = """
@id("staff-read") permit(principal, action == Action::"read", resource) when { principal.role == "staff" || principal.role == "guest" };
@id("owner-all") permit(principal, action, resource) when { resource.owner == principal };
@id("no-secret") forbid(principal, action == Action::"read", resource) when { resource.secret && principal.role != "staff" };
@id("no-edit-frozen") forbid(principal, action == Action::"edit", resource) when { resource.frozen };
"""


def _store() -> EntityStore:
    users = DictEntities("User", {"ann": {"role": "staff"}, "bob": {"role": "guest"}, "cy": {"role": "staff"}})
    docs = DictEntities(
        "Doc",
        {"d1": {"owner": "ann", "secret": False, "frozen": False}, "d2": {"owner": "bob", "secret": True, "frozen": True}},
        refs={"owner": "User"},
    )
    return EntityStore(users, docs)


GRID = RequestSet.grid(['User::"ann"', 'User::"bob"', 'User::"cy"'], ["read", "edit", "archive"], ['Doc::"d1"', 'Doc::"d2"'])


def test_decision_matrix_frame_summary_pivot_and_items() -> None:
    m = Simulator(V1, _store(), progress=False).run(GRID)
    f = m.frame
    assert list(f.columns) == ["principal", "action", "resource", "context", "decision", "policies", "determining", "errors"]
    row = f[(f.principal == 'User::"ann"') & (f.action == 'Action::"edit"') & (f.resource == 'Doc::"d1"')].iloc[0]
    assert row.decision == "allow" and row.policies == "policy1" and row.determining == "owner-all"
    assert m.counts == {"allow": 6, "deny": 12, "no_decision": 0}
    s = m.summary()
    assert s.loc['Action::"read"', "allow"] == 2 and list(s.columns) == ["allow", "deny", "no_decision"]
    p = m.pivot("read")
    assert p.loc['User::"ann"', 'Doc::"d2"'] == "deny"
    assert m[0].request is not None and "DecisionMatrix(18 requests: 6 allow" in repr(m) and "<b>Decision matrix</b>" in m._repr_html_()


def test_diff_of_two_versions_says_which_requests_change_and_why() -> None:
    d = Simulator(None, _store(), progress=False).diff(V1, V2, GRID)
    f = d.frame
    changed = {(r.principal, r.action, r.resource): (r.old, r.new, r.why) for r in f.itertuples()}
    assert changed[('User::"bob"', 'Action::"read"', 'Doc::"d1"')] == (
        "deny", "allow", 'now permitted by policy0 "staff-read" (changed) (was default deny)',
    )
    assert changed[('User::"ann"', 'Action::"read"', 'Doc::"d2"')] == (
        "deny", "allow", 'now permitted by policy0 "staff-read" (changed); was forbidden by policy3 "no-secret" (changed)',
    )
    assert changed[('User::"bob"', 'Action::"edit"', 'Doc::"d2"')] == (
        "allow", "deny", 'now forbidden by policy3 "no-edit-frozen" (new) (was permitted by policy1 "owner-all")',
    )
    assert d.n_changed == len(f) == 4
    s = d.summary()
    assert s.iloc[0]["changed"] and s["requests"].sum() == len(GRID)
    pc = d.policy_changes()
    assert set(zip(pc.label, pc.status, strict=True)) == {("staff-read", "changed"), ("legacy", "removed"), ("no-secret", "changed"), ("no-edit-frozen", "new")}
    assert "PolicyDiff(4 of 18" in repr(d)


def test_diff_between_store_versions_by_number() -> None:
    store = PolicyStore()
    store.publish(V1)
    store.publish(V2)
    sim = Simulator(store=store, entities=_store(), progress=False)
    assert sim.diff(1, 2, GRID).n_changed == 4
    assert sim.run(GRID).version == 2  # the live version by default


def test_coverage_finds_policies_that_never_decide_and_the_default_denies() -> None:
    cov = Simulator(V1, _store(), progress=False).coverage(GRID)
    assert cov.never_determining == ["policy2"]  # "legacy": nobody is an archivist
    assert cov.determining == {"policy0": 2, "policy1": 5, "policy2": 0, "policy3": 3}  # ann/d1 read: both permits
    assert cov.default_deny == 9
    assert len(cov.default_deny_requests()) == 9
    assert list(cov.frame.columns) == ["policy", "label", "effect", "kind", "determining", "share"]
    assert "1 of 4 policies never determine" in repr(cov)


def test_explain_evaluates_each_policy_alone() -> None:
    ex = Simulator(V1, _store(), progress=False).explain('User::"ann"', "read", 'Doc::"d2"')
    rows = {r["label"]: r for r in ex.rows}
    assert ex.decision.decision == "deny"
    assert rows["staff-read"]["applies"] and not rows["staff-read"]["determining"]  # applies, but overridden
    assert rows["no-secret"]["applies"] and rows["no-secret"]["determining"]
    assert not rows["legacy"]["applies"]
    text = str(ex)
    assert "* forbid no-secret" in text and "+ permit staff-read" in text


def test_shadow_mode_publishes_differences_and_follows_live_decisions() -> None:
    bus = InProcessBus()
    diffs: list = []
    bus.subscribe("policy.shadow.diff", diffs.append)
    sim = Simulator(V1, _store(), progress=False)
    shadow = sim.shadow(V2, bus=bus)
    d = shadow.evaluate('User::"bob"', "read", 'Doc::"d1"')
    assert d.decision == "deny"  # the live version decides
    shadow.evaluate('User::"ann"', "read", 'Doc::"d1"')  # same under both
    bus.drain_sync()
    assert shadow.compared == 2 and shadow.n_different == 1
    (ev,) = diffs
    assert isinstance(ev, PolicyShadowDiff) and (ev.live, ev.candidate) == ("deny", "allow") and ev.candidate_policies == ["policy0"]
    assert len(shadow.frame()) == 1
    bus.close_sync()


async def test_shadow_mode_attached_to_live_enforcement_events() -> None:
    bus = InProcessBus()
    diffs: list = []
    bus.subscribe("policy.shadow.diff", diffs.append)
    live = PolicyEngine(V1, _store(), bus=bus)
    shadow = Simulator(V1, _store(), progress=False).shadow(V2, bus=bus)
    shadow.attach(bus)
    for p in ("ann", "bob", "cy"):
        try:
            await live.aauthorize(f'User::"{p}"', "read", 'Doc::"d2"')
        except Exception:
            pass
    await bus.drain()
    assert shadow.compared == 3
    assert {(e.principal, e.live, e.candidate) for e in diffs} == {('User::"ann"', "deny", "allow"), ('User::"cy"', "deny", "allow")}
    await bus.close()


def test_requests_replayed_from_the_event_log(tmp_path: Path) -> None:
    from lumina_lab import Lab

    with Lab(profile="test", home=tmp_path) as lab:
        engine = PolicyEngine(V1, _store(), bus=lab.bus)
        for r in GRID:
            try:
                engine.authorize(r.principal, r.action, r.resource, point="docs")
            except Exception:
                pass
        logged = RequestSet.from_events(lab)
        assert len(logged) == len(GRID)
        m = Simulator(V2, _store(), progress=False).run(logged)
        assert_same_as_cedar(m, reference(logged, m.policies, _store(), None))
        diff = Simulator(None, _store(), progress=False).diff(V1, V2, logged)
        assert diff.n_changed == 4


@pytest.mark.parametrize("seed", [11])
def test_the_benchmark_policy_set_equals_cedarpy_with_its_schema(seed: int) -> None:
    rng = random.Random(seed)
    ents, index = bench.entities(rng, users=300, documents=600)
    reqs = bench.requests(rng, index, 20_000)
    schema = Schema(bench.SCHEMA)
    store = EntityStore(ents)
    sim = Simulator(bench.POLICIES, store, schema, progress=False)
    rs = RequestSet.from_records(reqs)
    m = sim.run(rs)
    assert_same_as_cedar(m, reference(rs, sim.policies, store, schema))
    assert m.evaluation.stats["evaluations"] < len(rs) / 5
    cov = sim.coverage(rs)
    assert not cov.never_determining  # every rule of the realistic set decides something


def test_unpublished_edits_are_read_against_the_live_version_s_schema() -> None:
    # datetimes (in entities and in the context) parse only with the schema: an edit simulated from a
    # store-backed simulator (as the policy simulator view does) must not lose it
    schema = """
    entity User; entity Show = { releaseDate: datetime };
    action watch appliesTo { principal: [User], resource: [Show], context: { now: datetime } };
    """
    text = '@id("released") permit(principal, action == Action::"watch", resource) when { context.now >= resource.releaseDate };'
    store = PolicyStore()
    store.publish(text, schema)
    entities = [
        {"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Show", "id": "s"}, "attrs": {"releaseDate": "2025-02-21"}, "parents": []},
    ]
    sim = Simulator(store=store, entities=entities, progress=False)
    rs = RequestSet.grid(['User::"ann"'], ["watch"], ['Show::"s"'], [{"now": {"fn": "datetime", "arg": "2025-03-01"}}])
    published, edited = sim.run(rs, policies=1), sim.run(rs, policies=text)
    assert list(published.frame["decision"]) == list(edited.frame["decision"]) == ["allow"]
    assert list(edited.frame["errors"].astype(str)) == [""]
    assert sim.diff(1, text.replace(">=", "<"), rs).n_changed == 1
    assert sim.explain('User::"ann"', "watch", 'Show::"s"', {"now": {"fn": "datetime", "arg": "2025-03-01"}}, policies=text).decision.allowed
