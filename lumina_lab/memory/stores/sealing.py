"""Encryption at rest for a store's rows: item texts and chosen metadata fields sealed, vectors not.

:class:`RowSealing` is what :class:`~lumina_lab.memory.stores.duckdb.DuckDBVectorStore` uses when it
is given ``encryption=``: each text (and each listed metadata field, JSON-encoded) is sealed with
:class:`~lumina_lab.security.envelope.Sealer` under the context ``"<collection>/<id>/<field>"``, so
a value moved to another row does not open there.  The in-memory mirror holds the opened values, so
search, filters and keyword indexes work as before; only what reaches the file is sealed.
Vectors stay in the clear (they are needed to search without the key ring, and cannot be turned
back into the text exactly, but they do say what it is about).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import ValidationError

__all__ = ["RowSealing", "make_sealing"]


class RowSealing:
    """Seals and opens rows of one store.

    Args:
        sealer: a :class:`~lumina_lab.security.envelope.Sealer`.
        metadata: metadata fields to seal as well as the text (filters on them still work in memory).
    """

    def __init__(self, sealer: Any, metadata: Sequence[str] = ()) -> None:
        self.sealer = sealer
        self.metadata = tuple(metadata)

    def __repr__(self) -> str:
        return f"RowSealing(key={self.sealer.keyring.active!r}, metadata={list(self.metadata)})"

    def seal(
        self, collection: str, ids: Sequence[str], texts: Sequence[str], metas: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        seal = self.sealer.seal
        out_t = [seal(t, context=f"{collection}/{i}/text") if t else t for i, t in zip(ids, texts, strict=True)]
        out_m = []
        for i, m in zip(ids, metas, strict=True):
            if any(f in m for f in self.metadata):
                m = dict(m)
                for f in self.metadata:
                    if f in m:
                        m[f] = seal(json.dumps(m[f]), context=f"{collection}/{i}/meta.{f}")
            out_m.append(m)
        return out_t, out_m

    def open(
        self, collection: str, ids: Sequence[str], texts: Sequence[str], metas: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        from ...security.envelope import is_sealed

        open_ = self.sealer.open
        out_t = [
            open_(t, context=f"{collection}/{i}/text") if is_sealed(t) else t for i, t in zip(ids, texts, strict=True)
        ]
        out_m = []
        for i, m in zip(ids, metas, strict=True):
            sealed = [f for f, v in m.items() if is_sealed(v)]  # whichever fields were sealed when written
            if sealed:
                m = dict(m)
                for f in sealed:
                    m[f] = json.loads(open_(m[f], context=f"{collection}/{i}/meta.{f}"))
            out_m.append(m)
        return out_t, out_m


def make_sealing(encryption: Any, metadata: Sequence[str] = ()) -> RowSealing | None:
    """``encryption`` (``None``, a ``KeyRing`` or a ``Sealer``) as a :class:`RowSealing`."""
    if encryption is None:
        if metadata:
            raise ValidationError("sealed_metadata needs encryption=", hint="pass encryption=KeyRing.open(create=True)")
        return None
    from ...security.envelope import Sealer
    from ...security.keys import KeyRing

    if isinstance(encryption, KeyRing):
        encryption = Sealer(encryption)
    if not isinstance(encryption, Sealer):
        raise ValidationError(
            f"encryption must be a KeyRing or a Sealer, not {type(encryption).__name__}",
            input=type(encryption).__name__,
            hint="encryption=KeyRing.open(create=True)",
        )
    if isinstance(metadata, str) or not all(isinstance(f, str) for f in metadata):
        raise ValidationError("sealed_metadata must be a list of field names", input=metadata)
    return RowSealing(encryption, metadata)
