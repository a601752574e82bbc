"""Attribute providers feed Cedar entities: dicts, JSON, DuckDB, callables, our own objects; cached, invalidated."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
from pathlib import Path

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.policy import (
    CallableEntities,
    DictEntities,
    DuckDBEntities,
    EntityStore,
    JsonEntities,
    ObjectEntities,
    PolicyEngine,
    Ref,
    collection_entities,
    provider_entities,
    to_cedar_value,
    tool_entities,
)


def test_python_values_become_cedar_values() -> None:
    assert to_cedar_value({"a": 1, "b": None, "c": [True, "x"], "d": {"e": Ref("User", "ann")}}) == {
        "a": 1, "c": [True, "x"], "d": {"e": {"__entity": {"type": "User", "id": "ann"}}},
    }
    assert to_cedar_value(1.5) == {"__extn": {"fn": "decimal", "arg": "1.5000"}}
    assert to_cedar_value(decimal.Decimal("2")) == {"__extn": {"fn": "decimal", "arg": "2.0000"}}
    assert to_cedar_value(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == {"__extn": {"fn": "datetime", "arg": "2025-01-02T03:04:05.000Z"}}
    assert to_cedar_value(dt.timedelta(minutes=2)) == {"__extn": {"fn": "duration", "arg": "120000ms"}}
    assert to_cedar_value(ipaddress.ip_network("10.0.0.0/8")) == {"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}}
    assert to_cedar_value({"b", "a"}) == ["a", "b"]
    with pytest.raises(ValidationError, match=r"x.y = .* has no Cedar type"):
        to_cedar_value(object(), where="x.y")
    with pytest.raises(ValidationError, match="64-bit Long"):
        to_cedar_value(2**70)


def test_dict_entities_with_references_and_parents_decide() -> None:
    users = DictEntities("User", {"ann": {"team": "core"}, "bob": {"team": "web"}}, parents={"ann": ['Group::"admins"']}, refs={"team": "Team"})
    docs = DictEntities("Doc", {"d1": {"team": Ref("Team", "core"), "readers": ["ann", "bob"]}}, refs={"readers": "User"})
    teams = DictEntities("Team", {"core": {}, "web": {}})
    groups = DictEntities("Group", {"admins": {}})
    e = PolicyEngine(
        """permit(principal, action == Action::"read", resource) when { principal.team == resource.team };
           permit(principal in Group::"admins", action == Action::"delete", resource);
           permit(principal, action == Action::"list", resource) when { resource.readers.contains(principal) };""",
        [users, docs, teams, groups],
    )
    assert e.filter_allowed('User::"ann"', "read", ['Doc::"d1"']) == [True]
    assert e.filter_allowed('User::"bob"', "read", ['Doc::"d1"']) == [False]
    assert [e.evaluate(u, "delete", 'Doc::"d1"').allowed for u in ('User::"ann"', 'User::"bob"')] == [True, False]
    assert e.evaluate('User::"bob"', "list", 'Doc::"d1"').allowed


def test_json_entities_from_a_file_reload_on_invalidate(tmp_path: Path) -> None:
    f = tmp_path / "entities.json"
    f.write_text(json.dumps([{"uid": {"type": "User", "id": "ann"}, "attrs": {"level": 1}, "parents": []}]))
    provider = JsonEntities(f)
    store = EntityStore(provider)
    e = PolicyEngine("permit(principal, action, resource) when { principal.level > 1 };", store)
    assert not e.evaluate('User::"ann"', "read", 'User::"ann"').allowed
    f.write_text(json.dumps([{"uid": {"type": "User", "id": "ann"}, "attrs": {"level": 5}, "parents": []}]))
    assert not e.evaluate('User::"ann"', "read", 'User::"ann"').allowed  # cached
    v = provider.version
    store.invalidate(provider)
    assert e.evaluate('User::"ann"', "read", 'User::"ann"').allowed
    assert provider.version == v + 1
    f.write_text("{not json")
    provider.invalidate()
    with pytest.raises(ValidationError, match=r"entities.json: not JSON"):
        store.entities()


def test_duckdb_rows_are_entities(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "hr.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE people (id VARCHAR, dept VARCHAR, level INTEGER, manager VARCHAR, groups VARCHAR[])")
    con.execute("INSERT INTO people VALUES ('ann', 'eng', 3, NULL, ['Group::\"staff\"']), ('bob', 'eng', 1, 'ann', ['Group::\"staff\"', 'Group::\"oncall\"'])")
    con.close()
    people = DuckDBEntities("User", "people", database=db, parents="groups", refs={"manager": "User"})
    ents = {e["uid"]["id"]: e for e in people.entities()}
    assert ents["bob"]["attrs"] == {"dept": "eng", "level": 1, "manager": {"__entity": {"type": "User", "id": "ann"}}}
    assert "manager" not in ents["ann"]["attrs"]  # NULL: no attribute
    assert ents["bob"]["parents"] == [{"type": "Group", "id": "staff"}, {"type": "Group", "id": "oncall"}]
    e = PolicyEngine(
        'permit(principal in Group::"oncall", action, resource) when { resource has manager && resource.manager == principal.manager };',
        [people, DictEntities("Group", {"staff": {}, "oncall": {}})],
    )
    assert e.evaluate('User::"bob"', "page", 'User::"bob"').allowed
    assert not e.evaluate('User::"ann"', "page", 'User::"bob"').allowed
    bad = DuckDBEntities("User", "SELECT 1 AS x", database=db)
    with pytest.raises(ValidationError, match="no id column 'id'"):
        bad.entities()


def test_callables_objects_tools_collections_and_providers() -> None:
    calls = []

    def load() -> dict:
        calls.append(1)
        return {"ann": {"level": 2}}

    users = CallableEntities(load, type="User", ttl_s=None)
    users.entities()
    users.entities()
    assert len(calls) == 1  # cached
    users.invalidate()
    users.entities()
    assert len(calls) == 2

    def search(q: str) -> str:
        """Search the web."""
        return q

    tools = tool_entities([search], extra={"search": {"risk": "low"}})
    assert tools.entities()[0] == {"uid": {"type": "Tool", "id": "search"}, "attrs": {"name": "search", "description": "Search the web.", "risk": "low"}, "parents": []}

    class Coll:
        def __init__(self, name: str, metadata: dict) -> None:
            self.name, self.metadata = name, metadata

    colls = collection_entities([Coll("hr", {"sensitivity": "confidential"})], parents={"hr": ['Dept::"people"']})
    assert colls.entities()[0]["attrs"] == {"sensitivity": "confidential"} and colls.entities()[0]["parents"] == [{"type": "Dept", "id": "people"}]

    from lumina_lab.providers import Pricing, ProviderRegistry, SimulatedProvider

    reg = ProviderRegistry()
    reg.register(SimulatedProvider("gpt-4.1-mini", id="mini", pricing=Pricing(input_per_m=0.4, output_per_m=1.6), capabilities={"code": 0.8}))
    provs = provider_entities(reg, extra={"mini": {"approved": True}})
    (ent,) = provs.entities()
    assert ent["uid"] == {"type": "Provider", "id": "mini"}
    assert ent["attrs"]["approved"] is True and ent["attrs"]["code"] == 80 and ent["attrs"]["model"] == "gpt-4.1-mini"
    assert ent["attrs"]["input_per_m"] == {"__extn": {"fn": "decimal", "arg": "0.4000"}}
    e = PolicyEngine(
        'permit(principal, action, resource) when { resource.approved && resource.input_per_m.lessThan(decimal("1.0")) };',
        [provs, users],
    )
    assert e.evaluate('User::"ann"', "use_provider", 'Provider::"mini"').allowed

    objs = ObjectEntities("Thing", [1, 2], id=str, attrs=lambda o: {"even": o % 2 == 0})
    assert [x["attrs"]["even"] for x in objs.entities()] == [False, True]


def test_providers_merge_and_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    roles = DictEntities("User", {"ann": {"role": "staff"}})
    groups = DictEntities("User", {"ann": {"level": 3}}, parents={"ann": ['Group::"g"']})
    store = EntityStore(roles, groups)
    (ann,) = store.entities()
    assert ann["attrs"] == {"role": "staff", "level": 3} and ann["parents"] == [{"type": "Group", "id": "g"}]
    assert 'User::"ann"' in store and len(store) == 1

    clock = [100.0]
    monkeypatch.setattr("lumina_lab.policy.attributes.time.monotonic", lambda: clock[0])
    n = [0]

    def load() -> dict:
        n[0] += 1
        return {"ann": {"n": n[0]}}

    fresh = CallableEntities(load, type="User", ttl_s=10)
    s2 = EntityStore(fresh)
    assert s2.entities()[0]["attrs"]["n"] == 1
    clock[0] += 5
    assert s2.entities()[0]["attrs"]["n"] == 1
    clock[0] += 6
    assert s2.entities()[0]["attrs"]["n"] == 2  # stale after ttl: reloaded, version bumped


def test_bad_provider_output_is_clear() -> None:
    with pytest.raises(ValidationError, match="returned dict, not a list"):
        EntityStore(CallableEntities(lambda: {"x": 1})).entities()
    with pytest.raises(ValidationError, match="has no uid"):
        EntityStore([{"attrs": {}}]).entities()
