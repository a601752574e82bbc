"""Cost engine: token estimates before the call, predicted cost, budgets with reservations, a ledger.

Budgets are enforced *before* money is spent: the router reserves the
predicted worst-case cost of a call (output capped by ``max_tokens``), the
reservation is settled with the actual cost when the call finishes and
released when it fails.  Reservation is atomic (one lock, no awaits), so
1,000 concurrent requests can never overspend a budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal

from .._pickling import reduce_frozen
from ..errors import BudgetExceeded, ValidationError
from .messages import ChatRequest
from .types import Pricing

if TYPE_CHECKING:
    import pandas as pd

    from ..events import Event

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "Budget",
    "BudgetManager",
    "CostLedger",
    "Reservation",
    "estimate_tokens",
    "predict_cost",
]

#: Output tokens assumed when a request sets no ``max_tokens``.
DEFAULT_OUTPUT_TOKENS: Final = 512
Scope = Literal["global", "principal", "project"]
Period = Literal["total", "day", "month"]


def estimate_tokens(request: ChatRequest | str) -> int:
    """Input tokens of ``request`` without a tokenizer download: ~4 characters a token, 4 per message.

    A deliberate heuristic (the usual rule of thumb for English); providers
    report the real counts, which settle budgets and the ledger.
    """
    if isinstance(request, str):
        return max(1, math.ceil(len(request) / 4))
    if request.input_tokens is not None:
        return request.input_tokens
    msgs = request.messages
    return sum(math.ceil(len(m.content) / 4) + 4 for m in msgs) + 2


def predict_cost(pricing: Pricing, request: ChatRequest, *, output_tokens: int | None = None) -> float:
    """Worst-case USD for ``request`` at ``pricing`` (output = ``max_tokens`` or the default)."""
    out = output_tokens if output_tokens is not None else (request.max_tokens or DEFAULT_OUTPUT_TOKENS)
    n_in = request.input_tokens  # estimate_tokens()'s first answer, read here to save a call per reservation
    return pricing.cost(estimate_tokens(request) if n_in is None else n_in, out)


@dataclass(frozen=True)
class Budget:
    """A spending limit.

    Args:
        limit_usd: the hard limit: a call that could cross it is refused before it is made.
        scope: ``global``, or per ``principal`` / ``project``.
        key: the principal or project it applies to; ``None`` with a per-scope
            budget gives *each* principal/project its own limit.
        period: ``total``, ``day`` (UTC) or ``month``: spend resets with each period.
        soft_ratio: a warning is emitted when spend crosses this fraction.
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickles compiled too (see lumina_lab._pickling)
        return reduce_frozen(self)

    limit_usd: float
    scope: Scope = "global"
    key: str | None = None
    period: Period = "total"
    soft_ratio: float = 0.8
    name: str | None = None

    def __post_init__(self) -> None:
        if not (self.limit_usd >= 0):
            raise ValidationError(f"budget limit_usd={self.limit_usd!r} must be >= 0", input=self.limit_usd)
        if self.scope not in ("global", "principal", "project"):
            raise ValidationError(f"budget scope={self.scope!r}", hint="use 'global', 'principal' or 'project'")
        if self.period not in ("total", "day", "month"):
            raise ValidationError(f"budget period={self.period!r}", hint="use 'total', 'day' or 'month'")
        if not 0 < self.soft_ratio <= 1:
            raise ValidationError(f"soft_ratio={self.soft_ratio!r} must be in (0, 1]")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        who = "all" if self.scope == "global" else f"{self.scope}={self.key or '*'}"
        return f"{who}/{self.period}"

    def bucket(self, request: ChatRequest, wall: float) -> str | None:
        """The bucket key this request charges, or None if the budget does not apply."""
        return self.bucket_of(request.principal, request.project, wall)

    def bucket_of(self, principal: str | None, project: str | None, wall: float) -> str | None:
        """The bucket key a request of ``principal`` in ``project`` charges at ``wall``, or None if the
        budget does not apply (what dashboards use to place an event's cost)."""
        who: str | None
        if self.scope == "global":
            who = "*"
        else:
            who = principal if self.scope == "principal" else project
            if who is None or (self.key is not None and who != self.key):
                return None
        when = "-" if self.period == "total" else _period_key(self.period, int(wall // 86_400))
        return f"{self.label}|{who}|{when}"


@lru_cache(maxsize=4096)
def _period_key(period: str, day: int) -> str:
    d = datetime.fromtimestamp(day * 86_400, UTC)
    return d.strftime("%Y-%m-%d") if period == "day" else d.strftime("%Y-%m")


@dataclass(slots=True)
class _Bucket:
    budget: Budget
    spent: float = 0.0
    reserved: float = 0.0
    warned: bool = False
    # the budget's limit and soft threshold, copied once (read on every reservation and settlement)
    limit: float = field(init=False, repr=False)
    soft: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.limit = self.budget.limit_usd + 1e-12  # as the check ``... > limit_usd + 1e-12``
        self.soft = self.budget.soft_ratio * self.budget.limit_usd


@dataclass(slots=True, init=False)
class Reservation:
    """Money held for one call until it settles."""

    request_id: str
    amount: float
    buckets: list[str]
    settled: bool
    held: list[_Bucket] | None = field(repr=False, compare=False)  # the buckets of ``buckets``

    def __init__(  # written out: a compiled build compiles it (dataclass-made ones stay interpreted)
        self,
        request_id: str,
        amount: float,
        buckets: list[str] | None = None,
        settled: bool = False,
        held: list[_Bucket] | None = None,
    ) -> None:
        self.request_id = request_id
        self.amount = amount
        self.buckets = [] if buckets is None else buckets
        self.settled = settled
        self.held = held


@dataclass(frozen=True)
class BudgetCrossing:
    """A bucket crossed its soft threshold."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickles compiled too (see lumina_lab._pickling)
        return reduce_frozen(self)

    budget: str
    bucket: str
    spent_usd: float
    limit_usd: float


class _Charges:
    """What one principal's requests in one project are charged on ``day``: the budgets that apply with
    their bucket keys, the keys alone, and — once they all exist — the buckets of those keys (a bucket is
    never dropped)."""

    __slots__ = ("day", "held", "keys", "pairs")

    def __init__(self, day: float, pairs: list[tuple[Budget, str]]) -> None:
        self.day = day
        self.pairs = pairs
        self.keys = [k for _, k in pairs]  # every reservation of this entry holds this list: read, never changed
        self.held: list[_Bucket] | None = None


def _hold(held: list[_Bucket], amount: float) -> bool:
    """Add ``amount`` to every bucket's hold if none goes over its limit (else hold nothing)."""
    for bucket in held:
        if bucket.spent + bucket.reserved + amount > bucket.limit:
            return False
    for bucket in held:
        bucket.reserved += amount
    return True


class BudgetManager:
    """Holds budgets and their buckets; thread-safe unless told it is used from one thread only.

    Args:
        budgets: the budgets enforced.
        wall: the wall clock (seconds since the epoch) that daily and monthly budgets follow.
        threadsafe: False drops the lock around reservations and settlements (the routing lab's
            replays run on one thread; the lock is a fifth of a reservation's cost there).

    >>> mgr = BudgetManager([Budget(1.0, scope="project", key="search")])
    """

    def __init__(
        self, budgets: Iterable[Budget] = (), *, wall: Callable[[], float] = time.time, threadsafe: bool = True
    ) -> None:
        self.budgets: list[Budget] = list(budgets)
        self.wall = wall
        self.threadsafe = threadsafe
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        # project -> principal -> what its requests are charged on one day (building bucket keys formats
        # strings, and a request's keys change only with who asks and the day: see _charges); two
        # lookups by string rather than one by a tuple made per call; valid for the budgets in _keys_for
        self._keys: dict[str | None, dict[str | None, _Charges]] = {}
        self._keys_for: list[Budget] = list(self.budgets)

    def add(self, budget: Budget) -> None:
        with self._lock:
            self.budgets.append(budget)

    def _charges(self, request: ChatRequest, wall: float) -> _Charges:
        """The budgets ``request`` charges at ``wall`` with their bucket keys (cached per project and principal).

        :meth:`Budget.bucket` reads only the request's principal and project and, for
        daily and monthly budgets, the UTC day of ``wall``, so a cached entry holds while
        those stay the same.  The cache is dropped whenever ``budgets`` changed (compared
        by identity first, which is cheap for the usual handful of budgets).
        """
        budgets = self.budgets
        cache = self._keys
        if budgets != self._keys_for:
            cache.clear()
            self._keys_for = list(budgets)
        principal, project, day = request.principal, request.project, wall // 86_400
        of_project = cache.get(project)
        if of_project is None:
            if len(cache) >= 4096:
                cache.clear()
            of_project = cache[project] = {}
        entry = of_project.get(principal)
        if entry is None or entry.day != day:
            if len(of_project) >= 4096:
                of_project.clear()
            pairs = [(b, k) for b in budgets if (k := b.bucket(request, wall)) is not None]
            entry = of_project[principal] = _Charges(day, pairs)
        return entry

    def __bool__(self) -> bool:
        return bool(self.budgets)

    def reserve(self, request: ChatRequest, amount: float) -> Reservation:
        """Hold ``amount`` USD for ``request`` in every bucket it charges.

        Raises:
            BudgetExceeded: some bucket would go over its limit (nothing is held).
        """
        wall = self.wall()
        # _charges() inlined for a hit in its cache (the usual case): once per call
        of_project = self._keys.get(request.project)
        entry = None if of_project is None else of_project.get(request.principal)
        if entry is None or entry.day != wall // 86_400 or self.budgets != self._keys_for:
            entry = self._charges(request, wall)
        held = entry.held
        if held is not None:  # the usual case: every bucket exists; the same checks over the cached list
            if self.threadsafe:
                with self._lock:
                    done = _hold(held, amount)
            else:
                done = _hold(held, amount)
            if done:
                return Reservation(request.id, amount, entry.keys, False, held)
        return self._reserve(request, amount, entry)

    def _reserve(self, request: ChatRequest, amount: float, entry: _Charges) -> Reservation:
        """:meth:`reserve` making the buckets it needs, or refusing."""
        with self._lock:
            buckets = self._buckets
            held: list[_Bucket] = []
            for b, key in entry.pairs:  # check every bucket first: a refusal holds nothing
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket(b)
                if bucket.spent + bucket.reserved + amount > b.limit_usd + 1e-12:
                    raise BudgetExceeded(
                        f"budget {b.label} would be exceeded: spent ${bucket.spent:.6f} + held "
                        f"${bucket.reserved:.6f} + this call up to ${amount:.6f} > limit ${b.limit_usd:.6f}",
                        input=request.id,
                        hint="raise the limit, lower max_tokens, or route to a cheaper model",
                    )
                held.append(bucket)
            for bucket in held:
                bucket.reserved += amount
            entry.held = held  # every bucket exists now (a bucket is never dropped): the fast path above
        return Reservation(request.id, amount, entry.keys, False, held)

    def settle(self, reservation: Reservation, actual_usd: float) -> list[BudgetCrossing]:
        """Replace the hold by the actual cost; return soft thresholds crossed now."""
        if self.threadsafe:
            with self._lock:
                return self._settle(reservation, actual_usd)
        return self._settle(reservation, actual_usd)

    def _settle(self, reservation: Reservation, actual_usd: float) -> list[BudgetCrossing]:
        crossings: list[BudgetCrossing] = []
        if reservation.settled:
            return crossings
        reservation.settled = True
        amount = reservation.amount
        held = reservation.held
        if held is None:
            held = [self._buckets[key] for key in reservation.buckets]
        for i, bucket in enumerate(held):
            bucket.reserved -= amount
            spent = bucket.spent = bucket.spent + actual_usd
            if not bucket.warned and spent >= bucket.soft:
                bucket.warned = True
                b = bucket.budget
                crossings.append(BudgetCrossing(b.label, reservation.buckets[i], spent, b.limit_usd))
        return crossings

    def release(self, reservation: Reservation) -> None:
        """Give back a hold whose call failed (nothing was spent)."""
        self.settle(reservation, 0.0)

    def status(self) -> pd.DataFrame:
        """One row per bucket: budget, bucket, spent, held, limit, remaining."""
        import pandas as pd

        with self._lock:
            rows = [
                {
                    "budget": b.budget.label,
                    "bucket": key.split("|", 1)[1],
                    "spent_usd": b.spent,
                    "held_usd": b.reserved,
                    "limit_usd": b.budget.limit_usd,
                    "remaining_usd": b.budget.limit_usd - b.spent - b.reserved,
                }
                for key, b in self._buckets.items()
            ]
        return pd.DataFrame(rows, columns=["budget", "bucket", "spent_usd", "held_usd", "limit_usd", "remaining_usd"])

    def spent(self, budget: Budget | str | None = None) -> float:
        """Total spent in the buckets of ``budget`` (all budgets if None)."""
        label = budget.label if isinstance(budget, Budget) else budget
        with self._lock:
            return sum(b.spent for b in self._buckets.values() if label is None or b.budget.label == label)


class CostLedger:
    """Projection of ``provider.call.finished`` events: spend by provider, model, principal and project.

    Feed it live (``bus.subscribe("provider.call.finished", ledger.apply)``) or
    rebuild it from history (``store.project(CostLedger())``).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.total_usd = 0.0

    def apply(self, event: Event) -> None:
        if event.type != "provider.call.finished":
            return
        e: Any = event
        self.total_usd += e.cost_usd
        self.rows.append(
            {
                "ts": e.ts,
                "provider": e.provider,
                "model": e.model,
                "principal": e.principal,
                "project": e.project,
                "input_tokens": e.input_tokens,
                "output_tokens": e.output_tokens,
                "cost_usd": e.cost_usd,
            }
        )

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def by(self, *keys: str) -> pd.DataFrame:
        """Spend and tokens grouped by ``keys`` (e.g. ``"project"``, ``"provider"``)."""
        frame = self.frame()
        if frame.empty:
            return frame
        return (
            frame.groupby(list(keys), dropna=False)[["cost_usd", "input_tokens", "output_tokens"]]
            .sum()
            .reset_index()
            .sort_values("cost_usd", ascending=False)
        )
