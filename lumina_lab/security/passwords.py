"""Dashboard passwords: argon2id hashes (argon2-cffi) in the users file of ``lumina serve --basic-auth``.

A users file is JSON ``{"user": "<argon2id hash>"}``; :func:`add_user` (``lumina users add NAME``)
writes one entry, owner-readable only.  :func:`verify_password` checks a login against an entry: an
argon2 hash is verified (and a plain password, as Panel's own files hold, is compared in constant
time, so older files keep working).

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
from pathlib import Path
from typing import Any

from ..errors import ValidationError

__all__ = ["add_user", "hash_password", "is_hash", "read_users", "verify_password"]


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
    if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise ValidationError(f"{p} is not a users file", input=str(p), hint='it holds {"user": "password hash"}')
    return users


def add_user(path: str | os.PathLike[str], user: str, password: str) -> None:
    """Write ``user``'s argon2 hash into the users file (created 0600; an existing user's hash is replaced)."""
    if not isinstance(user, str) or not user.strip() or ":" in user:
        raise ValidationError(f"user name {user!r} must be non-empty, without ':'", input=user)
    p = Path(path)
    users = read_users(p)
    users[user] = hash_password(password)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f, indent=1)
    os.replace(tmp, p)
