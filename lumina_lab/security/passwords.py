"""Dashboard logins: argon2id password hashes (argon2-cffi) and optional TOTP second factors (pyotp)
in the users file of ``lumina serve --basic-auth``.

A users file is JSON ``{"user": "<argon2id hash>"}``, or ``{"user": {"password": "<hash>", "totp":
"<base32 secret>"}}`` for a user with a second factor; :func:`add_user` (``lumina users add NAME
[--totp]``) writes one entry, owner-readable only.  :func:`verify_password` checks a password against
a stored one: an argon2 hash is verified (and a plain password, as Panel's own files hold, is compared
in constant time, so older files keep working); :func:`check_login` checks a whole login.

>>> stored = hash_password("s3cret")
>>> stored.startswith("$argon2id$"), verify_password(stored, "s3cret"), verify_password(stored, "wrong")
(True, True, False)
>>> verify_password("plain-text", "plain-text")
True
"""

from __future__ import annotations

import hmac
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .files import home_file, write_private_json

__all__ = [
    "add_user",
    "check_login",
    "default_path",
    "entry_parts",
    "hash_password",
    "is_hash",
    "read_users",
    "totp_uri",
    "verify_password",
]


def default_path(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/users.json`` (``home`` default: ``$LUMINA_HOME``)."""
    return home_file("users.json", home=home)


def entry_parts(entry: str | dict[str, str]) -> tuple[str, str | None]:
    """A users-file entry as ``(stored password, TOTP secret or None)``."""
    if isinstance(entry, str):
        return entry, None
    return entry.get("password", ""), entry.get("totp") or None


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def is_hash(stored: str) -> bool:
    """Whether ``stored`` is an argon2 hash (not a plain password)."""
    return isinstance(stored, str) and stored.startswith("$argon2")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; argon2-cffi's default cost)."""
    if not isinstance(password, str) or not password:
        raise ValidationError("a password must be non-empty text", hint="choose a password")
    return str(_hasher().hash(password))


def verify_password(stored: str, given: str) -> bool:
    """Whether ``given`` matches ``stored`` (an argon2 hash, or a plain password compared in constant time)."""
    if not isinstance(stored, str) or not isinstance(given, str):
        return False
    if is_hash(stored):
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return bool(_hasher().verify(stored, given))
        except (VerificationError, InvalidHashError):
            return False
    return hmac.compare_digest(stored.encode("utf-8"), given.encode("utf-8"))


def read_users(path: str | os.PathLike[str]) -> dict[str, str]:
    """The users file at ``path`` (``{}`` if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        users = json.loads(p.read_text())
    except ValueError as exc:
        raise ValidationError(f"{p} is not JSON ({exc})", input=str(p)) from None
    if not isinstance(users, dict) or not all(isinstance(k, str) and _entry_ok(v) for k, v in users.items()):
        raise ValidationError(
            f"{p} is not a users file",
            input=str(p),
            hint='it holds {"user": "password hash"} or {"user": {"password": "hash", "totp": "secret"}}',
        )
    return users


def _entry_ok(entry: Any) -> bool:
    if isinstance(entry, str):
        return True
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("password"), str)
        and isinstance(entry.get("totp", ""), str)
        and set(entry) <= {"password", "totp"}
    )


_used_codes: dict[str, int] = {}  # user -> the TOTP time step of their last accepted code (no replays)


def check_login(entry: Any, password: str, code: str = "", *, user: str = "") -> tuple[bool, str]:
    """Whether a login with ``password`` (and ``code``, the user's current TOTP code when their entry has
    a second factor) matches a users-file ``entry``, and why not: ``"password"``, ``"code"`` (missing or
    wrong) or ``"code reused"`` (a code already accepted for ``user`` does not log in twice)."""
    if not isinstance(entry, str | dict):
        return False, "password"
    stored, secret = entry_parts(entry)
    if not verify_password(stored, password):
        return False, "password"
    if secret is None:
        return True, ""
    import pyotp

    totp = pyotp.TOTP(secret)
    code = (code or "").strip().replace(" ", "")
    now = int(time.time())
    for step_offset in (0, -1, 1):  # the current 30 s step and one either side (clock drift)
        at = now + step_offset * totp.interval
        if code and hmac.compare_digest(totp.at(at), code):
            step = totp.timecode(datetime.fromtimestamp(at, UTC))
            if _used_codes.get(user, -1) >= step:
                return False, "code reused"
            _used_codes[user] = step
            return True, ""
    return False, "code"


def totp_uri(user: str, secret: str, issuer: str = "Lumina Lab") -> str:
    """The ``otpauth://`` URI an authenticator app reads (as text or a QR code)."""
    import pyotp

    return str(pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=issuer))


def add_user(path: str | os.PathLike[str], user: str, password: str, *, totp: bool = False) -> str | None:
    """Write ``user``'s argon2 hash into the users file (created 0600; an existing user's entry is replaced);
    with ``totp``, also a fresh TOTP secret, which is returned (for :func:`totp_uri`)."""
    if not isinstance(user, str) or not user.strip() or ":" in user:
        raise ValidationError(f"user name {user!r} must be non-empty, without ':'", input=user)
    p = Path(path)
    users = read_users(p)
    secret = None
    if totp:
        import pyotp

        secret = pyotp.random_base32()
        users[user] = {"password": hash_password(password), "totp": secret}
    else:
        users[user] = hash_password(password)
    write_private_json(p, users)
    return secret
