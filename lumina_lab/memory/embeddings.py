"""Text embedders: the :class:`Embedder` protocol and a dependency-free :class:`HashingEmbedder`.

An embedder turns texts into an ``(n, dim)`` float32 matrix whose rows have unit
L2 norm, so a dot product is a cosine similarity.  :class:`HashingEmbedder`
needs nothing but numpy and no fitting: it hashes lowercase word n-grams
(and, optionally, character n-grams) into ``dim`` signed buckets.  Its hashes
are keyed BLAKE2b and fixed integer mixing, never Python's salted ``hash()``,
so the same text gives the same vector in every process and on every machine.

>>> emb = HashingEmbedder(dim=256)
>>> m = emb.embed(["How many eggs are left?", "How many eggs remain?"])
>>> m.shape, str(m.dtype)
((2, 256), 'float32')
>>> bool(m[0] @ m[1] > 0.3)
True

:func:`embedder_from` builds an embedder from a short spec (``"hashing"``,
``"hashing:512"``, ``"minilm"``) or adapts a langchain ``Embeddings`` object;
:func:`embed_batched` embeds a long list in batches behind a progress bar.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ValidationError

__all__ = ["EMBEDDER_SPECS", "CachedEmbedder", "Embedder", "HashingEmbedder", "embed_batched", "embedder_from"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SPACE = re.compile(r"\s+")
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime, for the rolling character hash
_S33 = np.uint64(33)
_LOW32 = np.uint64(0xFFFFFFFF)


@runtime_checkable
class Embedder(Protocol):
    """Anything that maps texts to unit-norm float32 vectors of a fixed dimension.

    Embedders should also have an ``identity`` attribute: a short string that
    names the model *and every setting that changes the vectors* (e.g.
    ``"hashing:dim=384:ngrams=1-2:chars=3-5:char_weight=0.5:seed=0"`` or
    ``"minilm:all-MiniLM-L6-v2"``), so that persistent caches never mix
    vectors of two models.  It is not a protocol member, for compatibility
    with embedders written before it; caches that need it ask for it.
    """

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(len(texts), dim)`` float32 matrix with L2-normalised rows."""
        ...

    def embed_one(self, text: str) -> np.ndarray:
        """The ``(dim,)`` vector of one text."""
        ...


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (vectorised; uint64 arithmetic wraps as intended)."""
    h = h ^ (h >> _S33)
    h = h * _M1
    h = h ^ (h >> _S33)
    h = h * _M2
    return h ^ (h >> _S33)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise ValidationError(
            "embed() takes a sequence of texts, not a single string",
            input=texts,
            hint="use embed_one(text), or embed([text])",
        )
    try:
        items = list(texts)
    except TypeError:
        raise ValidationError(f"embed() takes a sequence of strings, not {type(texts).__name__}", input=texts) from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise ValidationError(
                f"text #{i} is a {type(t).__name__}, not a str",
                input=t,
                hint="convert every item to str (and drop missing values) before embedding",
            )
    return items


def _check_range(name: str, value: object) -> tuple[int, int]:
    ok = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 1 <= value[0] <= value[1] <= 16
    )
    if not ok:
        raise ValidationError(f"{name}={value!r} must be a pair (lo, hi) with 1 <= lo <= hi <= 16", input=value)
    return int(value[0]), int(value[1])  # type: ignore[index]


class HashingEmbedder:
    """Feature hashing of word and character n-grams: fast, deterministic, nothing to download.

    Each text is lowercased and split into word tokens (``\\w+``) and single
    punctuation marks; word n-grams for every ``n`` in ``ngram_range`` and, if
    ``char_ngrams`` is set, character n-grams of the whitespace-collapsed text
    are hashed to a bucket and a sign.  A feature seen ``c`` times in a text
    weighs ``1 + ln(c)`` (sublinear tf).  The word part and the character part
    are L2-normalised separately and mixed with ``char_weight`` (the share of
    the squared norm given to characters), then the row is normalised again.
    A text with no features (an empty string) embeds to the zero vector.

    Args:
        dim: number of buckets (the vector dimension), at least 2.
        ngram_range: smallest and largest word n-gram, e.g. ``(1, 2)`` for unigrams and bigrams.
        char_ngrams: smallest and largest character n-gram, or ``None`` for words only.
        char_weight: share of the squared norm given to character n-grams (when both parts exist).
        seed: selects another hash function (another, equally good, embedding).
        cache_size: word-token hashes kept in memory (vocabularies repeat).
    """

    def __init__(
        self,
        dim: int = 1024,
        ngram_range: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] | None = (3, 5),
        *,
        char_weight: float = 0.5,
        seed: int = 0,
        cache_size: int = 500_000,
    ) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or not 2 <= dim <= 2**24:
            raise ValidationError(f"dim={dim!r} must be an integer in [2, 2**24]", input=dim)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValidationError(f"seed={seed!r} must be a non-negative integer", input=seed)
        if not (isinstance(char_weight, int | float) and 0.0 <= char_weight <= 1.0):
            raise ValidationError(f"char_weight={char_weight!r} must be in [0, 1]", input=char_weight)
        self.dim = dim
        self.ngram_range = _check_range("ngram_range", ngram_range)
        self.char_ngrams = None if char_ngrams is None else _check_range("char_ngrams", char_ngrams)
        self.char_weight = float(char_weight)
        self.seed = seed
        self.cache_size = cache_size
        self._key = seed.to_bytes(8, "little")
        self._salt = _fmix(np.array([seed + 1], dtype=np.uint64) * _GOLD)[0]
        self._tokens: OrderedDict[str, int] = OrderedDict()

    @property
    def identity(self) -> str:
        """A stable id of the vectors this embedder makes: every parameter but ``cache_size``."""
        chars = "none" if self.char_ngrams is None else "{}-{}".format(*self.char_ngrams)
        lo, hi = self.ngram_range
        return (
            f"hashing:dim={self.dim}:ngrams={lo}-{hi}:chars={chars}:char_weight={self.char_weight:g}:seed={self.seed}"
        )

    def __repr__(self) -> str:
        return (
            f"HashingEmbedder(dim={self.dim}, ngram_range={self.ngram_range}, "
            f"char_ngrams={self.char_ngrams}, seed={self.seed})"
        )

    # ------------------------------------------------------------------ hashing
    def _token_hash(self, token: str) -> int:
        h = self._tokens.get(token)
        if h is None:
            digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8, key=self._key).digest()
            h = int.from_bytes(digest, "little")
            self._tokens[token] = h
            if len(self._tokens) > self.cache_size:
                self._tokens.popitem(last=False)
        return h

    def _word_features(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(document index, 64-bit feature hash) of every word n-gram occurrence."""
        lo, hi = self.ngram_range
        hashes: list[int] = []
        lengths = np.empty(len(texts), dtype=np.int64)
        th = self._token_hash
        for i, text in enumerate(texts):
            toks = _TOKEN.findall(text.lower())
            hashes.extend(th(t) for t in toks)
            lengths[i] = len(toks)
        base = np.array(hashes, dtype=np.uint64)
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        docs: list[np.ndarray] = []
        feats: list[np.ndarray] = []
        h = base
        for n in range(1, hi + 1):
            if n > 1:  # extend each (n-1)-gram by the token that follows it, inside one document
                h = _fmix(h[:-1] * _GOLD + base[n - 1 :] + np.uint64(n))
            if n >= lo:
                m = max(len(doc) - n + 1, 0)  # n-grams in the batch (none when it has fewer than n tokens)
                valid = doc[:m] == doc[n - 1 : n - 1 + m] if n > 1 else slice(None)
                docs.append(doc[:m][valid])
                feats.append(h[valid])
        return np.concatenate(docs), np.concatenate(feats)

    def _char_features(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(document index, 64-bit feature hash) of every character n-gram occurrence."""
        lo, hi = self.char_ngrams  # type: ignore[misc]
        norm = [" " + _SPACE.sub(" ", t.lower()).strip() + " " for t in texts]
        lengths = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
        codes = np.frombuffer("".join(norm).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        docs: list[np.ndarray] = []
        feats: list[np.ndarray] = []
        h = codes + self._salt
        for n in range(1, hi + 1):
            if n > 1:
                h = h[:-1] * _PRIME + codes[n - 1 :]
            if n >= lo:
                m = max(len(codes) - n + 1, 0)  # none when the batch has fewer than n characters
                valid = doc[:m] == doc[n - 1 : n - 1 + m]
                # the length tag in the high byte keeps n-grams of different lengths apart before mixing
                docs.append(doc[:m][valid])
                feats.append(_fmix(h[valid] ^ (np.uint64(n) << np.uint64(56))))
        return np.concatenate(docs), np.concatenate(feats)

    def _accumulate(self, out: np.ndarray, doc: np.ndarray, feat: np.ndarray) -> None:
        """Add the sublinear-tf, signed-hashed features of one part into ``out``; L2-normalise the part."""
        n = out.shape[0]
        if doc.size == 0:
            return
        # one key per (document, feature): the document in the high 32 bits, 32 hash bits below
        key = (doc.astype(np.uint64) << np.uint64(32)) | (feat & _LOW32)
        uniq, counts = np.unique(key, return_counts=True)
        rows = (uniq >> np.uint64(32)).astype(np.int64)
        low = uniq & _LOW32
        cols = ((low >> np.uint64(1)) % np.uint64(self.dim)).astype(np.int64)
        sign = 1.0 - 2.0 * (low & np.uint64(1)).astype(np.float64)
        vals = sign * (1.0 + np.log(counts))
        dense = np.bincount(rows * self.dim + cols, weights=vals, minlength=n * self.dim)
        part = dense.reshape(n, self.dim)
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        np.divide(part, norms, out=part, where=norms > 0)
        out += part

    # ------------------------------------------------------------------ public
    def embed(self, texts: Sequence[str], *, batch_size: int = 2048) -> np.ndarray:
        """Embed ``texts``: an ``(n, dim)`` float32 matrix of unit rows (zero rows for empty texts)."""
        items = _check_texts(texts)
        result = np.zeros((len(items), self.dim), dtype=np.float32)
        w_word, w_char = (1.0, 0.0) if self.char_ngrams is None else (1.0 - self.char_weight, self.char_weight)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            part = np.zeros((len(chunk), self.dim), dtype=np.float64)
            acc = np.zeros_like(part)
            if w_word > 0:
                self._accumulate(part, *self._word_features(chunk))
                acc += np.sqrt(w_word) * part
            if w_char > 0:
                part[:] = 0.0
                self._accumulate(part, *self._char_features(chunk))
                acc += np.sqrt(w_char) * part
            norms = np.linalg.norm(acc, axis=1, keepdims=True)
            np.divide(acc, norms, out=acc, where=norms > 0)
            result[start : start + len(chunk)] = acc
        return result

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text: a ``(dim,)`` float32 unit vector (zero for an empty text)."""
        if not isinstance(text, str):
            raise ValidationError(f"embed_one() takes a str, not {type(text).__name__}", input=text)
        return self.embed([text])[0]


class CachedEmbedder:
    """Wraps an :class:`Embedder` and remembers the vectors of the last ``maxsize`` distinct texts.

    Useful when several routers (or a sweep) embed the same prompts again.
    """

    def __init__(self, inner: Embedder, *, maxsize: int = 100_000) -> None:
        if not isinstance(inner, Embedder):
            raise ValidationError(f"{inner!r} is not an Embedder", input=inner, hint="pass e.g. HashingEmbedder()")
        self.inner = inner
        self.dim = inner.dim
        self.maxsize = maxsize
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def identity(self) -> str:
        """The inner embedder's ``identity`` (the vectors are the same); AttributeError if it has none."""
        return self.inner.identity  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, cached={len(self._cache)})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        cache = self._cache
        missing = list(dict.fromkeys(t for t in items if t not in cache))
        if missing:
            for text, row in zip(missing, self.inner.embed(missing), strict=True):
                cache[text] = row
            while len(cache) > self.maxsize:
                cache.popitem(last=False)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for i, t in enumerate(items):
            row = cache.get(t)
            out[i] = row if row is not None else self.inner.embed([t])[0]
        return out

    def embed_one(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise ValidationError(f"embed_one() takes a str, not {type(text).__name__}", input=text)
        return self.embed([text])[0]


# ---------------------------------------------------------------------- factory and batching

#: The string specs :func:`embedder_from` understands.
EMBEDDER_SPECS = ("hashing", "hashing:<dim>", "minilm", "minilm:all-MiniLM-L6-v2")

#: ``progress=None`` shows a bar only for more batches than this (and only once it has run half a second).
_AUTO_PROGRESS_BATCHES = 4


def _is_embedder(obj: object) -> bool:
    """``isinstance(obj, Embedder)`` without reading ``dim`` (a property may compute it, e.g. by a probe call)."""
    if isinstance(obj, type):
        return False
    try:
        inspect.getattr_static(obj, "dim")
    except AttributeError:
        return False
    return callable(getattr(obj, "embed", None)) and callable(getattr(obj, "embed_one", None))


def _is_langchain_embeddings(obj: object) -> bool:
    return callable(getattr(obj, "embed_documents", None)) and callable(getattr(obj, "embed_query", None))


def embedder_from(spec: Any, **options: Any) -> Embedder:
    """An :class:`Embedder` from a spec.

    ``spec`` is one of:

    * ``"hashing"`` — :class:`HashingEmbedder` with its defaults; ``"hashing:512"`` sets ``dim``;
    * ``"minilm"`` (or ``"minilm:all-MiniLM-L6-v2"``) —
      :class:`~lumina_lab.memory.minilm.MiniLMEmbedder`, all-MiniLM-L6-v2 in numpy;
    * an object that already is an :class:`Embedder` — returned unchanged (``options`` must be empty);
    * a langchain-core ``Embeddings`` object (anything with ``embed_documents`` and
      ``embed_query``) — wrapped in :class:`~lumina_lab.memory.lc_embeddings.LangChainEmbedder`.

    Strings are case-insensitive and may carry surrounding spaces.  ``options`` go to the
    constructor (e.g. ``embedder_from("minilm", batch_size=64)``).

    Raises:
        ValidationError: an unknown spec (the message lists the allowed ones), or a bad dimension.
        ConfigError: ``"minilm"`` without its package installed (with the fix).
    """
    if isinstance(spec, str):
        name, _, arg = spec.strip().lower().partition(":")
        if name == "hashing":
            if arg:
                if not arg.strip().isdigit():
                    raise ValidationError(
                        f"embedder spec {spec!r}: the dimension after 'hashing:' must be an integer",
                        input=spec,
                        hint="e.g. 'hashing:512'",
                    )
                options = {"dim": int(arg), **options}
            return HashingEmbedder(**options)
        if name == "minilm" and arg.strip() in ("", "all-minilm-l6-v2"):
            from .minilm import MiniLMEmbedder

            return MiniLMEmbedder(**options)
    elif _is_embedder(spec):
        if options:
            raise ValidationError(
                f"options {sorted(options)} cannot be applied to the existing embedder {spec!r}", input=options
            )
        return spec
    elif _is_langchain_embeddings(spec) and not isinstance(spec, type):
        from .lc_embeddings import LangChainEmbedder

        return LangChainEmbedder(spec, **options)
    allowed = ", ".join(repr(s) for s in EMBEDDER_SPECS)
    raise ValidationError(
        f"unknown embedder spec {spec!r}",
        input=spec,
        hint=f"use one of {allowed}, an Embedder object, or a langchain Embeddings object",
    )


def embed_batched(
    embedder: Embedder,
    texts: Sequence[str],
    batch_size: int = 64,
    progress: bool | None = None,
    *,
    desc: str | None = None,
) -> np.ndarray:
    """Embed ``texts`` in batches of ``batch_size``, behind a ``tqdm.auto`` progress bar.

    Texts are embedded shortest first (so batches of a neural embedder carry
    little padding) and the rows returned in the order given: an
    ``(len(texts), embedder.dim)`` float32 matrix, equal to ``embedder.embed(texts)``.

    Args:
        embedder: any :class:`Embedder`, or a spec for :func:`embedder_from`.
        texts: the texts.
        batch_size: texts per ``embed`` call (at least 1).
        progress: ``True`` always shows a bar, ``False`` never; ``None`` shows one when there
            are more than a few batches and the run takes more than half a second.
        desc: the bar's label (default: the embedder's class name).

    Raises:
        ValidationError: bad texts, batch size or embedder output shape.
    """
    emb = embedder if _is_embedder(embedder) else embedder_from(embedder)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValidationError(f"batch_size={batch_size!r} must be a positive integer", input=batch_size)
    if progress not in (True, False, None):
        raise ValidationError(f"progress={progress!r} must be True, False or None", input=progress)
    items = _check_texts(texts)
    if not items:
        return np.zeros((0, emb.dim), dtype=np.float32)
    out: np.ndarray | None = None  # allocated after the first batch: reading dim may cost a call (LangChain)
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    n_batches = -(-len(items) // batch_size)
    show = progress if progress is not None else n_batches > _AUTO_PROGRESS_BATCHES
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(items),
            desc=desc or type(emb).__name__,
            unit="text",
            delay=0.5 if progress is None else 0.0,
        )
    try:
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            rows = np.asarray(emb.embed([items[i] for i in idx]), dtype=np.float32)
            if out is None:
                out = np.empty((len(items), emb.dim), dtype=np.float32)
            if rows.shape != (len(idx), emb.dim):
                raise ValidationError(
                    f"{emb!r} returned an array of shape {rows.shape} for {len(idx)} texts; expected {(len(idx), emb.dim)}",
                    input=rows.shape,
                )
            out[idx] = rows
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    assert out is not None
    return out
