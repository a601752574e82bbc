"""Routing strategies: rank the candidate providers for one request.

A strategy's ``rank`` returns the candidates best first; the router calls the
first and falls back along the rest.  ``on_dispatch`` runs when the router
commits to a provider (so a burst of concurrent requests spreads correctly),
``on_result`` when a call ends, and ``feedback`` when the caller scores an
answer (learning strategies use it).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from mypy_extensions import mypyc_attr

from ..errors import ValidationError
from .cost import DEFAULT_OUTPUT_TOKENS, estimate_tokens
from .messages import ChatRequest, ChatResponse
from .registry import ProviderState

__all__ = [
    "STRATEGIES",
    "Cascade",
    "Cheapest",
    "Fastest",
    "LeastBusy",
    "RoundRobin",
    "Strategy",
    "ThompsonBandit",
    "WeightedScore",
    "strategy_from_name",
]


class _IdentityCache:
    """Values derived from a candidate *tuple*, looked up by the tuple's identity.

    The router hands strategies the registry's cached candidate tuple when nothing is
    excluded (the usual case), so a ranking's per-fleet work (one capacity for all,
    the order by price) can be done once per tuple.  The tuple is kept with its value,
    so an id is never mistaken for a newer tuple's.  Anything else (a list) misses.
    A state's copied limits and prices never change (re-registering makes a new state).
    """

    __slots__ = ("_entries", "_max")

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: dict[Any, tuple[Any, Any]] = {}
        self._max = max_entries

    def get(self, candidates: Any, extra: Any = None) -> Any:
        hit = self._entries.get((id(candidates), extra))
        if hit is not None and hit[0] is candidates:
            return hit[1]
        return None

    def put(self, candidates: Any, value: Any, extra: Any = None) -> Any:
        if type(candidates) is tuple:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[(id(candidates), extra)] = (candidates, value)
        return value


@mypyc_attr(allow_interpreted_subclasses=True)  # your strategies subclass it
class Strategy:
    """Base class: subclasses override :meth:`rank` (and optionally the hooks)."""

    name = "strategy"

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        raise NotImplementedError

    def on_dispatch(self, state: ProviderState, request: ChatRequest) -> None:
        """The router is calling ``state`` for ``request`` now."""

    def on_result(self, state: ProviderState, request: ChatRequest, response: ChatResponse | None) -> None:
        """A call ended (``response`` is None on failure)."""

    def feedback(self, request_id: str, reward: float) -> bool:
        """Score an answer in [0, 1]; returns whether the strategy used it."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _expected_cost(state: ProviderState, request: ChatRequest, n_in: int) -> float:
    out = request.max_tokens or DEFAULT_OUTPUT_TOKENS
    return (n_in * state.input_per_m + out * state.output_per_m) / 1e6  # provider.pricing.cost(), from the copies


class Cheapest(Strategy):
    """Lowest predicted cost first (input estimate + ``max_tokens`` or the default output)."""

    name = "cheapest"

    def __init__(self) -> None:
        self._ranked = _IdentityCache(16_384)  # (candidate tuple, tokens in, tokens out) -> ranking

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        if len(candidates) < 2:
            return list(candidates)
        n_in = request.input_tokens
        if n_in is None:
            n_in = estimate_tokens(request)
        out = request.max_tokens or DEFAULT_OUTPUT_TOKENS  # as in _expected_cost
        # the order depends on nothing but the prices and the two token counts: made once per fleet and size
        tokens = (n_in, out)
        hit = self._ranked.get(candidates, tokens)
        if hit is not None:
            return list(hit)
        # decorate-sort-undecorate instead of sorted(key=lambda ...): no Python call per candidate;
        # the index keeps the order stable and never lets two states be compared.  The cost is
        # provider.pricing.cost(n_in, out) written out over the state's copies of the prices (the
        # same arithmetic, so the same floats): a pydantic attribute lookup costs more than the sum
        dec = [((n_in * s.input_per_m + out * s.output_per_m) / 1e6, s.id, i, s) for i, s in enumerate(candidates)]
        dec.sort()
        ranked = [t[3] for t in dec]
        self._ranked.put(candidates, tuple(ranked), tokens)
        return ranked


class Fastest(Strategy):
    """Lowest latency first, by ``metric``: ``ewma`` latency, ``p95`` latency or ``ttft`` (EWMA).

    Providers without statistics yet come first, so each gets measured.
    """

    name = "fastest"

    def __init__(self, metric: str = "ewma") -> None:
        if metric not in ("ewma", "p95", "ttft"):
            raise ValidationError(f"metric={metric!r}", hint="use 'ewma', 'p95' or 'ttft'")
        self.metric = metric

    def _value(self, s: ProviderState) -> float:
        st = s.stats
        v = st.ewma_latency_s if self.metric == "ewma" else st.p95_latency_s if self.metric == "p95" else st.ewma_ttft_s
        return -1.0 if v is None else v

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        value = self._value
        dec = [(value(s), s.stats.inflight, s.id, i, s) for i, s in enumerate(candidates)]
        dec.sort()  # decorated, as in Cheapest.rank
        return [t[4] for t in dec]

    def __repr__(self) -> str:
        return f"Fastest(metric={self.metric!r})"


class WeightedScore(Strategy):
    """Weighted sum of normalised cost, latency, quality and success rate (higher is better).

    Quality is the provider's declared level of the capabilities the request needs (``chat`` if none).
    """

    name = "weighted"

    def __init__(self, *, cost: float = 1.0, latency: float = 1.0, quality: float = 1.0, success: float = 1.0) -> None:
        self.weights = {"cost": cost, "latency": latency, "quality": quality, "success": success}

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        if len(candidates) < 2:
            return list(candidates)
        n_in = estimate_tokens(request)
        costs = [_expected_cost(s, request, n_in) for s in candidates]
        lats = [s.stats.ewma_latency_s or 0.0 for s in candidates]
        max_c, max_l = max(costs) or 1.0, max(lats) or 1.0
        names = list(request.needs.keys() if isinstance(request.needs, dict) else request.needs) or ["chat"]
        w = self.weights
        scored = []
        for s, c, lat in zip(candidates, costs, lats, strict=True):
            q = sum(s.provider.capabilities.level(n) for n in names) / len(names)
            score = (
                w["cost"] * (1 - c / max_c)
                + w["latency"] * (1 - lat / max_l)
                + w["quality"] * q
                + w["success"] * s.stats.ewma_success
            )
            scored.append((-score, s.id, s))
        scored.sort(key=lambda t: (t[0], t[1]))
        return [t[2] for t in scored]

    def __repr__(self) -> str:
        return f"WeightedScore({', '.join(f'{k}={v}' for k, v in self.weights.items())})"


class LeastBusy(Strategy):
    """Fewest in-flight calls relative to ``max_concurrency`` first; ties rotate."""

    name = "least_busy"

    def __init__(self) -> None:
        self._turn = 0

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        n = len(candidates)
        if n < 2:
            return list(candidates)
        t = self._turn % n
        # The key is (load, (i - turn) % n).  With one capacity for all (the usual fleet) the load order
        # is the in-flight order, and the rotation order is candidates[t:] + candidates[:t]: a stable
        # insertion sort of that by in-flight count is the same ranking, without a tuple per candidate
        # (a handful of providers; compiled, the counts are compared as C integers).  The first
        # provider with another capacity stops it: then the general key below.
        ranked: list[ProviderState] = []
        loads: list[int] = []
        cap = candidates[0].slot_cap
        for j in range(n):
            s = candidates[j + t if j + t < n else j + t - n]
            if s.slot_cap != cap:
                break
            load = s.stats.inflight
            k = j
            while k > 0 and loads[k - 1] > load:
                k -= 1
            if k == j:
                ranked.append(s)
                loads.append(load)
            else:
                ranked.insert(k, s)
                loads.insert(k, load)
        else:
            return ranked
        # key: (load, rotation), decorated and sorted in place rather than sorted(key=...)
        dec = [(s.stats.inflight / (s.max_concurrency or 1), (i - t) % n, s) for i, s in enumerate(candidates)]
        dec.sort()
        return [d[2] for d in dec]

    def on_dispatch(self, state: ProviderState, request: ChatRequest) -> None:
        self._turn += 1  # ties rotate per dispatched call, not per ranking (plan() changes nothing)


class RoundRobin(Strategy):
    """Smooth weighted round-robin (as nginx does); ``weights`` by provider id (default 1).

    The choice is committed at dispatch, so concurrent requests interleave exactly by weight.
    """

    name = "round_robin"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        self._current: dict[str, float] = {}
        self._pending: dict[str, tuple[str, ...]] = {}  # request id -> candidates it was ranked among

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        """Read-only: the next pick of smooth WRR first; the step is committed in :meth:`on_dispatch`."""
        if len(candidates) < 2:
            return list(candidates)
        cur, w = self._current, self.weights
        ids = self._pending[request.id] = tuple([s.id for s in candidates])
        if len(self._pending) > 10_000:
            self._pending.pop(next(iter(self._pending)))
        dec = [
            (-(cur.get(pid, 0.0) + w.get(pid, 1.0)), pid, i, s)
            for i, (pid, s) in enumerate(zip(ids, candidates, strict=True))
        ]
        dec.sort()  # decorated, as in Cheapest.rank
        return [t[3] for t in dec]

    def on_dispatch(self, state: ProviderState, request: ChatRequest) -> None:
        ids = self._pending.pop(request.id, None)
        if not ids or state.id not in ids:
            return
        cur, total = self._current, 0.0
        for pid in ids:
            weight = self.weights.get(pid, 1.0)
            cur[pid] = cur.get(pid, 0.0) + weight
            total += weight
        cur[state.id] -= total

    def __repr__(self) -> str:
        return f"RoundRobin(weights={self.weights})"


def _default_check(response: ChatResponse) -> bool:
    return bool(response.text.strip()) and response.metadata.get("quality_ok", True) is not False


class Cascade(Strategy):
    """Quality-threshold cascade: cheapest first; if ``check(response)`` fails, escalate to the next.

    Args:
        check: judges an answer (default: non-empty and not flagged ``quality_ok=False``).
        max_steps: most providers tried for one request.
    """

    name = "cascade"

    def __init__(self, check: Callable[[ChatResponse], bool] | None = None, *, max_steps: int = 3) -> None:
        self.check = check or _default_check
        self.max_steps = max_steps
        self._order = Cheapest()

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        return self._order.rank(candidates, request)


class ThompsonBandit(Strategy):
    """Contextual bandit: Thompson sampling over Beta posteriors per (context, provider).

    The context is ``request.task`` (or the needed capabilities).  A call's
    reward is 1 when it succeeds and is not flagged ``quality_ok=False``;
    :meth:`feedback` overrides it with the caller's score.  ``cost_weight``
    trades expected success against normalised predicted cost.
    """

    name = "bandit"

    def __init__(self, *, cost_weight: float = 0.3, seed: int | None = 0, memory: int = 100_000) -> None:
        self.cost_weight = cost_weight
        self.rng = random.Random(seed)
        self.posteriors: dict[tuple[str, str], list[float]] = {}
        self._pending: OrderedDict[str, list[Any]] = OrderedDict()
        self._memory = memory

    @staticmethod
    def context(request: ChatRequest) -> str:
        if request.task:
            return request.task
        needs = request.needs
        return ",".join(sorted(needs.keys() if isinstance(needs, dict) else needs)) or "chat"

    def rank(self, candidates: Sequence[ProviderState], request: ChatRequest) -> list[ProviderState]:
        if len(candidates) < 2:
            return list(candidates)
        ctx = self.context(request)
        n_in = estimate_tokens(request)
        costs = [_expected_cost(s, request, n_in) for s in candidates]
        max_c = max(costs) or 1.0
        draws = []
        for s, c in zip(candidates, costs, strict=True):
            a, b = self.posteriors.get((ctx, s.id), (1.0, 1.0))
            theta = self.rng.betavariate(a, b)
            draws.append((-(theta - self.cost_weight * c / max_c), s.id, s))
        draws.sort(key=lambda t: (t[0], t[1]))
        return [t[2] for t in draws]

    def on_dispatch(self, state: ProviderState, request: ChatRequest) -> None:
        self._pending[request.id] = [self.context(request), state.id, None]
        if len(self._pending) > self._memory:
            self._pending.popitem(last=False)

    def _update(self, key: tuple[str, str], reward: float, undo: float | None = None) -> None:
        ab = self.posteriors.setdefault(key, [1.0, 1.0])
        if undo is not None:
            ab[0] -= undo
            ab[1] -= 1.0 - undo
        ab[0] += reward
        ab[1] += 1.0 - reward

    def on_result(self, state: ProviderState, request: ChatRequest, response: ChatResponse | None) -> None:
        entry = self._pending.get(request.id)
        if entry is None or entry[1] != state.id:
            return
        ok = response is not None and response.metadata.get("quality_ok", True) is not False
        reward = 1.0 if ok else 0.0
        self._update((entry[0], entry[1]), reward)
        entry[2] = reward
        if response is None:
            self._pending.pop(request.id, None)

    def feedback(self, request_id: str, reward: float) -> bool:
        if not 0.0 <= reward <= 1.0:
            raise ValidationError(f"reward={reward!r} must be in [0, 1]", input=reward)
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return False
        self._update((entry[0], entry[1]), reward, undo=entry[2])  # the caller's score replaces the automatic one
        return True

    def expected(self) -> dict[tuple[str, str], float]:
        """Posterior mean success per (context, provider)."""
        return {k: a / (a + b) for k, (a, b) in self.posteriors.items()}

    def __repr__(self) -> str:
        return f"ThompsonBandit(cost_weight={self.cost_weight}, arms={len(self.posteriors)})"


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "cheapest": Cheapest,
    "fastest": Fastest,
    "weighted": WeightedScore,
    "least_busy": LeastBusy,
    "round_robin": RoundRobin,
    "cascade": Cascade,
    "bandit": ThompsonBandit,
}


def strategy_from_name(name: str | Strategy, **options: Any) -> Strategy:
    """A strategy instance from its name (``"cheapest"``, ``"fastest"``, ...) or as given."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name](**options)
    except KeyError:
        raise ValidationError(
            f"unknown routing strategy {name!r}", input=name, hint=f"use one of {sorted(STRATEGIES)}"
        ) from None
