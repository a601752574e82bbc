"""LangChain embeddings in both directions.

* :class:`LangChainEmbedder` makes any langchain-core ``Embeddings`` object
  (OpenAI, Ollama, HuggingFace, fakes, ...) a Lumina :class:`~lumina_lab.memory.embeddings.Embedder`.
* :func:`as_langchain` makes any Lumina embedder a langchain-core ``Embeddings``
  object, for LangChain vector stores and retrievers.

``langchain_core`` is imported only by :func:`as_langchain`; wrapping an
``Embeddings`` object needs nothing but the object.

>>> from langchain_core.embeddings import DeterministicFakeEmbedding  # doctest: +SKIP
>>> emb = LangChainEmbedder(DeterministicFakeEmbedding(size=16))     # doctest: +SKIP
>>> emb.embed(["a", "b"]).shape                                      # doctest: +SKIP
(2, 16)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from .embeddings import Embedder, _check_texts

__all__ = ["LangChainEmbedder", "as_langchain"]

#: Attributes of langchain embedding classes that name the model, used in the default identity.
_MODEL_ATTRS = ("model", "model_name", "model_id", "repo_id", "deployment", "dimensions", "size")
_PROBE = "dimension probe"


def _rows(vectors: Any, n: int, dim: int | None, who: str) -> np.ndarray:
    """``vectors`` (a list of n float lists) as an ``(n, d)`` float32 matrix of unit rows (zero rows stay zero)."""
    try:
        m = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{who} returned vectors of different lengths, or values that are not numbers", input=type(vectors)
        ) from None
    if m.ndim != 2 or m.shape[0] != n:
        raise ValidationError(f"{who} returned an array of shape {m.shape} for {n} texts", input=m.shape)
    if dim is not None and m.shape[1] != dim:
        raise ValidationError(
            f"{who} returned vectors of length {m.shape[1]}; expected {dim}",
            input=m.shape,
            hint="pass the right dim= (or none, to learn it from the first call)",
        )
    if not np.isfinite(m).all():
        raise ValidationError(f"{who} returned NaN or infinite values", input=m.shape)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.divide(m, norms, out=m, where=norms > 0)
    return m.astype(np.float32)


class LangChainEmbedder:
    """A langchain-core ``Embeddings`` object as a Lumina :class:`~lumina_lab.memory.embeddings.Embedder`.

    :meth:`embed` calls ``embed_documents`` and :meth:`embed_one` calls
    ``embed_query`` (the same vector for most models; models with query
    instructions, such as E5, differ on purpose).  :meth:`aembed` and
    :meth:`aembed_one` use the async variants.  Rows are L2-normalised to
    float32 (a zero vector stays zero), so dot products are cosines whatever
    the wrapped model returns.

    Args:
        embeddings: the langchain ``Embeddings`` object (anything with ``embed_documents``
            and ``embed_query``).
        dim: the vector length, if known.  Otherwise it is learned from the first call;
            reading :attr:`dim` before any call embeds one short probe text to learn it.
        identity: the cache identity (see :attr:`identity`); default: built from the class
            and its model attributes.

    Attributes:
        dim: the vector length; every later call must return vectors of this length.
        identity: ``"langchain:<module>.<Class>[:model=...]:dim=<dim>"`` unless given.

    Raises:
        ValidationError: ``embeddings`` lacks the two methods; a call returns vectors of the
            wrong count or length, or non-finite values.
    """

    def __init__(self, embeddings: Any, *, dim: int | None = None, identity: str | None = None) -> None:
        if isinstance(embeddings, type) or not (
            callable(getattr(embeddings, "embed_documents", None))
            and callable(getattr(embeddings, "embed_query", None))
        ):
            raise ValidationError(
                f"{embeddings!r} is not a langchain Embeddings object (it needs embed_documents and embed_query)",
                input=embeddings,
                hint="pass an instance, e.g. OpenAIEmbeddings(model=...)",
            )
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
            raise ValidationError(f"dim={dim!r} must be a positive integer", input=dim)
        if identity is not None and (not isinstance(identity, str) or not identity):
            raise ValidationError(f"identity={identity!r} must be a non-empty string", input=identity)
        self.embeddings = embeddings
        self._dim = dim
        self._identity = identity

    @property
    def dim(self) -> int:
        """The vector length (learned from the first call, or a probe call if read before)."""
        if self._dim is None:
            self.embed([_PROBE])
        assert self._dim is not None
        return self._dim

    @property
    def identity(self) -> str:
        """A stable id of the vectors: the given one, or class, model attributes and ``dim``."""
        if self._identity is not None:
            return self._identity
        cls = type(self.embeddings)
        parts = [f"langchain:{cls.__module__}.{cls.__qualname__}"]
        for attr in _MODEL_ATTRS:
            value = getattr(self.embeddings, attr, None)
            if isinstance(value, str | int) and not isinstance(value, bool):
                parts.append(f"{attr}={value}")
        parts.append(f"dim={self.dim}")
        return ":".join(parts)

    def __repr__(self) -> str:
        dim = "?" if self._dim is None else self._dim
        return f"LangChainEmbedder({type(self.embeddings).__name__}, dim={dim})"

    def _learn(self, m: np.ndarray) -> np.ndarray:
        if self._dim is None and m.shape[0]:
            self._dim = int(m.shape[1])
        return m

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``embed_documents(texts)`` as an ``(n, dim)`` float32 matrix of unit rows."""
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        who = f"{type(self.embeddings).__name__}.embed_documents"
        return self._learn(_rows(self.embeddings.embed_documents(items), len(items), self._dim, who))

    def embed_one(self, text: str) -> np.ndarray:
        """``embed_query(text)`` as a ``(dim,)`` float32 unit vector."""
        if not isinstance(text, str):
            raise ValidationError(f"embed_one() takes a str, not {type(text).__name__}", input=text)
        who = f"{type(self.embeddings).__name__}.embed_query"
        return self._learn(_rows([self.embeddings.embed_query(text)], 1, self._dim, who))[0]

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` through ``aembed_documents`` (LangChain runs sync models in a thread)."""
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        who = f"{type(self.embeddings).__name__}.aembed_documents"
        fn = getattr(self.embeddings, "aembed_documents", None)
        vectors = await fn(items) if fn is not None else self.embeddings.embed_documents(items)
        return self._learn(_rows(vectors, len(items), self._dim, who))

    async def aembed_one(self, text: str) -> np.ndarray:
        """:meth:`embed_one` through ``aembed_query``."""
        if not isinstance(text, str):
            raise ValidationError(f"aembed_one() takes a str, not {type(text).__name__}", input=text)
        who = f"{type(self.embeddings).__name__}.aembed_query"
        fn = getattr(self.embeddings, "aembed_query", None)
        vector = await fn(text) if fn is not None else self.embeddings.embed_query(text)
        return self._learn(_rows([vector], 1, self._dim, who))[0]


@functools.cache
def _langchain_class() -> type:
    """``LuminaEmbeddings``, a langchain-core ``Embeddings`` subclass (built on first use)."""
    try:
        from langchain_core.embeddings import Embeddings
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError(
            "as_langchain() needs langchain-core, which is not installed",
            key="langchain_core",
            hint="pip install langchain-core",
        ) from None

    class LuminaEmbeddings(Embeddings):
        """A Lumina embedder as a langchain-core ``Embeddings`` object (``.embedder`` is the embedder)."""

        def __init__(self, embedder: Embedder) -> None:
            self.embedder = embedder

        def __repr__(self) -> str:
            return f"LuminaEmbeddings({self.embedder!r})"

        def __reduce__(self) -> tuple[Any, ...]:
            return (as_langchain, (self.embedder,))

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embedder.embed(list(texts)).tolist()

        def embed_query(self, text: str) -> list[float]:
            return self.embedder.embed_one(text).tolist()

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            fn = getattr(self.embedder, "aembed", None)
            if fn is not None:
                return (await fn(list(texts))).tolist()
            return await super().aembed_documents(texts)

        async def aembed_query(self, text: str) -> list[float]:
            fn = getattr(self.embedder, "aembed_one", None)
            if fn is not None:
                return (await fn(text)).tolist()
            return await super().aembed_query(text)

    LuminaEmbeddings.__module__ = __name__
    return LuminaEmbeddings


def as_langchain(embedder: Any) -> Any:
    """A langchain-core ``Embeddings`` object that embeds with ``embedder``.

    ``embedder`` is an :class:`~lumina_lab.memory.embeddings.Embedder` or a spec for
    :func:`~lumina_lab.memory.embeddings.embedder_from` (``"hashing"``, ``"minilm"``).
    ``embed_documents`` calls ``embed``, ``embed_query`` calls ``embed_one``; the async
    methods use ``aembed``/``aembed_one`` when the embedder has them, else a thread.
    The object pickles (it is rebuilt with :func:`as_langchain`).

    Raises:
        ConfigError: langchain-core is not installed.
        ValidationError: ``embedder`` is neither an embedder nor a known spec.
    """
    from .embeddings import embedder_from

    emb = embedder_from(embedder)
    return _langchain_class()(emb)
