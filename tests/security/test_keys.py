"""Key rings: keys by id, one active, kept in an owner-only file, every change audited."""

from __future__ import annotations

import base64
import json
import secrets
import stat

import pytest

from lumina_lab.errors import DecryptionError, SecurityError
from lumina_lab.events.bus import InProcessBus
from lumina_lab.security import KeyRing


def test_a_generated_ring_is_saved_owner_only_and_reopens_with_the_same_keys(tmp_path):
    path = tmp_path / "keys" / "keyring.json"
    ring = KeyRing.generate(path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyRing.open(path)
    assert again.active == ring.active and again.key(ring.active) == ring.key(ring.active)
    assert len(ring.key(ring.active)) == 32
    assert repr(ring) == f"KeyRing(active={ring.active!r}, keys={[ring.active]}, path={str(path)!r})"
    assert base64.urlsafe_b64encode(ring.key(ring.active)).decode() not in repr(ring)


def test_rotate_adds_an_active_key_and_retire_removes_an_old_one(tmp_path):
    path = tmp_path / "keyring.json"
    ring = KeyRing.generate(path=path)
    first = ring.active
    second = ring.rotate()
    assert ring.active == second and ring.ids == [first, second]
    assert KeyRing.open(path).ids == [first, second]  # saved on every change
    with pytest.raises(SecurityError, match="is the active key"):
        ring.retire(second)
    ring.retire(first)
    assert KeyRing.open(path).ids == [second]
    with pytest.raises(DecryptionError, match=f"key '{first}' is not in the key ring"):
        ring.key(first)
    with pytest.raises(SecurityError, match="not in the key ring"):
        ring.retire(first)


def test_every_change_is_an_audit_event_without_key_material(tmp_path):
    bus = InProcessBus()
    seen = []
    bus.subscribe("security.*", seen.append)
    ring = KeyRing.generate(path=tmp_path / "k.json", bus=bus)
    first = ring.active
    ring.rotate()
    ring.retire(first)
    bus.drain_sync(timeout=5)
    assert [e.event_type for e in seen] == ["security.key.created", "security.key.rotated", "security.key.retired"]
    assert seen[1].previous == first and seen[2].key_id == first and seen[2].keys == 1
    dumped = json.dumps([e.model_dump(mode="json") for e in seen])
    assert base64.urlsafe_b64encode(ring.key(ring.active)).decode() not in dumped
    bus.close_sync()


def test_a_ring_from_the_environment(monkeypatch):
    key = secrets.token_bytes(32)
    monkeypatch.setenv("LUMINA_MASTER_KEY", base64.urlsafe_b64encode(key).decode())
    ring = KeyRing.from_env()
    assert ring.key(ring.active) == key and ring.active.startswith("env-")
    assert KeyRing.from_env().active == ring.active  # the id is derived from the key: stable across processes
    monkeypatch.delenv("LUMINA_MASTER_KEY")
    with pytest.raises(SecurityError, match=r"\$LUMINA_MASTER_KEY is not set"):
        KeyRing.from_env()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: KeyRing({}), "at least one key"),
        (lambda p: KeyRing({"a": b"short"}), "not 32 bytes"),
        (lambda p: KeyRing({"a": secrets.token_bytes(32)}, active="b"), "active key 'b'"),
        (lambda p: KeyRing.open(p / "missing.json"), "no key ring at"),
        (lambda p: (p / "bad.json").write_text("{nope") and KeyRing.open(p / "bad.json"), "is not a key ring"),
        (lambda p: KeyRing.generate(path=p / "k.json") and KeyRing.generate(path=p / "k.json"), "already holds"),
    ],
)
def test_bad_key_rings_are_named(tmp_path, make, match):
    with pytest.raises(SecurityError, match=match):
        make(tmp_path)


def test_open_with_create_makes_the_default_ring_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LUMINA_HOME", str(tmp_path))
    ring = KeyRing.open(create=True)
    assert ring.path == tmp_path / "keys" / "keyring.json"
    assert KeyRing.open(create=True).active == ring.active
