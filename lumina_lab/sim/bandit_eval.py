"""The Thompson-sampling bandit on labelled prompts, measured the way the learned routers are (RouteLLM-style).

A bandit is not a prompt scorer: it learns *online*, from the answers of the
model it chose, and it sees a prompt only through its context.  So it is
evaluated as it would run: the live :class:`~lumina_lab.providers.strategies.ThompsonBandit`
ranks a weak and a strong simulated provider (priced from the pricing snapshot)
for each prompt of a stream, the first-ranked one "answers", and the bandit is
told whether that answer was right (the recorded label of *that* model only:
bandit feedback).  The context of a prompt is its cluster: k-means over the
prompts' embeddings, fitted on the training prompts only (``request.task`` is
set to ``"c<cluster>"``, which is what the bandit keys its posteriors on).

The bandit's knob is ``cost_weight`` (quality traded against normalised
predicted cost), not a score threshold, so the quality-cost curve is a sweep of
``cost_weight``: each point is one pass over the test stream (the mean over
``seeds`` shuffles).  From that curve come RouteLLM's figures, as
:func:`~lumina_lab.sim.learned.evaluate` defines them: APGR (area under the
performance-gap-recovered curve against the share of strong calls, with the
all-weak and all-strong end points added) and the cost saving, against
all-strong, of the cheapest point reaching 95% of the strong model's quality.

``warm=True`` first streams the training prompts through the same bandit (bandit
feedback as well), as a deployment that has been running for a while would
have; ``warm=False`` starts every pass from flat priors.

>>> from lumina_lab.sim.bandit_eval import evaluate_bandit
>>> r = evaluate_bandit(test.prompt, test.weak_correct, test.strong_correct,  # doctest: +SKIP
...                     train=(train.prompt, train.weak_correct, train.strong_correct), embedder=emb)
>>> r["cost_saving_at_95"], r["apgr"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from .learned import DEFAULT_PRICES, _as_prompts, _labelled, _pricing, prompt_costs

__all__ = ["COST_WEIGHTS", "PromptClusters", "evaluate_bandit"]

#: the default sweep of ``ThompsonBandit.cost_weight`` (0: quality alone; large: the cheap model always)
COST_WEIGHTS: tuple[float, ...] = (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5)


class PromptClusters:
    """k-means over prompt embeddings (k-means++ seeding, cosine on unit vectors): a prompt's context.

    Args:
        k: number of clusters (fewer if there are fewer distinct prompts).
        embedder: anything with ``embed(texts) -> array`` (our embedders); vectors are L2-normalised.
        seed: seeding and tie-breaking, so a fit is reproducible.
    """

    def __init__(self, k: int = 16, *, embedder: Any, seed: int = 0, iterations: int = 30) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValidationError(f"k={k!r} must be a positive int", input=k, hint="e.g. PromptClusters(16, ...)")
        self.k = k
        self.embedder = embedder
        self.seed = seed
        self.iterations = iterations
        self.centroids: np.ndarray | None = None

    def _vectors(self, prompts: Sequence[str]) -> np.ndarray:
        x = np.asarray(self.embedder.embed(list(prompts)), dtype=np.float64)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)

    def fit(self, prompts: Sequence[str]) -> PromptClusters:
        """Fit the centroids on ``prompts`` (training prompts only)."""
        items = _as_prompts(prompts)
        if not items:
            raise ValidationError("cannot cluster no prompts", hint="pass the training prompts")
        x = self._vectors(items)
        rng = np.random.default_rng(self.seed)
        k = min(self.k, len(np.unique(x, axis=0)))
        centers = [x[rng.integers(len(x))]]
        d2 = np.full(len(x), np.inf)
        for _ in range(1, k):  # k-means++: the next centre with probability proportional to squared distance
            d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(axis=1))
            total = d2.sum()
            if total <= 0:
                break
            centers.append(x[rng.choice(len(x), p=d2 / total)])
        c = np.array(centers)
        labels = np.full(len(x), -1)
        for _ in range(self.iterations):
            new = np.argmax(x @ c.T, axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(len(c)):
                members = x[labels == j]
                if len(members):
                    m = members.mean(axis=0)
                    c[j] = m / (np.linalg.norm(m) or 1.0)
        self.centroids = c
        return self

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        """The cluster of each prompt (an int per prompt)."""
        if self.centroids is None:
            raise ValidationError("PromptClusters is not fitted", hint="call .fit(training_prompts) first")
        items = _as_prompts(prompts)
        if not items:
            return np.zeros(0, dtype=np.int64)
        return np.argmax(self._vectors(items) @ self.centroids.T, axis=1)

    def __repr__(self) -> str:
        fitted = "unfitted" if self.centroids is None else f"{len(self.centroids)} centroids"
        return f"PromptClusters(k={self.k}, {fitted})"


class _Stream:
    """Weak and strong simulated providers in a registry, and the bandit's run over a stream of prompts."""

    def __init__(self, prices: Mapping[str, Any], tokens: int) -> None:
        from ..providers import ProviderRegistry, SimulatedProvider

        registry = ProviderRegistry()
        self.states = []
        for role in ("weak", "strong"):
            p = _pricing(prices[role], role)
            provider = SimulatedProvider(f"{role}-model", id=role, pricing=p)
            self.states.append(registry.register(provider))
        self.tokens = tokens

    def run(self, bandit: Any, contexts: np.ndarray, weak: np.ndarray, strong: np.ndarray, prefix: str) -> np.ndarray:
        """Route each prompt of the stream; return the chosen arm per prompt (1 = strong)."""
        from ..providers import ChatRequest, ChatResponse
        from ..providers.types import Usage

        weak_state, strong_state = self.states
        candidates = (weak_state, strong_state)
        chosen = np.zeros(len(contexts), dtype=np.int8)
        tokens = self.tokens
        for i, (ctx, w, s) in enumerate(zip(contexts.tolist(), weak.tolist(), strong.tolist(), strict=True)):
            request = ChatRequest(
                "(prompt)", task=f"c{ctx}", max_tokens=tokens, input_tokens=tokens, id=f"{prefix}{i}"
            )
            state = bandit.rank(candidates, request)[0]
            bandit.on_dispatch(state, request)
            strong_chosen = state is strong_state
            ok = bool(s if strong_chosen else w)
            response = ChatResponse(
                "", state.id, state.provider.model, Usage(tokens, tokens), metadata={"quality_ok": ok}
            )
            bandit.on_result(state, request, response)
            chosen[i] = strong_chosen
        return chosen


def evaluate_bandit(
    prompts: Sequence[str],
    weak_correct: Any,
    strong_correct: Any,
    *,
    embedder: Any,
    train: tuple[Sequence[str], Any, Any] | None = None,
    clusters: int = 16,
    cost_weights: Sequence[float] = COST_WEIGHTS,
    seeds: int = 3,
    warm: bool = True,
    prices: Mapping[str, Any] | None = None,
    tokens: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Sweep the bandit's ``cost_weight`` over a stream of test prompts; RouteLLM's figures from the curve.

    Args:
        prompts, weak_correct, strong_correct: the test prompts and whether each model answered them right.
        embedder: embeds prompts for the clusters (the bandit's context).
        train: ``(prompts, weak_correct, strong_correct)`` of disjoint training prompts: the clusters
            are fitted on them and, with ``warm``, the bandit first learns from their stream.
            Without it the clusters are fitted on the test prompts' text (no labels) and ``warm`` is off.
        clusters: number of prompt clusters (contexts); 1 makes a context-free bandit.
        cost_weights: the sweep of ``ThompsonBandit.cost_weight``.
        seeds: passes per cost weight (stream order and Thompson draws), averaged.
        prices, tokens: models' prices (as :func:`~lumina_lab.sim.learned.prompt_costs`) and the
            tokens of every prompt in and out (the same for all: cost depends on the share of strong calls).

    Returns:
        ``apgr``, ``cost_saving_at_95`` (with ``strong_share_at_95``, ``quality_at_95``,
        ``cost_weight_at_95``), ``quality_weak``/``quality_strong``, ``cost_all_weak``/``cost_all_strong``,
        ``clusters``, ``warm`` and ``curve`` (a DataFrame: ``cost_weight``, ``strong_share``, ``quality``,
        ``cost``, ``pgr``, ``cost_ratio``), in the shape :func:`~lumina_lab.sim.learned.evaluate` returns,
        so :func:`lumina_lab.sim.plots.quality_cost` draws it beside the learned routers.
    """
    from ..providers.strategies import ThompsonBandit

    items, weak, strong = _labelled(prompts, weak_correct, strong_correct, what="a bandit")
    n = len(items)
    weights = [float(w) for w in cost_weights]
    if not weights or any(not np.isfinite(w) or w < 0 for w in weights):
        raise ValidationError(f"cost_weights={cost_weights!r}: need finite weights >= 0", input=cost_weights)
    if not isinstance(seeds, int) or seeds < 1:
        raise ValidationError(f"seeds={seeds!r} must be a positive int", input=seeds)
    spec = dict(DEFAULT_PRICES) if prices is None else dict(prices)

    if train is not None:
        t_prompts, t_weak, t_strong = _labelled(*train, what="a bandit", prefix="train ")
        model = PromptClusters(clusters, embedder=embedder, seed=seed).fit(t_prompts)
        t_ctx = model.predict(t_prompts)
    else:
        model = PromptClusters(clusters, embedder=embedder, seed=seed).fit(items)
        warm = False
    ctx = model.predict(items)

    stream = _Stream(spec, tokens)
    weak_cost, strong_cost = prompt_costs(items, spec, tokens=tokens)
    cost_all_strong = float(strong_cost.sum())
    q_weak, q_strong = float(weak.mean()), float(strong.mean())
    rows = []
    for w in weights:
        shares, qualities, costs = [], [], []
        for r in range(seeds):
            rng = np.random.default_rng([seed, r])
            bandit = ThompsonBandit(cost_weight=w, seed=seed * 1000 + r)
            if warm:
                o = rng.permutation(len(t_prompts))
                stream.run(bandit, t_ctx[o], t_weak[o], t_strong[o], f"train{r}-")
            order = rng.permutation(n)
            chosen = stream.run(bandit, ctx[order], weak[order], strong[order], f"test{r}-").astype(bool)
            to_strong = np.zeros(n, dtype=bool)
            to_strong[order] = chosen
            shares.append(to_strong.mean())
            qualities.append(np.where(to_strong, strong, weak).mean())
            costs.append(np.where(to_strong, strong_cost, weak_cost).sum())
        rows.append((w, float(np.mean(shares)), float(np.mean(qualities)), float(np.mean(costs))))

    import pandas as pd

    curve = pd.DataFrame(rows, columns=["cost_weight", "strong_share", "quality", "cost"])
    gap = q_strong - q_weak
    curve["pgr"] = (curve.quality - q_weak) / gap if gap != 0 else np.nan
    curve["cost_ratio"] = curve.cost / cost_all_strong if cost_all_strong > 0 else 0.0
    # the area under PGR(strong share), with the two fixed routes as the ends (as a threshold sweep has)
    pts = sorted({(0.0, 0.0), (1.0, 1.0), *zip(curve.strong_share, curve.pgr, strict=True)})
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    apgr = float(np.trapezoid(ys, xs)) if gap != 0 else float("nan")
    ok = curve[curve.quality >= 0.95 * q_strong - 1e-12]
    if len(ok):
        best = ok.loc[ok.cost.idxmin()]
        saving, share95, q95, w95 = (
            1.0 - float(best.cost) / cost_all_strong,
            float(best.strong_share),
            float(best.quality),
            float(best.cost_weight),
        )
    else:  # no swept weight reaches 95%: all-strong is the cheapest route that does
        saving, share95, q95, w95 = 0.0, 1.0, q_strong, float("nan")
    return {
        "n": n,
        "quality_weak": q_weak,
        "quality_strong": q_strong,
        "cost_all_weak": float(weak_cost.sum()),
        "cost_all_strong": cost_all_strong,
        "apgr": apgr,
        "cost_saving_at_95": saving,
        "strong_share_at_95": share95,
        "quality_at_95": q95,
        "cost_weight_at_95": w95,
        "clusters": len(model.centroids),  # type: ignore[arg-type]
        "warm": warm,
        "seeds": seeds,
        "curve": curve,
    }
