"""The Cedar example apps (../shared/datasets/cedar-examples): every expected decision, with its policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from policy_helpers import NON_CONFORMING, app_name, assert_same_as_cedar, example_apps, reference, require_examples

from lumina_lab.errors import ValidationError
from lumina_lab.policy import EntityStore, PolicyEngine, RequestSet, Schema, Simulator, run_example

APPS = example_apps()


@pytest.fixture
def cedar_examples() -> Path:
    return require_examples()
needs_examples = pytest.mark.skipif(not APPS, reason="the Cedar examples are not available (set LUMINA_CEDAR_EXAMPLES)")


def _schema_for(app: Path) -> Schema | None:
    return None if app.name in NON_CONFORMING else Schema(app / "policies.cedarschema")


@needs_examples
def test_every_app_is_found(cedar_examples: Path) -> None:
    names = {app_name(a) for a in APPS}
    assert names >= {"document_cloud", "github_example", "sales_orgs/static", "sales_orgs/templated", "streaming_service", "tags_n_roles", "tax_preparer"}


@needs_examples
@pytest.mark.parametrize("app", APPS, ids=[a.name if a.parent.name == "cedar-examples" else f"{a.parent.name}/{a.name}" for a in APPS])
def test_the_engine_reproduces_every_expected_decision(app: Path) -> None:
    schema = _schema_for(app)
    engine = PolicyEngine(app, app / "entities.json", schema)
    requests = RequestSet.load(app)
    assert requests.expected is not None and len(requests) >= 3
    for i, req in enumerate(requests):
        d = engine.evaluate(req)
        assert d.decision == requests.expected[i], f"{requests.names[i]}: {d.explain()}"
        if d.allowed:  # an allow always names the permits that decided
            assert d.policies and all(p in {info.id for info in engine.policies} for p in d.policies)
    # the annotated policies are shown by their @id
    decisions = engine.evaluate_batch(requests)
    labels = {lab for d in decisions for lab in d.determining}
    if app.name == "streaming_service":
        assert {"rent-buy-oscar-movie", "forbid-bedtime-watch-kid-profile"} <= labels
    if app.name == "templated":
        assert "external-prez-view" in labels  # through the template link BobView


@needs_examples
@pytest.mark.parametrize("app", [a for a in APPS if a.name in NON_CONFORMING], ids=lambda a: a.name)
def test_nonconforming_entities_are_a_clear_error_with_the_schema(app: Path) -> None:
    with pytest.raises(ValidationError) as info:
        run_example(app)
    msg = str(info.value)
    if app.name == "document_cloud":
        assert 'Document::"alice_public"' in msg and "manageACL" in msg and "DocumentShare" in msg
    else:
        assert 'User::"bob"' in msg and 'Organization::"tiny_corp_owners"' in msg
    assert "without the schema" in msg
    result = run_example(app, use_schema=False)  # the explicit way out
    assert result.ok and not result.schema_used


@needs_examples
def test_run_example_reports_each_request_with_its_policies(cedar_examples: Path) -> None:
    result = run_example(cedar_examples / "tax_preparer")
    assert result.ok and result.passed == 5
    rows = {r["request"]: r for r in result.rows}
    assert rows["ALLOW/alice_read_DEF.json"]["policies"] == "AliceView (adhoc-access)"
    assert rows["DENY/alice_read_ABC.json"]["policies"] == "policy2"
    assert rows["DENY/bob_read_ABC.json"]["policies"] == ""  # default deny
    frame = result.frame()
    assert list(frame.columns) == ["request", "expected", "decision", "ok", "policies", "errors"]


@needs_examples
def test_without_the_schema_the_typed_apps_lose_decisions_as_source_md_says(cedar_examples: Path) -> None:
    for name in ("streaming_service", "tax_preparer", "tags_n_roles", "sales_orgs/static"):
        assert run_example(cedar_examples / name, use_schema=False).failed > 0, name


@needs_examples
@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_simulator_equals_cedarpy_on_every_pair_of_entities(app: Path) -> None:
    """A grid of all entities x actions x entities x the apps' contexts: decisions, policies, errors."""
    schema = _schema_for(app)
    store = EntityStore(app / "entities.json")
    view = store.view(schema)
    ents = [u for u, t in view.types.items() if not t.endswith("Action")]
    base = RequestSet.load(app)
    actions = sorted(set(base.actions) | {u for u, t in view.types.items() if t.endswith("Action")})
    contexts = []
    for c in base.contexts:
        if dict(c) not in contexts:
            contexts.append(dict(c))
    grid = RequestSet.grid(ents, actions, ents, contexts) + base
    sim = Simulator(app, store, schema, progress=False)
    matrix = sim.run(grid)
    assert_same_as_cedar(matrix, reference(grid, sim.policies, store, schema))
    tail = matrix.frame.tail(len(base))
    assert list(tail["decision"].astype(str)) == base.expected


@needs_examples
def test_requests_load_from_single_files_and_jsonl(cedar_examples: Path, tmp_path: Path) -> None:
    one = cedar_examples / "tax_preparer" / "ALLOW" / "alice_read_DEF.json"
    rs = RequestSet.load(one)
    assert len(rs) == 1 and rs.names == ["alice_read_DEF"]
    lines = [json.loads(p.read_text()) for p in sorted((cedar_examples / "tax_preparer").glob("*/*.json"))]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines))
    assert len(RequestSet.load(f)) == 5


@needs_examples
def test_lab_policy_loads_an_example_folder(cedar_examples: Path, tmp_path: Path) -> None:
    from lumina_lab.policy import PolicyLab

    lab = PolicyLab(path=tmp_path / "policies")
    v = lab.load(cedar_examples / "sales_orgs" / "templated")
    assert v.number == 1 and v.schema is not None and len(v.policies.links) == 2
    requests = RequestSet.load(cedar_examples / "sales_orgs" / "templated")
    assert [d.decision for d in lab.evaluate_batch(requests)] == requests.expected
    lab.load(cedar_examples / "tax_preparer")  # another app: its entities replace the first app's
    assert lab.live.number == 2 and len(lab.entities.providers) == 1
    m = lab.simulate(RequestSet.load(cedar_examples / "tax_preparer"))
    assert m.passed and m.version == 2
