"""``memory.encrypt``: the Lab's memory store seals texts with ``lab.keys``; ``lumina keys`` rotates,
rewraps and retires keys with the memory still readable."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lumina_lab import Lab
from lumina_lab.cli import main
from lumina_lab.errors import ConfigError

SECRET = "my PIN is 4321"


def _config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "lumina.toml").write_text(text)


def test_lab_memory_is_sealed_at_rest_and_keys_rotate_rewrap_retire(lumina_home):
    _config(lumina_home, '[memory]\nencrypt = true\nsealed_metadata = ["email"]\n')
    with Lab() as lab:
        lab.memory.add([SECRET], collection="notes", metadata=[{"email": "ann@example.org"}])
        assert lab.memory.search("PIN", collection="notes", k=1)[0].text == SECRET
        first = lab.keys.active
    assert (lumina_home / "keys" / "keyring.json").exists()
    blob = (lumina_home / "memory" / "vectors.duckdb").read_bytes()
    assert b"4321" not in blob and b"ann@example.org" not in blob

    runner = CliRunner()
    rotated = runner.invoke(main, ["keys", "rotate"])
    assert rotated.exit_code == 0 and f"(was {first})" in rotated.output
    rewrapped = runner.invoke(main, ["keys", "rewrap"])
    assert rewrapped.exit_code == 0 and "rewrapped 2 value(s)" in rewrapped.output
    retired = runner.invoke(main, ["keys", "retire", first])
    assert retired.exit_code == 0, retired.output
    shown = runner.invoke(main, ["keys", "show"])
    assert first not in shown.output and "(active)" in shown.output
    with Lab() as lab:
        hit = lab.memory.search("PIN", collection="notes", k=1)[0]
        assert hit.text == SECRET and hit.metadata["email"] == "ann@example.org"
        assert lab.keys.ids == [lab.keys.active] != [first]


def test_key_commands_name_what_is_wrong(lumina_home):
    runner = CliRunner()
    shown = runner.invoke(main, ["keys", "show"])
    assert shown.exit_code == 2 and "no key ring at" in shown.output
    assert runner.invoke(main, ["keys", "rotate"]).exit_code == 0  # creates the ring, then rotates
    off = runner.invoke(main, ["keys", "rewrap"])
    assert off.exit_code == 2 and "memory.encrypt is off" in off.output
    active = runner.invoke(main, ["keys", "show"]).output.split("\n")[2].split()[0]
    refused = runner.invoke(main, ["keys", "retire", active])
    assert refused.exit_code == 2 and "is the active key" in refused.output


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ('[memory]\nbackend = "memory"\nencrypt = true\n', "not in memory"),
        ('[memory]\nsealed_metadata = ["email"]\n', "needs memory.encrypt"),
    ],
)
def test_encryption_settings_that_cannot_work_are_refused(lumina_home, toml, match):
    _config(lumina_home, toml)
    with Lab() as lab, pytest.raises(ConfigError, match=match):
        _ = lab.memory


def test_a_key_from_the_environment_is_not_rotated_by_the_cli(lumina_home, monkeypatch):
    import base64
    import secrets

    monkeypatch.setenv("LUMINA_MASTER_KEY", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    runner = CliRunner()
    shown = runner.invoke(main, ["keys", "show"])
    assert shown.exit_code == 0 and "$LUMINA_MASTER_KEY" in shown.output and "env-" in shown.output
    for args in (["keys", "rotate"], ["keys", "retire", "x"]):
        refused = runner.invoke(main, args)
        assert refused.exit_code == 2 and "would be lost" in refused.output
