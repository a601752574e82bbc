"""The router: capability filter, policy veto, breakers, a strategy, then resilient execution.

For one request the router

1. takes the registry's candidates for the request's capabilities,
2. drops providers vetoed by the policy hook, with an open breaker, unhealthy,
   or at their concurrency limit (each with a reason, reported in the
   ``provider.request.routed`` event and in errors),
3. ranks the rest with the strategy (selection state updated at dispatch),
4. calls the first under a budget reservation, retrying per :class:`RetryPolicy`
   (honouring ``Retry-After``) and falling back along the ranking; optionally
   hedges (a second request after a delay, first answer wins, the other is
   cancelled); streams fail over mid-answer to the next provider.

Every step is an event on the bus, built only when someone subscribes to it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, Final

from ..clock import WALL, Clock, ManualClock, WallClock
from ..errors import (
    BudgetExceeded,
    CircuitOpen,
    NoProviderAvailable,
    PolicyDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ValidationError,
)
from ..events import Event
from . import events as ev
from .cost import DEFAULT_OUTPUT_TOKENS, BudgetCrossing, BudgetManager, Reservation, estimate_tokens, predict_cost
from .messages import ChatRequest, ChatResponse, Message, StreamChunk
from .registry import ProviderRegistry, ProviderState
from .resilience import RetryPolicy, check_seconds
from .strategies import Cascade, Strategy, strategy_from_name

__all__ = ["PolicyHook", "RouteDecision", "Router"]

#: ``policy(request, provider_state) -> bool`` (False or raising ``PolicyDenied`` vetoes the provider).
PolicyHook = Callable[[ChatRequest, ProviderState], bool]
_READ_NOW: Final = attrgetter("_now")  # ManualClock.now() without the call
_CONTINUE = "Continue exactly where the previous answer stopped. Do not repeat what was already said."


@dataclass(slots=True, init=False)
class Call:
    """One admitted call to one provider (see :meth:`Router.begin_call`)."""

    state: ProviderState
    request: ChatRequest
    attempt: int
    reservation: Reservation | None
    probe: bool
    call_no: int
    started: float

    def __init__(  # written out: a compiled build compiles it (dataclass-made ones stay interpreted)
        self,
        state: ProviderState,
        request: ChatRequest,
        attempt: int,
        reservation: Reservation | None,
        probe: bool,
        call_no: int,
        started: float,
    ) -> None:
        self.state = state
        self.request = request
        self.attempt = attempt
        self.reservation = reservation
        self.probe = probe
        self.call_no = call_no
        self.started = started


@dataclass
class RouteDecision:
    """Where a request would go, and why the others would not."""

    request_id: str
    strategy: str
    ranked: list[str]
    excluded: dict[str, str] = field(default_factory=dict)
    predicted_cost_usd: dict[str, float] = field(default_factory=dict)

    @property
    def chosen(self) -> str | None:
        return self.ranked[0] if self.ranked else None

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{p}</td><td>${self.predicted_cost_usd.get(p, 0):.6f}</td></tr>"
            for i, p in enumerate(self.ranked)
        )
        ex = "".join(f"<li>{p}: {why}</li>" for p, why in self.excluded.items())
        return (
            f"<b>{self.strategy}</b> → <b>{self.chosen}</b><table><tr><th>#</th><th>provider</th>"
            f"<th>predicted cost</th></tr>{rows}</table>" + (f"excluded:<ul>{ex}</ul>" if ex else "")
        )


class Router:
    """Routes chat requests across a :class:`ProviderRegistry`.

    Args:
        registry: the providers.
        strategy: a :class:`Strategy` or its name (``cheapest``, ``fastest``,
            ``weighted``, ``least_busy``, ``round_robin``, ``cascade``, ``bandit``).
        bus: where events go (optional).
        budgets: a :class:`BudgetManager` enforced before each call.
        policy: veto hook ``policy(request, state) -> bool``.
        retry: retries per provider before falling back.
        timeout_s: per-call timeout (``request.timeout_s`` overrides).
        hedge_after_s: launch a second provider if the first has not answered by then.
        clock: time source (breakers, retries, timeouts, hedging).
        seed: seeds retry jitter.
    """

    def __init__(
        self,
        registry: ProviderRegistry,
        strategy: Strategy | str = "cheapest",
        *,
        bus: Any = None,
        budgets: BudgetManager | None = None,
        policy: PolicyHook | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = 60.0,
        hedge_after_s: float | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        check_call_options(retry, timeout_s, hedge_after_s)
        self.registry = registry
        self.strategy = strategy_from_name(strategy)  # a property: also looks up its hooks once
        self.bus = bus
        self.budgets = budgets
        self.policy = policy
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.hedge_after_s = hedge_after_s
        self.clock = clock or registry.clock or WALL  # a property: also sets _wall_clock and _now
        self.rng = random.Random(seed)
        self.requests = 0
        if bus is not None and registry.on_breaker_change is None:
            registry.on_breaker_change = self._breaker_changed

    @property
    def clock(self) -> Clock:
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._clock = clock
        self._wall_clock = isinstance(clock, WallClock)
        # clock.now, or for a ManualClock (the routing lab's) a C-level read of its time: no
        # Python frame in begin_call, once per call
        self._now: Callable[[], float] = (
            partial(_READ_NOW, clock) if getattr(type(clock), "now", None) is ManualClock.now else clock.now
        )

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @strategy.setter
    def strategy(self, strategy: Strategy | str) -> None:
        strategy = strategy_from_name(strategy)
        self._strategy = strategy
        # the dispatch and result hooks, or None where the strategy keeps the base class's no-op
        # (most do): the call steps then skip a Python call per request
        self._on_dispatch = _hook(strategy, "on_dispatch")
        self._on_result = _hook(strategy, "on_result")

    # ------------------------------------------------------------------ events
    def _wants(self, cls: type[Event]) -> bool:
        bus = self.bus
        return bus is not None and bus.has_subscribers(cls.event_type)

    async def _emit(self, event: Event) -> None:
        await self.bus.publish(event)

    def _breaker_changed(self, provider: str, old: str, new: str, rate: float) -> None:
        if self._wants(ev.BreakerChanged):
            self._emit_nowait(ev.BreakerChanged(provider=provider, old=old, new=new, failure_rate=rate))

    # ------------------------------------------------------------------ planning
    def plan(self, request: ChatRequest) -> RouteDecision:
        """Rank the providers for ``request`` without calling any (and without dispatching)."""
        ranked, excluded = self._plan(request)
        return RouteDecision(
            request.id,
            self.strategy.name,
            [s.id for s in ranked],
            excluded,
            {s.id: predict_cost(s.provider.pricing, request) for s in ranked},
        )

    def _plan(self, request: ChatRequest) -> tuple[list[ProviderState], dict[str, str]]:
        """The ranking for ``request`` and why the providers left out are (provider id -> reason)."""
        candidates = self._candidates(request)
        ranked = self._quick_rank(candidates, request)
        if ranked is not None:
            return ranked, {}
        return self._full_plan(candidates, request)

    def rank(self, request: ChatRequest) -> list[ProviderState]:
        """The providers that can take ``request`` now, best first (:meth:`plan` without the reasons;
        one call per request in a routing-lab replay)."""
        candidates = self._candidates(request)
        ranked = self._quick_rank(candidates, request)
        return ranked if ranked is not None else self._full_plan(candidates, request)[0]

    def _candidates(self, request: ChatRequest) -> tuple[ProviderState, ...]:
        if not isinstance(request, ChatRequest):
            raise ValidationError(
                f"route a ChatRequest, not {type(request).__name__}",
                input=request,
                hint="ChatRequest('your prompt', needs={'code'})",
            )
        return self.registry.candidates(request)

    def _quick_rank(self, candidates: tuple[ProviderState, ...], request: ChatRequest) -> list[ProviderState] | None:
        """The usual case: no policy, every candidate healthy, its breaker closed, no rate limiter, a free
        slot.  Then nothing is excluded and the ranking is the one :meth:`_full_plan` would make; None
        when that pass must run (and word the reasons)."""
        if self.policy is not None:
            return None
        for s in candidates:
            if s.stats.inflight >= s.slot_cap or s.breaker.state != "closed":
                return None
            if not s.healthy or s.limiter is not None:
                return None
        return self._strategy.rank(candidates, request)

    def _full_plan(
        self, candidates: tuple[ProviderState, ...], request: ChatRequest
    ) -> tuple[list[ProviderState], dict[str, str]]:
        policy = self.policy
        excluded: dict[str, str] = {}
        usable: list[ProviderState] = []
        saturated: list[ProviderState] = []
        n_tokens: int | None = None  # estimated once, and only if a provider has a rate limiter
        for s in candidates:
            if not s.healthy:
                excluded[s.id] = f"unhealthy ({s.last_probe_error})"
                continue
            breaker = s.breaker
            # a closed breaker is always available: test that inline, call available() only otherwise
            if breaker.state != "closed" and not breaker.available():
                excluded[s.id] = f"circuit {breaker.state}"
                continue
            if policy is not None:
                try:
                    allowed = policy(request, s)
                except PolicyDenied as exc:
                    allowed, reason = False, str(exc)
                else:
                    reason = "denied by policy"
                if not allowed:
                    excluded[s.id] = reason
                    continue
            limiter = s.limiter
            if limiter is not None:
                if n_tokens is None:
                    n_tokens = estimate_tokens(request)
                if not limiter.available(n_tokens):
                    excluded[s.id] = f"at its rate limit (rpm={limiter.rpm}, tpm={limiter.tpm})"
                    continue
            cap = s.max_concurrency
            if cap is not None and s.stats.inflight >= cap:
                saturated.append(s)
                continue
            usable.append(s)
        if saturated:
            if not usable:  # everyone is busy: queue on the least loaded
                usable = sorted(saturated, key=lambda s: s.stats.inflight / (s.max_concurrency or 1))
            else:
                for s in saturated:
                    excluded[s.id] = f"at max_concurrency ({s.max_concurrency})"
        return self.strategy.rank(usable, request), excluded

    def _no_provider(self, request: ChatRequest, excluded: dict[str, str]) -> NoProviderAvailable:
        needs = request.needs if request.needs else "chat"
        if not self.registry.candidates(request):
            return NoProviderAvailable(
                f"no registered provider offers {sorted(needs) if not isinstance(needs, str) else needs}"
                f" with a context window >= {request.min_context}"
                + (f" and language {request.language!r}" if request.language else "")
                + (f" matching model {request.model!r}" if request.model else ""),
                hint=f"registered: {[s.id for s in self.registry]}; relax the request or register a provider",
            )
        why = "; ".join(f"{p}: {r}" for p, r in excluded.items())
        return NoProviderAvailable(f"no provider can take request {request.id} now ({why})")

    # ------------------------------------------------------------------ invoke
    def _route(
        self, request: ChatRequest | str, fields: dict[str, Any]
    ) -> tuple[ChatRequest, list[ProviderState], dict[str, str]]:
        """The request (made from a prompt and fields if need be), counted, with its ranking and exclusions;
        raises :class:`NoProviderAvailable` when nobody can take it (a whole answer and a stream start so)."""
        if isinstance(request, str):
            request = ChatRequest.of(request, **fields)
        self.requests += 1
        ranked, excluded = self._plan(request)
        if not ranked:
            raise self._no_provider(request, excluded)
        return request, ranked, excluded

    async def ainvoke(self, request: ChatRequest | str, **fields: Any) -> ChatResponse:
        """Route and answer ``request`` (a :class:`ChatRequest`, or a prompt plus ChatRequest fields)."""
        request, ranked, excluded = self._route(request, fields)
        if self._wants(ev.RequestRouted):
            await self._emit(
                ev.RequestRouted(
                    request_id=request.id,
                    strategy=self.strategy.name,
                    chosen=ranked[0].id,
                    candidates=[s.id for s in ranked],
                    excluded=excluded,
                    principal=request.principal,
                    project=request.project,
                    predicted_cost_usd=predict_cost(ranked[0].provider.pricing, request),
                )
            )
        if isinstance(self.strategy, Cascade):
            return await self._cascade(request, ranked)
        if self.hedge_after_s is not None and len(ranked) > 1:
            return await self._hedged(request, ranked)
        return await self._fallback_chain(request, ranked)

    async def _fallback_chain(
        self,
        request: ChatRequest,
        ranked: Sequence[ProviderState],
        tried: list[str] | None = None,
        errors: list[BaseException] | None = None,
    ) -> ChatResponse:
        tried = tried if tried is not None else []
        errors = errors if errors is not None else []  # one per entry of tried
        n = len(ranked)
        for i, state in enumerate(ranked):
            try:
                response = await self._attempts(state, request)
            except (ProviderError, BudgetExceeded) as exc:
                tried.append(state.id)
                errors.append(exc)
                if i + 1 < n and self._wants(ev.FallbackUsed):
                    await self._emit(
                        ev.FallbackUsed(
                            request_id=request.id,
                            failed=state.id,
                            next=ranked[i + 1].id,
                            reason=f"{type(exc).__name__}: {exc.message if hasattr(exc, 'message') else exc}",
                        )
                    )
                continue
            tried.append(state.id)
            response.tried = tried
            return response
        raise self._all_failed(request, tried, errors)

    def _all_failed(self, request: ChatRequest, tried: list[str], errors: list[BaseException]) -> BaseException:
        if errors and all(isinstance(e, BudgetExceeded) for e in errors):
            return errors[-1]
        detail = "; ".join(
            f"{p}: {type(e).__name__}: {getattr(e, 'message', e)}" for p, e in zip(tried, errors, strict=False)
        )
        err = NoProviderAvailable(
            f"request {request.id} failed on every provider tried ({detail})",
            hint="see the provider.call.failed events; breakers reopen after their open period",
        )
        err.errors = errors  # type: ignore[attr-defined]
        return err

    # ------------------------------------------------------------------ call lifecycle (sync steps)
    # The live path below and the routing lab's discrete-event engine run the same steps, so the
    # simulator and the live router make the same decisions for the same inputs.
    def begin_call(self, state: ProviderState, request: ChatRequest, attempt: int = 1) -> Call:
        """Admit one call to ``state``: breaker, budget reservation, dispatch accounting.

        Raises:
            CircuitOpen: the breaker refuses (nothing was reserved).
            BudgetExceeded: a budget refuses (the breaker probe, if any, is given back).
        """
        breaker = state.breaker
        if breaker.state == "closed":  # breaker.allow() without the call: a closed breaker lets every call pass
            breaker.granted_probe = probe = False
        else:
            if not breaker.allow():
                raise CircuitOpen(f"{state.id}: circuit open", provider=state.id)
            probe = breaker.granted_probe
        budgets = self.budgets
        if budgets is not None and budgets.budgets:
            # _reserve() written out: predict_cost(state.provider.pricing, request) from the copied prices
            n_in = request.input_tokens
            out = request.max_tokens or DEFAULT_OUTPUT_TOKENS
            amount = (
                (estimate_tokens(request) if n_in is None else n_in) * state.input_per_m + out * state.output_per_m
            ) / 1e6
            try:
                reservation = budgets.reserve(request, amount)
            except BudgetExceeded as exc:
                breaker.release_probe(probe)  # no call was made: let another request probe
                self._budget_refused(request, exc)
                raise
        else:
            reservation = None
        stats = state.stats  # state.begin(), written out: once per call
        stats.inflight += 1
        call_no = stats.dispatched = stats.dispatched + 1
        state.started.add(call_no)
        if state.limiter is not None:
            state.limiter.record(estimate_tokens(request) + (request.max_tokens or 0))
        on_dispatch = self._on_dispatch
        if on_dispatch is not None:
            on_dispatch(state, request)
        return Call(state, request, attempt, reservation, probe, call_no, self._now())

    def finish_call(self, call: Call, response: ChatResponse) -> None:
        """Account a successful call: statistics, breaker, budget settlement, strategy feedback."""
        self.account_success(call, response.latency_s, response.ttft_s, response.cost_usd)
        on_result = self._on_result
        if on_result is not None:
            on_result(call.state, call.request, response)
        response.attempts = call.attempt
        response.request_id = call.request.id

    def account_success(self, call: Call, latency_s: float, ttft_s: float | None, cost_usd: float) -> None:
        """The part of :meth:`finish_call` that needs no response: statistics, breaker, budget settlement.

        The routing lab calls it directly when the strategy has no ``on_result`` hook
        (``Router.wants_results`` is False), so it never builds a response it would not read.
        """
        state = call.state
        state.started.discard(call.call_no)  # state.end(call.call_no) without the count a success never reads
        stats = state.stats  # stats.on_success(latency_s, ttft_s, cost_usd), written out: once per call
        a = stats.alpha
        b = 1 - a
        stats.inflight -= 1
        stats.calls += 1
        stats.successes += 1
        v = stats.ewma_latency_s
        stats.ewma_latency_s = latency_s if v is None else b * v + a * latency_s
        if ttft_s is not None:
            v = stats.ewma_ttft_s
            stats.ewma_ttft_s = ttft_s if v is None else b * v + a * ttft_s
        v = stats.ewma_cost_usd
        stats.ewma_cost_usd = cost_usd if v is None else b * v + a * cost_usd
        stats.ewma_success = b * stats.ewma_success + a
        stats._recent.append(latency_s)
        stats._p95 = None
        if state.waiters:  # _wake() only has work when someone waits for a slot
            _wake(state)
        breaker = state.breaker
        if breaker.state == "closed":  # breaker.record(True, probe) for a closed breaker, written out
            outcomes = breaker._outcomes
            if len(outcomes) == breaker.window and not outcomes[0]:  # the window is its maxlen
                breaker._failures -= 1
            outcomes.append(True)
        else:
            breaker.record(True, call.probe)
        reservation = call.reservation
        if reservation is not None:  # _settle() written out
            crossings = self.budgets.settle(reservation, cost_usd)  # type: ignore[union-attr]
            if crossings:
                self._warn(crossings)

    @property
    def wants_results(self) -> bool:
        """Whether the strategy reads responses (overrides :meth:`Strategy.on_result`)."""
        return self._on_result is not None

    def fail_call(self, call: Call, error: ProviderError) -> float | None:
        """Account a failed call; return the delay before retrying the same provider, or None to move on."""
        self.account_failure(call)
        state = call.state
        on_result = self._on_result
        if on_result is not None:
            on_result(state, call.request, None)
        delay = self.retry.delay(call.attempt, error, self.rng)
        if delay is None or not state.breaker.available():
            return None
        return delay

    def account_failure(self, call: Call) -> None:
        """The part of :meth:`fail_call` that streams share: statistics, breaker, reservation released.

        A broken or failed stream is not retried (no delay is drawn) and, as a whole-answer
        call's failure, charges nothing.
        """
        state = call.state
        older = state.end(call.call_no)
        state.stats.on_failure()
        if state.waiters:
            _wake(state)
        state.breaker.record(False, call.probe, older)
        self._release(call.reservation)

    def abandon_call(self, call: Call) -> None:
        """Account a call given up without an outcome (cancelled, the losing side of a hedge)."""
        state = call.state
        state.end(call.call_no)
        state.stats.on_abandon()
        _wake(state)
        state.breaker.release_probe(call.probe)
        self._release(call.reservation)

    async def _attempts(self, state: ProviderState, request: ChatRequest) -> ChatResponse:
        """Call one provider with retries; raise the last error when retries are exhausted."""
        attempt = 1
        provider = state.provider
        while True:
            await self._slot(state)
            try:
                call = self.begin_call(state, request, attempt)
            except (CircuitOpen, BudgetExceeded):
                _pass_slot_on(state)
                raise
            if self._wants(ev.CallStarted):
                await self._emit(
                    ev.CallStarted(request_id=request.id, provider=state.id, model=provider.model, attempt=attempt)
                )
            start = call.started
            try:
                response = await self._timed(provider.ainvoke(request), request, state)
            except asyncio.CancelledError:
                self.abandon_call(call)
                raise
            except Exception as exc:
                error = (
                    exc
                    if isinstance(exc, ProviderError)
                    else ProviderUnavailable(f"{state.id}: {type(exc).__name__}: {exc}", provider=state.id)
                )
                elapsed = self.clock.now() - start
                delay = self.fail_call(call, error)
                if self._wants(ev.CallFailed):
                    await self._emit(
                        ev.CallFailed(
                            request_id=request.id,
                            provider=state.id,
                            model=provider.model,
                            attempt=attempt,
                            error_type=type(error).__name__,
                            error=error.message,
                            retryable=error.retryable,
                            latency_s=elapsed,
                        )
                    )
                if delay is None:
                    raise error from (exc if error is not exc else None)
                if self._wants(ev.RetryScheduled):
                    await self._emit(
                        ev.RetryScheduled(
                            request_id=request.id,
                            provider=state.id,
                            attempt=attempt + 1,
                            delay_s=delay,
                            reason=type(error).__name__,
                        )
                    )
                if delay > 0:
                    await self.clock.sleep(delay)
                attempt += 1
                continue
            latency = self.clock.now() - start
            if not self._wall_clock or not response.latency_s:
                response.latency_s = latency
            self.finish_call(call, response)
            if self._wants(ev.CallFinished):
                await self._emit(self._finished_event(request, state, response, attempt, stream=False))
            return response

    def _finished_event(
        self, request: ChatRequest, state: ProviderState, response: ChatResponse, attempt: int, *, stream: bool
    ) -> ev.CallFinished:
        return ev.CallFinished(
            request_id=request.id,
            provider=state.id,
            model=state.provider.model,
            attempt=attempt,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost_usd=response.cost_usd,
            latency_s=response.latency_s,
            ttft_s=response.ttft_s,
            principal=request.principal,
            project=request.project,
            stream=stream,
        )

    async def _timed(self, call: Any, request: ChatRequest, state: ProviderState) -> Any:
        timeout = request.timeout_s if request.timeout_s is not None else self.timeout_s
        if timeout is None:
            return await call
        if self._wall_clock:
            try:
                async with asyncio.timeout(timeout):
                    return await call
            except TimeoutError:
                raise ProviderTimeout(f"{state.id}: no answer within {timeout}s", provider=state.id) from None
        task = asyncio.ensure_future(call)
        if await self._before(task, timeout):
            return task.result()
        task.cancel()
        try:
            await task
        except BaseException:
            pass
        raise ProviderTimeout(f"{state.id}: no answer within {timeout}s", provider=state.id)

    async def _before(self, task: asyncio.Future[Any], seconds: float) -> bool:
        """Wait for ``task`` at most ``seconds`` on the router's clock; True if it finished in time.

        The task keeps running when time is up; if the waiter is cancelled, the task is too.
        """
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            timer.cancel()
            raise
        if task in done:
            timer.cancel()
            return True
        return False

    async def _slot(self, state: ProviderState) -> None:
        """Wait while ``state`` is at its ``max_concurrency`` (FIFO)."""
        cap = state.provider.limits.max_concurrency
        if cap is None:
            return
        while state.stats.inflight >= cap:
            fut = asyncio.get_running_loop().create_future()
            state.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    _wake(state)  # pass the slot we were given on
                raise

    # ------------------------------------------------------------------ budgets
    def _reserve(self, request: ChatRequest, state: ProviderState) -> Reservation | None:
        budgets = self.budgets
        if budgets is None or not budgets.budgets:  # i.e. `not budgets`, without calling __bool__
            return None
        n_in = request.input_tokens  # predict_cost(state.provider.pricing, request) from the copied prices
        out = request.max_tokens or DEFAULT_OUTPUT_TOKENS
        amount = state.cost(estimate_tokens(request) if n_in is None else n_in, out)
        try:
            return budgets.reserve(request, amount)
        except BudgetExceeded as exc:
            self._budget_refused(request, exc)
            raise

    def _budget_refused(self, request: ChatRequest, exc: BudgetExceeded) -> None:
        if self._wants(ev.BudgetExceededEvent):
            self._emit_nowait(
                ev.BudgetExceededEvent(
                    request_id=request.id,
                    error=exc.message,
                    principal=request.principal,
                    project=request.project,
                )
            )

    def _release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            self.budgets.release(reservation)  # type: ignore[union-attr]

    def _settle(self, reservation: Reservation | None, cost: float) -> None:
        if reservation is None:
            return
        crossings = self.budgets.settle(reservation, cost)  # type: ignore[union-attr]
        if crossings:
            self._warn(crossings)

    def _warn(self, crossings: list[BudgetCrossing]) -> None:
        for crossing in crossings:
            if self._wants(ev.BudgetWarning):
                self._emit_nowait(
                    ev.BudgetWarning(
                        budget=crossing.budget,
                        bucket=crossing.bucket,
                        spent_usd=crossing.spent_usd,
                        limit_usd=crossing.limit_usd,
                    )
                )

    def _emit_nowait(self, event: Event) -> None:
        try:
            asyncio.get_running_loop().create_task(self.bus.publish(event))
        except RuntimeError:
            self.bus.publish_sync(event)

    # ------------------------------------------------------------------ hedging and cascades
    async def _hedged(self, request: ChatRequest, ranked: Sequence[ProviderState]) -> ChatResponse:
        primary, backup = ranked[0], ranked[1]
        first = asyncio.ensure_future(self._attempts(primary, request))
        if await self._before(first, self.hedge_after_s or 0.0):
            if first.exception() is None:
                response = first.result()
                response.tried = [primary.id]
                return response
            return await self._fallback_chain(request, ranked[1:], tried=[primary.id], errors=_errors(first))
        if self._wants(ev.HedgeLaunched):
            await self._emit(
                ev.HedgeLaunched(request_id=request.id, primary=primary.id, hedge=backup.id, after_s=self.hedge_after_s)
            )
        second = asyncio.ensure_future(self._attempts(backup, request))
        pending = {first, second}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        for other in pending:
                            other.cancel()
                        await asyncio.gather(*pending, return_exceptions=True)
                        response = task.result()
                        response.hedged = True
                        response.tried = [primary.id, backup.id]
                        return response
        except asyncio.CancelledError:
            for t in (first, second):
                t.cancel()
            raise
        return await self._fallback_chain(
            request, ranked[2:], tried=[primary.id, backup.id], errors=_errors(first, second)
        )

    async def _cascade(self, request: ChatRequest, ranked: Sequence[ProviderState]) -> ChatResponse:
        strategy = self.strategy
        assert isinstance(strategy, Cascade)
        tried: list[str] = []
        last: ChatResponse | None = None
        errors: list[BaseException] = []
        for state in list(ranked)[: strategy.max_steps]:
            try:
                response = await self._attempts(state, request)
            except (ProviderError, BudgetExceeded) as exc:
                tried.append(state.id)
                errors.append(exc)
                continue
            tried.append(state.id)
            response.tried = list(tried)
            last = response
            if strategy.check(response):
                response.metadata["cascade_passed"] = True
                return response
            response.metadata["cascade_passed"] = False
        if last is not None:
            return last  # best effort: the most capable answer we got
        raise self._all_failed(request, tried, errors)

    # ------------------------------------------------------------------ streaming
    def astream(self, request: ChatRequest | str, **fields: Any) -> AsyncIterator[StreamChunk]:
        """Stream an answer; if a stream breaks, continue on the next provider.

        The first chunk after a failover has ``failover_from`` set.  Stopping
        iteration (or cancelling the consumer) cancels the provider's stream.
        Nothing runs until the first chunk is asked for.
        """
        from .streaming import router_stream

        return router_stream(self, request, **fields)

    # ------------------------------------------------------------------ feedback
    def feedback(self, request_id: str, reward: float) -> bool:
        """Score an answer in [0, 1] for learning strategies (the bandit)."""
        return self.strategy.feedback(request_id, reward)

    def __repr__(self) -> str:
        return f"Router(strategy={self.strategy!r}, providers={len(self.registry)}, requests={self.requests})"


def _continuation(request: ChatRequest, partial: str) -> ChatRequest:
    msgs = [*request.messages, Message("assistant", partial), Message("user", _CONTINUE)]  # type: ignore[misc]
    return ChatRequest(
        msgs,
        needs=request.needs,
        min_context=request.min_context,
        language=request.language,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        principal=request.principal,
        project=request.project,
        task=request.task,
        timeout_s=request.timeout_s,
        metadata=request.metadata,
        id=request.id,
    )


def check_call_options(retry: Any, timeout_s: Any, hedge_after_s: Any) -> None:
    """Name a bad ``retry``, ``timeout_s`` or ``hedge_after_s`` (what :class:`Router` and the routing lab take)."""
    check_seconds("timeout_s", timeout_s, allow_none=True, positive=True)
    check_seconds("hedge_after_s", hedge_after_s, allow_none=True)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ValidationError(
            f"retry={retry!r} is not a RetryPolicy", input=retry, hint="e.g. retry=RetryPolicy(attempts=3)"
        )


def _errors(*tasks: asyncio.Future[Any]) -> list[BaseException]:
    """The exceptions of finished ``tasks`` (those that failed)."""
    return [e for t in tasks if (e := t.exception()) is not None]


def _hook(strategy: Strategy, name: str) -> Callable[..., None] | None:
    """``strategy.<name>`` bound, or None if it is :class:`Strategy`'s no-op."""
    method = getattr(strategy, name)
    inherited = getattr(type(strategy), name, None) is getattr(Strategy, name)  # also holds when compiled
    return None if inherited and name not in getattr(strategy, "__dict__", ()) else method


def _pass_slot_on(state: ProviderState) -> None:
    """A call admitted to a free slot was refused (breaker, budget): the next waiter may take the slot.

    Without this, a waiter woken for a slot that it then did not use would leave the
    others queued behind a free slot until some later call on ``state`` ends (forever,
    if none is in flight).
    """
    if state.waiters and state.stats.inflight < state.slot_cap:
        _wake(state)


def _wake(state: ProviderState) -> None:
    """A call on ``state`` ended: let the first waiter for a concurrency slot go."""
    waiters = state.waiters
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return
