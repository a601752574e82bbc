"""Security: key rings, envelope encryption of sensitive fields, and their audit events.

* :class:`KeyRing` (:mod:`.keys`) — key-encryption keys by id, one active; kept in a 0600 JSON
  file or taken from ``$LUMINA_MASTER_KEY``; ``rotate()`` / ``retire()``.
* :class:`Sealer` (:mod:`.envelope`) — AES-GCM envelope encryption of text values bound to where
  they live; ``rewrap()`` moves a value to the active key without re-encrypting it.
* :mod:`.events` — ``security.key.created|rotated|retired``, ``security.values.rewrapped``,
  ``security.decrypt.failed``.

The DuckDB vector store seals item texts (and chosen metadata fields) at rest with a sealer:
``DuckDBVectorStore(path, encryption=KeyRing.open(create=True))``.
"""

from __future__ import annotations

from .envelope import PREFIX, Sealer, is_sealed, key_id_of
from .events import DecryptFailed, KeyCreated, KeyRetired, KeyRotated, ValuesRewrapped
from .keys import ENV_KEY, KeyRing, default_path

__all__ = [
    "ENV_KEY",
    "PREFIX",
    "DecryptFailed",
    "KeyCreated",
    "KeyRetired",
    "KeyRing",
    "KeyRotated",
    "Sealer",
    "ValuesRewrapped",
    "default_path",
    "is_sealed",
    "key_id_of",
]
