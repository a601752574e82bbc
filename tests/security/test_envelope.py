"""Envelope encryption: sealed values open only with their key, in their context, unaltered."""

from __future__ import annotations

import pytest

from lumina_lab.errors import DecryptionError, ValidationError
from lumina_lab.events.bus import InProcessBus
from lumina_lab.security import KeyRing, Sealer, is_sealed, key_id_of


@pytest.fixture
def sealer():
    return Sealer(KeyRing.generate())


def test_a_sealed_value_opens_to_the_same_text_and_hides_it(sealer):
    text = "Ann: my passport number is X1234567 — don't tell 🙂"
    token = sealer.seal(text, context="chat/D1:3/text")
    assert is_sealed(token) and "X1234567" not in token and token.isascii()
    assert key_id_of(token) == sealer.keyring.active
    assert sealer.open(token, context="chat/D1:3/text") == text
    assert sealer.seal(text, context="chat/D1:3/text") != token  # a fresh data key and nonce every time


def test_a_value_does_not_open_in_another_context(sealer):
    token = sealer.seal("secret", context="chat/a/text")
    with pytest.raises(DecryptionError, match="chat/b/text does not open"):
        sealer.open(token, context="chat/b/text")


@pytest.mark.parametrize("part", [2, 3])  # the wrapped data key, the payload
def test_an_altered_byte_is_detected(sealer, part):
    token = sealer.seal("secret", context="c")
    pieces = token.split(":")
    s = pieces[part]
    pieces[part] = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
    with pytest.raises(DecryptionError, match="altered"):
        sealer.open(":".join(pieces), context="c")


def test_values_sealed_before_a_rotation_still_open_and_rewrap_moves_them_to_the_new_key():
    bus = InProcessBus()
    seen = []
    bus.subscribe("security.*", seen.append)
    ring = KeyRing.generate(bus=bus)
    sealer = Sealer(ring)
    old_key = ring.active
    tokens = [sealer.seal(f"v{i}", context=f"c/{i}") for i in range(5)]
    ring.rotate()
    assert [sealer.open(t, context=f"c/{i}") for i, t in enumerate(tokens)] == [f"v{i}" for i in range(5)]
    moved = sealer.rewrap_all(tokens, where="test")
    assert all(key_id_of(t) == ring.active for t in moved)
    assert [m.split(":")[3] for m in moved] == [t.split(":")[3] for t in tokens]  # payloads untouched
    ring.retire(old_key)
    assert [sealer.open(t, context=f"c/{i}") for i, t in enumerate(moved)] == [f"v{i}" for i in range(5)]
    with pytest.raises(DecryptionError, match=f"key '{old_key}' is not in the key ring"):
        sealer.open(tokens[0], context="c/0")
    bus.drain_sync(timeout=5)
    kinds = [e.event_type for e in seen]
    assert "security.values.rewrapped" in kinds and kinds[-1] == "security.decrypt.failed"
    assert seen[-1].reason == "unknown key" and seen[-1].context == "c/0"
    bus.close_sync()


def test_plaintext_values_open_as_themselves_unless_refused(sealer):
    assert sealer.open("written before encryption", context="c") == "written before encryption"
    strict = Sealer(sealer.keyring, plaintext_ok=False)
    with pytest.raises(DecryptionError, match="is not sealed"):
        strict.open("written before encryption", context="c")


def test_bad_input_is_named(sealer):
    with pytest.raises(ValidationError, match="only text can be sealed, not int"):
        sealer.seal(42)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError, match="malformed"):
        sealer.open("lx1:k1:!!:??", context="c")
