"""Learned quality-aware routers: from the prompt text alone, is the weak model enough?

Each router is fitted on prompts labelled with whether a weak and a strong
model answered them correctly, and then gives every new prompt a **score**:
higher means more need for the strong model.  ``route(prompts, threshold)``
sends the prompts scoring at or above the threshold to the strong model.

* :class:`LogisticRouter` — L2-regularised logistic regression (trained here
  with numpy: accelerated gradient descent with adaptive restart) on
  :class:`~lumina_lab.memory.HashingEmbedder` features plus a few generic
  shape features (length, numbers, lines).
* :class:`KNNRouter` — cosine k-nearest neighbours over the same embeddings;
  the neighbours' correctness rates estimate P(weak correct) and P(strong correct).
* :class:`RidgeRouter` — ridge regression of the gain itself (strong correct minus weak
  correct) on the concatenated vectors of one or more embedders (e.g. hashing n-grams and
  MiniLM sentence embeddings) plus :func:`text_statistics`; closed form, the penalty chosen
  by cross-validation on the training prompts when ``l2=None``.
* :class:`EnsembleRouter` — a weighted mean of routers that score the same target.
* :class:`RandomRouter` — the baseline: a deterministic pseudo-random score per prompt.

Two targets: ``"gain"`` scores P(strong correct) - P(weak correct), the expected
number of answers the strong model adds (so a threshold has a cost meaning: route
to the strong model when the expected gain is worth its extra price, see
:meth:`LearnedRouter.route_by_value`); ``"weak_wrong"`` scores P(weak wrong).

:func:`evaluate` measures a router RouteLLM-style (quality-cost curve, APGR,
cost saving at 95% of the strong model's quality) and :class:`LearnedThreshold`
puts a fitted router into the live :class:`~lumina_lab.providers.Router`.

>>> r = LogisticRouter().fit(["2+2?", "prove Fermat's last theorem"] * 20, [1, 0] * 20, [1, 1] * 20)
>>> bool(r.score(["prove the Riemann hypothesis"])[0] > r.score(["3+3?"])[0])
True
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from ..errors import ValidationError
from ..memory.embeddings import Embedder, HashingEmbedder
from ..providers.cost import estimate_tokens
from ..providers.strategies import Strategy
from ..providers.types import Pricing

if TYPE_CHECKING:
    import pandas as pd

    from ..providers.registry import ProviderState
    from ..providers.types import ChatRequest

__all__ = [
    "DEFAULT_PRICES",
    "TEXT_STAT_NAMES",
    "EnsembleRouter",
    "KNNRouter",
    "LearnedRouter",
    "LearnedThreshold",
    "LogisticRouter",
    "RandomRouter",
    "RidgeRouter",
    "evaluate",
    "load_correctness",
    "oracle_scores",
    "prompt_costs",
    "text_statistics",
]

#: The RouteLLM pair: Mixtral-8x7B-Instruct (weak) and GPT-4-1106-preview (strong), by pricing-snapshot name.
DEFAULT_PRICES: dict[str, str] = {"weak": "mistralai/mixtral-8x7b-instruct", "strong": "gpt-4-1106-preview"}
TARGETS = ("gain", "weak_wrong")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W\d_]+")
_OPTION_LINE = re.compile(r"^\s*\(?[A-Ha-h1-8][.)]\s", re.M)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# = + - * / ^ < > % $, and the multiplication, division, root, sum, integral, pi and theta signs
_MATH_SYMBOL = re.compile("[=+\\-*/^<>%$\u00d7\u00f7\u221a\u2211\u222b\u03c0\u03b8]")


# ---------------------------------------------------------------------- input checks


def _as_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str | bytes):
        raise ValidationError(
            "pass a sequence of prompts, not a single string", input=prompts, hint="wrap it: [prompt]"
        )
    try:
        items = list(prompts)
    except TypeError:
        raise ValidationError(f"prompts must be a sequence of str, not {type(prompts).__name__}") from None
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise ValidationError(f"prompt #{i} is a {type(p).__name__}, not a str", input=p)
    return items


def _as_labels(name: str, values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ValidationError(
            f"{name} has shape {arr.shape}; expected one value per prompt ({n})",
            input=values,
            hint="pass a 1-d sequence of booleans aligned with the prompts",
        )
    if arr.dtype == bool:
        return arr
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must hold booleans (or 0/1), got dtype {arr.dtype}", input=values) from None
    if n and not np.isin(as_float, (0.0, 1.0)).all():
        raise ValidationError(f"{name} must hold booleans (or 0/1); found other values or NaN", input=values)
    return as_float.astype(bool)


def _labelled(
    prompts: Sequence[str], weak_correct: Any, strong_correct: Any, *, what: str = "a router", prefix: str = ""
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts and both models' correctness as float arrays, checked (at least one prompt, one label each)."""
    items = _as_prompts(prompts)
    if not items:
        raise ValidationError(f"cannot evaluate {what} on no prompts")
    n = len(items)
    weak = _as_labels(f"{prefix}weak_correct", weak_correct, n).astype(np.float64)
    strong = _as_labels(f"{prefix}strong_correct", strong_correct, n).astype(np.float64)
    return items, weak, strong


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValidationError(f"target={target!r}", input=target, hint=f"use one of {TARGETS}")
    return target


def oracle_scores(weak_correct: Any, strong_correct: Any) -> np.ndarray:
    """The scores of the oracle router (it knows the answers): strong-correct minus weak-correct."""
    s = np.asarray(strong_correct)
    return _as_labels("strong_correct", s, len(s)).astype(np.float64) - _as_labels(
        "weak_correct", weak_correct, len(s)
    ).astype(np.float64)


# ---------------------------------------------------------------------- routers


class LearnedRouter:
    """Base class of the learned routers: ``fit`` on labelled prompts, then ``score`` and ``route``.

    Subclasses implement ``_fit(prompts, weak, strong)`` and ``_score(prompts) -> ndarray``.
    """

    name = "learned"
    target = "gain"

    def __init__(self, *, embedder: Embedder | None = None) -> None:
        if embedder is not None and not isinstance(embedder, Embedder):
            raise ValidationError(f"{embedder!r} is not an Embedder", input=embedder, hint="pass HashingEmbedder()")
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        self.fitted = False
        self.n_train = 0

    def fit(self, prompts: Sequence[str], weak_correct: Any, strong_correct: Any) -> Self:
        """Learn from ``prompts`` and whether the weak and the strong model answered each correctly."""
        items = _as_prompts(prompts)
        if not items:
            raise ValidationError("cannot fit a router on no prompts", hint="pass at least a few labelled prompts")
        weak = _as_labels("weak_correct", weak_correct, len(items))
        strong = _as_labels("strong_correct", strong_correct, len(items))
        self._fit(items, weak, strong)
        self.fitted = True
        self.n_train = len(items)
        return self

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """One float per prompt: higher means more need for the strong model."""
        items = _as_prompts(prompts)
        if not self.fitted:
            raise ValidationError(f"{self!r} is not fitted", hint="call .fit(prompts, weak_correct, strong_correct)")
        if not items:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self._score(items), dtype=np.float64)

    def score_one(self, prompt: str) -> float:
        return float(self.score([prompt])[0])

    def route(self, prompts: Sequence[str], threshold: float) -> np.ndarray:
        """True where the prompt goes to the strong model (``score >= threshold``).

        Pick the threshold on validation data, e.g. ``evaluate(...)["threshold_at_95"]``, or by
        price with :meth:`route_by_value`.
        """
        if not isinstance(threshold, int | float) or math.isnan(threshold):
            raise ValidationError(f"threshold={threshold!r} must be a number", input=threshold)
        return self.score(prompts) >= threshold

    def route_by_value(
        self,
        prompts: Sequence[str],
        value_per_correct_usd: float,
        prices: Mapping[str, Any] | None = None,
        *,
        tokens: Any = "prompt",
    ) -> np.ndarray:
        """Cost-aware routing for ``target="gain"``: strong where expected gain x value > extra cost.

        The score of a ``gain`` router is the expected number of correct answers
        the strong model adds, so a prompt goes to the strong model when
        ``score * value_per_correct_usd`` exceeds that prompt's extra price
        (:func:`prompt_costs`, same ``prices`` and ``tokens`` arguments).
        """
        if self.target != "gain":
            raise ValidationError(
                f"route_by_value needs a router with target='gain', not {self.target!r}",
                hint="fit e.g. LogisticRouter(target='gain')",
            )
        if not value_per_correct_usd > 0:
            raise ValidationError(f"value_per_correct_usd={value_per_correct_usd!r} must be > 0")
        items = _as_prompts(prompts)
        weak_cost, strong_cost = prompt_costs(items, prices, tokens=tokens)
        return self.score(items) * value_per_correct_usd > strong_cost - weak_cost

    def _fit(self, prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, prompts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r})"


class RandomRouter(LearnedRouter):
    """The baseline: each prompt gets a pseudo-random score in [0, 1), the same for the same prompt and seed."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.fitted = True
        self.n_train = 0
        self._key = self.seed.to_bytes(8, "little", signed=True)

    def _fit(self, prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> None:
        pass

    def _score(self, prompts: list[str]) -> np.ndarray:
        out = np.empty(len(prompts), dtype=np.float64)
        for i, p in enumerate(prompts):
            digest = hashlib.blake2b(p.encode("utf-8"), digest_size=8, key=self._key).digest()
            out[i] = (int.from_bytes(digest, "little") >> 11) / float(1 << 53)
        return out

    def __repr__(self) -> str:
        return f"RandomRouter(seed={self.seed})"


def _shape_features(prompts: list[str]) -> np.ndarray:
    """Generic, dataset-agnostic shape features: log length, numbers, digit share, lines, question marks."""
    out = np.empty((len(prompts), 5), dtype=np.float64)
    for i, p in enumerate(prompts):
        n_chars = len(p)
        digits = sum(c.isdigit() for c in p)
        out[i] = (
            math.log1p(estimate_tokens(p) if p else 0),
            math.log1p(len(_NUMBER.findall(p))),
            digits / n_chars if n_chars else 0.0,
            math.log1p(p.count("\n")),
            math.log1p(p.count("?")),
        )
    return out


#: Names of the columns of :func:`text_statistics`.
TEXT_STAT_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "mean_word_length",
    "log_numbers",
    "log_distinct_numbers",
    "log_largest_number",
    "digit_share",
    "uppercase_share",
    "log_lines",
    "log_question_marks",
    "log_sentences",
    "log_option_lines",
    "log_math_symbols",
    "non_ascii_share",
    "log_percent_and_slash",
    "long_word_share",
)


def text_statistics(prompts: Sequence[str]) -> np.ndarray:
    """Cheap, dataset-agnostic statistics of each prompt: ``(n, 16)`` floats, columns :data:`TEXT_STAT_NAMES`.

    Length (characters, words, mean word length, share of words of 9+ letters), numbers
    (how many, how many distinct, the largest, share of digits), form (lines, question
    marks, sentences, lines that look like enumerated options ``A.``/``(b)``/``3)``),
    and notation (math symbols, ``%`` and ``/``, non-ASCII and uppercase shares).
    None of them names a dataset or a topic.
    """
    items = _as_prompts(prompts)
    out = np.zeros((len(items), len(TEXT_STAT_NAMES)), dtype=np.float64)
    for i, p in enumerate(items):
        n = max(len(p), 1)
        words = _WORD.findall(p)
        numbers = _NUMBER.findall(p)
        largest = 0.0
        for x in numbers:
            try:
                largest = max(largest, float(x.replace(",", "")))
            except ValueError:  # "1.2.3": not one number
                continue
        out[i] = (
            math.log1p(len(p)),
            math.log1p(len(words)),
            sum(map(len, words)) / len(words) if words else 0.0,
            math.log1p(len(numbers)),
            math.log1p(len(set(numbers))),
            math.log1p(min(largest, 1e300)),
            sum(c.isdigit() for c in p) / n,
            sum(c.isupper() for c in p) / n,
            math.log1p(p.count("\n")),
            math.log1p(p.count("?")),
            math.log1p(len(_SENTENCE_END.findall(p))),
            math.log1p(len(_OPTION_LINE.findall(p))),
            math.log1p(len(_MATH_SYMBOL.findall(p))),
            sum(ord(c) > 127 for c in p) / n,
            math.log1p(p.count("%") + p.count("/")),
            sum(len(w) >= 9 for w in words) / len(words) if words else 0.0,
        )
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(
    X: np.ndarray, y: np.ndarray, l2: float, *, max_iter: int = 400, tol: float = 1e-6
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression: minimise mean log-loss + ``l2/2 * |w|^2`` (intercept free).

    Nesterov-accelerated gradient descent with the gradient-based adaptive
    restart of O'Donoghue & Candès, step ``1/L`` with ``L`` from a power
    iteration on ``X^T X / n``.  Deterministic.  Returns ``(w, b)``.
    """
    n, d = X.shape
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    yf = y.astype(np.float64)
    # largest eigenvalue of [X 1]^T [X 1] / n by power iteration (20 steps; x1.05 margin)
    v = np.ones(d + 1, dtype=np.float64) / math.sqrt(d + 1)
    lam = 1.0
    for _ in range(20):
        z = Xf @ v[:d].astype(np.float32) + v[d]
        u = np.empty(d + 1)
        u[:d] = Xf.T @ z.astype(np.float32) / n
        u[d] = z.sum() / n
        lam = float(np.linalg.norm(u))
        if lam == 0:
            break
        v = u / lam
    L = 0.25 * lam * 1.05 + l2
    theta = np.zeros(d + 1)
    y_ = theta.copy()
    t = 1.0
    for _ in range(max_iter):
        z = Xf @ y_[:d].astype(np.float32) + y_[d]
        r = _sigmoid(z) - yf
        g = np.empty(d + 1)
        g[:d] = Xf.T @ r.astype(np.float32) / n + l2 * y_[:d]
        g[d] = r.mean()
        new = y_ - g / L
        step = new - theta
        if float(g @ step) > 0:  # momentum is taking us uphill: restart it
            t = 1.0
            y_ = new
        else:
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            y_ = new + ((t - 1.0) / t_next) * step
            t = t_next
        theta = new
        if np.linalg.norm(step) <= tol * (1.0 + np.linalg.norm(theta)):
            break
    return theta[:d], float(theta[d])


class LogisticRouter(LearnedRouter):
    """Logistic regression on prompt embeddings (plus generic shape features).

    ``target="gain"`` fits two models, P(weak correct) and P(strong correct), and
    scores their difference; ``target="weak_wrong"`` fits P(weak correct) and
    scores ``1 - P``.

    Args:
        l2: ridge penalty on the mean log-loss objective (larger = smoother).
        shape_features: append length / numbers / lines features (standardised on the training set).
        text_features: use the embedder's vectors; ``False`` leaves only the shape
            features: a small difficulty model that carries over to unseen datasets.
        embedder: defaults to ``HashingEmbedder()`` (1024 dims, words 1-2, characters 3-5).
    """

    name = "logreg"

    def __init__(
        self,
        *,
        target: str = "gain",
        l2: float = 1e-3,
        shape_features: bool = True,
        text_features: bool = True,
        embedder: Embedder | None = None,
        max_iter: int = 400,
    ) -> None:
        super().__init__(embedder=embedder)
        self.target = _check_target(target)
        if not l2 > 0:
            raise ValidationError(f"l2={l2!r} must be > 0", input=l2)
        if not (shape_features or text_features):
            raise ValidationError("a LogisticRouter needs shape_features or text_features (or both)")
        self.l2 = float(l2)
        self.shape_features = shape_features
        self.text_features = text_features
        self.max_iter = max_iter
        self._models: list[tuple[np.ndarray, float]] = []
        self._shape_mean = self._shape_std = None

    def _features(self, prompts: list[str], *, fit: bool = False) -> np.ndarray:
        X = self.embedder.embed(prompts) if self.text_features else None
        if not self.shape_features:
            return X  # type: ignore[return-value]
        extra = _shape_features(prompts)
        if fit:
            self._shape_mean = extra.mean(axis=0)
            self._shape_std = extra.std(axis=0) + 1e-9
        extra = ((extra - self._shape_mean) / self._shape_std / math.sqrt(extra.shape[1])).astype(np.float32)
        return extra if X is None else np.hstack([X, extra])

    def _fit(self, prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> None:
        X = self._features(prompts, fit=True)
        if self.target == "gain":
            self._models = [fit_logistic(X, strong, self.l2, max_iter=self.max_iter)]
        else:
            self._models = []
        self._models.append(fit_logistic(X, weak, self.l2, max_iter=self.max_iter))

    def _score(self, prompts: list[str]) -> np.ndarray:
        X = self._features(prompts)
        probs = [_sigmoid(X @ w.astype(np.float32) + b) for w, b in self._models]
        return probs[0] - probs[1] if self.target == "gain" else 1.0 - probs[0]

    def __repr__(self) -> str:
        return (
            f"LogisticRouter(target={self.target!r}, l2={self.l2:g}, shape_features={self.shape_features}, "
            f"text_features={self.text_features})"
        )


class KNNRouter(LearnedRouter):
    """Cosine k-nearest neighbours over prompt embeddings.

    The neighbours' correctness rates, shrunk towards the training-set rates
    with ``prior`` pseudo-neighbours, estimate P(weak correct) and
    P(strong correct).  ``weighted`` weights neighbours by their (positive) similarity.
    """

    name = "knn"

    def __init__(
        self,
        k: int = 32,
        *,
        target: str = "gain",
        prior: float = 4.0,
        weighted: bool = True,
        embedder: Embedder | None = None,
        batch_size: int = 1024,
    ) -> None:
        super().__init__(embedder=embedder)
        if not isinstance(k, int) or k < 1:
            raise ValidationError(f"k={k!r} must be a positive integer", input=k)
        if prior < 0:
            raise ValidationError(f"prior={prior!r} must be >= 0", input=prior)
        self.k = k
        self.target = _check_target(target)
        self.prior = float(prior)
        self.weighted = weighted
        self.batch_size = batch_size
        self._X: np.ndarray | None = None

    def _fit(self, prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> None:
        self._X = np.ascontiguousarray(self.embedder.embed(prompts), dtype=np.float32)
        self._labels = np.stack([weak, strong], axis=1).astype(np.float64)
        self._rates = self._labels.mean(axis=0)

    def neighbour_rates(self, prompts: Sequence[str]) -> np.ndarray:
        """``(n, 2)``: estimated P(weak correct), P(strong correct) of each prompt."""
        if self._X is None:
            raise ValidationError(f"{self!r} is not fitted", hint="call .fit(prompts, weak_correct, strong_correct)")
        Q = self.embedder.embed(_as_prompts(prompts))
        X, labels = self._X, self._labels
        k = min(self.k, len(X))
        out = np.empty((len(Q), 2), dtype=np.float64)
        for start in range(0, len(Q), self.batch_size):
            sims = Q[start : start + self.batch_size] @ X.T
            idx = (
                np.argpartition(-sims, k - 1, axis=1)[:, :k]
                if k < len(X)
                else np.broadcast_to(np.arange(len(X)), sims.shape)
            )
            top = np.take_along_axis(sims, idx, axis=1).astype(np.float64)
            wts = np.clip(top, 1e-6, None) if self.weighted else np.ones_like(top)
            total = wts.sum(axis=1, keepdims=True)
            prior = self.prior * total / k  # pseudo-neighbours of average weight
            summed = np.einsum("qk,qkc->qc", wts, labels[idx])
            out[start : start + len(top)] = (summed + prior * self._rates) / (total + prior)
        return out

    def _score(self, prompts: list[str]) -> np.ndarray:
        rates = self.neighbour_rates(prompts)
        return rates[:, 1] - rates[:, 0] if self.target == "gain" else 1.0 - rates[:, 0]

    def __repr__(self) -> str:
        return f"KNNRouter(k={self.k}, target={self.target!r}, prior={self.prior:g}, weighted={self.weighted})"


def _ridge_solve(X: np.ndarray, y: np.ndarray, l2s: Sequence[float]) -> list[np.ndarray]:
    """Coefficients minimising ``mean((X @ beta - y)^2) + l2 * |beta|^2`` for each ``l2`` (``X``, ``y`` centred).

    One eigendecomposition serves every penalty: of ``X^T X / n`` (``d x d``) when there are
    more rows than columns, else of ``X X^T / n`` (the dual form).
    """
    n, d = X.shape
    if d <= n:
        evals, evecs = np.linalg.eigh(X.T @ X / n)
        proj = evecs.T @ (X.T @ y / n)
        return [evecs @ (proj / (np.maximum(evals, 0.0) + l2)) for l2 in l2s]
    evals, evecs = np.linalg.eigh(X @ X.T / n)
    proj = evecs.T @ y
    return [X.T @ (evecs @ (proj / (np.maximum(evals, 0.0) + l2))) / n for l2 in l2s]


class RidgeRouter(LearnedRouter):
    """Ridge regression of the gain on several embeddings of the prompt plus :func:`text_statistics`.

    ``target="gain"`` regresses ``strong_correct - weak_correct`` directly, so the score is
    an estimate of the expected number of answers the strong model adds (one model, not the
    difference of two noisy ones; usable with :meth:`~LearnedRouter.route_by_value`);
    ``target="weak_wrong"`` regresses ``1 - weak_correct``.

    Features: each embedder's vectors side by side (unit rows: each block weighs about the
    same), then the 16 text statistics standardised on the training prompts and scaled by
    ``1/4`` (a block of norm about 1 too).  With ``l2=None`` the penalty is chosen from
    ``l2_grid`` by ``cv_folds``-fold cross-validation on the training prompts (mean squared
    error of the held-out predictions; folds from ``seed``): nothing is tuned per dataset.

    Args:
        embedders: e.g. ``[HashingEmbedder(), MiniLMEmbedder()]``; default one ``HashingEmbedder()``
            (or ``embedder``, for the single-embedder signature of the other routers).
        l2: ridge penalty on the mean squared error (``None``: cross-validated).
        text_stats: append :func:`text_statistics`.

    Attributes (after ``fit``): ``l2_`` the penalty used; ``cv_mse_`` ``{l2: mse}`` when cross-validated.
    """

    name = "ridge"
    L2_GRID: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)

    def __init__(
        self,
        *,
        target: str = "gain",
        l2: float | None = 1e-2,
        embedders: Sequence[Embedder] | None = None,
        text_stats: bool = True,
        embedder: Embedder | None = None,
        l2_grid: Sequence[float] | None = None,
        cv_folds: int = 4,
        seed: int = 0,
    ) -> None:
        if embedders is not None and embedder is not None:
            raise ValidationError("pass embedders=[...] or embedder=..., not both")
        members = list(embedders) if embedders is not None else []
        if embedders is not None and not members and not text_stats:
            raise ValidationError("a RidgeRouter needs embedders or text_stats (or both)")
        super().__init__(embedder=members[0] if members else embedder)
        for e in members:
            if not isinstance(e, Embedder):
                raise ValidationError(f"{e!r} is not an Embedder", input=e, hint="pass HashingEmbedder()")
        self.embedders: list[Embedder] = members if embedders is not None else [self.embedder]
        self.target = _check_target(target)
        if l2 is not None and not l2 > 0:
            raise ValidationError(f"l2={l2!r} must be > 0 (or None to cross-validate it)", input=l2)
        grid = tuple(float(x) for x in (l2_grid if l2_grid is not None else self.L2_GRID))
        if not grid or not all(x > 0 for x in grid):
            raise ValidationError(f"l2_grid={l2_grid!r}: give positive penalties")
        if not isinstance(cv_folds, int) or cv_folds < 2:
            raise ValidationError(f"cv_folds={cv_folds!r} must be an int >= 2")
        self.l2 = None if l2 is None else float(l2)
        self.l2_grid = grid
        self.cv_folds = cv_folds
        self.seed = int(seed)
        self.text_stats = text_stats
        self.l2_: float | None = self.l2
        self.cv_mse_: dict[float, float] = {}
        self._stat_mean: np.ndarray | None = None
        self._stat_std: np.ndarray | None = None

    def features(self, prompts: Sequence[str]) -> np.ndarray:
        """The ``(n, d)`` float32 design matrix of ``prompts`` (text statistics scaled as fitted)."""
        items = _as_prompts(prompts)
        blocks = [np.asarray(e.embed(items), dtype=np.float32) for e in self.embedders]
        if self.text_stats:
            stats = text_statistics(items)
            if self._stat_mean is None:
                raise ValidationError(
                    f"{self!r} is not fitted", hint="call .fit(prompts, weak_correct, strong_correct)"
                )
            z = (stats - self._stat_mean) / self._stat_std / math.sqrt(stats.shape[1])
            blocks.append(z.astype(np.float32))
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0]

    def _fit(self, prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> None:
        if self.text_stats:
            stats = text_statistics(prompts)
            self._stat_mean = stats.mean(axis=0)
            self._stat_std = stats.std(axis=0) + 1e-9
        X = self.features(prompts).astype(np.float64)
        y = strong.astype(np.float64) - weak if self.target == "gain" else 1.0 - weak.astype(np.float64)
        n = len(y)
        if self.l2 is None:
            folds = np.random.default_rng(self.seed).permutation(n) % self.cv_folds
            sse = np.zeros(len(self.l2_grid))
            for f in range(min(self.cv_folds, n)):
                tr, te = folds != f, folds == f
                if not tr.any() or not te.any():
                    continue
                mu, ym = X[tr].mean(axis=0), y[tr].mean()
                betas = _ridge_solve(X[tr] - mu, y[tr] - ym, self.l2_grid)
                for j, beta in enumerate(betas):
                    sse[j] += float((((X[te] - mu) @ beta + ym - y[te]) ** 2).sum())
            self.cv_mse_ = {l2: float(v / n) for l2, v in zip(self.l2_grid, sse, strict=True)}
            self.l2_ = self.l2_grid[int(np.argmin(sse))]
        else:
            self.l2_ = self.l2
        self._mu = X.mean(axis=0)
        self._ym = float(y.mean())
        (beta,) = _ridge_solve(X - self._mu, y - self._ym, [self.l2_])
        self._beta = beta.astype(np.float64)
        self._intercept = self._ym - float(self._mu @ self._beta)

    def _score(self, prompts: list[str]) -> np.ndarray:
        return self.features(prompts).astype(np.float64) @ self._beta + self._intercept

    def __repr__(self) -> str:
        l2 = "cv" if self.l2 is None else f"{self.l2:g}"
        names = [type(e).__name__ for e in self.embedders]
        return f"RidgeRouter(target={self.target!r}, l2={l2}, embedders={names}, text_stats={self.text_stats})"


class EnsembleRouter(LearnedRouter):
    """Weighted mean of the scores of routers with the same target (each fitted on the same data)."""

    name = "ensemble"

    def __init__(self, routers: Sequence[LearnedRouter], weights: Sequence[float] | None = None) -> None:
        members = list(routers)
        if not members or not all(isinstance(r, LearnedRouter) for r in members):
            raise ValidationError("EnsembleRouter needs a non-empty list of LearnedRouter", input=routers)
        targets = {r.target for r in members}
        if len(targets) != 1:
            raise ValidationError(
                f"ensemble members score different targets {sorted(targets)}", hint="use one target for all"
            )
        w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(members),) or (w < 0).any() or w.sum() <= 0:
            raise ValidationError(f"weights={weights!r}: one non-negative weight per router, not all zero")
        self.routers = members
        self.weights = w / w.sum()
        self.target = targets.pop()
        self.fitted = all(r.fitted for r in members)
        self.n_train = 0
        self.embedder = members[0].embedder

    def _fit(self, prompts: list[str], weak: np.ndarray, strong: np.ndarray) -> None:
        for r in self.routers:
            r.fit(prompts, weak, strong)

    def _score(self, prompts: list[str]) -> np.ndarray:
        return sum(w * r.score(prompts) for w, r in zip(self.weights, self.routers, strict=True))

    def __repr__(self) -> str:
        return f"EnsembleRouter({self.routers!r}, weights={np.round(self.weights, 3).tolist()})"


# ---------------------------------------------------------------------- costs and evaluation


def _pricing(spec: Any, role: str) -> Pricing:
    if isinstance(spec, Pricing):
        return spec
    if isinstance(spec, str):
        return Pricing.for_model(spec)
    if isinstance(spec, Mapping) and {"input", "output"} <= set(spec):
        return Pricing(input_per_m=spec["input"], output_per_m=spec["output"])
    if isinstance(spec, tuple | list) and len(spec) == 2:
        return Pricing(input_per_m=spec[0], output_per_m=spec[1])
    raise ValidationError(
        f"price of the {role} model: {spec!r}",
        input=spec,
        hint="a pricing-snapshot model name, a Pricing, (input_per_m, output_per_m) or {'input': .., 'output': ..}",
    )


def prompt_costs(
    prompts: Sequence[str], prices: Mapping[str, Any] | None = None, *, tokens: Any = "prompt"
) -> tuple[np.ndarray, np.ndarray]:
    """USD per prompt on the weak and on the strong model: ``(weak_cost, strong_cost)``.

    Args:
        prices: ``{"weak": spec, "strong": spec}``, each a pricing-snapshot model name,
            a :class:`~lumina_lab.providers.Pricing` or ``(input_per_m, output_per_m)``;
            default :data:`DEFAULT_PRICES` (Mixtral-8x7B $0.6/$0.6, GPT-4-1106 $10/$30 per million).
        tokens: ``"prompt"`` (default): input tokens estimated from each prompt
            (:func:`~lumina_lab.providers.cost.estimate_tokens`, ~4 characters a token)
            and as many output tokens (the 1:1 input/output mix RouteLLM assumes);
            an int: that many input and output tokens for every prompt (cost then
            depends only on the share of strong calls); an array: input tokens
            per prompt, output = input; or a mapping with arrays ``input``,
            ``weak_output`` and ``strong_output`` (e.g. estimated from recorded answers).
    """
    items = _as_prompts(prompts)
    spec = dict(DEFAULT_PRICES) if prices is None else dict(prices)
    if set(spec) != {"weak", "strong"}:
        raise ValidationError(f"prices needs the keys 'weak' and 'strong', got {sorted(spec)}", input=prices)
    weak_p, strong_p = _pricing(spec["weak"], "weak"), _pricing(spec["strong"], "strong")
    n = len(items)
    if isinstance(tokens, str):
        if tokens != "prompt":
            raise ValidationError(f"tokens={tokens!r}", hint="use 'prompt', an int, an array or a mapping")
        n_in = np.fromiter((estimate_tokens(p) if p else 0 for p in items), dtype=np.float64, count=n)
        w_out = s_out = n_in
    elif isinstance(tokens, Mapping):
        try:
            n_in, w_out, s_out = (
                np.asarray(tokens[k], dtype=np.float64) for k in ("input", "weak_output", "strong_output")
            )
        except KeyError as exc:
            raise ValidationError(
                f"tokens mapping lacks {exc}", hint="give 'input', 'weak_output', 'strong_output'"
            ) from None
    elif isinstance(tokens, int | float) and not isinstance(tokens, bool):
        n_in = w_out = s_out = np.full(n, float(tokens))
    else:
        n_in = np.asarray(tokens, dtype=np.float64)
        w_out = s_out = n_in
    for name, arr in (("input", n_in), ("weak_output", w_out), ("strong_output", s_out)):
        if arr.shape != (n,) or not np.isfinite(arr).all() or (arr < 0).any():
            raise ValidationError(f"{name} tokens: need {n} finite non-negative counts, got shape {arr.shape}")
    weak_cost = (n_in * weak_p.input_per_m + w_out * weak_p.output_per_m) / 1e6
    strong_cost = (n_in * strong_p.input_per_m + s_out * strong_p.output_per_m) / 1e6
    return weak_cost, strong_cost


def _tied_prefix(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Sum of the first ``k`` sorted values, in expectation over the order inside groups of tied scores."""
    cum = np.concatenate([[0.0], np.cumsum(values)])
    out = np.zeros(len(ks), dtype=np.float64)
    pos = ks > 0
    idx = ks[pos] - 1
    st, en = starts[idx], ends[idx]
    out[pos] = cum[st] + (ks[pos] - st) * (cum[en] - cum[st]) / (en - st)
    return out


def evaluate(
    router: LearnedRouter | Any,
    prompts: Sequence[str],
    weak_correct: Any,
    strong_correct: Any,
    prices: Mapping[str, Any] | None = None,
    *,
    tokens: Any = "prompt",
    points: int | None = None,
    threshold: float | None = None,
    cost_aware: bool = False,
    cascade: bool = False,
) -> dict[str, Any]:
    """Evaluate a router RouteLLM-style on labelled prompts it was not trained on.

    The threshold is swept over the router's score quantiles: the ``k`` prompts
    with the highest scores go to the strong model, for every ``k`` from 0 to
    ``n`` (``points=None``; or ``points`` evenly spaced strong shares, e.g. 11
    as RouteLLM's 10 bins).  Tied scores are treated fairly: quality and cost
    at a ``k`` that splits a tie are the expectation over the order of the tied
    prompts (so a constant score gives exactly the random-routing line).

    Metrics (RouteLLM's definitions):

    * ``curve``: a DataFrame with ``strong_share``, ``threshold`` (the lowest score
      routed to the strong model), ``quality`` (accuracy), ``pgr``, ``cost`` (USD) and
      ``cost_ratio`` (cost / cost of sending everything to the strong model).
    * ``apgr``: area under PGR against the share of strong calls (trapezoids), with
      ``PGR = (quality - q_weak) / (q_strong - q_weak)`` (``nan`` if the two models tie).
    * ``cost_saving_at_95`` = ``1 - cost / cost_all_strong`` at the **cheapest point of
      the sweep** whose quality is at least 95% of the strong model's (no interpolation:
      with the default full-resolution sweep every strong share is a point), with its
      ``strong_share_at_95``, ``quality_at_95`` and ``threshold_at_95``.  Like RouteLLM's
      call-performance threshold this point is read off the evaluated data; to measure a
      deployable operating point, take ``threshold_at_95`` from a validation set and pass it
      as ``threshold`` here (results under ``at_threshold``).

    Costs come from :func:`prompt_costs` (``prices``, ``tokens``; by default the pricing
    snapshot's Mixtral-8x7B and GPT-4-1106 prices and a 1:1 input/output mix with input
    tokens estimated from each prompt).

    Args:
        router: a fitted :class:`LearnedRouter`, or an array of precomputed scores (one per prompt).
        threshold: also report quality, share and cost when routing with this fixed threshold.
        cost_aware: order prompts by score per extra dollar of the strong call instead of by
            score: the knapsack order, and the rule :meth:`LearnedRouter.route_by_value` applies
            (for ``target="gain"`` scores; thresholds are then ``1 / value_per_correct_usd``).
            It matters only when prompts differ in cost (``tokens="prompt"``).
        cascade: evaluate a cascade: the weak model answers every prompt and the scores (e.g. a
            judge's, which may read the weak answer) decide which prompts are escalated to the
            strong model, so an escalated prompt costs the weak *and* the strong call.  Savings
            stay relative to sending everything to the strong model alone.
    """
    items, weak, strong = _labelled(prompts, weak_correct, strong_correct)
    n = len(items)
    if isinstance(router, LearnedRouter):
        scores = router.score(items)
    else:
        scores = np.asarray(router, dtype=np.float64)
        if scores.shape != (n,) or np.isnan(scores).any():
            raise ValidationError(
                f"scores have shape {scores.shape}; need one number per prompt ({n}), without NaN",
                hint="pass a fitted LearnedRouter or router.score(prompts)",
            )
    weak_cost, strong_cost = prompt_costs(items, prices, tokens=tokens)
    if cost_aware:
        extra = strong_cost if cascade else strong_cost - weak_cost
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(extra > 0, scores / np.where(extra > 0, extra, 1.0), np.where(scores > 0, np.inf, scores))

    order = np.argsort(-scores, kind="stable")
    ss = scores[order]
    new_group = np.concatenate([[True], ss[1:] != ss[:-1]])
    group_id = np.cumsum(new_group) - 1
    group_starts = np.flatnonzero(new_group)
    group_ends = np.append(group_starts[1:], n)
    starts, ends = group_starts[group_id], group_ends[group_id]

    if points is None:
        ks = np.arange(n + 1)
    else:
        if not isinstance(points, int) or points < 2:
            raise ValidationError(f"points={points!r} must be an int >= 2 (or None for every k)")
        ks = np.unique(np.round(np.linspace(0, n, points)).astype(np.int64))
    dq = _tied_prefix((strong - weak)[order], starts, ends, ks)
    dc = _tied_prefix((strong_cost if cascade else strong_cost - weak_cost)[order], starts, ends, ks)
    q_weak, q_strong = float(weak.mean()), float(strong.mean())
    cost_weak, cost_strong = float(weak_cost.sum()), float(strong_cost.sum())
    quality = q_weak + dq / n
    cost = cost_weak + dc
    gap = q_strong - q_weak
    pgr = (quality - q_weak) / gap if gap != 0 else np.full(len(ks), np.nan)
    share = ks / n
    thresholds = np.where(ks > 0, ss[np.maximum(ks - 1, 0)], np.inf)

    ok = np.flatnonzero(quality >= 0.95 * q_strong - 1e-12)
    best = int(ok[np.argmin(cost[ok])]) if len(ok) else len(ks) - 1
    result: dict[str, Any] = {
        "n": n,
        "quality_weak": q_weak,
        "quality_strong": q_strong,
        "cost_all_weak": cost_weak,
        "cost_all_strong": cost_strong,
        "apgr": float(np.trapezoid(pgr, share)) if gap != 0 else float("nan"),
        "cost_saving_at_95": 1.0 - float(cost[best]) / cost_strong if cost_strong > 0 else 0.0,
        "strong_share_at_95": float(share[best]),
        "quality_at_95": float(quality[best]),
        "threshold_at_95": float(thresholds[best]),
    }
    if threshold is not None:
        to_strong = scores >= threshold
        q = float(np.where(to_strong, strong, weak).mean())
        c = float(np.where(to_strong, strong_cost + (weak_cost if cascade else 0.0), weak_cost).sum())
        result["at_threshold"] = {
            "threshold": float(threshold),
            "strong_share": float(to_strong.mean()),
            "quality": q,
            "quality_ratio": q / q_strong if q_strong else float("nan"),
            "cost_saving": 1.0 - c / cost_strong if cost_strong > 0 else 0.0,
        }
    import pandas as pd

    result["curve"] = pd.DataFrame(
        {
            "strong_share": share,
            "threshold": thresholds,
            "quality": quality,
            "pgr": pgr,
            "cost": cost,
            "cost_ratio": cost / cost_strong if cost_strong > 0 else np.zeros(len(ks)),
        }
    )
    return result


# ---------------------------------------------------------------------- data


def _bool_column(values: Any) -> np.ndarray | None:
    """The column as booleans if every value is a boolean (or 0/1, or 'true'/'false'), else None."""
    import pandas as pd

    s = pd.Series(values)
    if s.isna().any():
        return None
    if s.dtype == bool:
        return s.to_numpy()
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy().astype(bool) if s.isin([0, 1]).all() else None
    low = s.astype(str).str.strip().str.lower()
    if low.isin(["true", "false"]).all():
        return (low == "true").to_numpy()
    return None


def load_correctness(
    path: str | Path,
    *,
    prompt: str | None = None,
    weak: str | None = None,
    strong: str | None = None,
    exclude: Iterable[str] = (),
) -> pd.DataFrame:
    """Load per-prompt correctness of a weak and a strong model from a CSV file or a folder of CSVs.

    Columns are detected: the prompt column (``prompt``, else the first text column that
    is not a ``*_response``), and the two columns whose values are all booleans (or 0/1);
    the model with the lower accuracy over the whole input is the weak one, unless
    ``weak``/``strong`` name the columns.  Every CSV in a folder must have those columns.

    Returns a DataFrame with ``prompt``, ``weak_correct``, ``strong_correct``, ``group``
    (the file's name without ``.csv``: e.g. the MMLU subject) and, when the files hold them,
    ``weak_response`` / ``strong_response``; ``attrs`` records the model names.  Prompts in
    ``exclude`` (e.g. contaminated ones) are dropped.
    """
    import pandas as pd

    root = Path(path)
    files = sorted(root.glob("*.csv")) if root.is_dir() else [root]
    if not files or not all(f.is_file() for f in files):
        raise ValidationError(f"no CSV file at {root}", input=str(root), hint="pass a .csv file or a folder of them")
    frames = []
    for f in files:
        df = pd.read_csv(f)
        df.insert(0, "__group", f.stem)
        frames.append(df)
    data = pd.concat(frames, ignore_index=True)
    cols = [c for c in data.columns if c != "__group"]
    if prompt is None:
        text_cols = [
            c
            for c in cols
            if (pd.api.types.is_object_dtype(data[c]) or pd.api.types.is_string_dtype(data[c]))
            and _bool_column(data[c]) is None
            and not str(c).endswith("_response")
        ]
        prompt = "prompt" if "prompt" in cols else (text_cols[0] if text_cols else None)
    if prompt is None or prompt not in data.columns:
        raise ValidationError(f"no prompt column in {root} (columns: {cols})", hint="pass prompt='column name'")
    bools = {c: b for c in cols if c != prompt and (b := _bool_column(data[c])) is not None}
    if weak is None or strong is None:
        named = [c for c in (weak, strong) if c is not None]
        free = [c for c in bools if c not in named]
        if len(free) + len(named) != 2:
            raise ValidationError(
                f"expected two correctness (boolean) columns in {root}, found {list(bools)}",
                hint="pass weak='column' and strong='column'",
            )
        if weak is None and strong is None:
            weak, strong = sorted(free, key=lambda c: (bools[c].mean(), str(c)))
        elif weak is None:
            weak = free[0]
        else:
            strong = free[0]
    for c in (weak, strong):
        if c not in bools:
            raise ValidationError(f"column {c!r} of {root} is missing or not boolean", input=c)
    out = pd.DataFrame(
        {
            "prompt": data[prompt].astype(str),
            "weak_correct": bools[weak],
            "strong_correct": bools[strong],
            "group": data["__group"],
        }
    )
    for role, c in (("weak", weak), ("strong", strong)):
        if f"{c}_response" in data.columns:
            out[f"{role}_response"] = data[f"{c}_response"].fillna("").astype(str)
    excluded = set(exclude)
    if excluded:
        out = out[~out["prompt"].isin(excluded)].reset_index(drop=True)
    out.attrs.update(weak_model=str(weak), strong_model=str(strong), source=str(root))
    return out


# ---------------------------------------------------------------------- live routing


class LearnedThreshold(Strategy):
    """A routing strategy from a fitted learned router: strong provider when ``score >= threshold``.

    ``rank`` puts the chosen provider first and the other one of the pair second
    (the router falls back to it); any other candidate follows in its given
    order.  If the chosen provider is not a candidate (filtered out, breaker
    open), the other comes first.

    Scoring costs about 0.2 ms per request with the default embedder and a
    :class:`LogisticRouter` (a :class:`KNNRouter` adds a pass over its training vectors).

    Args:
        router: a fitted :class:`LearnedRouter` (it sees ``request.prompt_text``).
        threshold: e.g. ``evaluate(router, val_prompts, ...)["threshold_at_95"]``.
        weak / strong: provider ids of the cheap and the strong provider.
    """

    name = "learned_threshold"

    def __init__(self, router: LearnedRouter, threshold: float, *, weak: str, strong: str) -> None:
        if not isinstance(router, LearnedRouter):
            raise ValidationError(f"{router!r} is not a LearnedRouter", input=router)
        if not router.fitted:
            raise ValidationError(f"{router!r} is not fitted", hint="fit it before routing live traffic")
        if not isinstance(threshold, int | float) or math.isnan(threshold):
            raise ValidationError(f"threshold={threshold!r} must be a number", input=threshold)
        if weak == strong:
            raise ValidationError(f"weak and strong are the same provider {weak!r}", input=weak)
        self.router = router
        self.threshold = float(threshold)
        self.weak = weak
        self.strong = strong

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        pair = {s.id: s for s in candidates if s.id in (self.weak, self.strong)}
        if not pair:
            return list(candidates)
        score = self.router.score_one(request.prompt_text)
        first, second = (self.strong, self.weak) if score >= self.threshold else (self.weak, self.strong)
        ranked = [pair[p] for p in (first, second) if p in pair]
        return ranked + [s for s in candidates if s.id not in pair]

    def __repr__(self) -> str:
        return f"LearnedThreshold({self.router!r}, threshold={self.threshold:g}, weak={self.weak!r}, strong={self.strong!r})"
