"""Dashboard passwords: argon2id hashes in an owner-only users file; plain ones still compared safely."""

from __future__ import annotations

import doctest
import json
import stat

import pytest
from click.testing import CliRunner

import lumina_lab.security.passwords as passwords
from lumina_lab.cli import main
from lumina_lab.errors import ConfigError, ValidationError
from lumina_lab.security.passwords import add_user, hash_password, read_users, verify_password
from lumina_lab.ui.server import check_options


def test_docstring_examples():
    assert doctest.testmod(passwords).failed == 0


def test_hashes_are_salted_and_verify_only_their_password():
    a, b = hash_password("s3cret"), hash_password("s3cret")
    assert a != b and a.startswith("$argon2id$")
    assert verify_password(a, "s3cret") and verify_password(b, "s3cret")
    assert not verify_password(a, "S3cret") and not verify_password(a, "")
    assert not verify_password("$argon2id$broken", "x")  # a damaged hash is a failed login, not a crash
    assert not verify_password(a, None)  # type: ignore[arg-type]


def test_the_users_file_holds_hashes_only_and_is_owner_readable(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "ann", "s3cret")
    add_user(path, "bob", "hunter2")
    add_user(path, "ann", "n3w")  # a new password replaces the old hash
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = read_users(path)
    assert set(users) == {"ann", "bob"} and "s3cret" not in path.read_text() and "n3w" not in path.read_text()
    assert verify_password(users["ann"], "n3w") and not verify_password(users["ann"], "s3cret")


def test_lumina_users_add_and_list(lumina_home):
    runner = CliRunner()
    added = runner.invoke(main, ["users", "add", "ann", "--password-stdin"], input="s3cret\n")
    assert added.exit_code == 0 and "--basic-auth" in added.output
    (lumina_home / "plain.json").write_text(json.dumps({"old": "pw"}))
    assert runner.invoke(main, ["users", "list"]).output == "ann\targon2\n"
    listed = runner.invoke(main, ["users", "list", "--file", str(lumina_home / "plain.json")])
    assert "old\tPLAIN TEXT" in listed.output
    bad = runner.invoke(main, ["users", "add", "", "--password-stdin"], input="x\n")
    assert bad.exit_code == 2 and "user name" in bad.output


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "does not exist or holds no users"), ("{nope", "is not JSON"), ('["ann"]', "is not a users file")],
)
def test_serve_refuses_a_users_file_it_cannot_use(tmp_path, content, match):
    path = tmp_path / "users.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        check_options(basic_auth=str(path))


def test_an_empty_password_cannot_be_hashed():
    with pytest.raises(ValidationError, match="non-empty"):
        hash_password("")


def test_a_second_factor_needs_the_current_code_once():
    import pyotp

    from lumina_lab.security.passwords import check_login

    secret = pyotp.random_base32()
    entry = {"password": hash_password("s3cret"), "totp": secret}
    assert check_login(entry, "s3cret", "", user="ann") == (False, "code")
    assert check_login(entry, "s3cret", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111", user="ann") == (
        False,
        "code",
    )
    assert check_login(entry, "wrong", pyotp.TOTP(secret).now(), user="ann") == (False, "password")
    code = pyotp.TOTP(secret).now()
    assert check_login(entry, "s3cret", code, user="ann") == (True, "")
    assert check_login(entry, "s3cret", code, user="ann") == (False, "code reused")  # a code logs in once
    assert check_login(hash_password("pw"), "pw", "", user="bob") == (True, "")  # no second factor: none asked


def test_users_add_with_totp_prints_the_authenticator_uri(lumina_home):
    runner = CliRunner()
    added = runner.invoke(main, ["users", "add", "ann", "--totp", "--password-stdin"], input="s3cret\n")
    assert added.exit_code == 0 and "otpauth://totp/Lumina%20Lab:ann?secret=" in added.output
    entry = read_users(lumina_home / "users.json")["ann"]
    assert entry["password"].startswith("$argon2id$") and len(entry["totp"]) >= 16
    assert runner.invoke(main, ["users", "list"]).output == "ann\targon2 + totp\n"


def test_login_attempts_are_audit_events():
    from lumina_lab.events.bus import InProcessBus
    from lumina_lab.ui import login

    bus = InProcessBus()
    seen = []
    bus.subscribe("security.*", seen.append)
    login.audit_bus = lambda: bus
    try:
        login._audit_login("ann", False, "code", "10.0.0.7")
        login._audit_login("ann", True, "", "10.0.0.7")
    finally:
        login.audit_bus = None
    bus.drain_sync(timeout=5)
    assert [(e.event_type, e.user, e.ok, e.reason, e.remote) for e in seen] == [
        ("security.login", "ann", False, "code", "10.0.0.7"),
        ("security.login", "ann", True, "", "10.0.0.7"),
    ]
    bus.close_sync()
