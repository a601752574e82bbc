"""Bad input is one clear error naming what is wrong and where; nothing is ever silently allowed."""

from __future__ import annotations

import pytest

from lumina_lab.errors import PolicyDenied, ValidationError
from lumina_lab.policy import DictEntities, Policies, PolicyEngine, Schema
from lumina_lab.policy.source import split_policies, syntax_errors

SCHEMA = """
entity User = { level: Long };
entity Doc = { owner: User };
action read appliesTo { principal: [User], resource: [Doc], context: { mfa: Bool } };
"""
USERS = DictEntities("User", {"ann": {"level": 3}, "bob": {"level": 1}})
DOCS = DictEntities("Doc", {"d1": {"owner": "ann"}}, refs={"owner": "User"})


def test_a_malformed_policy_names_its_id_annotation_line_and_column() -> None:
    text = 'permit(principal, action, resource);\n\n@id("broken")\npermit(principal, action, resource)\n  when { principal.level == };\n'
    with pytest.raises(ValidationError) as info:
        Policies(text, name="app.cedar")
    msg = str(info.value)
    assert "app.cedar:5:29 in policy policy1 (@id \"broken\"): unexpected token `}`" in msg
    assert "  when { principal.level == };" in msg and "^" in msg


def test_every_broken_statement_is_reported_with_its_own_location() -> None:
    text = (
        "permit(principal, action, resource) when { context.a && # };\n"
        'permot(principal, action, resource);\n'
        "permit(principal, action, resource) when { (principal.y == 1)) };\n"
        "permit(principal, action, resource)"
    )
    errs = syntax_errors(text)
    assert [(e.policy_id, e.line, e.column) for e in errs] == [("policy0", 1, 57), ("policy1", 2, 1), ("policy2", 3, 62), ("policy3", 4, 36)]
    assert "invalid token" in errs[0].message and "permot" in errs[1].message
    assert "no closing ';'" in errs[3].message


def test_statements_know_their_annotations_and_templates_and_ignore_strings_and_comments() -> None:
    st = split_policies('// a ; in a comment\n@id("x;y") @note permit(principal == ?principal, action, resource) when { context.s == ";" };\nforbid(principal, action, resource);')
    assert [(s.policy_id, s.annotations, s.effect, s.is_template) for s in st] == [
        ("policy0", {"id": "x;y", "note": ""}, "permit", True),
        ("policy1", {}, "forbid", False),
    ]


def test_a_schema_violation_names_the_policy_line_and_what_is_wrong() -> None:
    text = 'permit(principal, action == Action::"read", resource)\n  when { principal.level > "high" };\n@id("w")\npermit(principal, action == Action::"write", resource);'
    with pytest.raises(ValidationError) as info:
        PolicyEngine(text, [USERS, DOCS], SCHEMA)
    msg = str(info.value)
    assert "policy policy0" in msg and "expected Long but saw String" in msg
    assert 'policies:4:29 policy policy1 (@id "w"): unrecognized action `Action::"write"`' in msg
    issues = Policies(text).validate(Schema(SCHEMA))
    assert {i.policy_id for i in issues} == {"policy0", "policy1"}


def test_a_malformed_schema_is_located() -> None:
    with pytest.raises(ValidationError, match=r"schema:2:19: error parsing schema: unexpected token"):
        Schema("entity User;\nentity Doc = { a: };\n")


def test_an_unknown_entity_is_an_error_not_a_decision() -> None:
    engine = PolicyEngine("permit(principal, action, resource);", [USERS, DOCS])
    with pytest.raises(ValidationError, match=r'unknown principal User::"zoe": it is not in the entities'):
        engine.evaluate('User::"zoe"', "read", 'Doc::"d1"')
    with pytest.raises(ValidationError, match=r'unknown resource Doc::"nope"'):
        engine.authorize('User::"ann"', "read", 'Doc::"nope"')
    deny = PolicyEngine("permit(principal, action, resource);", [USERS, DOCS], unknown="deny")
    d = deny.evaluate('User::"zoe"', "read", 'Doc::"d1"')
    assert d.decision == "deny" and "unknown principal" in d.errors[0]  # even under a permit-everything policy
    with pytest.raises(PolicyDenied):
        deny.authorize('User::"zoe"', "read", 'Doc::"d1"')


def test_a_request_that_violates_the_schema_is_an_error_or_no_decision() -> None:
    engine = PolicyEngine('permit(principal, action == Action::"read", resource);', [USERS, DOCS], SCHEMA)
    with pytest.raises(ValidationError, match=r"does not match the schema: .*mfa"):
        engine.evaluate('User::"ann"', "read", 'Doc::"d1"', {})
    d = engine.evaluate('User::"ann"', "read", 'Doc::"d1"', {"mfa": "yes"}, strict=False)
    assert d.decision == "no_decision" and not d.allowed and d.errors
    with pytest.raises(PolicyDenied):
        engine.authorize('User::"ann"', "read", 'Doc::"d1"', {"mfa": 1})
    assert engine.evaluate('User::"ann"', "read", 'Doc::"d1"', {"mfa": True}).allowed


def test_an_erroring_policy_never_allows() -> None:
    engine = PolicyEngine(
        '@id("needs-clearance") permit(principal, action, resource) when { principal.clearance > 1 };', [USERS, DOCS]
    )
    d = engine.evaluate('User::"ann"', "read", 'Doc::"d1"')
    assert d.decision == "deny" and d.policies == ()
    assert "clearance" in d.errors[0] and "policy0" in d.errors[0]


def test_entities_that_violate_the_schema_name_entity_and_attribute() -> None:
    bad = DictEntities("User", {"ann": {"level": "high"}})
    engine = PolicyEngine('permit(principal, action == Action::"read", resource);', [bad, DOCS], SCHEMA)
    with pytest.raises(ValidationError) as info:
        engine.evaluate('User::"ann"', "read", 'Doc::"d1"', {"mfa": True})
    msg = str(info.value)
    assert 'entity `User::"ann"`' in msg and "attribute `level`" in msg and "should be Long" in msg


def test_bad_uids_links_and_files_are_clear() -> None:
    engine = PolicyEngine("permit(principal, action, resource);", [USERS, DOCS])
    with pytest.raises(ValidationError, match=r"principal 'ann' is not a Cedar entity uid"):
        engine.evaluate("ann", "read", 'Doc::"d1"')
    tmpl = '@id("t") permit(principal == ?principal, action, resource);'
    with pytest.raises(ValidationError, match="template links of policies cannot be applied"):
        Policies(tmpl, [{"template_id": "nope", "link_id": "L", "args": {"?principal": 'User::"ann"'}}])
    with pytest.raises(ValidationError, match="needs template_id, link_id and args"):
        Policies(tmpl, [{"template": "t"}])
    with pytest.raises(ValidationError, match="unknown slot"):
        Policies(tmpl, [{"template_id": "t", "link_id": "L", "args": {"?group": 'User::"ann"'}}])
    with pytest.raises(ValidationError, match="does not exist"):
        Policies("missing.cedar")


def test_a_context_that_is_not_a_mapping_and_requests_that_are_not_a_list_are_named() -> None:
    engine = PolicyEngine("permit(principal, action, resource);", unknown="evaluate")
    with pytest.raises(ValidationError, match="context is a list, not a mapping"):
        engine.evaluate('User::"a"', 'Action::"read"', 'Doc::"d1"', context=[1, 2])
    with pytest.raises(ValidationError, match="requests is a int, not a list of requests"):
        engine.evaluate_batch(5)
    with pytest.raises(ValidationError, match="requests is a dict"):
        engine.evaluate_batch({"principal": 'User::"a"', "action": "read", "resource": 'Doc::"d1"'})
    assert engine.evaluate_batch([{"principal": 'User::"a"', "action": "read", "resource": 'Doc::"d1"'}])[0].allowed


def test_policy_text_given_where_a_folder_belongs_points_to_publish(tmp_path) -> None:
    with pytest.raises(ValidationError, match="is not a folder") as info:
        Policies.from_dir("permit(principal, action, resource);")
    assert "lab.policy.publish(" in info.value.hint
    with pytest.raises(ValidationError, match="is not a folder") as info:
        Policies.from_dir(tmp_path / "missing")
    assert "policies.cedar" in info.value.hint
