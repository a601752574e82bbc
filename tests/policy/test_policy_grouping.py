"""The grouped simulator is exact: each tricky construct, on random data, equals plain cedarpy request by request."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from policy_helpers import assert_same_as_cedar, reference

from lumina_lab.policy import EntityStore, Policies, RequestSet, Schema, Simulator
from lumina_lab.policy.analysis import analyse


def _world(rng: random.Random, *, implicit_refs: bool = False) -> list[dict[str, Any]]:
    def ref(t: str, i: str) -> dict[str, Any]:
        return {"type": t, "id": i} if implicit_refs else {"__entity": {"type": t, "id": i}}

    ents: list[dict[str, Any]] = [{"uid": {"type": "Team", "id": f"t{i}"}, "attrs": {}, "parents": [{"type": "Org", "id": "o"}]} for i in range(4)]
    ents.append({"uid": {"type": "Org", "id": "o"}, "attrs": {}, "parents": []})
    ents.append({"uid": {"type": "Group", "id": "admins"}, "attrs": {"owner": ref("User", "u0")}, "parents": []})
    for i in range(12):
        attrs: dict[str, Any] = {"role": rng.choice(["viewer", "editor", "boss"]), "level": rng.randrange(-2, 5), "team": ref("Team", f"t{rng.randrange(4)}")}
        if rng.random() < 0.7:
            attrs["manager"] = ref("User", f"u{rng.randrange(12)}")
        if rng.random() < 0.5:
            attrs["address"] = {"city": rng.choice(["Oslo", "Rome"]), "zip": rng.randrange(3)}
        parents = [{"type": "Team", "id": f"t{rng.randrange(4)}"}] + ([{"type": "Group", "id": "admins"}] if rng.random() < 0.2 else [])
        ents.append({"uid": {"type": "User", "id": f"u{i}"}, "attrs": attrs, "parents": parents})
    for i in range(15):
        attrs = {"owner": ref("User", f"u{rng.randrange(12)}"), "level": rng.randrange(0, 4), "tags": rng.sample(["a", "b", "c"], rng.randrange(3))}
        if rng.random() < 0.6:
            attrs["team"] = ref("Team", f"t{rng.randrange(4)}")
        ents.append({"uid": {"type": "Doc", "id": f"d{i}"}, "attrs": attrs, "parents": [{"type": "Team", "id": f"t{rng.randrange(4)}"}]})
    return ents


POLICIES = """
@id("owner") permit(principal, action == Action::"edit", resource) when { resource.owner == principal };
@id("same-team") permit(principal, action == Action::"view", resource) when { principal in resource.team };
@id("manager-of-owner") permit(principal, action == Action::"view", resource) when { resource.owner has manager && resource.owner.manager == principal };
@id("admins-owner") permit(principal, action, resource) when { principal == Group::"admins".owner };
@id("levels") permit(principal, action == Action::"view", resource) when { principal.level >= resource.level && principal.level > -1 };
@id("team-org") permit(principal, action == Action::"list", resource) when { principal.team in Org::"o" && resource in principal.team };
@id("city") permit(principal, action == Action::"view", resource) when { principal has address && principal.address.city == "Oslo" };
@id("tags") permit(principal, action == Action::"tag", resource) when { resource.tags.contains("a") && ["editor", "boss"].contains(principal.role) };
@id("ctx") forbid(principal, action, resource) when { context has hour && (context.hour < 8 || context.hour == 20) && principal.role != "boss" };
@id("ctx-bool") forbid(principal, action == Action::"edit", resource) when { context has mfa && context.mfa == false };
@id("self") forbid(principal, action == Action::"list", resource) when { resource == principal };
@id("err") permit(principal, action == Action::"audit", resource) when { principal.manager.role == "boss" };
"""


def _requests(rng: random.Random, n: int, *, contexts: list[dict[str, Any]]) -> RequestSet:
    users = [f'User::"u{i}"' for i in range(13)]  # u12 does not exist
    res = [f'Doc::"d{i}"' for i in range(15)] + users[:3]
    acts = ["edit", "view", "list", "tag", "audit"]
    return RequestSet(
        [rng.choice(users) for _ in range(n)],
        [f'Action::"{rng.choice(acts)}"' for _ in range(n)],
        [rng.choice(res) for _ in range(n)],
        [dict(rng.choice(contexts)) for _ in range(n)],
    )


CONTEXTS = [{}, {"hour": 7}, {"hour": 8}, {"hour": 20}, {"hour": 23}, {"mfa": True}, {"mfa": False}, {"mfa": 0}, {"mfa": 1}, {"hour": True}, {"hour": 8, "mfa": False}]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-refs", "implicit-refs"])
def test_tricky_policies_equal_cedarpy_without_a_schema(seed: int, implicit: bool) -> None:
    rng = random.Random(seed)
    store = EntityStore(_world(rng, implicit_refs=implicit))
    sim = Simulator(POLICIES, store, progress=False)
    sim.evaluator().grouping = "always"  # small sets are otherwise evaluated request by request
    rs = _requests(rng, 3000, contexts=CONTEXTS)
    m = sim.run(rs)
    assert_same_as_cedar(m, reference(rs, sim.policies, store, None))
    stats = m.evaluation.stats
    assert stats["evaluations"] < len(rs)  # it did group
    assert stats["exact_reevaluations"] > 0  # u12 is unknown and `err` errs: those are re-checked one by one


def test_each_distinct_request_once_when_grouping_does_not_pay() -> None:
    rng = random.Random(5)
    store = EntityStore(_world(rng))
    rs = _requests(rng, 500, contexts=CONTEXTS)
    sim = Simulator(POLICIES, store, progress=False)
    m = sim.run(rs)
    assert m.evaluation.stats["policy_groups"] == 0  # the direct path
    assert_same_as_cedar(m, reference(rs, sim.policies, store, None))
    sim.evaluator().grouping = "never"
    assert sim.run(rs + rs).evaluation.stats["evaluations"] <= len(rs)  # duplicates are evaluated once


def test_true_is_not_one_in_contexts() -> None:
    pol = 'permit(principal, action, resource) when { context.flag == true };'
    store = EntityStore([{"uid": {"type": "U", "id": "a"}, "attrs": {}, "parents": []}])
    ctxs = [{"flag": True}, {"flag": 1}, {"flag": False}, {"flag": 0}, {"flag": "true"}] * 40
    rs = RequestSet(['U::"a"'] * len(ctxs), ['Action::"x"'] * len(ctxs), ['U::"a"'] * len(ctxs), ctxs)
    m = Simulator(pol, store, progress=False).run(rs)
    assert list(m.frame["decision"][:5]) == ["allow", "deny", "deny", "deny", "deny"]
    assert_same_as_cedar(m, reference(rs, Policies(pol), store, None))


def test_records_and_entity_references_in_the_context() -> None:
    pol = """
    permit(principal, action, resource) when { context.consent.client == resource.owner };
    permit(principal, action, resource) when { context.req == {"a": 1, "b": [1, 2]} };
    """
    store = EntityStore([
        {"uid": {"type": "U", "id": u}, "attrs": {}, "parents": []} for u in "abc"
    ] + [{"uid": {"type": "D", "id": d}, "attrs": {"owner": {"__entity": {"type": "U", "id": o}}}, "parents": []} for d, o in [("d1", "a"), ("d2", "b")]])
    rng = random.Random(4)
    ctxs = [
        {"consent": {"client": {"__entity": {"type": "U", "id": rng.choice("abc")}}}, "req": rng.choice([{"a": 1, "b": [1, 2]}, {"a": 1, "b": [2, 1]}, {"a": 2}])}
        for _ in range(300)
    ]
    rs = RequestSet([f'U::"{rng.choice("abc")}"' for _ in ctxs], ['Action::"x"'] * len(ctxs), [f'D::"{rng.choice(["d1", "d2"])}"' for _ in ctxs], ctxs)
    m = Simulator(pol, store, progress=False).run(rs)
    assert_same_as_cedar(m, reference(rs, Policies(pol), store, None))


def test_tags_and_unanalysable_policies_fall_back_to_identical_requests() -> None:
    pol = """
    permit(principal, action, resource) when { resource.hasTag("color") && resource.getTag("color") == "red" };
    permit(principal, action, resource) when { (if context.p then principal else resource).level > 2 };
    """
    shapes = analyse(Policies(pol).pst)
    assert [s.exact is not None for s in shapes] == [True, True]
    ents = [{"uid": {"type": "U", "id": f"u{i}"}, "attrs": {"level": i}, "parents": []} for i in range(5)]
    ents += [{"uid": {"type": "D", "id": f"d{i}"}, "attrs": {"level": 4 - i}, "parents": [], "tags": {"color": "red" if i % 2 else "blue"}} for i in range(5)]
    store = EntityStore(ents)
    rs = RequestSet.grid([f'U::"u{i}"' for i in range(5)], ["x"], [f'D::"d{i}"' for i in range(5)], [{"p": True}, {"p": False}])
    m = Simulator(pol, store, progress=False).run(rs)
    assert_same_as_cedar(m, reference(rs, Policies(pol), store, None))


def test_with_a_schema_invalid_requests_get_no_decision_and_cedars_message() -> None:
    schema = Schema("""
    entity User = { level: Long };
    entity Doc = { level: Long };
    action view appliesTo { principal: [User], resource: [Doc], context: { hour: Long } };
    """)
    pol = 'permit(principal, action == Action::"view", resource) when { principal.level >= resource.level && context.hour > 7 };'
    ents = [{"uid": {"type": "User", "id": f"u{i}"}, "attrs": {"level": i}, "parents": []} for i in range(4)]
    ents += [{"uid": {"type": "Doc", "id": f"d{i}"}, "attrs": {"level": i}, "parents": []} for i in range(4)]
    store = EntityStore(ents)
    ctxs = [{"hour": 9}, {"hour": 5}, {"hour": "9"}, {}, {"hour": 9, "extra": 1}]
    rs = RequestSet.grid([f'User::"u{i}"' for i in range(4)] + ['Doc::"d0"'], ["view"], [f'Doc::"d{i}"' for i in range(4)], ctxs)
    m = Simulator(pol, store, schema, progress=False).run(rs)
    assert_same_as_cedar(m, reference(rs, Policies(pol), store, schema))
    counts = m.counts
    assert counts["no_decision"] == 4 * 4 * 3 + 4 * 5  # bad contexts, and a Doc as principal
    nd = m.frame[m.frame["decision"] == "no_decision"]
    assert nd["errors"].str.contains("failed to build request").all()


def test_bare_actions_dict_uids_and_none_contexts_are_accepted() -> None:
    pol = 'permit(principal, action == Action::"read", resource);'
    store = EntityStore([{"uid": {"type": "U", "id": "a"}, "attrs": {}, "parents": []}])
    rs = RequestSet.from_records([
        {"principal": {"type": "U", "id": "a"}, "action": "read", "resource": ("U", "a"), "context": None},
        {"principal": 'U::"a"', "action": 'Action::"write"', "resource": 'U :: "a"'},
    ])
    m = Simulator(pol, store, progress=False).run(rs)
    assert list(m.frame["decision"]) == ["allow", "deny"]


def test_parallel_workers_give_the_same_decisions() -> None:
    rng = random.Random(9)
    store = EntityStore(_world(rng))
    rs = _requests(rng, 4000, contexts=CONTEXTS)
    serial = Simulator(POLICIES, store, progress=False).run(rs)
    sim = Simulator(POLICIES, store, progress=False, workers=2)
    sim.evaluator().parallel_above = 10  # force the process pool on a small set
    sim.evaluator().grouping = "always"
    parallel = sim.run(rs)
    assert parallel.evaluation.stats["processes"] == 2
    assert np.array_equal(serial.decision, parallel.decision)
    assert [serial.evaluation.result(i) for i in range(200)] == [parallel.evaluation.result(i) for i in range(200)]


def test_policies_reading_the_same_paths_share_a_group() -> None:
    pol = """
    permit(principal, action == Action::"a", resource) when { principal.level > 1 };
    permit(principal, action == Action::"b", resource) when { principal.level > 1 };
    forbid(principal, action, resource) when { principal.level > 1 };
    """
    store = EntityStore([{"uid": {"type": "U", "id": f"u{i}"}, "attrs": {"level": i}, "parents": []} for i in range(5)])
    sim = Simulator(pol, store, progress=False)
    ev = sim.evaluator()
    ev.grouping = "always"
    assert len(ev.groups) == 2  # the two permits together, the forbid alone
    rs = RequestSet.grid([f'U::"u{i}"' for i in range(5)] * 100, ["a", "b", "c"], ['U::"u0"'])
    m = sim.run(rs)
    assert_same_as_cedar(m, reference(rs, sim.policies, store, None))
    assert m.evaluation.stats["evaluations"] <= 2 * 3 * 2  # level class (<=1, >1) x actions, per group


def test_enumerated_entity_ids_decide_validity() -> None:
    schema = Schema('entity Color enum ["red", "blue"]; entity User; action paint appliesTo { principal: [User], resource: [Color] };')
    pol = "permit(principal, action, resource);"
    store = EntityStore([{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": []}])
    rs = RequestSet.grid(['User::"a"'] * 50, ["paint"], ['Color::"red"', 'Color::"green"', 'Color::"blue"'])
    sim = Simulator(pol, store, schema, progress=False)
    sim.evaluator().grouping = "always"
    m = sim.run(rs)
    assert list(m.frame["decision"][:3]) == ["allow", "no_decision", "allow"]
    assert_same_as_cedar(m, reference(rs, Policies(pol), store, schema))


def test_plain_type_and_id_objects_are_records_as_cedar_reads_them() -> None:
    pol = """
    permit(principal, action == Action::"a", resource) when { resource.owner == {"type": "U", "id": "u1"} };
    permit(principal, action == Action::"b", resource) when { resource.owner.id == "u2" };
    permit(principal, action == Action::"c", resource) when { resource.owner == principal };
    """
    ents = [{"uid": {"type": "U", "id": f"u{i}"}, "attrs": {}, "parents": []} for i in range(3)]
    ents += [{"uid": {"type": "D", "id": f"d{i}"}, "attrs": {"owner": {"type": "U", "id": f"u{i % 3}"}}, "parents": []} for i in range(9)]
    store = EntityStore(ents)
    rs = RequestSet.grid([f'U::"u{i}"' for i in range(3)], ["a", "b", "c"], [f'D::"d{i}"' for i in range(9)])
    rs = rs + rs + rs
    sim = Simulator(pol, store, progress=False)
    sim.evaluator().grouping = "always"
    m = sim.run(rs)
    assert_same_as_cedar(m, reference(rs, Policies(pol), store, None))
    assert m.counts["allow"] == 3 * (9 + 9)  # a: 3 docs x 3 users; b: 3 docs x 3 users; c: never (a record is no entity)
