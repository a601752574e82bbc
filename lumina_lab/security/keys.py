"""Key rings: the key-encryption keys that wrap the data key of every sealed value.

A :class:`KeyRing` holds 256-bit keys by id, one of them *active*.  Sealing uses the active key;
opening uses whichever key a value names, so after :meth:`KeyRing.rotate` old values still open,
and once they have been re-wrapped (:meth:`lumina_lab.security.envelope.Sealer.rewrap`) the old
key can be :meth:`~KeyRing.retire`\\ d.  A key ring lives in a JSON file readable by its owner only
(``$LUMINA_HOME/keys/keyring.json`` by default), or comes from the environment
(``LUMINA_MASTER_KEY``: one base64 key).  Every change is an audit event
(:mod:`lumina_lab.security.events`); keys never appear in a ``repr`` or an event.

>>> ring = KeyRing.generate()
>>> first = ring.active
>>> second = ring.rotate()
>>> ring.active == second and ring.ids == [first, second]
True
>>> ring.retire(first)
>>> ring.ids == [second]
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DecryptionError, SecurityError
from .events import KeyCreated, KeyRetired, KeyRotated, audit
from .files import home_file, write_private_json

if TYPE_CHECKING:
    from ..events.bus import InProcessBus

__all__ = ["ENV_KEY", "KEY_BYTES", "KeyRing", "default_path"]

KEY_BYTES = 32
ENV_KEY = "LUMINA_MASTER_KEY"


def default_path(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/keys/keyring.json`` (``home`` default: ``$LUMINA_HOME``)."""
    return home_file("keys", "keyring.json", home=home)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SecurityError(f"{what} is not base64", hint="a key is 32 random bytes, base64-encoded") from None


def _new_id() -> str:
    return "k" + secrets.token_hex(4)


class KeyRing:
    """Key-encryption keys by id, one active; optionally kept in ``path``.

    Args:
        keys: ``id -> 32-byte key``, oldest first.
        active: the id that seals new values (default: the last of ``keys``).
        path: a JSON file to save changes to (mode 0600); ``None`` keeps the ring in memory.
        bus: where audit events go.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        bus: InProcessBus | None = None,
    ) -> None:
        if not keys:
            raise SecurityError("a key ring needs at least one key", hint="KeyRing.generate() makes one")
        for kid, key in keys.items():
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
                raise SecurityError(
                    f"key {kid!r} is not {KEY_BYTES} bytes", hint="use secrets.token_bytes(32) or KeyRing.generate()"
                )
        self._keys: dict[str, bytes] = {str(k): bytes(v) for k, v in keys.items()}
        self.active = str(active) if active is not None else list(self._keys)[-1]
        if self.active not in self._keys:
            raise SecurityError(f"active key {self.active!r} is not in the key ring", input=self.active)
        self.path = Path(path) if path is not None else None
        self.bus = bus
        self._created: dict[str, str | None] = {}

    # ---- construction
    @classmethod
    def generate(cls, *, path: str | os.PathLike[str] | None = None, bus: InProcessBus | None = None) -> KeyRing:
        """A new key ring with one fresh key (saved to ``path`` if given; refuses to overwrite a file)."""
        if path is not None and Path(path).exists():
            raise SecurityError(
                f"{path} already holds a key ring",
                input=str(path),
                hint="KeyRing.open(path) uses it; rotate() adds a key",
            )
        kid = _new_id()
        ring = cls({kid: secrets.token_bytes(KEY_BYTES)}, kid, path=path, bus=bus)
        ring.save()
        audit(bus, KeyCreated, key_id=kid, path=str(path) if path is not None else None)
        return ring

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, create: bool = False, bus: InProcessBus | None = None
    ) -> KeyRing:
        """The key ring in ``path`` (default :func:`default_path`); with ``create``, a new one if there is none."""
        p = Path(path) if path is not None else default_path()
        if not p.exists():
            if create:
                return cls.generate(path=p, bus=bus)
            raise SecurityError(
                f"no key ring at {p}",
                input=str(p),
                hint="KeyRing.open(path, create=True), or `lumina keys rotate` (which creates it)",
            )
        try:
            doc = json.loads(p.read_text())
            keys = {kid: _unb64(entry["key"], f"key {kid!r} in {p}") for kid, entry in doc["keys"].items()}
            active = doc["active"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SecurityError(f"{p} is not a key ring ({exc})", input=str(p)) from None
        ring = cls(keys, active, path=p, bus=bus)
        ring._created = {kid: entry.get("created") for kid, entry in doc["keys"].items()}
        return ring

    @classmethod
    def configured(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        create: bool = False,
        bus: InProcessBus | None = None,
    ) -> KeyRing:
        """The key ring a home uses: ``$LUMINA_MASTER_KEY`` if set, else :func:`default_path` of ``home``
        (with ``create``, made on first use)."""
        if os.environ.get(ENV_KEY):
            return cls.from_env(bus=bus)
        return cls.open(default_path(home), create=create, bus=bus)

    @classmethod
    def from_env(cls, var: str = ENV_KEY, *, bus: InProcessBus | None = None) -> KeyRing:
        """A one-key ring from the environment variable ``var`` (a base64 32-byte key)."""
        raw = os.environ.get(var)
        if not raw:
            raise SecurityError(
                f"${var} is not set",
                hint=f"export {var}=$(python -c 'import secrets,base64;"
                "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')",
            )
        key = _unb64(raw.strip(), f"${var}")
        kid = "env-" + hashlib.sha256(key).hexdigest()[:8]
        return cls({kid: key}, kid, bus=bus)

    # ---- use
    @property
    def ids(self) -> list[str]:
        """Key ids, oldest first."""
        return list(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, kid: str) -> bytes:
        """The key ``kid``; :class:`DecryptionError` naming it when the ring does not hold it."""
        try:
            return self._keys[kid]
        except KeyError:
            raise DecryptionError(
                f"key {kid!r} is not in the key ring (it holds {self.ids})",
                input=kid,
                hint="open the key ring the value was sealed with; a retired key cannot be brought back",
            ) from None

    def rotate(self) -> str:
        """Add a fresh key and make it the active one; returns its id (saved, audited)."""
        previous = self.active
        kid = _new_id()
        while kid in self._keys:  # pragma: no cover - 32 random bits
            kid = _new_id()
        self._keys[kid] = secrets.token_bytes(KEY_BYTES)
        self.active = kid
        self.save()
        audit(self.bus, KeyRotated, key_id=kid, previous=previous, keys=len(self._keys))
        return kid

    def retire(self, kid: str) -> None:
        """Remove key ``kid`` (not the active one): values still sealed with it will not open again."""
        if kid not in self._keys:
            raise SecurityError(f"key {kid!r} is not in the key ring", input=kid, hint=f"it holds {self.ids}")
        if kid == self.active:
            raise SecurityError(
                f"key {kid!r} is the active key",
                input=kid,
                hint="rotate() first, rewrap what it sealed, then retire it",
            )
        del self._keys[kid]
        self.save()
        audit(self.bus, KeyRetired, key_id=kid, keys=len(self._keys))

    def save(self) -> None:
        """Write the ring to its file (mode 0600, replaced atomically); nothing when it has none."""
        if self.path is None:
            return
        created = self._created
        now = datetime.now(UTC).isoformat(timespec="seconds")
        doc: dict[str, Any] = {
            "active": self.active,
            "keys": {kid: {"key": _b64(k), "created": created.get(kid) or now} for kid, k in self._keys.items()},
        }
        self._created = {kid: e["created"] for kid, e in doc["keys"].items()}
        write_private_json(self.path, doc)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"KeyRing(active={self.active!r}, keys={self.ids}{where})"
