"""API tokens: named bearer tokens for machine clients (Prometheus scraping ``lumina serve``'s ``/metrics``).

A token is ``lmt_`` + 32 random bytes (base64url), shown once when it is made; the tokens file
(``$LUMINA_HOME/tokens.json``, mode 0600) keeps only its SHA-256 digest (a random 256-bit secret
needs no slow hash), its scopes and when it was made.  :meth:`TokenFile.verify` re-reads the file when
it changed, so ``lumina tokens revoke NAME`` takes effect in a running server without a restart.
Making and revoking a token are audit events.

>>> import tempfile, pathlib
>>> tokens = TokenFile(pathlib.Path(tempfile.mkdtemp()) / "tokens.json")
>>> secret = tokens.create("prometheus")
>>> secret.startswith("lmt_"), tokens.verify(secret, "metrics"), tokens.verify("lmt_guess", "metrics")
(True, 'prometheus', None)
>>> tokens.revoke("prometheus"); tokens.verify(secret, "metrics") is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from ..events import Event, event
from .events import audit
from .files import home_file, write_private_json

if TYPE_CHECKING:
    from ..events.bus import InProcessBus

__all__ = ["PREFIX", "SCOPES", "TokenCreated", "TokenFile", "TokenRevoked", "default_path"]

PREFIX = "lmt_"
SCOPES = ("metrics",)


@event("security.token.created")
class TokenCreated(Event):
    """An API token was made (its secret is never in an event)."""

    name: str
    scopes: list[str]


@event("security.token.revoked")
class TokenRevoked(Event):
    """An API token was revoked: it no longer authenticates."""

    name: str


def default_path(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/tokens.json`` (``home`` default: ``$LUMINA_HOME``)."""
    return home_file("tokens.json", home=home)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenFile:
    """The named API tokens kept (as digests) in ``path``.

    Args:
        path: the tokens file (default :func:`default_path`); it need not exist yet.
        bus: where audit events go.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, bus: InProcessBus | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.bus = bus
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r}, tokens={sorted(self._load())})"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._entries = None, {}
            return self._entries
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                doc = json.loads(self.path.read_text())
            except ValueError as exc:
                raise ValidationError(f"{self.path} is not a tokens file ({exc})", input=str(self.path)) from None
            if not isinstance(doc, dict) or not all(isinstance(v, dict) and "sha256" in v for v in doc.values()):
                raise ValidationError(f"{self.path} is not a tokens file", input=str(self.path))
            self._entries, self._stamp = doc, stamp
        return self._entries

    def _save(self, entries: dict[str, dict[str, Any]]) -> None:
        write_private_json(self.path, entries)
        self._stamp = None

    def create(self, name: str, scopes: Iterable[str] = ("metrics",)) -> str:
        """Make the token ``name`` (replacing one of that name) and return its secret: the only time it is shown."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"token name {name!r} must be non-empty text", input=name)
        scopes = sorted(set(scopes))
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise ValidationError(f"token scopes {unknown or scopes} are not among {list(SCOPES)}", input=scopes)
        token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
        entries = dict(self._load())
        entries[name] = {
            "sha256": _digest(token),
            "scopes": scopes,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._save(entries)
        audit(self.bus, TokenCreated, name=name, scopes=scopes)
        return token

    def revoke(self, name: str) -> None:
        """Remove the token ``name``."""
        entries = dict(self._load())
        if name not in entries:
            raise ValidationError(f"no token named {name!r}", input=name, hint=f"tokens: {sorted(entries)}")
        del entries[name]
        self._save(entries)
        audit(self.bus, TokenRevoked, name=name)

    def names(self) -> dict[str, dict[str, Any]]:
        """``name -> {"scopes", "created"}`` (no digests)."""
        return {n: {"scopes": e.get("scopes", []), "created": e.get("created")} for n, e in self._load().items()}

    def verify(self, token: str, scope: str) -> str | None:
        """The name of the token ``token`` if it is valid for ``scope``, else ``None``."""
        if not isinstance(token, str) or not token.startswith(PREFIX):
            return None
        digest = _digest(token)
        found = None
        for name, entry in self._load().items():  # compare with every entry: no early exit on a match
            if hmac.compare_digest(str(entry.get("sha256", "")), digest) and scope in entry.get("scopes", []):
                found = name
        return found
