"""Sentence vectors kept in the store beside a conversation memory's items.

:class:`~lumina_lab.memory.conversation.ConversationMemory` embeds each item's sentences for
recall's ``sentences`` and ``trim`` steps (about three per turn).  Kept only in memory, they had
to be embedded again every time a persistent memory was reopened: minutes for a large memory
with a neural embedder.  :class:`SentenceVectors` keeps them in a sibling collection of the same
store (``<collection>__sentences``), one row per sentence (id ``"<item id>#<n>"``, metadata
``item``, ``n`` and ``of``, a digest of the item's text), so a reopen reads them back and embeds
only items whose text changed or whose sentences were never stored.

>>> from lumina_lab.memory.stores.memory import MemoryVectorStore
>>> store = MemoryVectorStore()
>>> kept = SentenceVectors(store, "notes", dim=2)
>>> kept.save({"a": "One. Two."}, {"a": np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)})
2
>>> found, missing = kept.load({"a": "One. Two.", "b": "Three."})
>>> sorted(found), missing
(['a'], ['b'])
>>> kept.load({"a": "One, changed."})[1]  # a new text: its old sentence vectors are not used
['a']
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .base import check_collection_name

__all__ = ["SUFFIX", "SentenceVectors", "sentence_collection"]

SUFFIX = "__sentences"
"""What a memory's collection name gets to name the collection of its sentence vectors."""


def sentence_collection(name: str) -> str | None:
    """The sibling collection's name for ``name``, or ``None`` when that would be too long a name."""
    out = name + SUFFIX
    try:
        check_collection_name(out)
    except Exception:
        return None
    return out


def _digest(text: str, embedder: str) -> str:
    return hashlib.blake2b(f"{embedder}\0{text}".encode(), digest_size=8).hexdigest()


class SentenceVectors:
    """Reads and writes one memory's sentence vectors in ``store`` (a :class:`VectorStore`).

    Args:
        store: the store that holds the memory's items.
        name: the memory's collection name; the vectors go to :func:`sentence_collection` of it.
        dim: the embedder's dimension.
        embedder: the embedder's identity: vectors another embedder made are not used.
    """

    def __init__(self, store: Any, name: str, dim: int, embedder: str = "") -> None:
        collection = sentence_collection(name)
        if collection is None:
            raise ValueError(f"no room for {SUFFIX!r} after collection name {name!r}")
        self.store = store
        self.collection = collection
        self.embedder = str(embedder)
        store.create_collection(collection, dim)

    def __repr__(self) -> str:
        return f"SentenceVectors({self.collection!r})"

    def load(self, texts: Mapping[str, str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """The stored vectors of the items ``texts`` names (``id -> (n, dim)``, sentences in order),
        and the ids that have none stored for their current text (to embed), in ``texts``' order."""
        rows: dict[str, dict[int, str]] = defaultdict(dict)
        digests: dict[str, str] = {}
        for batch in self.store.scan(self.collection):
            for r in batch:
                item = r.metadata.get("item")
                if item in texts:
                    rows[item][int(r.metadata.get("n", 0))] = r.id
                    digests[item] = str(r.metadata.get("of"))
        wanted = [i for i in texts if i in rows and digests.get(i) == _digest(texts[i], self.embedder)]
        found: dict[str, np.ndarray] = {}
        by_row: dict[str, np.ndarray] = {}
        ids = [rid for i in wanted for rid in rows[i].values()]
        for at in range(0, len(ids), 2000):
            for rec in self.store.get(self.collection, ids[at : at + 2000], with_vectors=True):
                if rec.vector is not None:
                    by_row[rec.id] = np.asarray(rec.vector, dtype=np.float32)
        for i in wanted:
            order = rows[i]
            if sorted(order) != list(range(len(order))) or any(order[n] not in by_row for n in order):
                continue  # a partial write: embed it again
            found[i] = np.stack([by_row[order[n]] for n in range(len(order))])
        return found, [i for i in texts if i not in found]

    def save(self, texts: Mapping[str, str], vectors: Mapping[str, np.ndarray]) -> int:
        """Store ``vectors[id]`` (one row per sentence) for each item, replacing what it had; returns rows written."""
        items = [i for i in texts if i in vectors and len(vectors[i])]
        self.delete(items)
        ids, mats, metas = [], [], []
        for i in items:
            m = np.asarray(vectors[i], dtype=np.float32)
            of = _digest(texts[i], self.embedder)
            for n in range(len(m)):
                ids.append(f"{i}#{n}")
                metas.append({"item": i, "n": n, "of": of})
            mats.append(m)
        if not ids:
            return 0
        return int(self.store.upsert(self.collection, ids, np.concatenate(mats), None, metas))

    def delete(self, items: Iterable[str]) -> int:
        """Forget the sentence vectors of ``items``; returns rows deleted."""
        items = list(items)
        if not items:
            return 0
        return int(self.store.delete(self.collection, where={"item": {"$in": items}}))

    def drop(self) -> None:
        """Delete the whole sibling collection."""
        self.store.drop_collection(self.collection)
