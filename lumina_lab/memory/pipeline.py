"""Ingest pipeline: documents → chunks (by content type) → embeddings → a collection, resumable.

Chunk ids are ``<document id>#<chunk index>`` and every chunk records a hash of its text, so a
run that failed half-way is simply run again: chunks already stored with the same text are
skipped (not re-embedded), changed ones are replaced, and chunks a shorter new version of a
document no longer has are deleted.

>>> from lumina_lab.memory import VectorMemory, ingest
>>> docs = VectorMemory(backend="memory").collection("docs")
>>> report = ingest(docs, [("guide", "Routing picks a provider. Budgets cap spend.")], size=8, overlap=0)
>>> report.chunks, report.written, report.skipped
(2, 2, 0)
>>> ingest(docs, [("guide", "Routing picks a provider. Budgets cap spend.")], size=8, overlap=0).skipped
2
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from .chunking import chunk as cut
from .embeddings import embed_batched
from .filters import F

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["IngestReport", "ingest"]


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an ingest run did."""

    documents: int
    chunks: int
    written: int
    skipped: int
    deleted: int
    seconds: float

    def __repr__(self) -> str:
        return (
            f"IngestReport({self.documents} documents → {self.chunks} chunks: {self.written} written, "
            f"{self.skipped} unchanged, {self.deleted} stale deleted, {self.seconds:.2f} s)"
        )


def _documents(items: Iterable[Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """Normalise ``str`` | ``(id, text)`` | ``(id, text, metadata)`` | dict | langchain ``Document``."""
    for n, item in enumerate(items):
        if isinstance(item, str):
            yield hashlib.blake2b(item.encode(), digest_size=8).hexdigest(), item, {}
        elif isinstance(item, tuple) and len(item) in (2, 3):
            yield str(item[0]), item[1], dict(item[2]) if len(item) == 3 else {}
        elif isinstance(item, Mapping) and "text" in item:
            meta = dict(item.get("metadata") or {})
            yield str(item.get("id") or hashlib.blake2b(item["text"].encode(), digest_size=8).hexdigest()), item["text"], meta
        elif hasattr(item, "page_content"):  # langchain_core.documents.Document
            meta = dict(getattr(item, "metadata", None) or {})
            doc_id = getattr(item, "id", None) or meta.get("source") or hashlib.blake2b(
                item.page_content.encode(), digest_size=8
            ).hexdigest()
            yield str(doc_id), item.page_content, {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
        else:
            raise ValidationError(
                f"document {n} is a {type(item).__name__}",
                input=item,
                hint="pass texts, (id, text[, metadata]) tuples, {'id', 'text', 'metadata'} dicts or langchain Documents",
            )


def ingest(
    collection: Collection,
    documents: Iterable[Any],
    *,
    size: int = 256,
    overlap: int = 32,
    kind: str = "auto",
    batch_size: int = 256,
    progress: bool | None = None,
) -> IngestReport:
    """Chunk, embed and upsert ``documents`` into ``collection``; safe to re-run after a failure.

    Each chunk's metadata carries ``doc_id``, ``chunk``, ``start``, ``end``, ``kind`` and ``hash``
    plus the document's own metadata. Work is written batch by batch, so a failure loses at most
    the batch in flight, and the next run continues from what is stored.
    """
    t = time.perf_counter()
    pending: list[tuple[str, str, dict[str, Any]]] = []
    n_docs = n_chunks = written = skipped = deleted = 0
    for doc_id, text, meta in _documents(documents):
        if not isinstance(text, str):
            raise ValidationError(f"the text of document {doc_id!r} is a {type(text).__name__}", input=text)
        n_docs += 1
        pieces = cut(text, size=size, overlap=overlap, kind=kind)
        n_chunks += len(pieces)
        ids = [f"{doc_id}#{c.index}" for c in pieces]
        stored = {r.id: r.metadata.get("hash") for r in collection.get(ids)}
        for cid, c in zip(ids, pieces, strict=True):
            digest = hashlib.blake2b(c.text.encode(), digest_size=8).hexdigest()
            if stored.get(cid) == digest:
                skipped += 1
                continue
            md = meta | {"doc_id": doc_id, "chunk": c.index, "start": c.start, "end": c.end, "kind": c.kind, "hash": digest}
            pending.append((cid, c.text, md))
        stale = (F.doc_id == doc_id) & (F.chunk >= len(pieces))
        if collection.count(stale):
            deleted += collection.delete(where=stale)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc=f"ingest {collection.name}", unit="chunk", disable=not _show(progress, len(pending)))
    try:
        for lo in range(0, len(pending), batch_size):
            part = pending[lo : lo + batch_size]
            texts = [p[1] for p in part]
            vectors = embed_batched(collection.memory.embedder, texts, batch_size=batch_size, progress=False)
            written += collection.upsert([p[0] for p in part], vectors, texts, [p[2] for p in part])
            bar.update(len(part))
    finally:
        bar.close()
    return IngestReport(n_docs, n_chunks, written, skipped, deleted, time.perf_counter() - t)


def _show(progress: bool | None, n: int) -> bool:
    return bool(progress) if progress is not None else n > 2000
