"""HashingEmbedder: shape, dtype and unit rows; determinism across processes; similarity makes
sense; every bad input is a ValidationError; CachedEmbedder returns the same vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory import CachedEmbedder, Embedder, HashingEmbedder

pytestmark = pytest.mark.timeout(30)

TEXTS = [
    "Janet's ducks lay 16 eggs per day. How many eggs does she sell?",
    "Janet's ducks lay sixteen eggs a day; how many does she sell at the market?",
    "Which of the following best describes the structure that collects urine in the body?",
    "Ünïcode text — with “quotes”, emoji 🦆 and 中文 characters.",
]


def test_shape_dtype_and_unit_rows() -> None:
    emb = HashingEmbedder(dim=512)
    m = emb.embed(TEXTS)
    assert m.shape == (len(TEXTS), 512)
    assert m.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)
    assert isinstance(emb, Embedder)
    one = emb.embed_one(TEXTS[0])
    assert one.shape == (512,)
    np.testing.assert_array_equal(one, m[0])


def test_empty_inputs() -> None:
    emb = HashingEmbedder(dim=64)
    assert emb.embed([]).shape == (0, 64)
    m = emb.embed(["", "   ", "hello"])
    assert not m[0].any() and not m[1].any()  # no features: the zero vector
    assert np.linalg.norm(m[2]) == pytest.approx(1.0, rel=1e-5)


def test_batches_do_not_change_the_vectors() -> None:
    emb = HashingEmbedder(dim=256)
    np.testing.assert_array_equal(emb.embed(TEXTS, batch_size=1), emb.embed(TEXTS))


@pytest.mark.parametrize("char_ngrams", [(3, 5), None])
def test_similar_texts_are_closer_than_unrelated(char_ngrams) -> None:
    emb = HashingEmbedder(dim=1024, char_ngrams=char_ngrams)
    m = emb.embed(TEXTS[:3])
    assert m[0] @ m[1] > m[0] @ m[2] + 0.2
    assert m[0] @ m[1] > m[1] @ m[2] + 0.2
    # case and whitespace do not matter
    a, b = emb.embed(["How  many eggs?", "how many EGGS?"])
    assert a @ b == pytest.approx(1.0, abs=1e-5)


def test_word_order_matters_only_through_bigrams() -> None:
    a, b = HashingEmbedder(dim=4096, ngram_range=(1, 1), char_ngrams=None).embed(["dog bites man", "man bites dog"])
    assert a @ b == pytest.approx(1.0, abs=1e-5)
    a, b = HashingEmbedder(dim=4096, ngram_range=(1, 2), char_ngrams=None).embed(["dog bites man", "man bites dog"])
    assert a @ b < 0.8


def test_seed_selects_another_hash() -> None:
    a = HashingEmbedder(dim=256, seed=0).embed(TEXTS)
    b = HashingEmbedder(dim=256, seed=1).embed(TEXTS)
    assert not np.allclose(a, b)
    # ... yet similarities are alike
    assert abs(float(a[0] @ a[1]) - float(b[0] @ b[1])) < 0.15


def test_deterministic_across_processes() -> None:
    code = (
        "import json, sys; from lumina_lab.memory import HashingEmbedder; "
        "texts = json.loads(sys.stdin.read()); "
        "print(json.dumps(HashingEmbedder(dim=128).embed(texts).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(TEXTS), capture_output=True, text=True, check=True, env=env
    ).stdout
    np.testing.assert_array_equal(np.array(json.loads(out), dtype=np.float32), HashingEmbedder(dim=128).embed(TEXTS))


def test_pinned_values() -> None:
    """The hash functions are part of the format: vectors stored today must match tomorrow's."""
    v = HashingEmbedder(dim=64, char_ngrams=None).embed_one("the quick brown fox")
    nz = np.flatnonzero(v)
    assert nz.tolist() == [0, 1, 3, 6, 9, 14, 43]  # 4 unigrams + 3 bigrams, no collision
    assert np.sign(v[nz]).astype(int).tolist() == [1, 1, -1, -1, -1, 1, 1]
    np.testing.assert_allclose(np.abs(v[nz]), 1 / np.sqrt(7), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 1}, "dim"),
        ({"dim": 10.5}, "dim"),
        ({"ngram_range": (2, 1)}, "ngram_range"),
        ({"ngram_range": (0, 2)}, "ngram_range"),
        ({"char_ngrams": (3,)}, "char_ngrams"),
        ({"char_weight": 1.5}, "char_weight"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_parameters(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        HashingEmbedder(**kwargs)


def test_bad_texts() -> None:
    emb = HashingEmbedder(dim=32)
    with pytest.raises(ValidationError, match="not a single string") as info:
        emb.embed("just one string")
    assert "embed_one" in str(info.value)
    with pytest.raises(ValidationError, match="text #1 is a NoneType"):
        emb.embed(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="sequence of strings"):
        emb.embed(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="takes a str"):
        emb.embed_one(["a list"])  # type: ignore[arg-type]


def test_cached_embedder_returns_the_same_vectors() -> None:
    inner = HashingEmbedder(dim=128)
    cached = CachedEmbedder(inner, maxsize=3)
    assert isinstance(cached, Embedder) and cached.dim == 128
    first = cached.embed(TEXTS + TEXTS[:1])
    np.testing.assert_array_equal(first, inner.embed(TEXTS + TEXTS[:1]))
    np.testing.assert_array_equal(cached.embed(TEXTS[::-1]), inner.embed(TEXTS[::-1]))
    assert len(cached._cache) <= 3
    np.testing.assert_array_equal(cached.embed_one(TEXTS[2]), inner.embed_one(TEXTS[2]))
    with pytest.raises(ValidationError, match="not an Embedder"):
        CachedEmbedder(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- identity


def test_identity_names_every_setting_that_changes_the_vectors() -> None:
    base = HashingEmbedder(dim=384)
    assert base.identity == "hashing:dim=384:ngrams=1-2:chars=3-5:char_weight=0.5:seed=0"
    assert HashingEmbedder(dim=384, cache_size=10).identity == base.identity  # no effect on vectors
    others = [
        HashingEmbedder(dim=512),
        HashingEmbedder(dim=384, ngram_range=(1, 1)),
        HashingEmbedder(dim=384, char_ngrams=None),
        HashingEmbedder(dim=384, char_weight=0.25),
        HashingEmbedder(dim=384, seed=1),
    ]
    assert len({e.identity for e in others} | {base.identity}) == 6
    assert HashingEmbedder(dim=384, char_ngrams=None).identity.split(":")[3] == "chars=none"
    assert CachedEmbedder(base).identity == base.identity


def test_embedders_without_identity_still_satisfy_the_protocol() -> None:
    class Legacy:
        dim = 2

        def embed(self, texts):
            return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))

        def embed_one(self, text):
            return self.embed([text])[0]

    legacy = Legacy()
    assert isinstance(legacy, Embedder)
    cached = CachedEmbedder(legacy)
    assert not hasattr(cached, "identity")
    assert cached.embed(["a", "b"]).shape == (2, 2)


@pytest.mark.parametrize("texts", [["a"], ["ab"], ["a", "b"], ["", "a"], ["a b"]])
def test_texts_shorter_than_the_ngrams(texts) -> None:
    """A batch with fewer characters (or words) than the largest n-gram embeds (it used to crash)."""
    for emb in (HashingEmbedder(dim=32), HashingEmbedder(dim=32, ngram_range=(1, 4), char_ngrams=(3, 7))):
        m = emb.embed(texts)
        assert m.shape == (len(texts), 32)
        for t, row in zip(texts, m, strict=True):
            assert np.linalg.norm(row) == pytest.approx(1.0 if t else 0.0, abs=1e-5)
            np.testing.assert_allclose(row, emb.embed_one(t), atol=1e-6)


# ---------------------------------------------------------------------- embedder_from


def test_embedder_from_specs() -> None:
    from lumina_lab.memory.embeddings import embedder_from

    default = embedder_from("hashing")
    assert isinstance(default, HashingEmbedder) and default.dim == HashingEmbedder().dim
    assert embedder_from(" Hashing:512 ").dim == 512
    assert embedder_from("hashing", dim=64, seed=3).identity == HashingEmbedder(dim=64, seed=3).identity
    same = HashingEmbedder(dim=16)
    assert embedder_from(same) is same
    cached = CachedEmbedder(same)
    assert embedder_from(cached) is cached


def test_embedder_from_wraps_langchain_style_objects() -> None:
    from lumina_lab.memory.embeddings import embedder_from
    from lumina_lab.memory.lc_embeddings import LangChainEmbedder

    class Fake:  # duck-typed: embed_documents + embed_query is all it takes
        def embed_documents(self, texts):
            return [[float(len(t)), 1.0] for t in texts]

        def embed_query(self, text):
            return [float(len(text)), 1.0]

    emb = embedder_from(Fake(), dim=2)
    assert isinstance(emb, LangChainEmbedder) and emb.dim == 2
    np.testing.assert_allclose(emb.embed(["abc"])[0], np.array([3.0, 1.0]) / np.sqrt(10), rtol=1e-6)


@pytest.mark.parametrize(
    "spec", ["bert", "", "hashing:abc", "hashing:-5", "minilm:other-model", 42, None, HashingEmbedder]
)
def test_embedder_from_unknown_specs(spec) -> None:
    from lumina_lab.memory.embeddings import embedder_from

    with pytest.raises(ValidationError) as info:
        embedder_from(spec)
    text = str(info.value)
    if spec != "hashing:abc" and spec != "hashing:-5":
        assert "'hashing'" in text and "'minilm'" in text and "Embeddings" in text


def test_embedder_from_refuses_options_for_an_existing_embedder() -> None:
    from lumina_lab.memory.embeddings import embedder_from

    with pytest.raises(ValidationError, match="cannot be applied"):
        embedder_from(HashingEmbedder(dim=8), dim=16)


# ---------------------------------------------------------------------- embed_batched


def test_embed_batched_equals_embed_in_the_given_order() -> None:
    from lumina_lab.memory.embeddings import embed_batched

    emb = HashingEmbedder(dim=128)
    texts = [("word " * (i % 13)) + str(i) for i in range(101)]
    m = embed_batched(emb, texts, batch_size=8, progress=False)
    assert m.shape == (101, 128) and m.dtype == np.float32
    np.testing.assert_allclose(m, emb.embed(texts), atol=1e-6)
    assert embed_batched(emb, [], progress=False).shape == (0, 128)
    np.testing.assert_allclose(embed_batched("hashing:128", texts[:5]), emb.embed(texts[:5]), atol=1e-6)


def test_embed_batched_progress_bar(capsys) -> None:
    from lumina_lab.memory.embeddings import embed_batched

    emb = HashingEmbedder(dim=32)
    texts = [f"text {i}" for i in range(40)]
    embed_batched(emb, texts, batch_size=4, progress=True, desc="embedding")
    err = capsys.readouterr().err
    assert "embedding" in err and "40/40" in err
    embed_batched(emb, texts, batch_size=4, progress=False)
    embed_batched(emb, texts, batch_size=32)  # auto: two batches, no bar
    embed_batched(emb, texts, batch_size=4)  # auto: ten fast batches, the bar waits half a second: none
    assert capsys.readouterr().err == ""


def test_embed_batched_validates() -> None:
    from lumina_lab.memory.embeddings import embed_batched

    emb = HashingEmbedder(dim=32)
    with pytest.raises(ValidationError, match="batch_size"):
        embed_batched(emb, ["a"], batch_size=0)
    with pytest.raises(ValidationError, match="progress"):
        embed_batched(emb, ["a"], progress="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a single string"):
        embed_batched(emb, "a")

    class Broken:
        dim = 4

        def embed(self, texts):
            return np.zeros((len(texts), 3), dtype=np.float32)

        def embed_one(self, text):
            return np.zeros(3, dtype=np.float32)

    with pytest.raises(ValidationError, match="shape"):
        embed_batched(Broken(), ["a", "b"])
