"""API tokens: shown once, kept as digests, scoped, revocable while a server runs, audited."""

from __future__ import annotations

import doctest
import json
import stat

import pytest
from click.testing import CliRunner

import lumina_lab.security.tokens as tokens_module
from lumina_lab.cli import main
from lumina_lab.errors import ValidationError
from lumina_lab.events.bus import InProcessBus
from lumina_lab.security.tokens import TokenFile


def test_docstring_examples():
    assert doctest.testmod(tokens_module).failed == 0


def test_the_file_keeps_digests_only_and_tokens_verify_by_name_and_scope(tmp_path):
    path = tmp_path / "tokens.json"
    tokens = TokenFile(path)
    a, b = tokens.create("prometheus"), tokens.create("grafana")
    assert a != b and a.startswith("lmt_") and len(a) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert a not in path.read_text() and b not in path.read_text()
    assert tokens.verify(a, "metrics") == "prometheus" and tokens.verify(b, "metrics") == "grafana"
    assert tokens.verify(a, "admin") is None and tokens.verify(a[:-1], "metrics") is None
    assert tokens.verify("", "metrics") is None and tokens.verify(None, "metrics") is None  # type: ignore[arg-type]
    again = tokens.create("prometheus")  # re-making a name replaces its token
    assert tokens.verify(a, "metrics") is None and tokens.verify(again, "metrics") == "prometheus"
    assert set(tokens.names()) == {"prometheus", "grafana"} and "sha256" not in json.dumps(tokens.names())


def test_a_revocation_by_another_process_is_seen_without_a_restart(tmp_path):
    path = tmp_path / "tokens.json"
    server_side = TokenFile(path)
    token = TokenFile(path).create("prometheus")
    assert server_side.verify(token, "metrics") == "prometheus"
    TokenFile(path).revoke("prometheus")  # e.g. `lumina tokens revoke` in a shell
    assert server_side.verify(token, "metrics") is None


def test_making_and_revoking_are_audit_events_without_the_secret(tmp_path):
    bus = InProcessBus()
    seen = []
    bus.subscribe("security.*", seen.append)
    tokens = TokenFile(tmp_path / "t.json", bus=bus)
    secret = tokens.create("prometheus")
    tokens.revoke("prometheus")
    bus.drain_sync(timeout=5)
    assert [(e.event_type, e.name) for e in seen] == [
        ("security.token.created", "prometheus"),
        ("security.token.revoked", "prometheus"),
    ]
    assert secret not in json.dumps([e.model_dump(mode="json") for e in seen])
    bus.close_sync()


def test_bad_input_is_named(tmp_path):
    tokens = TokenFile(tmp_path / "t.json")
    with pytest.raises(ValidationError, match="non-empty"):
        tokens.create(" ")
    with pytest.raises(ValidationError, match="not among"):
        tokens.create("x", scopes=["admin"])
    with pytest.raises(ValidationError, match="no token named 'x'"):
        tokens.revoke("x")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValidationError, match="is not a tokens file"):
        TokenFile(tmp_path / "bad.json").verify("lmt_x", "metrics")


def test_lumina_tokens_create_list_revoke(lumina_home):
    runner = CliRunner()
    made = runner.invoke(main, ["tokens", "create", "prometheus"])
    assert made.exit_code == 0
    secret = made.output.splitlines()[0]
    assert TokenFile(lumina_home / "tokens.json").verify(secret, "metrics") == "prometheus"
    assert runner.invoke(main, ["tokens", "list"]).output.startswith("prometheus\tmetrics\t")
    assert runner.invoke(main, ["tokens", "revoke", "prometheus"]).exit_code == 0
    again = runner.invoke(main, ["tokens", "revoke", "prometheus"])
    assert again.exit_code == 2 and "no token named" in again.output


def test_lumina_info_reports_what_protects_the_home(lumina_home):
    runner = CliRunner()
    before = json.loads(runner.invoke(main, ["info", "--json"]).output)["security"]
    assert before == {
        "memory_encrypt": False,
        "key_ring": None,
        "dashboard_users": 0,
        "users_with_totp": 0,
        "api_tokens": 0,
    }
    runner.invoke(main, ["users", "add", "ann", "--totp", "--password-stdin"], input="pw\n")
    runner.invoke(main, ["tokens", "create", "prometheus"])
    runner.invoke(main, ["keys", "rotate"])
    after = json.loads(runner.invoke(main, ["info", "--json"]).output)["security"]
    assert after["dashboard_users"] == after["users_with_totp"] == after["api_tokens"] == 1
    assert after["key_ring"] == str(lumina_home / "keys" / "keyring.json")
    (lumina_home / "tokens.json").write_text("{broken")
    damaged = json.loads(runner.invoke(main, ["info", "--json"]).output)["security"]
    assert "is not a tokens file" in damaged["error"]
