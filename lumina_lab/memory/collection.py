"""Text-level memory over any vector store: embed, keep BM25 in step, search by vector, keyword or both.

>>> from lumina_lab.memory import VectorMemory
>>> mem = VectorMemory(backend="memory")
>>> docs = mem.collection("docs")
>>> _ = docs.add(["Cedar decides who may call a provider.", "DuckDB keeps the vectors in one file."])
>>> docs.search("which database stores vectors?", k=1)[0].text
'DuckDB keeps the vectors in one file.'
>>> docs.search("Cedar", k=1, mode="keyword")[0].text
'Cedar decides who may call a provider.'
"""

from __future__ import annotations

import hashlib
import html
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError
from .base import Hit, Record, VectorStore, Where, check_collection_name, check_k
from .cache import CacheStats, QueryCache
from .embeddings import Embedder, HashingEmbedder
from .events import MemorySearched, MemoryWritten, emit
from .filters import parse_filter

if TYPE_CHECKING:
    import pandas as pd

    from ..events.bus import InProcessBus
    from .keyword import KeywordIndex

__all__ = ["MODES", "Collection", "SearchResults", "VectorMemory"]

MODES = ("vector", "keyword", "hybrid")
FUSIONS = ("rrf", "weighted")


def content_id(text: str) -> str:
    """A stable id from the content (so adding the same text twice is one item)."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass
class SearchResults(Sequence[Hit]):
    """Hits of one search, best first, with how they were found; a table in notebooks."""

    hits: list[Hit]
    query: str
    collection: str
    mode: str
    ms: float
    cache_hit: bool = False
    denied: int = 0
    ranks: list[dict[str, int | None]] = field(default_factory=list)

    def __getitem__(self, i):  # type: ignore[override]
        return self.hits[i]

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def df(self) -> pd.DataFrame:
        """The hits as a DataFrame: rank, id, score, text, then one column per metadata key."""
        import pandas as pd

        rows = []
        for r, h in enumerate(self.hits, 1):
            row = {"rank": r, "id": h.id, "score": h.score, "text": h.text}
            if self.ranks:
                row |= {f"{k}_rank": v for k, v in self.ranks[r - 1].items()}
            rows.append(row | h.metadata)
        frame = pd.DataFrame(rows)
        for col in frame.columns:  # a hit one retriever missed has no rank there: integers with gaps, not floats
            if col.endswith("_rank") and col != "rank":
                frame[col] = frame[col].astype("Int64")
        return frame

    def __repr__(self) -> str:
        head = f"SearchResults({len(self.hits)} hits from {self.collection!r}, {self.mode}, {self.ms:.2f} ms"
        head += ", cached)" if self.cache_hit else ")"
        return "\n".join([head, *(f"  {r}. {h!r}" for r, h in enumerate(self.hits, 1))])

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{r}</td><td><code>{html.escape(h.id)}</code></td><td>{h.score:.4f}</td>"
            f"<td>{html.escape(h.text[:200])}</td><td>{html.escape(str(h.metadata))}</td></tr>"
            for r, h in enumerate(self.hits, 1)
        )
        note = f"{self.mode} search of <b>{html.escape(self.collection)}</b> for “{html.escape(self.query[:80])}”"
        note += f" — {len(self.hits)} hits in {self.ms:.2f} ms" + (" (cached)" if self.cache_hit else "")
        if self.denied:
            note += f", {self.denied} withheld by policy"
        return (
            f"<div><p>{note}</p><table><thead><tr><th>#</th><th>id</th><th>score</th><th>text</th>"
            f"<th>metadata</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )


class VectorMemory:
    """Named text collections on one vector store, embedded by one embedder.

    Args:
        store: a :class:`~lumina_lab.memory.base.VectorStore`; or give ``backend`` (+ ``options``).
        embedder: turns texts into vectors (default: :class:`HashingEmbedder`, as `lab.memory` uses).
        bus: where ``memory.written`` / ``memory.searched`` events go (optional).
        cache_size: LRU capacity of the query cache (0 disables it).
        policy: optional read gate ``policy(principal, hits) -> list[bool]`` applied when a search names a principal.
    """

    def __init__(
        self,
        store: VectorStore | None = None,
        *,
        backend: str = "duckdb",
        embedder: Embedder | None = None,
        bus: InProcessBus | None = None,
        cache_size: int = 1024,
        policy: Callable[[str, Sequence[Hit]], Sequence[bool]] | None = None,
        **options: Any,
    ) -> None:
        if store is None:
            from .stores import open_vector_store

            store = open_vector_store(backend, **options)
        self.store = store
        self.embedder = embedder if embedder is not None else HashingEmbedder()  # an empty cache has len 0
        self.bus = bus
        self.cache = QueryCache(cache_size)
        self.policy = policy
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        names = ", ".join(self.collections())
        return f"VectorMemory({self.store.name}, embedder={type(self.embedder).__name__}[{self.embedder.dim}], collections: {names or 'none'})"

    def collection(self, name: str) -> Collection:
        """The collection ``name`` (created with the embedder's dimension if new)."""
        check_collection_name(name)
        with self._lock:
            c = self._collections.get(name)
            if c is None:
                self.store.create_collection(name, self.embedder.dim)
                c = self._collections[name] = Collection(self, name)
            return c

    __getitem__ = collection

    def collections(self, *, internal: bool = False) -> list[str]:
        """The collections' names; with ``internal``, also the ``<name>__sentences`` collections in
        which a :class:`~lumina_lab.memory.conversation.ConversationMemory` keeps its sentence vectors."""
        names = [c.name for c in self.store.collections()]
        if internal:
            return names
        from .sentence_vectors import SUFFIX

        have = set(names)
        return [n for n in names if not (n.endswith(SUFFIX) and n[: -len(SUFFIX)] in have)]

    def drop(self, name: str) -> None:
        """Delete a collection and everything in it (with its sentence vectors, if it has any)."""
        from .sentence_vectors import sentence_collection

        sibling = sentence_collection(name)
        self.store.drop_collection(name)
        self.cache.invalidate(name)
        self._collections.pop(name, None)
        if sibling is not None and sibling in self.collections(internal=True):
            self.store.drop_collection(sibling)

    def search(self, query: str, *, collection: str = "default", **kwargs: Any) -> SearchResults:
        """Search one collection (see :meth:`Collection.search`)."""
        return self.collection(collection).search(query, **kwargs)

    def add(self, texts: Sequence[str], *, collection: str = "default", **kwargs: Any) -> list[str]:
        """Add texts to one collection (see :meth:`Collection.add`)."""
        return self.collection(collection).add(texts, **kwargs)

    def cache_stats(self) -> CacheStats:
        return self.cache.stats()

    def close(self) -> None:
        self.store.close()


class Collection:
    """One collection of texts: :meth:`add`, :meth:`search`, :meth:`get`, :meth:`delete`, :meth:`count`.

    Keyword search keeps a BM25 index (bm25s) built from the stored texts on first use and updated
    by every write made here; writes by other processes are picked up through the store's revision.
    """

    def __init__(self, memory: VectorMemory, name: str) -> None:
        self.memory = memory
        self.name = name
        self._keyword: KeywordIndex | None = None
        self._keyword_rev: Any = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, {self.count()} items, store={self.memory.store.name})"

    @property
    def store(self) -> VectorStore:
        return self.memory.store

    # ---- writes ---------------------------------------------------------------------------
    def add(
        self,
        texts: Sequence[str] | str,
        metadata: Sequence[Mapping[str, Any] | None] | Mapping[str, Any] | None = None,
        *,
        ids: Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool | None = None,
    ) -> list[str]:
        """Embed and upsert texts; ids default to a hash of the text (adding twice is idempotent)."""
        if isinstance(texts, str):
            texts = [texts]
        if texts is None or not isinstance(texts, Iterable):
            raise ValidationError(
                f"texts is a {type(texts).__name__}, not text", input=texts, hint="pass a string or a list of strings"
            )
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise ValidationError(f"texts must be strings, got {type(t).__name__}", input=t)
        if isinstance(metadata, Mapping):
            metadata = [metadata] * len(texts)
        ids = [content_id(t) for t in texts] if ids is None else list(ids)
        if len(ids) != len(texts):
            raise ValidationError(f"{len(texts)} texts but {len(ids)} ids", hint="pass one id per text, or none")
        from .embeddings import embed_batched

        vectors = embed_batched(self.memory.embedder, texts, batch_size=batch_size, progress=progress)
        self.upsert(ids, vectors, texts, metadata)
        return ids

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Upsert pre-computed vectors (same rules as :meth:`VectorStore.upsert`)."""
        t = time.perf_counter()
        ids = [ids] if isinstance(ids, str) else ids  # the store gives the clear error
        n = self._write(
            lambda: self.store.upsert(self.name, ids, vectors, texts, metadata),
            lambda kw, _: kw.add(list(ids), list(texts) if texts is not None else [""] * len(ids)),
        )
        self._written("upsert", n, t)
        return n

    def delete(self, ids: Sequence[str] | None = None, where: Where = None) -> int:
        """Delete by ids and/or filter; returns how many were deleted."""
        t = time.perf_counter()

        def run() -> tuple[int, list[str]]:
            if self._keyword is None:
                return self.store.delete(self.name, ids, where), []
            if ids is None:  # which ids the filter takes, for the keyword index
                f = parse_filter(where)
                doomed = [r.id for b in _scan(self.store, self.name) for r in b if f is None or f.matches(r.metadata)]
                return self.store.delete(self.name, ids, where), doomed
            n = self.store.delete(self.name, ids, where)
            still = {r.id for r in self.store.get(self.name, list(ids))}
            return n, [i for i in ids if i not in still]

        n, _ = self._write(run, lambda kw, out: kw.remove(out[1]))
        self._written("delete", n, t)
        return n

    def clear(self) -> None:
        """Delete every item (the collection stays)."""
        t = time.perf_counter()
        self._write(lambda: self.store.clear(self.name), lambda kw, _: kw.clear())
        self._written("clear", 0, t)

    def _write(self, run: Callable[[], Any], update_keyword: Callable[[KeywordIndex, Any], Any]) -> Any:
        """Run a store write and apply it to the BM25 index too, unless others wrote since the index was built.

        Others' writes (another process on the same DuckDB file) move the store's revision; then the
        index is dropped and rebuilt from the store on the next keyword search.
        """
        with self._lock:
            stale = self._keyword is not None and self._revision() != self._keyword_rev
            out = run()
            if self._keyword is not None:
                if stale:
                    self._keyword = None
                else:
                    update_keyword(self._keyword, out)
                    self._keyword_rev = self._revision()
            return out

    def _written(self, op: str, n: int, t: float) -> None:
        self.memory.cache.invalidate(self.name)
        emit(
            self.memory.bus,
            MemoryWritten,
            collection=self.name,
            op=op,
            count=n,
            ms=(time.perf_counter() - t) * 1000,
            backend=self.store.name,
        )

    # ---- reads ----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record]:
        return self.store.get(self.name, ids)

    def count(self, where: Where = None) -> int:
        return self.store.count(self.name, where)

    def _revision(self) -> Any:
        fn = getattr(self.store, "revision", None)
        return fn(self.name) if fn is not None else None

    def keyword_index(self) -> KeywordIndex:
        """The BM25 index, (re)built from the store when missing or when another process wrote."""
        from .keyword import KeywordIndex

        with self._lock:
            rev = self._revision()
            if self._keyword is None or (rev is not None and rev != self._keyword_rev):
                kw = KeywordIndex()
                for batch in _scan(self.store, self.name):
                    kw.add([r.id for r in batch], [r.text for r in batch])
                self._keyword, self._keyword_rev = kw, rev
            return self._keyword

    def search(
        self,
        query: str | np.ndarray,
        k: int = 10,
        *,
        where: Where = None,
        mode: str = "vector",
        fusion: str = "rrf",
        alpha: float = 0.5,
        principal: str | None = None,
        cache: bool = True,
    ) -> SearchResults:
        """Top-``k`` items for a text (or a vector), by ``mode``: ``vector``, ``keyword`` or ``hybrid``.

        Hybrid ranks both lists and fuses them (``fusion="rrf"`` reciprocal-rank fusion, or
        ``"weighted"`` min-max-normalised scores), ``alpha`` weighting the vector side. With a
        ``principal`` and a policy on the memory, hits the principal may not read are withheld.
        """
        t = time.perf_counter()
        k = check_k(k)
        if mode not in MODES:
            raise ValidationError(f"mode={mode!r} is not a search mode", input=mode, hint=f"use one of {MODES}")
        if fusion not in FUSIONS:
            raise ValidationError(f"fusion={fusion!r} is unknown", input=fusion, hint=f"use one of {FUSIONS}")
        is_text = isinstance(query, str)
        if is_text and not query.strip():  # type: ignore[union-attr]
            raise ValidationError("the query is empty", input=query, hint="pass the text to search for")
        if not is_text and mode != "vector":
            raise ValidationError(f"{mode} search needs a text query", hint="pass the query text, not a vector")
        f = parse_filter(where)
        key = None
        if cache and is_text:
            key = (query, k, repr(f), mode, fusion, alpha, principal, self._revision())
            hit = self.memory.cache.get(self.name, key)
            if hit is not None:
                res = SearchResults(
                    list(hit.hits), hit.query, self.name, mode, (time.perf_counter() - t) * 1000, True, hit.denied, hit.ranks
                )
                self._searched(res, f, principal)
                return res
        want = k * 3 if (principal is not None and self.memory.policy is not None) else k
        ranks: list[dict[str, int | None]] = []
        if mode == "vector":
            vec = self.memory.embedder.embed_one(query) if is_text else query
            hits = self.store.search(self.name, vec, want, f)
        elif mode == "keyword":
            hits = self._keyword_hits(query, want, f)  # type: ignore[arg-type]
        else:
            hits, ranks = self._hybrid(query, want, f, fusion, alpha)  # type: ignore[arg-type]
        denied = 0
        if principal is not None and self.memory.policy is not None and hits:
            allowed = list(self.memory.policy(principal, hits))
            denied = sum(not a for a in allowed)
            keep = [j for j, a in enumerate(allowed) if a]
            hits = [hits[j] for j in keep]
            ranks = [ranks[j] for j in keep] if ranks else ranks
        hits, ranks = hits[:k], ranks[:k]
        res = SearchResults(
            hits, query if is_text else "<vector>", self.name, mode, (time.perf_counter() - t) * 1000, False, denied, ranks
        )
        if key is not None:
            self.memory.cache.put(self.name, key, res)
        self._searched(res, f, principal)
        return res

    def _keyword_hits(self, query: str, k: int, f: Any) -> list[Hit]:
        kw = self.keyword_index()
        allowed = None
        if f is not None:
            allowed = {r.id for batch in _scan(self.store, self.name) for r in batch if f.matches(r.metadata)}
        scored = kw.search(query, k=k, allowed=allowed)
        recs = {r.id: r for r in self.store.get(self.name, [i for i, _ in scored])}
        return [Hit(i, float(s), recs[i].text, recs[i].metadata) for i, s in scored if i in recs]

    def _hybrid(self, query: str, k: int, f: Any, fusion: str, alpha: float) -> tuple[list[Hit], list[dict[str, int | None]]]:
        from .fusion import fuse

        depth = max(k * 4, 50)
        vhits = self.store.search(self.name, self.memory.embedder.embed_one(query), depth, f)
        khits = self._keyword_hits(query, depth, f)
        fused = fuse(fusion, [(h.id, h.score) for h in vhits], [(h.id, h.score) for h in khits], alpha=alpha, limit=k)
        by_id = {h.id: h for h in khits} | {h.id: h for h in vhits}
        hits = [Hit(x.id, float(x.score), by_id[x.id].text, by_id[x.id].metadata) for x in fused]
        return hits, [dict(x.ranks) for x in fused]

    def _searched(self, res: SearchResults, f: Any, principal: str | None) -> None:
        emit(
            self.memory.bus,
            MemorySearched,
            collection=self.name,
            mode=res.mode,
            k=len(res.hits),
            hits=len(res.hits),
            ms=res.ms,
            backend=self.store.name,
            cache_hit=res.cache_hit,
            filtered=f is not None,
            shards=len(getattr(self.store, "shards", [None])),
            principal=principal,
            denied=res.denied,
        )


def _scan(store: VectorStore, name: str) -> Iterable[list[Record]]:
    fn = getattr(store, "scan", None)
    if fn is None:
        raise ValidationError(
            f"the {store.name} store cannot list its items, which keyword search needs",
            hint="use vector search on this backend, or the duckdb/memory store for keyword and hybrid search",
        )
    return fn(name)


def _matches(where: Where, record: Record) -> bool:
    f = parse_filter(where)
    return f is None or f.matches(record.metadata)
