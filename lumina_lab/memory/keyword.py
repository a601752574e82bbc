"""Keyword search: :class:`KeywordIndex`, BM25 over ``(id, text)`` documents, kept in step with every write.

`bm25s <https://github.com/xhluca/bm25s>`_ scores fast but builds a *static*
index.  :class:`KeywordIndex` keeps the documents (and each document's token
ids) itself, counts a :attr:`~KeywordIndex.generation` up on every write that
changes them, and rebuilds the bm25s index lazily: the first :meth:`~KeywordIndex.search`
after a write sees a stale index and rebuilds it before scoring.  So a search
always reflects every write made before it, and a batch of writes costs one
rebuild, not one each.

Tokenisation (the same for documents and queries): lowercase, unicode word
tokens (``\\w+``, so ``"Zürich"`` and ``"中文"`` are tokens and punctuation is
not), stopwords dropped (bm25s' English list by default), then an optional
stemmer (a ``str -> str`` callable, e.g. ``Stemmer.Stemmer("english").stemWord``
from PyStemmer; none by default, so nothing extra to install).

Scores are, by default, bm25s' ``"lucene"`` BM25 (``k1=1.5``, ``b=0.75``)::

    score(d, q) = sum over distinct query terms t in d of
                  ln(1 + (N - df_t + 0.5) / (df_t + 0.5)) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))

Performance (one core, 100,000 synthetic documents of 5-20 words over a 20,000
word vocabulary): ``add`` tokenises them in 1-1.5 s, the rebuild the next search
triggers takes 1.5-2 s, and a query then takes well under a millisecond (about
0.06 ms for three terms, 0.1 ms with an ``allowed`` set; more for terms that
occur in a large share of the documents).  Bulk-load with one ``add`` of many
documents (or call :meth:`~KeywordIndex.refresh` after loading) rather than
interleaving single adds with searches: each search after a write pays a full
rebuild.

>>> idx = KeywordIndex()
>>> idx.add(["a", "b", "c"], ["The cat sat on the mat", "A dog in the fog", "Cats and dogs, the zebra"])
>>> [doc_id for doc_id, _ in idx.search("zebra")]
['c']
>>> idx.add(["c"], ["nothing to see"])  # upsert: "c" no longer mentions a zebra
>>> idx.search("zebra")
[]
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError, ValidationError

__all__ = ["KeywordIndex"]

_WORD = re.compile(r"\w+")
_FORMAT = "lumina_lab.keyword_index"
_FORMAT_VERSION = 1
_METHODS = ("lucene", "robertson", "atire")
_LANGUAGES = ("en", "english")
_MIN_GARBAGE = 1024  # dead vocabulary entries tolerated before the vocabulary is compacted


def _english_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def _check_strings(what: str, values: object) -> list[Any]:
    """``values`` as a list, refusing a lone string (a classic slip: ``add("id", "text")``)."""
    if isinstance(values, str | bytes):
        raise ValidationError(
            f"{what} must be a sequence of strings, not a single {type(values).__name__}",
            input=values,
            hint=f"wrap it in a list: [{values!r}]",
        )
    try:
        return list(values)  # type: ignore[call-overload]
    except TypeError:
        raise ValidationError(
            f"{what} must be a sequence of strings, not {type(values).__name__}", input=values
        ) from None


class KeywordIndex:
    """BM25 keyword index over ``(id, text)`` documents, with upserts, deletes and filtered search.

    Every write (:meth:`add`, :meth:`remove`, :meth:`clear`) that changes the
    documents increments :attr:`generation` and marks the bm25s index stale;
    the next :meth:`search` (or :meth:`refresh`) rebuilds it, so results always
    reflect every write.  Methods are thread-safe (one lock; a search holds it
    while it runs).

    Args:
        stopwords: ``"en"`` (bm25s' English list, the default), an iterable of
            words to drop (compared after lowercasing), or ``None`` to keep every word.
        stemmer: optional ``str -> str`` applied to every kept token of documents
            and queries (``None``, the default, disables stemming).  It is not
            saved by :meth:`save`; pass it again to :meth:`load`.
        k1: BM25 term-frequency saturation, ``>= 0``.
        b: BM25 document-length normalisation, in ``[0, 1]``.
        method: bm25s scoring variant: ``"lucene"`` (default), ``"robertson"`` or ``"atire"``.
    """

    def __init__(
        self,
        *,
        stopwords: str | Iterable[str] | None = "en",
        stemmer: Callable[[str], str] | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
    ) -> None:
        if isinstance(stopwords, str):
            if stopwords.lower() not in _LANGUAGES:
                raise ValidationError(
                    f"stopwords={stopwords!r} is not a known stopword list",
                    input=stopwords,
                    hint="use 'en', None (keep every word) or a list of words",
                )
            stop: frozenset[str] = _english_stopwords()
            self._stopwords_spec: str | list[str] | None = "en"
        elif stopwords is None:
            stop = frozenset()
            self._stopwords_spec = None
        else:
            words = _check_strings("stopwords", stopwords)
            if not all(isinstance(w, str) for w in words):
                raise ValidationError("stopwords must all be strings", input=stopwords)
            stop = frozenset(w.lower() for w in words)
            self._stopwords_spec = sorted(stop)
        if stemmer is not None and not callable(stemmer):
            raise ValidationError(
                f"stemmer={stemmer!r} is not callable", input=stemmer, hint="pass a str -> str function"
            )
        if not (isinstance(k1, int | float) and not isinstance(k1, bool) and 0.0 <= k1 < float("inf")):
            raise ValidationError(
                f"k1={k1!r} must be a finite number >= 0", input=k1, hint="the usual range is 1.2-2.0"
            )
        if not (isinstance(b, int | float) and not isinstance(b, bool) and 0.0 <= b <= 1.0):
            raise ValidationError(f"b={b!r} must be a number in [0, 1]", input=b, hint="0.75 is the usual value")
        if method not in _METHODS:
            raise ValidationError(
                f"method={method!r} is not a supported BM25 variant",
                input=method,
                hint=f"use one of {', '.join(map(repr, _METHODS))}",
            )
        self.stopwords = stop
        self.stemmer = stemmer
        self.k1 = float(k1)
        self.b = float(b)
        self.method = method
        self._lock = threading.RLock()
        self._stems: dict[str, str] = {}
        self._texts: dict[str, str] = {}
        self._tokens: dict[str, list[int]] = {}  # document id -> token ids (our vocabulary)
        self._vocab: dict[str, int] = {}
        self._df: list[int] = []  # token id -> number of documents containing it
        self._dead = 0  # vocabulary entries with df == 0
        self._generation = 0
        self._built_generation = -1
        self._bm25: Any = None  # bm25s.BM25 of the documents at _built_generation (None: nothing to score)
        self._order: list[str] = []  # bm25s document position -> id
        self._position: dict[str, int] = {}  # id -> bm25s document position

    def __repr__(self) -> str:
        return f"KeywordIndex(documents={len(self._texts)}, generation={self._generation}, method={self.method!r})"

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and doc_id in self._texts

    @property
    def generation(self) -> int:
        """Number of writes that changed the documents since the index was created (or loaded)."""
        return self._generation

    @property
    def stale(self) -> bool:
        """Whether the bm25s index lags the documents (the next search rebuilds it)."""
        return self._built_generation != self._generation

    def get(self, doc_id: str, default: str | None = None) -> str | None:
        """The text stored under ``doc_id``, or ``default``."""
        return self._texts.get(doc_id, default)

    def ids(self) -> list[str]:
        """Every document id, in insertion order."""
        with self._lock:
            return list(self._texts)

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str) -> list[str]:
        """The index terms of ``text``: lowercase word tokens, stopwords dropped, stemmed if a stemmer is set."""
        stop = self.stopwords
        words = [w for w in _WORD.findall(text.lower()) if w not in stop]
        if self.stemmer is None:
            return words
        stems = self._stems
        out = []
        for w in words:
            s = stems.get(w)
            if s is None:
                s = stems[w] = str(self.stemmer(w))
                if len(stems) > 1_000_000:
                    stems.clear()
            out.append(s)
        return out

    def _token_ids(self, text: str) -> list[int]:
        """Token ids of a document's terms, growing the vocabulary (df is counted by the caller)."""
        vocab = self._vocab
        ids = []
        for t in self.tokenize(text):
            i = vocab.get(t)
            if i is None:
                i = vocab[t] = len(vocab)
                self._df.append(0)
                self._dead += 1
            ids.append(i)
        return ids

    def _count(self, token_ids: list[int], delta: int) -> None:
        df = self._df
        for i in set(token_ids):
            before = df[i]
            df[i] = before + delta
            if before == 0:
                self._dead -= 1
            elif df[i] == 0:
                self._dead += 1

    # ------------------------------------------------------------------ writes
    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Insert or replace documents: ``ids[i]`` gets ``texts[i]`` (a repeated id: the last text wins).

        Re-adding an id replaces its text entirely (its old terms no longer
        match); re-adding the same text is a no-op.  Inputs are validated before
        anything changes, so a bad item leaves the index as it was.

        Raises:
            ValidationError: ``ids``/``texts`` are not sequences of strings, or differ in length.
        """
        id_list = _check_strings("ids", ids)
        text_list = _check_strings("texts", texts)
        if len(id_list) != len(text_list):
            raise ValidationError(
                f"add() got {len(id_list)} ids but {len(text_list)} texts",
                input=(len(id_list), len(text_list)),
                hint="pass one text per id",
            )
        for pos, (doc_id, text) in enumerate(zip(id_list, text_list, strict=True)):
            if not isinstance(doc_id, str):
                raise ValidationError(
                    f"id #{pos} is a {type(doc_id).__name__}, not a str",
                    input=doc_id,
                    hint="convert ids to str before indexing",
                )
            if not isinstance(text, str):
                raise ValidationError(
                    f"text of id {doc_id!r} is a {type(text).__name__}, not a str",
                    input=text,
                    hint="convert every text to str (and drop missing values) before indexing",
                )
        batch = dict(zip(id_list, text_list, strict=True))
        with self._lock:
            changed = False
            for doc_id, text in batch.items():
                old = self._tokens.get(doc_id)
                if old is not None:
                    if self._texts[doc_id] == text:
                        continue
                    self._count(old, -1)
                tokens = self._token_ids(text)
                self._count(tokens, +1)
                self._texts[doc_id] = text
                self._tokens[doc_id] = tokens
                changed = True
            if changed:
                self._generation += 1

    def remove(self, ids: Iterable[str]) -> int:
        """Delete documents by id; ids that are not indexed are ignored.  Returns how many were removed."""
        id_list = _check_strings("ids", ids)
        removed = 0
        with self._lock:
            for doc_id in id_list:
                tokens = self._tokens.pop(doc_id, None) if isinstance(doc_id, str) else None
                if tokens is None:
                    continue
                del self._texts[doc_id]
                self._count(tokens, -1)
                removed += 1
            if removed:
                self._generation += 1
        return removed

    def clear(self) -> None:
        """Delete every document (the generation still counts on)."""
        with self._lock:
            if not self._texts:
                return
            self._texts.clear()
            self._tokens.clear()
            self._vocab.clear()
            self._df.clear()
            self._dead = 0
            self._generation += 1

    # ------------------------------------------------------------------ index
    def _compact(self) -> None:
        """Drop vocabulary entries no document uses any more, renumbering token ids."""
        remap: dict[int, int] = {}
        vocab: dict[str, int] = {}
        df: list[int] = []
        for term, old in self._vocab.items():
            if self._df[old] > 0:
                remap[old] = vocab[term] = len(vocab)
                df.append(self._df[old])
        self._tokens = {doc_id: [remap[t] for t in toks] for doc_id, toks in self._tokens.items()}
        self._vocab, self._df, self._dead = vocab, df, 0

    def refresh(self) -> None:
        """Rebuild the bm25s index now if writes made it stale (searching does this by itself)."""
        with self._lock:
            if self._built_generation == self._generation:
                return
            if self._dead > max(_MIN_GARBAGE, len(self._vocab) - self._dead):
                self._compact()
            order = list(self._tokens)
            corpus = [self._tokens[doc_id] for doc_id in order]
            bm25 = None
            if any(corpus):
                import bm25s

                bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
                # a copy: bm25s adds its empty token to the vocabulary it is given
                bm25.index((corpus, dict(self._vocab)), show_progress=False)
            self._bm25, self._order = bm25, order
            self._position = {doc_id: p for p, doc_id in enumerate(order)}
            self._built_generation = self._generation

    def search(self, query: str, k: int = 10, allowed: Collection[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` best documents for ``query``: ``(id, BM25 score)`` pairs, best first.

        Only documents sharing at least one (non-stopword) term with the query
        are returned (their score is positive), so an empty index, an empty
        query or a query of stopwords only gives ``[]``.  Repeated query terms
        count once.  Equal scores are ordered by id.

        Args:
            query: free text, tokenised like the documents.
            k: maximum number of hits, ``>= 1``.
            allowed: optional set of ids (e.g. a metadata filter's result); only
                these documents can be hits.  The best ``k`` *allowed* documents are
                returned however many better disallowed ones there are.  Ids not
                in the index are ignored.

        Raises:
            ValidationError: ``query`` is not a str, or ``k`` is not a positive integer.
        """
        if not isinstance(query, str):
            raise ValidationError(f"query must be a str, not {type(query).__name__}", input=query)
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k <= 0:
            raise ValidationError(
                f"k={k!r} must be a positive integer", input=k, hint="ask for at least one hit, e.g. k=10"
            )
        if allowed is not None and isinstance(allowed, str):
            raise ValidationError(
                "allowed must be a collection of ids, not a single str", input=allowed, hint=f"use {{{allowed!r}}}"
            )
        k = int(k)
        with self._lock:
            self.refresh()
            bm25 = self._bm25
            if bm25 is None:
                return []
            terms = dict.fromkeys(self.tokenize(query))
            token_ids = [i for i in (self._vocab.get(t) for t in terms) if i is not None and self._df[i] > 0]
            if not token_ids:
                return []
            scores = bm25.get_scores_from_ids(token_ids)
            order = self._order
            hits = np.flatnonzero(scores > 0)
            if allowed is not None and hits.size:
                allowed_set = allowed if isinstance(allowed, set | frozenset) else set(allowed)
                if len(allowed_set) < hits.size:  # few allowed ids: look up their scores
                    position = self._position
                    candidates = [position[i] for i in allowed_set if i in position]
                    hits = np.array(candidates, dtype=np.intp)
                    hits = hits[scores[hits] > 0] if hits.size else hits
                else:  # few matching documents: keep the allowed ones
                    hits = hits[np.array([order[p] in allowed_set for p in hits.tolist()], dtype=bool)]
            if hits.size > k:
                values = scores[hits]
                kth = np.partition(values, hits.size - k)[hits.size - k]
                hits = hits[values >= kth]  # keeps every tie of the k-th score, for the id tie-break below
            result = [(order[p], float(scores[p])) for p in hits.tolist()]
        result.sort(key=lambda hit: (-hit[1], hit[0]))
        return result[:k]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the documents and settings (not the bm25s index) to a JSON file, atomically.

        The file is written beside ``path`` and renamed over it, so a reader
        sees the old file or the new one, never half of one.  A stemmer is not
        saved.  Returns the path written.

        Raises:
            StoreError: the file cannot be written.
        """
        target = Path(path)
        with self._lock:
            payload = {
                "format": _FORMAT,
                "version": _FORMAT_VERSION,
                "settings": {"stopwords": self._stopwords_spec, "k1": self.k1, "b": self.b, "method": self.method},
                "generation": self._generation,
                "ids": list(self._texts),
                "texts": list(self._texts.values()),
            }
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(payload, f, ensure_ascii=False, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise StoreError(f"cannot write keyword index to {target}: {e}", input=str(target)) from e
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, stemmer: Callable[[str], str] | None = None) -> KeywordIndex:
        """Read an index written by :meth:`save` (the bm25s index is rebuilt on the first search).

        Raises:
            StoreError: the file is missing, unreadable, or not a keyword index file.
        """
        source = Path(path)
        try:
            with open(source, encoding="utf-8") as f:
                payload = json.load(f)
        except (OSError, ValueError) as e:
            raise StoreError(
                f"cannot read keyword index {source}: {e}", input=str(source), hint="pass a file written by save()"
            ) from e
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise StoreError(
                f"{source} is not a keyword index file", input=str(source), hint="pass a file written by save()"
            )
        if payload.get("version") != _FORMAT_VERSION:
            raise StoreError(
                f"{source} has keyword index format version {payload.get('version')!r}; this version reads {_FORMAT_VERSION}",
                input=str(source),
                hint="upgrade lumina-lab, or rebuild the index from its documents",
            )
        try:
            settings = payload["settings"]
            index = cls(
                stopwords=settings["stopwords"],
                stemmer=stemmer,
                k1=settings["k1"],
                b=settings["b"],
                method=settings["method"],
            )
            index.add(payload["ids"], payload["texts"])
        except (KeyError, TypeError, ValidationError) as e:
            raise StoreError(f"{source} is a damaged keyword index file: {e}", input=str(source)) from e
        index._generation = max(index._generation, int(payload.get("generation", 0)))
        return index
