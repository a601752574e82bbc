"""LangChainEmbedder wraps any langchain Embeddings (normalised float32 rows, dim learned or given, async
paths), and as_langchain() turns a Lumina embedder into a langchain-core Embeddings object."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory.embeddings import Embedder, HashingEmbedder, embed_batched
from lumina_lab.memory.lc_embeddings import LangChainEmbedder, as_langchain

pytestmark = pytest.mark.timeout(30)


class Counting:
    """A minimal langchain-style embedder: no langchain needed; queries differ from documents on purpose."""

    def __init__(self, dim: int = 3) -> None:
        self.dim = dim
        self.calls: list[tuple[str, int]] = []

    def embed_documents(self, texts):
        self.calls.append(("documents", len(texts)))
        return [[float(len(t)), 2.0] + [0.0] * (self.dim - 2) for t in texts]

    def embed_query(self, text):
        self.calls.append(("query", 1))
        return [0.0, 5.0] + [0.0] * (self.dim - 2)


def test_rows_are_normalised_float32_and_dim_is_learned() -> None:
    inner = Counting(dim=3)
    emb = LangChainEmbedder(inner)
    assert "dim=?" in repr(emb)
    m = emb.embed(["abcd", ""])
    assert m.dtype == np.float32 and m.shape == (2, 3)
    np.testing.assert_allclose(m[0], np.array([4.0, 2.0, 0.0]) / np.sqrt(20), rtol=1e-6)
    np.testing.assert_allclose(m[1], [0.0, 1.0, 0.0])
    assert emb.dim == 3 and inner.calls == [("documents", 2)]  # learned, no probe
    assert isinstance(emb, Embedder)
    # embed_one is the query embedding
    np.testing.assert_allclose(emb.embed_one("abcd"), [0.0, 1.0, 0.0])
    assert emb.embed([]).shape == (0, 3)


def test_dim_read_first_probes_once() -> None:
    inner = Counting(dim=4)
    emb = LangChainEmbedder(inner)
    assert emb.dim == 4 and emb.dim == 4
    assert inner.calls == [("documents", 1)]
    given = LangChainEmbedder(Counting(dim=4), dim=4)
    assert given.dim == 4 and given.embeddings.calls == []


def test_wrong_outputs_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="length 3; expected 5"):
        LangChainEmbedder(Counting(dim=3), dim=5).embed(["a"])

    class Ragged(Counting):
        def embed_documents(self, texts):
            return [[1.0], [1.0, 2.0]][: len(texts)]

    with pytest.raises(ValidationError, match="different lengths"):
        LangChainEmbedder(Ragged()).embed(["a", "b"])

    class Nan(Counting):
        def embed_documents(self, texts):
            return [[float("nan"), 1.0] for _ in texts]

    with pytest.raises(ValidationError, match="NaN"):
        LangChainEmbedder(Nan()).embed(["a"])

    class Short(Counting):
        def embed_documents(self, texts):
            return [[1.0, 0.0]]

    with pytest.raises(ValidationError, match="for 2 texts"):
        LangChainEmbedder(Short()).embed(["a", "b"])


def test_construction_is_validated() -> None:
    with pytest.raises(ValidationError, match="not a langchain Embeddings"):
        LangChainEmbedder(object())
    with pytest.raises(ValidationError, match="not a langchain Embeddings"):
        LangChainEmbedder(Counting)  # the class, not an instance
    with pytest.raises(ValidationError, match="dim"):
        LangChainEmbedder(Counting(), dim=0)
    with pytest.raises(ValidationError, match="identity"):
        LangChainEmbedder(Counting(), identity="")
    with pytest.raises(ValidationError, match="not a single string"):
        LangChainEmbedder(Counting()).embed("text")


def test_identity() -> None:
    emb = LangChainEmbedder(Counting(dim=3))
    assert emb.identity == f"langchain:{__name__}.Counting:dim=3"
    assert LangChainEmbedder(Counting(), identity="mine:v2").identity == "mine:v2"


def test_async_paths_without_async_methods() -> None:
    emb = LangChainEmbedder(Counting(dim=3))
    m = asyncio.run(emb.aembed(["ab", "abc"]))
    np.testing.assert_allclose(m, emb.embed(["ab", "abc"]), rtol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aembed_one("x")), [0.0, 1.0, 0.0])


# ---------------------------------------------------------------------- with langchain-core


def test_deterministic_fake_embedding() -> None:
    lc = pytest.importorskip("langchain_core.embeddings")
    fake = lc.DeterministicFakeEmbedding(size=16)
    emb = LangChainEmbedder(fake)
    m = emb.embed(["alpha", "beta", "alpha"])
    assert m.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(m[0], m[2])
    assert emb.identity == "langchain:langchain_core.embeddings.fake.DeterministicFakeEmbedding:size=16:dim=16"
    np.testing.assert_allclose(asyncio.run(emb.aembed(["alpha"]))[0], m[0], rtol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aembed_one("alpha")), m[0], rtol=1e-6)
    np.testing.assert_allclose(embed_batched(emb, ["alpha", "beta"] * 5, batch_size=3), np.tile(m[:2], (5, 1)))


def test_as_langchain_round_trip() -> None:
    lc = pytest.importorskip("langchain_core.embeddings")
    inner = HashingEmbedder(dim=32)
    wrapped = as_langchain(inner)
    assert isinstance(wrapped, lc.Embeddings) and wrapped.embedder is inner
    assert repr(wrapped).startswith("LuminaEmbeddings(HashingEmbedder(dim=32")
    docs = wrapped.embed_documents(["one", "two"])
    assert isinstance(docs, list) and isinstance(docs[0], list) and isinstance(docs[0][0], float)
    np.testing.assert_allclose(docs, inner.embed(["one", "two"]), rtol=1e-6)
    np.testing.assert_allclose(wrapped.embed_query("one"), docs[0], rtol=1e-6)
    np.testing.assert_allclose(asyncio.run(wrapped.aembed_documents(["two"]))[0], docs[1], rtol=1e-6)
    np.testing.assert_allclose(asyncio.run(wrapped.aembed_query("two")), docs[1], rtol=1e-6)
    back = LangChainEmbedder(wrapped)
    np.testing.assert_allclose(back.embed(["one", "two"]), inner.embed(["one", "two"]), atol=1e-6)
    # pickles (to worker processes), and specs work too
    again = pickle.loads(pickle.dumps(wrapped))
    np.testing.assert_allclose(again.embed_query("one"), docs[0], rtol=1e-6)
    assert as_langchain("hashing:16").embedder.dim == 16


def test_as_langchain_uses_native_async_methods() -> None:
    pytest.importorskip("langchain_core")
    fake = pytest.importorskip("langchain_core.embeddings").DeterministicFakeEmbedding(size=8)
    via_async = as_langchain(LangChainEmbedder(fake))  # LangChainEmbedder has aembed / aembed_one
    out = asyncio.run(via_async.aembed_documents(["x"]))
    np.testing.assert_allclose(out[0], LangChainEmbedder(fake).embed(["x"])[0], rtol=1e-6)


def test_as_langchain_refuses_non_embedders() -> None:
    pytest.importorskip("langchain_core")
    with pytest.raises(ValidationError, match="unknown embedder spec"):
        as_langchain(42)


def test_passing_a_wrapper_through_the_factory_does_not_probe() -> None:
    from lumina_lab.memory.embeddings import embedder_from

    inner = Counting(dim=3)
    emb = LangChainEmbedder(inner)
    assert embedder_from(emb) is emb
    assert inner.calls == []  # dim not read yet
    assert embed_batched(emb, ["abc", "d"], progress=False).shape == (2, 3)
    assert inner.calls == [("documents", 2)]  # no probe: dim was learned from the batch
