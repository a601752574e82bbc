"""The engine: sync and async evaluation, batches, enforcement with events, caching, per-call entities."""

from __future__ import annotations

import asyncio

import pytest

from lumina_lab.errors import PolicyDenied
from lumina_lab.events import InProcessBus
from lumina_lab.policy import (
    Decision,
    DictEntities,
    PolicyDecided,
    PolicyDeniedEvent,
    PolicyEngine,
    Request,
    RequestSet,
)

POLICIES = """
@id("owners-edit")
permit(principal, action == Action::"edit", resource) when { resource.owner == principal };

@id("staff-read")
permit(principal, action == Action::"read", resource) when { principal.role == "staff" };

@id("no-secrets")
forbid(principal, action, resource) when { resource.secret && principal.role != "admin" };
"""


def _engine(**kw: object) -> PolicyEngine:
    users = DictEntities("User", {"ann": {"role": "staff"}, "bob": {"role": "guest"}, "cy": {"role": "admin"}})
    docs = DictEntities("Doc", {"d1": {"owner": "ann", "secret": False}, "d2": {"owner": "bob", "secret": True}}, refs={"owner": "User"})
    return PolicyEngine(POLICIES, [users, docs], **kw)  # type: ignore[arg-type]


def test_a_decision_names_the_determining_policies_and_their_ids() -> None:
    e = _engine()
    d = e.evaluate('User::"ann"', "edit", 'Doc::"d1"')
    assert d.allowed and bool(d) and d.decision == "allow"
    assert d.policies == ("policy0",) and d.annotations == {"policy0": "owners-edit"} and d.determining == ["owners-edit"]
    assert repr(d) == 'Decision(ALLOW by policy0 "owners-edit": User::"ann" edit Doc::"d1")'
    assert "<b style='color:#1a7f37'>ALLOW</b>" in d._repr_html_()
    f = e.evaluate('User::"bob"', "edit", 'Doc::"d2"')
    assert f.decision == "deny" and f.determining == ["no-secrets"]
    assert f.explain() == 'DENY User::"bob" edit Doc::"d2": forbidden by policy2 "no-secrets"'
    g = e.evaluate('User::"bob"', "read", 'Doc::"d1"')
    assert g.default_deny and "default deny" in repr(g)
    assert e.evaluate(Request.of('User::"cy"', "read", 'Doc::"d2"')).decision == "deny"  # cy is no staff


async def test_async_evaluate_and_authorize() -> None:
    e = _engine()
    assert (await e.aevaluate('User::"ann"', "read", 'Doc::"d1"')).allowed
    with pytest.raises(PolicyDenied, match="no-secrets"):
        await e.aauthorize('User::"ann"', "read", 'Doc::"d2"')
    got = await e.aevaluate_batch([('User::"ann"', "edit", 'Doc::"d1"'), ('User::"bob"', "edit", 'Doc::"d1"')])
    assert [d.decision for d in got] == ["allow", "deny"]


def test_batches_accept_requests_dicts_tuples_and_request_sets() -> None:
    e = _engine()
    got = e.evaluate_batch([
        Request.of('User::"ann"', "edit", 'Doc::"d1"'),
        {"principal": {"type": "User", "id": "bob"}, "action": 'Action::"edit"', "resource": ("Doc", "d2")},
        ('User::"cy"', "read", 'Doc::"d1"'),
    ])
    assert [d.decision for d in got] == ["allow", "deny", "deny"]
    rs = RequestSet.grid(['User::"ann"', 'User::"bob"'], ["read", "edit"], ['Doc::"d1"', 'Doc::"d2"'])
    assert sum(d.allowed for d in e.evaluate_batch(rs)) == 2  # ann reads d1, ann edits d1


def test_filter_allowed_checks_many_resources_at_once_and_takes_per_call_entities() -> None:
    e = _engine()
    assert e.filter_allowed('User::"ann"', "read", ['Doc::"d1"', 'Doc::"d2"']) == [True, False]
    assert e.authorize_many('User::"ann"', "edit", ['Doc::"d1"', 'Doc::"d2"']) == ['Doc::"d1"']
    temp = [{"uid": {"type": "Doc", "id": "tmp"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "bob"}}, "secret": False}, "parents": []}]
    assert e.filter_allowed('User::"bob"', "edit", ['Doc::"tmp"', 'Doc::"d1"'], entities=temp) == [True, False]
    with pytest.raises(Exception, match="unknown resource"):  # the temporary entity was for that call only
        e.evaluate('User::"bob"', "edit", 'Doc::"tmp"')


def test_authorize_raises_with_the_explanation_and_publishes_events() -> None:
    bus = InProcessBus()
    seen: list = []
    bus.subscribe("policy.*", seen.append)
    e = _engine(bus=bus)
    assert e.authorize('User::"ann"', "edit", 'Doc::"d1"', point="docs").allowed
    with pytest.raises(PolicyDenied) as info:
        e.authorize('User::"bob"', "edit", 'Doc::"d2"', point="docs")
    assert 'forbidden by policy2 "no-secrets"' in str(info.value) and "a forbid policy applies" in str(info.value)
    assert isinstance(info.value.decision, Decision)  # type: ignore[attr-defined]
    bus.drain_sync()
    types = [ev.type for ev in seen]
    assert types == ["policy.decided", "policy.decided", "policy.denied"]
    denied = seen[2]
    assert isinstance(denied, PolicyDeniedEvent) and denied.point == "docs" and denied.annotations == {"policy2": "no-secrets"}
    assert isinstance(seen[0], PolicyDecided) and seen[0].decision == "allow"
    bus.close_sync()


def test_evaluate_records_decisions_only_when_asked() -> None:
    bus = InProcessBus()
    seen: list = []
    bus.subscribe("policy.decided", seen.append)
    _engine(bus=bus).evaluate('User::"ann"', "edit", 'Doc::"d1"')
    _engine(bus=bus, record="all").evaluate('User::"ann"', "edit", 'Doc::"d1"')
    bus.drain_sync()
    assert len(seen) == 1 and seen[0].point == "engine"
    bus.close_sync()


def test_cached_decisions_follow_the_attribute_providers() -> None:
    roles = {"ann": {"role": "staff"}}
    users = DictEntities("User", lambda: dict(roles))
    docs = DictEntities("Doc", {"d1": {"owner": "ann", "secret": False}}, refs={"owner": "User"})
    e = PolicyEngine(POLICIES, [users, docs])
    assert e.evaluate('User::"ann"', "read", 'Doc::"d1"').allowed
    roles["ann"] = {"role": "guest"}
    assert e.evaluate('User::"ann"', "read", 'Doc::"d1"').allowed  # cached until invalidated: explicit
    e.invalidate()
    assert not e.evaluate('User::"ann"', "read", 'Doc::"d1"').allowed
    assert len(e._cache) == 1


def test_policies_from_a_folder_with_links(tmp_path) -> None:
    (tmp_path / "policies.cedar").write_text('@id("view") permit(principal == ?principal, action, resource == ?resource);')
    (tmp_path / "linked").write_text('[{"template_id": "view", "link_id": "AnnD1", "args": {"?principal": "User::\\"ann\\"", "?resource": "Doc::\\"d1\\""}}]')
    e = PolicyEngine(tmp_path, [DictEntities("User", {"ann": {}, "bob": {}}), DictEntities("Doc", {"d1": {}})])
    d = e.evaluate('User::"ann"', "read", 'Doc::"d1"')
    assert d.policies == ("AnnD1",) and d.determining == ["view"]
    assert not e.evaluate('User::"bob"', "read", 'Doc::"d1"').allowed
    assert "PolicyEngine(Policies('policies.cedar': 1 policy, 1 template, 1 link" in repr(e)


def test_evaluation_from_many_threads_is_consistent() -> None:
    e = _engine()

    async def many() -> list[bool]:
        return await asyncio.gather(*(asyncio.to_thread(lambda: e.evaluate('User::"ann"', "read", 'Doc::"d1"').allowed) for _ in range(32)))

    assert all(asyncio.run(many()))


def test_enforcement_decisions_can_be_sampled_but_denials_are_always_events() -> None:
    bus = InProcessBus()
    seen: list = []
    bus.subscribe("policy.*", seen.append)
    e = _engine(bus=bus, sample=0.0)
    for _ in range(5):
        e.authorize('User::"ann"', "edit", 'Doc::"d1"')
    with pytest.raises(PolicyDenied):
        e.authorize('User::"bob"', "edit", 'Doc::"d1"')
    bus.drain_sync()
    assert [ev.type for ev in seen] == ["policy.denied"]
    bus.close_sync()
