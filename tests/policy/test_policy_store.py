"""The policy store: validated versions, history, persistence, rollback, templates and links."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.events import InProcessBus
from lumina_lab.policy import DictEntities, Link, Policies, PolicyEngine, PolicyStore, PolicyVersionPublished, Schema

SCHEMA = """
entity User;
entity Doc = { owner: User };
action read, edit appliesTo { principal: [User], resource: [Doc] };
"""
V1 = 'permit(principal, action == Action::"read", resource);'
V2 = V1 + '\n@id("owner-edit") permit(principal, action == Action::"edit", resource) when { resource.owner == principal };'


def test_versions_are_validated_numbered_and_kept(tmp_path: Path) -> None:
    bus = InProcessBus()
    seen: list = []
    bus.subscribe("policy.version.published", seen.append)
    store = PolicyStore(tmp_path / "policies", bus=bus)
    v1 = store.publish(V1, SCHEMA, message="read only")
    v2 = store.publish(V2, message="owners edit")  # keeps the live schema
    assert (v1.number, v2.number, store.live.number) == (1, 2, 2)
    assert v2.schema is not None and v2.schema.text == SCHEMA
    assert store.publish(V2) is v2  # nothing new: no new version
    with pytest.raises(ValidationError, match="unrecognized action"):
        store.publish(V2 + '\npermit(principal, action == Action::"fly", resource);')
    assert len(store) == 2  # the invalid version was not published
    hist = store.history()
    assert list(hist["version"]) == [1, 2] and list(hist["live"]) == [False, True] and list(hist["policies"]) == [1, 2]
    assert "+@id(\"owner-edit\")" in store.diff_text(1, 2)
    bus.drain_sync()
    assert [e.version for e in seen] == [1, 2] and isinstance(seen[0], PolicyVersionPublished)
    assert seen[1].path and Path(seen[1].path).name == "v0002"
    bus.close_sync()

    again = PolicyStore(tmp_path / "policies")  # reloaded from disk, in another process as well
    assert [v.message for v in again] == ["read only", "owners edit"] and again.live.digest == v2.digest
    again.promote(1)
    assert PolicyStore(tmp_path / "policies").live.number == 1  # the rollback is persisted
    assert again.get(-1).number == 2
    with pytest.raises(ValidationError, match="no policy version 7"):
        again.get(7)
    assert "v1</b> (live)" in again._repr_html_()


def test_a_folder_publishes_with_its_schema_and_links(tmp_path: Path) -> None:
    (tmp_path / "policies.cedar").write_text(V1 + '\n@id("share") permit(principal == ?principal, action == Action::"edit", resource == ?resource);\n')
    (tmp_path / "policies.cedarschema").write_text(SCHEMA)
    (tmp_path / "linked").write_text('[{"template_id": "share", "link_id": "BobD1", "args": {"?principal": "User::\\"bob\\"", "?resource": "Doc::\\"d1\\""}}]')
    store = PolicyStore()
    v = store.publish(tmp_path)
    assert v.schema is not None and [i.id for i in v.policies] == ["policy0", "BobD1"]
    e = PolicyEngine(v, [DictEntities("User", {"ann": {}, "bob": {}}), DictEntities("Doc", {"d1": {"owner": "ann"}}, refs={"owner": "User"})])
    assert e.version == 1 and e.schema is v.schema
    d = e.evaluate('User::"bob"', "edit", 'Doc::"d1"')
    assert d.policies == ("BobD1",) and d.determining == ["share"] and d.version == 1


def test_templates_link_by_annotation_or_position_and_links_are_validated() -> None:
    text = '@id("viewer") permit(principal == ?principal, action == Action::"read", resource in ?resource);'
    p = Policies(text).with_links([Link("viewer", "AnnDocs", {"?principal": 'User::"ann"', "?resource": 'Doc::"d1"'})])
    p = p.with_links([{"template_id": "policy0", "link_id": "BobDocs", "args": {"principal": 'User::"bob"', "resource": 'Doc::"d1"'}}])
    assert [(i.id, i.kind, i.template, i.label) for i in p] == [("AnnDocs", "link", "policy0", "viewer"), ("BobDocs", "link", "policy0", "viewer")]
    assert p.links[1].to_json() == {"template_id": "policy0", "link_id": "BobDocs", "args": {"?principal": 'User::"bob"', "?resource": 'Doc::"d1"'}}
    assert p.validate(Schema(SCHEMA)) == []
    bad = Policies(text, [{"template_id": "viewer", "link_id": "Oops", "args": {"?principal": 'Doc::"d1"', "?resource": 'Doc::"d1"'}}])
    issues = bad.validate(Schema(SCHEMA))
    assert issues and issues[0].policy_id == "Oops" and "linked from policy0" in issues[0].message
    with pytest.raises(ValidationError, match="link ids must be new"):
        p.with_links([Link("viewer", "AnnDocs", {"?principal": 'User::"cy"', "?resource": 'Doc::"d1"'})]).handle  # noqa: B018


def test_policies_from_several_files_report_the_right_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.cedar").write_text(V1 + "\n")
    (tmp_path / "b.cedar").write_text("\n\nforbid(principal, action, resource) when { 1 + };\n")
    with pytest.raises(ValidationError, match=r"b\.cedar:3:48 in policy policy1"):
        Policies.from_dir(tmp_path)
    (tmp_path / "b.cedar").write_text('@id("nope") forbid(principal, action, resource);\n')
    p = Policies.from_dir(tmp_path)
    assert p.where(p.info("policy1").statement.start) == ("b.cedar", 1, 1)
    assert "digest" in repr(p) and "<table>" in p._repr_html_()
