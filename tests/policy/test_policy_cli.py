"""``lumina policy validate | test | diff``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from policy_helpers import require_examples

from lumina_lab.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def examples() -> Path:
    return require_examples()


def test_policy_is_a_lumina_command(runner: CliRunner) -> None:
    result = runner.invoke(main, ["policy", "--help"])
    assert result.exit_code == 0
    for cmd in ("validate", "test", "diff"):
        assert cmd in result.output


def test_validate_every_example(runner: CliRunner, examples: Path) -> None:
    result = runner.invoke(main, ["policy", "validate", str(examples)])
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == 7 and "2 links valid against policies.cedarschema" in result.output


def test_validate_reports_line_and_column_and_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "policies.cedar").write_text('permit(principal, action, resource);\n@id("x")\nforbid(principal, action, resource) when { context.a < };\n')
    result = runner.invoke(main, ["policy", "validate", str(tmp_path)])
    assert result.exit_code == 2
    assert 'policies.cedar:3:56 in policy policy1 (@id "x"): unexpected token `}`' in result.output
    assert "Traceback" not in result.output
    (tmp_path / "policies.cedar").write_text('permit(principal, action == Action::"fly", resource);\n')
    (tmp_path / "policies.cedarschema").write_text("entity User; action walk appliesTo { principal: [User], resource: [User] };")
    result = runner.invoke(main, ["policy", "validate", str(tmp_path)])
    assert result.exit_code == 2 and 'unrecognized action `Action::"fly"`' in result.output


def test_test_runs_every_app_and_shows_the_deciding_policies(runner: CliRunner, examples: Path) -> None:
    result = runner.invoke(main, ["policy", "test", str(examples)])
    assert result.exit_code == 2  # two apps' entities do not match their schema: a clear error, not a pass
    out = result.output
    assert "22 passed, 0 failed, 2 errors in 7 examples" in out
    assert 'entity `Document::"alice_public"` does not conform' in out
    assert "by BobView (external-prez-view)" in out and "by policy5 (forbid-bedtime-watch-kid-profile)" in out
    for app in ("document_cloud", "github_example"):
        r = runner.invoke(main, ["policy", "test", str(examples / app), "--no-schema"])
        assert r.exit_code == 0, r.output
        assert "0 failed" in r.output and "(without schema)" in r.output


def test_test_exits_1_on_a_mismatch(runner: CliRunner, examples: Path, tmp_path: Path) -> None:
    app = tmp_path / "tax"
    shutil.copytree(examples / "tax_preparer", app)
    (app / "linked").write_text("[]")  # without the ad hoc link, Alice may no longer read DEF
    result = runner.invoke(main, ["policy", "test", str(app)])
    assert result.exit_code == 1
    assert "4 passed, 1 failed" in result.output and "✗ ALLOW/alice_read_DEF.json" in result.output
    as_json = runner.invoke(main, ["policy", "test", str(app), "--format", "json"])
    data = json.loads(as_json.output)
    assert as_json.exit_code == 1 and data["failed"] == 1


def test_diff_shows_what_changes_and_why(runner: CliRunner, examples: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(examples / "tax_preparer", old)
    shutil.copytree(examples / "tax_preparer", new)
    text = (new / "policies.cedar").read_text().replace("context.consent.team_region_list.contains(principal.location)", "true")
    (new / "policies.cedar").write_text(text)
    result = runner.invoke(main, ["policy", "diff", str(old), str(new), "--requests", str(old)])
    assert result.exit_code == 0, result.output
    assert "1 of 5 requests change decision" in result.output
    assert "deny → allow" in result.output and "was forbidden by policy2 (changed)" in result.output
    csv = runner.invoke(main, ["policy", "diff", str(old), str(new), "--requests", str(old), "--format", "csv"])
    assert csv.output.splitlines()[0] == "principal,action,resource,old,new,old_policies,new_policies,why"
    missing = runner.invoke(main, ["policy", "diff", str(old), str(new), "--requests", str(tmp_path / "none.json")])
    assert missing.exit_code == 2
