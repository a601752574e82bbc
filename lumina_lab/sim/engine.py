"""Discrete-event replay of a workload through the *live* router in simulated time.

The engine owns a :class:`~lumina_lab.clock.ManualClock` shared by the
router, the breakers, the budgets' periods, the rate limiters and the
simulated providers.  It keeps a heap of timed events (arrivals, call
completions, retries, hedge timers, stream ends) and, for each, runs the
router's own synchronous steps — :meth:`Router.rank`,
:meth:`Router.begin_call`, :meth:`Router.finish_call` (or its response-free
part :meth:`Router.account_success`), :meth:`Router.fail_call`,
:meth:`Router.account_failure`, :meth:`Router.abandon_call` — with the
outcome of each call drawn by :meth:`SimulatedProvider.sample` (whole
answers) or :meth:`SimulatedProvider.stream_sample` (streams), the draws the
live provider makes.  Nothing sleeps and no asyncio task is created per
request, so hours of traffic replay in seconds, and the decisions are the
live router's decisions.

Covered: capability filtering, every strategy's ranking and dispatch-time
state, policy vetoes, breakers (incl. half-open probes), budgets (reservation
at dispatch, settlement at completion), RPM/TPM limits, provider
``max_concurrency`` with FIFO queueing, per-call timeouts, retries with
backoff and ``Retry-After``, fallbacks, outages (``down`` toggled on a
schedule), degradations (a provider slower or failing more for a while:
:class:`Degradation`), and, as ``Router.ainvoke`` / ``Router.astream`` do them:

* **hedging** (``RoutingLab(hedge_after_s=...)``): the first-ranked
  provider's attempts (with retries) start; if they have not finished by
  ``hedge_after_s`` the second-ranked provider's start too; the first answer
  wins and the other call is abandoned at that moment (its slot, budget hold
  and half-open probe given back: nothing is charged for it).  A primary that
  fails before the hedge time falls back along the rest of the ranking; if
  both hedged calls fail, along the ranking after them.  Rows say
  ``hedged``.  On a tie (the primary finishing exactly at the hedge time) the
  primary counts as finished first.
* **cascades** (strategy :class:`~lumina_lab.providers.strategies.Cascade`):
  the first ``max_steps`` ranked providers in turn, on to the next when an
  answer fails ``check`` or a provider fails; the row reports the accepted
  answer, or the last answer if none passed (as the live router returns it),
  with ``cost_usd`` the *total* charged for the request (every answered step
  is settled against the budgets) and ``steps`` the number of answers paid
  for.  ``tried`` is ``len(response.tried)`` of the returned answer.
* **streams** (``run(..., stream=True)``, a fraction, or a mask): time to
  first token, ``break_rate`` cutting a stream after some tokens, per-chunk
  timeouts, and failover to the next ranked provider with the continuation
  request the live router sends (the partial answer as an assistant message).
  As live, a stream is never retried, a provider whose breaker refuses is
  skipped, and a broken or failed stream is released, not charged: the
  budgets and ``cost_usd`` see the call that completed.  Rows: ``ttft_s`` to
  the first chunk the caller received (from whichever provider), ``latency_s``
  to the end of the completed answer, ``failovers`` the failed stream calls,
  ``input_tokens``/``output_tokens`` the completed call's usage.

Stream chunk times are computed as ``first + k * per_token`` where the live
provider adds ``per_token`` k times on the clock; the two can differ in the
last bit, never in a decision.

Slots: when a call ends, the first request queued for its provider goes; if its
breaker or budget turns it away, the next one in the queue gets the slot (as the
live router's ``_pass_slot_on``).  Within one instant, the live router's order is
that of asyncio's ready queue; the engine follows it where it decides something:
a cascade or a fallback goes on to its next call before a queued request takes
the freed slot, while a hedge's legs are tasks, so the queued request goes first
and the hedge reacts (cancels the other call, or falls back) after it.  Known
limit: when one instant turns away a whole queue (a breaker opening with several
requests waiting), hedged requests move on in queue order right away, whereas live
they do so a few loop turns later, interleaved with the others.
"""

from __future__ import annotations

import copy
import gc
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from .._pickling import reduce_frozen
from ..clock import LabClock, ManualClock
from ..errors import BudgetExceeded, CircuitOpen, ProviderTimeout, ValidationError, shown
from ..providers.cost import Budget, BudgetManager, estimate_tokens
from ..providers.registry import ProviderRegistry
from ..providers.resilience import RetryPolicy, check_seconds
from ..providers.router import Call, Router, _continuation, check_call_options
from ..providers.simulated import Sample, SimulatedProvider, StreamSample, check_degradation
from ..providers.strategies import Cascade, Strategy, strategy_from_name
from .results import COLUMNS, SimResult
from .workloads import Workload

if TYPE_CHECKING:
    from ..errors import ProviderError
    from ..providers.messages import ChatRequest, ChatResponse
    from ..providers.registry import ProviderState

__all__ = ["COLUMNS", "Degradation", "Outage", "RoutingLab", "SimResult"]

# heap event kinds (Final: a compiled build inlines them rather than looking each up by name)
_ANSWER: Final = 0  # plain loop only
_DONE: Final = 1
_RETRY: Final = 2
_TOGGLE: Final = 3
_LEG_DONE: Final = 4
_LEG_RETRY: Final = 5
_HEDGE: Final = 6
_STREAM: Final = 7
_DEGRADE: Final = 8
_LATE: Final = 1 << 62  # added to a hedge timer's sequence number: at the same instant every other event goes first
# phases of a leg (one provider's attempts within a hedged or cascaded request)
_QUEUED: Final = 0
_CALLING: Final = 1
_BACKOFF: Final = 2
_OVER: Final = 3


@dataclass(frozen=True)
class Outage:
    """Provider ``provider`` is down from ``start_s`` to ``end_s`` (simulated seconds).

    ``RoutingLab.run(..., outages=[...])`` also takes ``(provider, start_s, end_s)`` tuples.
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickles compiled too (see lumina_lab._pickling)
        return reduce_frozen(self)

    provider: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        _check_window("Outage", self.start_s, self.end_s)

    @classmethod
    def coerce(cls, value: Any) -> Outage:
        """``value`` as an :class:`Outage` (one already, or a ``(provider, start_s, end_s)`` tuple)."""
        if isinstance(value, Outage):
            return value
        if isinstance(value, tuple | list) and len(value) == 3:
            return cls(*value)
        raise ValidationError(
            f"outage {value!r} is not an Outage",
            input=value,
            hint="Outage('provider-id', start_s, end_s), or the tuple ('provider-id', start_s, end_s)",
        )


def _check_window(what: str, start_s: Any, end_s: Any) -> None:
    for name, v in (("start_s", start_s), ("end_s", end_s)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v < 0:
            raise ValidationError(f"{what} {name}={shown(v)} must be a number of simulated seconds >= 0", input=v)
    if end_s < start_s:
        raise ValidationError(
            f"{what} ends (end_s={shown(end_s)}) before it starts (start_s={shown(start_s)})", input=(start_s, end_s)
        )


@dataclass(frozen=True)
class Degradation:
    """Provider ``provider`` answers ``latency_factor`` times slower (time to first token and generation)
    and fails at ``error_rate`` (None: its profile's rate) from ``start_s`` to ``end_s`` (simulated seconds).

    Given with the outages: ``RoutingLab.run(..., outages=[Outage(...), Degradation(...)])``.  While
    several overlap on one provider, their factors multiply and the highest error rate holds; when the
    last ends the provider is its profile again (:meth:`SimulatedProvider.degrade
    <lumina_lab.providers.simulated.SimulatedProvider.degrade>` does it; the live router sees the same).

    >>> Degradation("flash", 100, 200, latency_factor=4)     # a slow patch
    Degradation(provider='flash', start_s=100, end_s=200, latency_factor=4, error_rate=None)
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickles compiled too (see lumina_lab._pickling)
        return reduce_frozen(self)

    provider: str
    start_s: float
    end_s: float
    latency_factor: float = 1.0
    error_rate: float | None = None

    def __post_init__(self) -> None:
        _check_window("Degradation", self.start_s, self.end_s)
        check_degradation(self.latency_factor, self.error_rate, owner="Degradation ")


#: What ``outages=`` takes: an :class:`Outage`, a :class:`Degradation`, or a ``(provider, start_s, end_s)`` outage.
Incident = Outage | Degradation | tuple[str, float, float]


class _Ctx:
    """One request in flight through the engine's plain path (``Router._fallback_chain``).

    Only counts are kept of the providers tried and the errors met (the result
    row needs the number tried, and whether every error was a budget refusal):
    two fewer lists per request.  The pending call's draw (``call``, ``sample``,
    ``error``, ``duration``) is set at dispatch, so a completion event is just
    the context.
    """

    __slots__ = (
        "all_budget",
        "arrival",
        "attempt",
        "call",
        "duration",
        "error",
        "errors",
        "i",
        "idx",
        "ranked",
        "request",
        "sample",
        "tried",
    )

    call: Call  # these four: set by each dispatch before anything reads them
    sample: Sample
    error: ProviderError | None
    duration: float

    def __init__(self, i: int, request: ChatRequest, arrival: float, ranked: list[ProviderState]) -> None:
        self.i = i
        self.request = request
        self.arrival = arrival
        self.ranked = ranked
        self.idx = 0
        self.attempt = 1
        self.tried = 0  # providers given up on, plus the one that answered
        self.errors = 0
        self.all_budget = True  # every error so far was BudgetExceeded
        # call, sample, error and duration are set by each dispatch before anything reads them


class _Leg:
    """One provider's attempt sequence (``Router._attempts``) inside a hedged or cascaded request."""

    __slots__ = ("alive", "attempt", "call", "duration", "error", "owner", "phase", "request", "sample", "state")

    def __init__(self, owner: _Hedge | _Cascade, request: ChatRequest, state: ProviderState) -> None:
        self.owner = owner
        self.request = request
        self.state = state
        self.attempt = 1
        self.alive = True
        self.phase = _QUEUED
        self.call: Call | None = None
        self.sample: Sample | None = None
        self.error: ProviderError | None = None
        self.duration = 0.0


class _Hedge:
    """A hedged request (``Router._hedged``): phase 0 primary alone, 1 both racing, 2 decided."""

    __slots__ = ("arrival", "backup", "errors", "i", "phase", "primary", "ranked", "request")

    def __init__(self, i: int, request: ChatRequest, arrival: float, ranked: list[ProviderState]) -> None:
        self.i = i
        self.request = request
        self.arrival = arrival
        self.ranked = ranked
        self.phase = 0
        self.primary = _Leg(self, request, ranked[0])
        self.backup: _Leg | None = None
        self.errors: list[BaseException] = []

    def start(self, eng: _Engine) -> None:
        eng._leg_go(self.primary)
        if self.phase == 0:  # still running: the hedge timer
            assert eng.hedge_after is not None
            heapq.heappush(eng.heap, (eng.clock._now + eng.hedge_after, _LATE + next(eng.seq), _HEDGE, self))

    def fire(self, eng: _Engine) -> None:
        """The hedge delay passed: launch the second-ranked provider's attempts too."""
        if self.phase != 0:
            return
        self.phase = 1
        self.backup = _Leg(self, self.request, self.ranked[1])
        eng._leg_go(self.backup)

    def leg_succeeded(self, eng: _Engine, leg: _Leg, response: ChatResponse) -> None:
        if self.phase == 0:  # the primary answered before the hedge delay
            self.phase = 2
            eng._answered_row(self, leg, response, hedged=False, tried=1)
            return
        self.phase = 2
        other = self.backup if leg is self.primary else self.primary
        assert other is not None
        eng._leg_cancel(other)  # the first answer wins; the other call is abandoned now
        eng._answered_row(self, leg, response, hedged=True, tried=2)

    def leg_failed(self, eng: _Engine, leg: _Leg, error: BaseException) -> None:
        self.errors.append(error)
        if self.phase == 0:  # failed before the hedge delay: fall back along ranked[1:]
            self.phase = 2
            eng._fall_back(self, 1, self.errors)
            return
        other = self.backup if leg is self.primary else self.primary
        assert other is not None
        if other.phase == _OVER:  # both failed: fall back along ranked[2:]
            self.phase = 2
            eng._fall_back(self, 2, self.errors)


class _Cascade:
    """A cascaded request (``Router._cascade``)."""

    __slots__ = ("all_budget", "arrival", "errors", "i", "idx", "last", "ranked", "request", "spent", "steps", "tried")

    def __init__(self, i: int, request: ChatRequest, arrival: float, ranked: list[ProviderState], max_steps: int):
        self.i = i
        self.request = request
        self.arrival = arrival
        self.ranked = list(ranked)[:max_steps]
        self.idx = 0
        self.tried = 0  # as len(tried) in the live loop
        self.errors = 0
        self.all_budget = True
        self.spent = 0.0  # every answered step is charged
        self.steps = 0
        self.last: tuple[_Leg, ChatResponse, int, float] | None = None  # answer, its tried count, its ttft time

    def start(self, eng: _Engine) -> None:
        if self.idx < len(self.ranked):
            eng._leg_go(_Leg(self, self.request, self.ranked[self.idx]))
            return
        if self.last is not None:  # best effort: the most capable answer we got
            leg, response, tried, first = self.last
            eng._answered_row(self, leg, response, tried=tried, cost=self.spent, steps=self.steps, first=first)
        else:
            eng._failed_row(self.i, self.request, self.arrival, 1, self.tried, self.errors, self.all_budget)

    def leg_succeeded(self, eng: _Engine, leg: _Leg, response: ChatResponse) -> None:
        self.tried += 1
        self.spent += response.cost_usd
        self.steps += 1
        strategy = eng.cascade
        assert strategy is not None
        response.tried = [s.id for s in self.ranked[: self.idx + 1]]
        passed = bool(strategy.check(response))
        response.metadata["cascade_passed"] = passed
        if passed:
            eng._answered_row(self, leg, response, tried=self.tried, cost=self.spent, steps=self.steps)
            return
        s = leg.sample
        assert s is not None
        self.last = (leg, response, self.tried, eng.clock._now - leg.duration + s.ttft_s)
        self.idx += 1
        self.start(eng)

    def leg_failed(self, eng: _Engine, leg: _Leg, error: BaseException) -> None:
        self.tried += 1
        self.errors += 1
        if not isinstance(error, BudgetExceeded):
            self.all_budget = False
        self.idx += 1
        self.start(eng)


class _Stream:
    """A streamed request (``Router.astream``)."""

    __slots__ = (
        "all_budget",
        "arrival",
        "call",
        "chunks",
        "errors",
        "failovers",
        "first",
        "i",
        "idx",
        "ok",
        "ranked",
        "received",
        "req",
        "request",
        "sample",
        "t_first",
        "tried",
    )

    def __init__(self, i: int, request: ChatRequest, arrival: float, ranked: list[ProviderState]) -> None:
        self.i = i
        self.request = request
        self.arrival = arrival
        self.ranked = ranked
        self.idx = 0
        self.tried = 0  # as the live list: budget refusals and failed calls, plus the one that answered
        self.errors = 0
        self.all_budget = True
        self.failovers = 0
        self.received: list[str] = []  # chunk texts received so far (the continuation carries them)
        self.first: float | None = None  # when the caller got its first chunk
        self.call: Call | None = None
        self.sample: StreamSample | None = None
        self.req: ChatRequest = request  # what the current call was asked (the continuation after a failover)
        self.ok = False
        self.chunks = 0  # chunks the current call delivers before it ends
        self.t_first = 0.0


class RoutingLab:
    """Replays workloads through strategies against simulated provider profiles.

    Args:
        providers: the fleet (``SimulatedProvider`` profiles); each run uses fresh deep copies.
        breaker: options of every provider's circuit breaker.
        retry: retry policy of the router.
        budgets: budgets enforced during the replay (periods follow simulated time from ``start_wall``).
        timeout_s: per-call timeout.
        hedge_after_s: hedge whole-answer requests after this delay (``Router(hedge_after_s=...)``).
        slo_s: latency objective counted in :meth:`SimResult.summary`.
        policy: optional veto hook, as in the live router.
        start_wall: wall-clock epoch of simulated time 0 (for daily/monthly budgets).

    >>> lab = RoutingLab([SimulatedProvider("gpt-4.1-mini", ttft_s=0.3, tokens_per_s=80)])  # doctest: +SKIP
    >>> lab.run(poisson(20, n=10_000), "cheapest").summary()                                   # doctest: +SKIP
    """

    def __init__(
        self,
        providers: Sequence[SimulatedProvider],
        *,
        breaker: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        budgets: Iterable[Budget] = (),
        timeout_s: float | None = 60.0,
        hedge_after_s: float | None = None,
        slo_s: float = 10.0,
        policy: Callable[..., bool] | None = None,
        start_wall: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    ) -> None:
        if not providers:
            raise ValidationError("a RoutingLab needs at least one provider profile")
        for p in cast(Sequence[Any], providers):  # Any: the check below names a wrong item, compiled or not
            if not isinstance(p, SimulatedProvider):
                raise ValidationError(
                    f"{p!r} is not a SimulatedProvider",
                    hint="the routing lab replays provider *profiles*; describe real ones with SimulatedProvider(...)",
                )
        check_call_options(retry, timeout_s, hedge_after_s)  # as the Router will, but when the lab is made
        check_seconds("slo_s", slo_s, positive=True)
        self.providers = list(providers)
        self.breaker = dict(breaker or {})
        self.retry = retry or RetryPolicy()
        self.budgets = list(budgets)
        self.timeout_s = timeout_s
        self.hedge_after_s = hedge_after_s
        self.slo_s = slo_s
        self.policy = policy
        self.start_wall = start_wall

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (to Dask workers, see :mod:`lumina_lab.sim.sweep`) as its constructor's arguments, which
        also works when the engine is compiled."""
        return (
            _rebuild_lab,
            (
                self.providers,
                {
                    "breaker": self.breaker,
                    "retry": self.retry,
                    "budgets": self.budgets,
                    "timeout_s": self.timeout_s,
                    "hedge_after_s": self.hedge_after_s,
                    "slo_s": self.slo_s,
                    "policy": self.policy,
                    "start_wall": self.start_wall,
                },
            ),
        )

    # ------------------------------------------------------------------ building one run
    def build(self, strategy: Strategy | str, *, seed: int = 0) -> tuple[Router, ManualClock]:
        """A fresh router over fresh copies of the fleet, all on one new :class:`ManualClock`."""
        clock = LabClock(self.start_wall)
        fleet = []
        for i, p in enumerate(self.providers):
            q = p.clone(clock)
            q.rng.seed(seed * 1_000_003 + i)
            fleet.append(q)
        registry = ProviderRegistry(fleet, clock=clock, breaker=self.breaker)
        # one thread replays: no lock around reservations
        budgets = BudgetManager(self.budgets, wall=clock.wall, threadsafe=False) if self.budgets else None
        strat = copy.deepcopy(strategy) if isinstance(strategy, Strategy) else strategy_from_name(strategy)
        router = Router(
            registry,
            strat,
            budgets=budgets,
            policy=self.policy,
            retry=self.retry,
            timeout_s=self.timeout_s,
            hedge_after_s=self.hedge_after_s,
            clock=clock,
            seed=seed,
        )
        return router, clock

    # ------------------------------------------------------------------ replay
    def run(
        self,
        workload: Workload,
        strategy: Strategy | str = "cheapest",
        *,
        seed: int = 0,
        outages: Sequence[Incident] = (),
        stream: bool | float | Sequence[bool] | np.ndarray = False,
        progress: bool = False,
    ) -> SimResult:
        """Replay ``workload`` through ``strategy``; deterministic for a given ``seed``.

        Args:
            outages: the providers' scheduled incidents: :class:`Outage` (down; a ``(provider,
                start_s, end_s)`` tuple too) and :class:`Degradation` (slower, or failing more).
            stream: which requests are streamed (``Router.astream``): ``True`` all, a float in
                [0, 1] that share of them (drawn from ``seed``), or one flag per request.
        """
        if not isinstance(workload, Workload):
            raise ValidationError(
                f"workload is a {type(workload).__name__}, not a Workload",
                input=type(workload).__name__,
                hint="make one with poisson(rate, n=...), bursty(...), diurnal(...), read_workload(path) "
                "or workload_from_store(store)",
            )
        router, clock = self.build(strategy, seed=seed)
        mask = _stream_mask(stream, len(workload), seed)
        return _Engine(router, clock, workload, outages, progress, mask).run(self.slo_s)

    def compare(
        self,
        strategies: Mapping[str, Strategy | str] | Sequence[str],
        workload: Workload,
        *,
        seed: int = 0,
        outages: Sequence[Incident] = (),
        stream: bool | float | Sequence[bool] | np.ndarray = False,
        progress: bool = False,
        plot: bool = False,
    ) -> Any:
        """Summaries of several strategies on the same workload, side by side (one row each).

        With ``plot=True`` returns ``(table, results, layout)``: the table, the
        :class:`SimResult` per strategy, and a holoviews layout (Pareto front, latency
        CDF, provider share) from :mod:`lumina_lab.sim.plots`.
        """
        import pandas as pd

        items = strategies.items() if isinstance(strategies, Mapping) else ((s, s) for s in strategies)
        rows = []
        results: dict[str, SimResult] = {}
        for name, strategy in items:
            result = self.run(workload, strategy, seed=seed, outages=outages, stream=stream, progress=progress)
            summary = result.summary()
            summary["strategy"] = name
            rows.append(summary)
            if plot:
                results[name] = result
        table = pd.DataFrame(rows).set_index("strategy")
        if not plot:
            return table
        from .plots import overview

        return table, results, overview(table, results)


def _rebuild_lab(providers: list[SimulatedProvider], options: dict[str, Any]) -> RoutingLab:
    return RoutingLab(providers, **options)


def _stream_mask(stream: Any, n: int, seed: int) -> list[bool] | None:
    """One flag per request (None: nothing streamed)."""
    if stream is None or stream is False:
        return None
    if stream is True:
        return [True] * n
    if isinstance(stream, (int, float)) and not isinstance(stream, bool):
        if not 0.0 <= stream <= 1.0:
            raise ValidationError(f"stream={stream!r}: a share must be in [0, 1]", input=stream)
        if stream == 0:
            return None
        rng = np.random.default_rng([seed, 0x5EED])
        return (rng.random(n) < stream).tolist()
    flags = np.asarray(stream, dtype=bool)
    if flags.shape != (n,):
        raise ValidationError(
            f"stream= has {flags.size} flags for {n} requests", hint="pass True, a share in [0, 1], or one flag each"
        )
    return flags.tolist() if flags.any() else None


class _Engine:
    """The event loop.  Hot path: one arrival, one or more dispatches and completions per request.

    A replay with neither hedging nor a cascade nor streams runs :meth:`_loop_plain`; any of
    those runs :meth:`_loop_all`, which takes every kind of request and event.  Speed notes for
    the plain loop (the router's steps themselves are called unchanged):

    * the first dispatch of a request and the completion of a successful call are written
      out in the loop (the general cases — queueing, refusals, retries, fallbacks — are
      methods), with what they use bound to locals once per run;
    * heap entries are ``(time, seq, kind, payload)`` with the :class:`_Ctx` itself as
      the payload of completions and retries (no per-event payload tuple); a first
      attempt that will answer (most requests) needs no :class:`_Ctx` at all: its
      completion (``_ANSWER``) carries ``(call, sample, duration, request number,
      arrival)``, and a context is made only for a call that fails, queues or is refused;
    * arrivals are merged from a plain list rather than pushed on the heap, and read
      from Python lists rather than numpy (see :meth:`Workload.request_factory`);
    * simulated time is written straight into the engine's own ``ManualClock``: the
      engine never sleeps on it, so :meth:`ManualClock.set` would only add a call
      and a check per event;
    * when the strategy has no ``on_result`` hook, a success is accounted with
      :meth:`Router.account_success` and no response object is built.
    """

    def __init__(
        self,
        router: Router,
        clock: ManualClock,
        workload: Workload,
        outages: Sequence[Any],  # Outage, Degradation or (provider, start_s, end_s): see run()
        progress: bool,
        stream: list[bool] | None = None,
    ) -> None:
        self.router = router
        self.clock = clock
        self.workload = workload
        self.registry = router.registry
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.rows: list[tuple[Any, ...]] = []
        self.waiting: dict[ProviderState, deque[Any]] = {}
        self.timeout = router.timeout_s
        self.progress = progress
        self.stream = stream
        strategy = router.strategy
        self.cascade: Cascade | None = strategy if isinstance(strategy, Cascade) else None
        self.hedge_after = router.hedge_after_s
        self.degradations: dict[str, list[Degradation]] = {}  # provider id -> those in effect now
        incident: Any  # an Outage, a Degradation, or a (provider, start_s, end_s) tuple
        for incident in outages:
            if isinstance(incident, Degradation):
                d = incident
                if d.provider not in self.registry:
                    raise ValidationError(f"degradation names unknown provider {d.provider!r}", input=d.provider)
                provider = self.registry[d.provider].provider
                check_degradation(1.0, d.error_rate, cast(SimulatedProvider, provider).timeout_rate, owner=f"{d}: ")
                self._push(d.start_s, _DEGRADE, (d, True))
                self._push(d.end_s, _DEGRADE, (d, False))
                continue
            o = Outage.coerce(incident)
            if o.provider not in self.registry:
                raise ValidationError(f"outage names unknown provider {o.provider!r}", input=o.provider)
            self._push(o.start_s, _TOGGLE, (o.provider, True))
            self._push(o.end_s, _TOGGLE, (o.provider, False))
        # bound once: these run once or more per request
        self._begin_call = router.begin_call
        self._finish_call = router.finish_call
        self._account_success = router.account_success
        self._wants_results = router.wants_results
        self._fail_call = router.fail_call
        self._rank = router.rank

    def _push(self, t: float, kind: int, obj: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, obj))

    def _degrade(self, event: tuple[Degradation, bool]) -> None:
        """A degradation starts or ends: its provider runs under those in effect now (or its profile)."""
        d, starts = event
        active = self.degradations.setdefault(d.provider, [])
        if starts:
            active.append(d)
        else:
            active.remove(d)
        provider = cast(SimulatedProvider, self.registry[d.provider].provider)
        if not active:
            provider.restore()
            return
        rates = [x.error_rate for x in active if x.error_rate is not None]
        provider.degrade(math.prod(x.latency_factor for x in active), max(rates) if rates else None)

    def run(self, slo_s: float) -> SimResult:
        wl = self.workload
        arrivals = wl.arrival_s.tolist()
        make_request = wl.request_factory()
        plain = self.stream is None and self.cascade is None and self.hedge_after is None
        # A replay allocates several short-lived objects per request, none of them in reference
        # cycles; the cyclic collector would only rescan the growing pile of live ones (about 5%
        # of the run).  Reference counting still frees everything at once; the collector is
        # switched back on (if it was on) when the replay ends.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            wall0 = time.perf_counter()
            (self._loop_plain if plain else self._loop_all)(arrivals, make_request)
            wall_s = time.perf_counter() - wall0
        finally:
            if gc_was_enabled:
                gc.enable()
        strategy = self.router.strategy.name
        return SimResult(self.rows, strategy=strategy, workload=wl.name, wall_s=wall_s, slo_s=slo_s, router=self.router)

    def _progress(self, n: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=n, desc="replaying", unit="req", leave=False)

    # ------------------------------------------------------------------ the plain loop
    def _loop_plain(self, arrivals: list[float], make_request: Callable[[int], ChatRequest]) -> None:
        n = len(arrivals)
        heap = self.heap
        heappush, heappop = heapq.heappush, heapq.heappop
        seq = self.seq
        clock = self.clock
        router = self.router  # its steps are called on it, not bound to locals: compiled, that is a native call
        wants_results = self._wants_results
        rows = self.rows
        waiting = self.waiting
        default_timeout = self.timeout
        registry = self.registry
        call: Call
        s: Sample
        state: ProviderState
        request: ChatRequest
        ctx: Any
        i = 0
        bar = self._progress(n)
        tick = 1000 if bar is not None else n + 1
        while i < n or heap:
            if i < n and (not heap or arrivals[i] < heap[0][0]):  # timed events first on ties
                t = arrivals[i]
                clock._now = t  # arrivals ascend and no event is due before t: time never goes back
                request = make_request(i)
                ranked = router.rank(request)
                i += 1
                if i == tick:
                    bar.update(1000)  # type: ignore[union-attr]
                    tick += 1000
                if not ranked:
                    self._finish_failed(_Ctx(i - 1, request, t, ranked), "NoProviderAvailable")
                    continue
                # _dispatch(ctx) written out for the first-ranked provider when it has a free slot
                state = ranked[0]
                if state.stats.inflight >= state.slot_cap:
                    self._dispatch(_Ctx(i - 1, request, t, ranked))  # queues it
                    continue
                try:
                    call = router.begin_call(state, request, 1)
                except (CircuitOpen, BudgetExceeded) as exc:
                    ctx = _Ctx(i - 1, request, t, ranked)
                    self._refused(ctx, exc)
                    self._dispatch(ctx)
                    continue
                s = cast(SimulatedProvider, state.provider).sample(request)
                timeout = request.timeout_s
                if timeout is None:
                    timeout = default_timeout
                if s.error is None:
                    duration = s.duration_s
                    if timeout is None or duration <= timeout:
                        # the usual case: it will answer.  No context object: the completion
                        # needs only the call, the draw and the request's number and arrival
                        heappush(heap, (t + duration, next(seq), _ANSWER, (call, s, duration, i - 1, t)))
                        continue
                    error = None
                else:
                    duration = s.fail_after_s
                    error = s.error
                if timeout is not None and duration > timeout:
                    duration = timeout
                    error = ProviderTimeout(f"{state.id}: no answer within {timeout}s", provider=state.id)
                ctx = _Ctx(i - 1, request, t, ranked)
                ctx.call = call
                ctx.sample = s
                ctx.error = error
                ctx.duration = duration
                heappush(heap, (t + duration, next(seq), _DONE, ctx))
                continue
            t, _, kind, ctx = heappop(heap)
            if t > clock._now:
                clock._now = t
            if kind == _ANSWER:  # a first attempt answered: _done() written out, with no context
                call, s, duration, req_no, arrival = ctx
                state = call.state
                request = call.request
                if wants_results:  # the strategy reads the answer: build it, as the live path does
                    response = cast(SimulatedProvider, state.provider).response(request, s, duration)
                    router.finish_call(call, response)
                    cost = response.cost_usd
                else:  # the same accounting without a response nobody reads; state.cost() written out
                    cost = (s.input_tokens * state.input_per_m + s.output_tokens * state.output_per_m) / 1e6
                    router.account_success(call, duration, s.ttft_s, cost)
                rows.append(
                    (
                        req_no,
                        arrival,
                        t,
                        t - arrival,
                        s.ttft_s + (t - duration - arrival),
                        True,
                        state.id,
                        1,
                        1,
                        None,
                        cost,
                        s.input_tokens,
                        s.output_tokens,
                        s.quality_ok,
                        request.project,
                        request.task,
                        False,
                        False,
                        0,
                        1,
                    )
                )
                if waiting:  # a slot of ``state`` is free: the first request queued for it goes
                    self._wake(state)
            elif kind == _DONE:
                self._done(ctx)
            elif kind == _RETRY:
                self._dispatch(ctx)
            elif kind == _TOGGLE:
                pid, down = ctx
                registry[pid].provider.down = down  # type: ignore[attr-defined]
            else:
                self._degrade(ctx)
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ the general loop
    def _loop_all(self, arrivals: list[float], make_request: Callable[[int], ChatRequest]) -> None:
        """Every kind of request (plain, hedged, cascaded, streamed) and event."""
        n = len(arrivals)
        heap = self.heap
        heappop = heapq.heappop
        clock = self.clock
        rank = self._rank
        stream = self.stream
        cascade = self.cascade
        hedge = self.hedge_after
        i = 0
        bar = self._progress(n)
        while i < n or heap:
            if i < n and (not heap or arrivals[i] < heap[0][0]):
                t = arrivals[i]
                clock._now = t
                request = make_request(i)
                ranked = rank(request)
                streamed = stream is not None and stream[i]
                if not ranked:  # nobody can take it now (a streamed request's row still says stream)
                    self._failed_row(i, request, t, 1, 0, 0, True, "NoProviderAvailable", stream=streamed)
                elif streamed:
                    self._stream_go(_Stream(i, request, t, ranked))
                elif cascade is not None:
                    _Cascade(i, request, t, ranked, cascade.max_steps).start(self)
                elif hedge is not None and len(ranked) > 1:
                    _Hedge(i, request, t, ranked).start(self)
                else:
                    self._dispatch(_Ctx(i, request, t, ranked))
                i += 1
                if bar is not None and i % 1000 == 0:
                    bar.update(1000)
                continue
            t, _, kind, obj = heappop(heap)
            if t > clock._now:
                clock._now = t
            if kind == _DONE:
                self._done(obj)
            elif kind == _RETRY:
                self._dispatch(obj)
            elif kind == _LEG_DONE:
                self._leg_done(obj)
            elif kind == _LEG_RETRY:
                if obj.alive:
                    self._leg_go(obj)
            elif kind == _HEDGE:
                obj.fire(self)
            elif kind == _STREAM:
                self._stream_done(obj)
            elif kind == _TOGGLE:
                pid, down = obj
                self.registry[pid].provider.down = down  # type: ignore[attr-defined]
            else:
                self._degrade(obj)
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ plain steps (Router._fallback_chain)
    def _outcome(self, state: ProviderState, request: ChatRequest, s: Sample) -> tuple[float, ProviderError | None]:
        """How long the drawn call takes and how it ends, under the call timeout (as ``Router._timed``)."""
        timeout = request.timeout_s if request.timeout_s is not None else self.timeout
        if s.error is not None:
            duration, error = s.fail_after_s, s.error
        else:
            duration, error = s.duration_s, None
        if timeout is not None and duration > timeout:
            duration = timeout
            error = ProviderTimeout(f"{state.id}: no answer within {timeout}s", provider=state.id)
        return duration, error

    @staticmethod
    def _refused(ctx: _Ctx, exc: BaseException) -> None:
        """``begin_call`` refused (breaker or budget): give up on this provider."""
        ctx.errors += 1
        if not isinstance(exc, BudgetExceeded):
            ctx.all_budget = False
        ctx.tried += 1
        ctx.idx += 1
        ctx.attempt = 1

    def _dispatch(self, ctx: _Ctx) -> None:
        request = ctx.request
        ranked = ctx.ranked
        n = len(ranked)
        while ctx.idx < n:
            state = ranked[ctx.idx]
            if state.stats.inflight >= state.slot_cap:
                queue = self.waiting.get(state)
                if queue is None:
                    queue = self.waiting[state] = deque()
                queue.append(ctx)  # FIFO, like the live router's slots
                return
            try:
                call = self._begin_call(state, request, ctx.attempt)
            except (CircuitOpen, BudgetExceeded) as exc:
                self._refused(ctx, exc)
                continue
            s = state.provider.sample(request)  # type: ignore[attr-defined]
            duration, error = self._outcome(state, request, s)
            ctx.call = call
            ctx.sample = s
            ctx.error = error
            ctx.duration = duration
            heapq.heappush(self.heap, (self.clock._now + duration, next(self.seq), _DONE, ctx))
            return
        self._finish_failed(ctx, None)

    def _done(self, ctx: _Ctx) -> None:
        """A call of the plain path ended (the plain loop writes the success case out itself)."""
        if ctx.error is not None:
            self._failed(ctx)
            return
        call = ctx.call
        assert call is not None
        state = call.state
        s = ctx.sample
        assert s is not None
        duration = ctx.duration
        request = ctx.request
        if self._wants_results:
            response = state.provider.response(request, s, duration)  # type: ignore[attr-defined]
            self._finish_call(call, response)
            cost = response.cost_usd
        else:
            cost = state.cost(s.input_tokens, s.output_tokens)
            self._account_success(call, duration, s.ttft_s, cost)
        now = self.clock._now
        arrival = ctx.arrival
        self.rows.append(
            (
                ctx.i,
                arrival,
                now,
                now - arrival,
                s.ttft_s + (now - duration - arrival),
                True,
                state.id,
                ctx.attempt,
                ctx.tried + 1,
                None,
                cost,
                s.input_tokens,
                s.output_tokens,
                s.quality_ok,
                request.project,
                request.task,
                False,
                False,
                0,
                1,
            )
        )
        if self.waiting:
            self._wake(state)

    def _failed(self, ctx: _Ctx) -> None:
        """A call of the plain path failed: retry it later, or fall back along the ranking."""
        call = ctx.call
        assert call is not None and ctx.error is not None
        state = call.state
        delay = self._fail_call(call, ctx.error)
        ctx.errors += 1
        ctx.all_budget = False
        if delay is not None:
            ctx.attempt += 1
            heapq.heappush(self.heap, (self.clock._now + delay, next(self.seq), _RETRY, ctx))
        else:
            ctx.tried += 1
            ctx.idx += 1
            ctx.attempt = 1
            self._dispatch(ctx)
        if self.waiting:  # a slot of ``state`` is free: the first request queued for it goes
            self._wake(state)

    def _wake(self, state: ProviderState) -> None:
        """A call on ``state`` ended: the first live request queued for one of its slots goes (``_wake``).

        If that request does not take the slot (its breaker or budget refuses it, and it moves
        on along its ranking), the next one in the queue gets it, as the live router passes a
        slot on (``_pass_slot_on``).
        """
        queue = self.waiting.get(state)
        stats = state.stats
        while queue:
            item = queue.popleft()
            kind = type(item)
            before = stats.inflight
            if kind is _Ctx:
                self._dispatch(item)
            elif kind is _Leg:
                if not item.alive:  # a hedge's loser, cancelled while it waited
                    continue
                self._leg_go(item)
            else:
                self._stream_go(item)
            if stats.inflight != before or stats.inflight >= state.slot_cap:
                return  # it took the slot (or queued again behind a full one)

    def _finish_failed(self, ctx: _Ctx, kind: str | None) -> None:
        self._failed_row(ctx.i, ctx.request, ctx.arrival, ctx.attempt, ctx.tried, ctx.errors, ctx.all_budget, kind)

    def _failed_row(
        self,
        i: int,
        request: ChatRequest,
        arrival: float,
        attempt: int,
        tried: int,
        errors: int,
        all_budget: bool,
        kind: str | None = None,
        *,
        stream: bool = False,
        failovers: int = 0,
    ) -> None:
        """An unanswered request; the error is what the live router raises (``Router._all_failed``)."""
        if kind is None:
            kind = "BudgetExceeded" if errors and all_budget else "NoProviderAvailable"
        now = self.clock._now
        self.rows.append(
            (
                i,
                arrival,
                now,
                now - arrival,
                float("nan"),
                False,
                None,
                attempt,
                tried,
                kind,
                0.0,
                0,
                0,
                False,
                request.project,
                request.task,
                False,
                stream,
                failovers,
                0,
            )
        )

    def _fall_back(self, owner: _Hedge, start: int, errors: list[BaseException]) -> None:
        """Hand a hedged request to the plain path (``_fallback_chain`` over ``ranked[start:]``)."""
        ctx = _Ctx(owner.i, owner.request, owner.arrival, owner.ranked)
        ctx.idx = start
        ctx.tried = start
        ctx.errors = len(errors)
        ctx.all_budget = all(isinstance(e, BudgetExceeded) for e in errors)
        self._dispatch(ctx)

    # ------------------------------------------------------------------ legs (Router._attempts)
    def _leg_go(self, leg: _Leg) -> None:
        """Start (or retry) a leg's call, or queue it for a slot."""
        state = leg.state
        if state.stats.inflight >= state.slot_cap:
            queue = self.waiting.get(state)
            if queue is None:
                queue = self.waiting[state] = deque()
            queue.append(leg)
            leg.phase = _QUEUED
            return
        request = leg.request
        try:
            call = self._begin_call(state, request, leg.attempt)
        except (CircuitOpen, BudgetExceeded) as exc:
            leg.phase = _OVER
            leg.owner.leg_failed(self, leg, exc)
            return
        s = state.provider.sample(request)  # type: ignore[attr-defined]
        duration, error = self._outcome(state, request, s)
        leg.call = call
        leg.sample = s
        leg.error = error
        leg.duration = duration
        leg.phase = _CALLING
        heapq.heappush(self.heap, (self.clock._now + duration, next(self.seq), _LEG_DONE, leg))

    def _leg_done(self, leg: _Leg) -> None:
        """A leg's call ended.

        Who goes first at that instant follows the live router.  A cascade's legs run in
        the request's own coroutine, which goes on to its next step (another provider's
        call) before a request queued for the freed slot runs.  A hedge's legs are tasks:
        the freed slot's next request runs one loop turn later, while ``Router._hedged``
        sees the outcome only after two or three (it then cancels the other call, or falls
        back), so a hedge hands the slot on first.
        """
        if not leg.alive:  # abandoned while in flight (its call was accounted then)
            return
        call = leg.call
        assert call is not None
        state = call.state
        error = leg.error
        owner = leg.owner
        if error is None:
            response = state.provider.response(leg.request, leg.sample, leg.duration)  # type: ignore[attr-defined]
            self._finish_call(call, response)
            leg.phase = _OVER
            if type(owner) is _Hedge:
                if self.waiting:
                    self._wake(state)
                owner.leg_succeeded(self, leg, response)
                return
            owner.leg_succeeded(self, leg, response)
        else:
            delay = self._fail_call(call, error)
            if delay is None:
                leg.phase = _OVER
                if type(owner) is _Hedge:
                    if self.waiting:
                        self._wake(state)
                    owner.leg_failed(self, leg, error)
                    return
                owner.leg_failed(self, leg, error)
            else:
                leg.attempt += 1
                leg.phase = _BACKOFF
                heapq.heappush(self.heap, (self.clock._now + delay, next(self.seq), _LEG_RETRY, leg))
        if self.waiting:
            self._wake(state)

    def _leg_cancel(self, leg: _Leg) -> None:
        """Cancel a leg (the losing side of a hedge): an in-flight call is abandoned, a pending retry dropped."""
        if not leg.alive:
            return
        leg.alive = False
        if leg.phase == _CALLING:
            assert leg.call is not None
            self.router.abandon_call(leg.call)
            if self.waiting:
                self._wake(leg.state)
        # _QUEUED: skipped when its turn comes; _BACKOFF: its retry event is ignored

    def _answered_row(
        self,
        owner: _Hedge | _Cascade,
        leg: _Leg,
        response: ChatResponse,
        *,
        tried: int,
        hedged: bool = False,
        cost: float | None = None,
        steps: int = 1,
        first: float | None = None,
    ) -> None:
        s = leg.sample
        assert s is not None
        now = self.clock._now
        arrival = owner.arrival
        if first is None:  # the answer's first token: its call started ``duration`` ago
            first = now - leg.duration + s.ttft_s
        request = owner.request
        self.rows.append(
            (
                owner.i,
                arrival,
                now,
                now - arrival,
                first - arrival,
                True,
                leg.state.id,
                response.attempts,
                tried,
                None,
                response.cost_usd if cost is None else cost,
                s.input_tokens,
                s.output_tokens,
                s.quality_ok,
                request.project,
                request.task,
                hedged,
                False,
                0,
                steps,
            )
        )

    # ------------------------------------------------------------------ streams (Router.astream)
    def _stream_go(self, sc: _Stream) -> None:
        """Start the stream on the next provider that takes it (or queue for a slot); fail if none is left."""
        ranked = sc.ranked
        request = sc.request
        n = len(ranked)
        while sc.idx < n:
            state = ranked[sc.idx]
            if state.stats.inflight >= state.slot_cap:
                queue = self.waiting.get(state)
                if queue is None:
                    queue = self.waiting[state] = deque()
                queue.append(sc)
                return
            try:
                call = self._begin_call(state, request, 1)
            except CircuitOpen:  # a refusing breaker is skipped silently
                sc.idx += 1
                continue
            except BudgetExceeded:
                sc.errors += 1
                sc.tried += 1
                sc.idx += 1
                continue
            req = request if not sc.received else _continuation(request, "".join(sc.received))
            ss: StreamSample = state.provider.stream_sample(req)  # type: ignore[attr-defined]
            start = self.clock._now
            timeout = request.timeout_s if request.timeout_s is not None else self.timeout
            ok = False
            chunks = 0
            t_first = start
            if ss.error is not None:
                wait = ss.fail_after_s
                end = start + (timeout if timeout is not None and wait > timeout else wait)
            elif timeout is not None and ss.ttft_s > timeout:  # no first chunk in time
                end = start + timeout
            else:
                t_first = start + ss.ttft_s
                per = ss.per_token_s
                stall = timeout is not None and per > timeout  # every later chunk waits ``per``
                k = ss.breaks_at
                n_out = ss.output_tokens
                if k is not None and not (k >= 2 and stall):  # cut when chunk k is asked for
                    chunks = k
                    end = t_first + (k - 1) * per
                elif (k is not None or n_out >= 2) and stall:  # times out waiting for chunk 1
                    chunks = 1
                    end = t_first + timeout  # type: ignore[operator]
                else:  # the whole answer; the final chunk follows the last word at once
                    chunks = n_out
                    end = t_first + (n_out - 1) * per
                    ok = True
            sc.call = call
            sc.sample = ss
            sc.req = req
            sc.ok = ok
            sc.chunks = chunks
            sc.t_first = t_first
            heapq.heappush(self.heap, (end, next(self.seq), _STREAM, sc))
            return
        self._failed_row(
            sc.i, request, sc.arrival, 1, sc.tried, sc.errors, sc.all_budget, stream=True, failovers=sc.failovers
        )

    def _stream_done(self, sc: _Stream) -> None:
        call = sc.call
        ss = sc.sample
        assert call is not None and ss is not None
        state = call.state
        provider: SimulatedProvider = state.provider  # type: ignore[assignment]
        now = self.clock._now
        if sc.ok:
            n_in = estimate_tokens(sc.req)  # the usage the live stream reports (the continuation's, after a failover)
            n_out = ss.output_tokens
            cost = provider.pricing.cost(n_in, n_out)
            start = call.started
            self.router.account_success(call, now - start, sc.t_first - start, cost)
            first = sc.first if sc.first is not None else sc.t_first
            request = sc.request
            arrival = sc.arrival
            self.rows.append(
                (
                    sc.i,
                    arrival,
                    now,
                    now - arrival,
                    first - arrival,
                    True,
                    state.id,
                    1,
                    sc.tried + 1,
                    None,
                    cost,
                    n_in,
                    n_out,
                    True,
                    request.project,
                    request.task,
                    False,
                    True,
                    sc.failovers,
                    1,
                )
            )
        else:
            self.router.account_failure(call)
            if sc.chunks:
                sc.received.extend(provider.stream_words(ss, sc.chunks))
                if sc.first is None:
                    sc.first = sc.t_first
            sc.errors += 1
            sc.all_budget = False
            sc.tried += 1
            sc.failovers += 1
            sc.idx += 1
            self._stream_go(sc)
        if self.waiting:
            self._wake(state)
