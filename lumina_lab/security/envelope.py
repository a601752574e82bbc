"""Envelope encryption of text values with AES-GCM (the ``cryptography`` package).

:meth:`Sealer.seal` encrypts a value with a fresh 256-bit data key, and wraps that data key with
the key ring's active key; both steps are AES-GCM, so a changed byte anywhere fails to open.  The
result is one ASCII string that fits any text column or JSON field::

    lx1:<key id>:<wrapped data key>:<nonce + ciphertext>        (base64url parts)

``context`` (for example ``"notes/item-7/text"``) is bound to the ciphertext as associated data:
a value copied to another record or field does not open there.  :meth:`Sealer.rewrap` wraps a
value's data key again with the active key without touching its payload, which is how values move
off a key before it is retired.

>>> from lumina_lab.security.keys import KeyRing
>>> sealer = Sealer(KeyRing.generate())
>>> token = sealer.seal("Ann's passport number is X123", context="chat/D1:3/text")
>>> token.startswith("lx1:") and "X123" not in token
True
>>> sealer.open(token, context="chat/D1:3/text")
"Ann's passport number is X123"
>>> sealer.open("written before encryption was on", context="chat/D1:4/text")
'written before encryption was on'
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import DecryptionError, ValidationError
from .events import DecryptFailed, ValuesRewrapped, audit

if TYPE_CHECKING:
    from .keys import KeyRing

__all__ = ["PREFIX", "Sealer", "is_sealed", "key_id_of"]

PREFIX = "lx1:"
_NONCE = 12


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a string :meth:`Sealer.seal` made."""
    return isinstance(value, str) and value.startswith(PREFIX) and value.count(":") == 3


def key_id_of(token: str) -> str:
    """The id of the key that wraps a sealed value's data key."""
    return token.split(":", 2)[1]


def _enc(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _dec(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class Sealer:
    """Seals and opens text values with a :class:`~lumina_lab.security.keys.KeyRing`.

    Args:
        keyring: the keys; new values are sealed with its active key.
        plaintext_ok: open a value that is not sealed as itself (values written before encryption
            was switched on); with ``False`` such a value is a :class:`DecryptionError`.
    """

    def __init__(self, keyring: KeyRing, *, plaintext_ok: bool = True) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.keyring = keyring
        self.plaintext_ok = plaintext_ok
        self._aead = AESGCM
        self._keks: dict[str, object] = {}

    def __repr__(self) -> str:
        return f"Sealer({self.keyring!r})"

    def _kek(self, kid: str) -> object:
        kek = self._keks.get(kid)
        if kek is None or kid not in self.keyring:
            kek = self._keks[kid] = self._aead(self.keyring.key(kid))
        return kek

    def seal(self, value: str, *, context: str = "") -> str:
        """``value`` encrypted under a fresh data key wrapped by the active key, bound to ``context``."""
        if not isinstance(value, str):
            raise ValidationError(f"only text can be sealed, not {type(value).__name__}", input=type(value).__name__)
        kid = self.keyring.active
        dek = os.urandom(32)
        n1, n2 = os.urandom(_NONCE), os.urandom(_NONCE)
        wrapped = n1 + self._kek(kid).encrypt(n1, dek, (PREFIX + kid).encode())  # type: ignore[attr-defined]
        body = n2 + self._aead(dek).encrypt(n2, value.encode("utf-8"), context.encode("utf-8"))
        return f"{PREFIX}{kid}:{_enc(wrapped)}:{_enc(body)}"

    def _dek(self, token: str, context: str) -> tuple[str, bytes, bytes]:
        from cryptography.exceptions import InvalidTag

        try:
            _, kid, wrapped_s, body_s = token.split(":")
            wrapped, body = _dec(wrapped_s), _dec(body_s)
        except (ValueError, binascii.Error):
            self._failed("?", context, "malformed")
            raise DecryptionError(f"the sealed value of {context or 'a field'} is malformed", input=context) from None
        try:
            kek = self._kek(kid)
        except DecryptionError:
            self._failed(kid, context, "unknown key")
            raise
        try:
            dek = kek.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], (PREFIX + kid).encode())  # type: ignore[attr-defined]
        except InvalidTag:
            self._failed(kid, context, "altered")
            raise DecryptionError(
                f"the data key of {context or 'a sealed value'} does not open with key {kid!r}: it was altered",
                input=context,
            ) from None
        return kid, dek, body

    def open(self, token: str, *, context: str = "") -> str:
        """The text sealed in ``token`` (which must have been sealed with the same ``context``)."""
        from cryptography.exceptions import InvalidTag

        if not is_sealed(token):
            if self.plaintext_ok and isinstance(token, str):
                return token
            raise DecryptionError(f"{context or 'the value'} is not sealed", input=context)
        kid, dek, body = self._dek(token, context)
        try:
            return self._aead(dek).decrypt(body[:_NONCE], body[_NONCE:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            self._failed(kid, context, "altered")
            raise DecryptionError(
                f"the sealed value of {context or 'a field'} does not open: it was altered or belongs to another field",
                input=context,
                hint="a sealed value opens only in the record and field (context) it was sealed for",
            ) from None

    def rewrap(self, token: str) -> str:
        """``token`` with its data key wrapped by the active key (payload unchanged); not-sealed values as they are."""
        if not is_sealed(token) or key_id_of(token) == self.keyring.active:
            return token
        _, dek, body = self._dek(token, "rewrap")
        kid = self.keyring.active
        n1 = os.urandom(_NONCE)
        wrapped = n1 + self._kek(kid).encrypt(n1, dek, (PREFIX + kid).encode())  # type: ignore[attr-defined]
        return f"{PREFIX}{kid}:{_enc(wrapped)}:{_enc(body)}"

    def rewrap_all(self, tokens: Iterable[str], *, where: str = "values") -> list[str]:
        """:meth:`rewrap` each of ``tokens``; one ``security.values.rewrapped`` audit event for the lot."""
        t0 = time.perf_counter()
        out = [self.rewrap(t) for t in tokens]
        audit(
            self.keyring.bus,
            ValuesRewrapped,
            where=where,
            count=len(out),
            key_id=self.keyring.active,
            ms=(time.perf_counter() - t0) * 1000,
        )
        return out

    def _failed(self, kid: str, context: str, reason: str) -> None:
        audit(self.keyring.bus, DecryptFailed, key_id=kid, context=context, reason=reason)
