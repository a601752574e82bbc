"""Discrete-event replay of a workload through the *live* router in simulated time.

The engine owns a :class:`~lumina_lab.clock.ManualClock` shared by the
router, the breakers, the budgets' periods, the rate limiters and the
simulated providers.  It keeps a heap of timed events (arrivals, call
completions, retries) and, for each, runs the router's own synchronous
steps — :meth:`Router._plan`, :meth:`Router.begin_call`,
:meth:`Router.finish_call`, :meth:`Router.fail_call` — with the outcome of
each call drawn by :meth:`SimulatedProvider.sample`.  Nothing sleeps and no
asyncio task is created per request, so hours of traffic replay in seconds,
and the decisions are the live router's decisions.

Covered: capability filtering, every strategy's ranking and dispatch-time
state, policy vetoes, breakers (incl. half-open probes), budgets (reservation
at dispatch, settlement at completion), RPM/TPM limits, provider
``max_concurrency`` with FIFO queueing, per-call timeouts, retries with
backoff and ``Retry-After``, fallbacks, outages (``down`` toggled on a
schedule).  Not yet simulated: hedged requests, cascades and streaming
(they run live only).
"""

from __future__ import annotations

import copy
import gc
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clock import ManualClock
from ..errors import BudgetExceeded, CircuitOpen, ProviderTimeout, ValidationError
from ..providers import Budget, BudgetManager, ProviderRegistry, RetryPolicy, Router, SimulatedProvider
from ..providers.router import Call
from ..providers.simulated import Sample
from ..providers.strategies import Strategy, strategy_from_name
from .workloads import Workload

if TYPE_CHECKING:
    import pandas as pd

    from ..errors import ProviderError
    from ..providers import ChatRequest
    from ..providers.registry import ProviderState

__all__ = ["Outage", "RoutingLab", "SimResult"]

_ARRIVE, _DONE, _RETRY, _TOGGLE = 0, 1, 2, 3
COLUMNS = (
    "request",
    "arrival_s",
    "end_s",
    "latency_s",
    "ttft_s",
    "ok",
    "provider",
    "attempts",
    "tried",
    "error",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "quality_ok",
    "tenant",
    "task",
)


@dataclass(frozen=True)
class Outage:
    """Provider ``provider`` is down from ``start_s`` to ``end_s`` (simulated seconds)."""

    provider: str
    start_s: float
    end_s: float


class _Ctx:
    """One request in flight through the engine.

    Only counts are kept of the providers tried and the errors met (the result
    row needs the number tried, and whether every error was a budget refusal):
    two fewer lists per request.  The pending call's draw (``sample``, ``error``,
    ``duration``) lives here too, so a completion event is just the context.
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
        self.call: Call | None = None
        self.sample: Sample | None = None
        self.error: ProviderError | None = None
        self.duration = 0.0


class SimResult:
    """Per-request results of one replay, as a DataFrame, with summaries."""

    def __init__(self, rows: list[tuple[Any, ...]], *, strategy: str, workload: str, wall_s: float, slo_s: float):
        import pandas as pd

        self.frame: pd.DataFrame = pd.DataFrame.from_records(rows, columns=COLUMNS)
        self.strategy = strategy
        self.workload = workload
        self.wall_s = wall_s
        self.slo_s = slo_s

    @property
    def requests_per_wall_s(self) -> float:
        return len(self.frame) / self.wall_s if self.wall_s else float("nan")

    def summary(self) -> dict[str, Any]:
        """Cost, latency percentiles, TTFT, success rate, SLO violations and quality."""
        f = self.frame
        ok = f[f["ok"]]
        lat = ok["latency_s"]
        return {
            "strategy": self.strategy,
            "requests": len(f),
            "success_rate": float(f["ok"].mean()) if len(f) else float("nan"),
            "cost_usd": float(f["cost_usd"].sum()),
            "cost_per_1k_usd": float(f["cost_usd"].sum() / max(len(ok), 1) * 1000),
            "p50_s": float(lat.quantile(0.5)) if len(ok) else float("nan"),
            "p95_s": float(lat.quantile(0.95)) if len(ok) else float("nan"),
            "p99_s": float(lat.quantile(0.99)) if len(ok) else float("nan"),
            "ttft_mean_s": float(ok["ttft_s"].mean()) if len(ok) else float("nan"),
            "slo_violations": int((~f["ok"] | (f["latency_s"] > self.slo_s)).sum()),
            "quality": float(ok["quality_ok"].mean()) if len(ok) else float("nan"),
            "budget_stopped": int((f["error"] == "BudgetExceeded").sum()),
        }

    def share(self) -> pd.DataFrame:
        """Answered requests per provider."""
        f = self.frame[self.frame["ok"]]
        return f.groupby("provider").size().rename("requests").reset_index().sort_values("requests", ascending=False)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"SimResult({self.strategy!r} on {self.workload}: {s['requests']:,} requests, "
            f"success {s['success_rate']:.1%}, ${s['cost_usd']:.2f}, p95 {s['p95_s']:.2f}s; "
            f"replayed at {self.requests_per_wall_s:,.0f} requests/s)"
        )

    def _repr_html_(self) -> str:
        import pandas as pd

        return f"<p>{self!r}</p>" + pd.DataFrame([self.summary()]).to_html(index=False)


class RoutingLab:
    """Replays workloads through strategies against simulated provider profiles.

    Args:
        providers: the fleet (``SimulatedProvider`` profiles); each run uses fresh deep copies.
        breaker: options of every provider's circuit breaker.
        retry: retry policy of the router.
        budgets: budgets enforced during the replay (periods follow simulated time from ``start_wall``).
        timeout_s: per-call timeout.
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
        slo_s: float = 10.0,
        policy: Callable[..., bool] | None = None,
        start_wall: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    ) -> None:
        if not providers:
            raise ValidationError("a RoutingLab needs at least one provider profile")
        for p in providers:
            if not isinstance(p, SimulatedProvider):
                raise ValidationError(
                    f"{p!r} is not a SimulatedProvider",
                    hint="the routing lab replays provider *profiles*; describe real ones with SimulatedProvider(...)",
                )
        self.providers = list(providers)
        self.breaker = dict(breaker or {})
        self.retry = retry or RetryPolicy()
        self.budgets = list(budgets)
        self.timeout_s = timeout_s
        self.slo_s = slo_s
        self.policy = policy
        self.start_wall = start_wall

    # ------------------------------------------------------------------ building one run
    def build(self, strategy: Strategy | str, *, seed: int = 0) -> tuple[Router, ManualClock]:
        """A fresh router over fresh copies of the fleet, all on one new :class:`ManualClock`."""
        clock = ManualClock()
        fleet = []
        for i, p in enumerate(self.providers):
            q = copy.copy(p)
            q.__dict__.update({k: copy.deepcopy(v) for k, v in p.__dict__.items() if k not in ("clock",)})
            q.clock = clock
            q.rng.seed(seed * 1_000_003 + i)
            fleet.append(q)
        registry = ProviderRegistry(fleet, clock=clock, breaker=self.breaker)
        start = self.start_wall
        budgets = BudgetManager(self.budgets, wall=lambda: start + clock.now()) if self.budgets else None
        strat = copy.deepcopy(strategy) if isinstance(strategy, Strategy) else strategy_from_name(strategy)
        router = Router(
            registry,
            strat,
            budgets=budgets,
            policy=self.policy,
            retry=self.retry,
            timeout_s=self.timeout_s,
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
        outages: Sequence[Outage] = (),
        progress: bool = False,
    ) -> SimResult:
        """Replay ``workload`` through ``strategy``; deterministic for a given ``seed``."""
        router, clock = self.build(strategy, seed=seed)
        return _Engine(router, clock, workload, outages, progress).run(self.slo_s)

    def compare(
        self,
        strategies: Mapping[str, Strategy | str] | Sequence[str],
        workload: Workload,
        *,
        seed: int = 0,
        outages: Sequence[Outage] = (),
        progress: bool = False,
    ) -> pd.DataFrame:
        """Summaries of several strategies on the same workload, side by side (one row each)."""
        import pandas as pd

        items = strategies.items() if isinstance(strategies, Mapping) else ((s, s) for s in strategies)
        rows = []
        for name, strategy in items:
            summary = self.run(workload, strategy, seed=seed, outages=outages, progress=progress).summary()
            summary["strategy"] = name
            rows.append(summary)
        return pd.DataFrame(rows).set_index("strategy")


class _Engine:
    """The event loop.  Hot path: one arrival, one or more dispatches and completions per request.

    Speed notes (the router's steps themselves are called unchanged):

    * heap entries are ``(time, seq, kind, payload)`` with the :class:`_Ctx` itself as
      the payload of completions and retries (no per-event payload tuple);
    * arrivals are merged from a plain list rather than pushed on the heap, and read
      from Python lists rather than numpy (see :meth:`Workload.request_factory`);
    * simulated time is written straight into the engine's own ``ManualClock``: the
      engine never sleeps on it, so :meth:`ManualClock.set` would only add a call
      and a check per event;
    * frequently used bound methods are looked up once per run.
    """

    def __init__(
        self, router: Router, clock: ManualClock, workload: Workload, outages: Sequence[Outage], progress: bool
    ) -> None:
        self.router = router
        self.clock = clock
        self.workload = workload
        self.registry = router.registry
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.rows: list[tuple[Any, ...]] = []
        self.waiting: dict[ProviderState, deque[_Ctx]] = {}
        self.timeout = router.timeout_s
        self.progress = progress
        for o in outages:
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
        self._plan = router._plan

    def _push(self, t: float, kind: int, obj: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, obj))

    def run(self, slo_s: float) -> SimResult:
        wl = self.workload
        arrivals = wl.arrival_s.tolist()
        make_request = wl.request_factory()
        # A replay allocates several short-lived objects per request, none of them in reference
        # cycles; the cyclic collector would only rescan the growing pile of live ones (about 5%
        # of the run).  Reference counting still frees everything at once; the collector is
        # switched back on (if it was on) when the replay ends.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            wall0 = time.perf_counter()
            self._loop(arrivals, make_request)
            wall_s = time.perf_counter() - wall0
        finally:
            if gc_was_enabled:
                gc.enable()
        strategy = self.router.strategy.name
        return SimResult(self.rows, strategy=strategy, workload=wl.name, wall_s=wall_s, slo_s=slo_s)

    def _loop(self, arrivals: list[float], make_request: Callable[[int], ChatRequest]) -> None:
        n = len(arrivals)
        heap = self.heap
        heappop = heapq.heappop
        clock = self.clock
        plan = self._plan
        dispatch = self._dispatch
        done = self._done
        i = 0
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="replaying", unit="req", leave=False)
        while i < n or heap:
            if i < n and (not heap or arrivals[i] < heap[0][0]):  # timed events first on ties
                t = arrivals[i]
                clock._now = t  # arrivals ascend and no event is due before t: time never goes back
                request = make_request(i)
                ranked, _ = plan(request)
                ctx = _Ctx(i, request, t, ranked)
                if ranked:
                    dispatch(ctx)
                else:
                    self._finish_failed(ctx, "NoProviderAvailable")
                i += 1
                if bar is not None and i % 1000 == 0:
                    bar.update(1000)
                continue
            t, _, kind, obj = heappop(heap)
            if t > clock._now:
                clock._now = t
            if kind == _DONE:
                done(obj)
            elif kind == _RETRY:
                dispatch(obj)
            else:
                pid, down = obj
                self.registry[pid].provider.down = down  # type: ignore[attr-defined]
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ steps
    def _dispatch(self, ctx: _Ctx) -> None:
        request = ctx.request
        ranked = ctx.ranked
        n = len(ranked)
        while ctx.idx < n:
            state = ranked[ctx.idx]
            cap = state.max_concurrency
            if cap is not None and state.stats.inflight >= cap:
                queue = self.waiting.get(state)
                if queue is None:
                    queue = self.waiting[state] = deque()
                queue.append(ctx)  # FIFO, like the live router's slots
                return
            try:
                call = self._begin_call(state, request, ctx.attempt)
            except (CircuitOpen, BudgetExceeded) as exc:
                ctx.errors += 1
                if not isinstance(exc, BudgetExceeded):
                    ctx.all_budget = False
                ctx.tried += 1
                ctx.idx += 1
                ctx.attempt = 1
                continue
            provider: SimulatedProvider = state.provider  # type: ignore[assignment]
            s = provider.sample(request)
            timeout = request.timeout_s if request.timeout_s is not None else self.timeout
            if s.error is not None:
                duration, error = s.fail_after_s, s.error
            else:
                duration, error = s.duration_s, None
            if timeout is not None and duration > timeout:
                duration = timeout
                error = ProviderTimeout(f"{state.id}: no answer within {timeout}s", provider=state.id)
            ctx.call = call
            ctx.sample = s
            ctx.error = error
            ctx.duration = duration
            heapq.heappush(self.heap, (self.clock._now + duration, next(self.seq), _DONE, ctx))
            return
        self._finish_failed(ctx, None)

    def _done(self, ctx: _Ctx) -> None:
        call = ctx.call
        assert call is not None
        state = call.state
        error = ctx.error
        if error is None:
            s = ctx.sample
            assert s is not None
            duration = ctx.duration
            request = ctx.request
            if self._wants_results:  # the strategy reads the answer: build it, as the live path does
                response = state.provider.response(request, s, duration)  # type: ignore[attr-defined]
                self._finish_call(call, response)
                cost = response.cost_usd
            else:  # the same accounting without a response nobody reads
                cost = state.cost(s.input_tokens, s.output_tokens)
                self._account_success(call, duration, s.ttft_s, cost)
            ctx.tried += 1
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
                    ctx.tried,
                    None,
                    cost,
                    s.input_tokens,
                    s.output_tokens,
                    s.quality_ok,
                    request.project,
                    request.task,
                )
            )
        else:
            delay = self._fail_call(call, error)
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
            queue = self.waiting.get(state)
            if queue:
                self._dispatch(queue.popleft())

    def _finish_failed(self, ctx: _Ctx, kind: str | None) -> None:
        if kind is None:
            kind = "BudgetExceeded" if ctx.errors and ctx.all_budget else "NoProviderAvailable"
        now = self.clock._now
        self.rows.append(
            (
                ctx.i,
                ctx.arrival,
                now,
                now - ctx.arrival,
                float("nan"),
                False,
                None,
                ctx.attempt,
                ctx.tried,
                kind,
                0.0,
                0,
                0,
                False,
                ctx.request.project,
                ctx.request.task,
            )
        )
