"""Stream helpers: a bounded read-ahead buffer with backpressure, and collecting a stream into text.

Streams are pull-based async iterators of :class:`StreamChunk`: a provider
produces the next chunk only when the consumer asks.  :func:`buffered` lets a
producer run ahead of a slow consumer (a UI repainting) by at most ``maxsize``
chunks — then it waits, which pushes back on the provider's connection — and
cancelling the consumer cancels the producer and closes the provider stream.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BudgetExceeded, CircuitOpen, ProviderError, ProviderTimeout, StreamBroken, ValidationError
from . import events as ev
from .cost import estimate_tokens
from .types import ChatRequest, StreamChunk, Usage

if TYPE_CHECKING:
    from .router import Router
    from .simulated import SimulatedProvider

__all__ = ["StreamResult", "buffered", "collect", "iterate_in_thread", "router_stream", "simulated_stream"]

_END = object()


@dataclass
class _Failure:
    error: BaseException


async def buffered(stream: AsyncIterator[StreamChunk], maxsize: int = 64) -> AsyncIterator[StreamChunk]:
    """Read ``stream`` ahead into a queue of at most ``maxsize`` chunks."""
    if maxsize < 1:
        raise ValidationError(f"maxsize={maxsize!r} must be >= 1", input=maxsize)
    q: asyncio.Queue[object] = asyncio.Queue(maxsize)

    async def pump() -> None:
        try:
            async for chunk in stream:
                await q.put(chunk)  # waits while the consumer is maxsize chunks behind
            await q.put(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await q.put(_Failure(exc))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    task = asyncio.ensure_future(pump())
    try:
        while True:
            item = await q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class StreamResult:
    """A stream collected: the text, who answered (several after a failover), usage and chunk count."""

    text: str
    providers: list[str]
    usage: Usage | None
    chunks: int
    failovers: int


async def collect(stream: AsyncIterator[StreamChunk]) -> StreamResult:
    """Consume ``stream`` and return the whole answer."""
    parts: list[str] = []
    providers: list[str] = []
    usage = None
    n = failovers = 0
    async for chunk in stream:
        n += 1
        if not providers or providers[-1] != chunk.provider:
            providers.append(chunk.provider)
        if chunk.failover_from:
            failovers += 1
        if chunk.done:
            usage = chunk.usage
        parts.append(chunk.text)
    return StreamResult("".join(parts), providers, usage, n, failovers)


def iterate_in_thread(
    stream: AsyncIterator[StreamChunk], loop: asyncio.AbstractEventLoop, maxsize: int = 64
) -> Iterator[StreamChunk]:
    """Iterate an async stream running on ``loop`` (another thread) from synchronous code.

    At most ``maxsize`` chunks wait between the two threads; closing the
    iterator early cancels the stream on its loop.
    """
    q: queue.Queue[object] = queue.Queue(maxsize)
    stop = threading.Event()

    async def pump() -> None:
        try:
            async for chunk in stream:
                while not stop.is_set():
                    try:
                        q.put_nowait(chunk)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.001)
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:
            q.put(_Failure(exc))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    future = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if not future.done():
            future.cancel()


async def router_stream(router: Router, request: ChatRequest | str, **fields: Any) -> AsyncIterator[StreamChunk]:
    """:meth:`Router.astream <lumina_lab.providers.router.Router.astream>`: stream an answer, failing over
    to the next provider when a stream breaks (here, not in the router's module, because a compiled build
    of the router cannot hold an async generator)."""
    from .router import _continuation, _pass_slot_on

    request, ranked, _ = router._route(request, fields)
    received: list[str] = []
    failover_from: str | None = None
    errors: list[BaseException] = []
    tried: list[str] = []
    for i, state in enumerate(ranked):
        await router._slot(state)
        # the same admission as a whole-answer call (breaker, reservation, dispatch accounting), but a
        # refusing breaker skips the provider silently and a stream is never retried
        try:
            call = router.begin_call(state, request)
        except CircuitOpen:
            _pass_slot_on(state)
            continue
        except BudgetExceeded as exc:
            _pass_slot_on(state)
            errors.append(exc)
            tried.append(state.id)
            continue
        req = request if not received else _continuation(request, "".join(received))
        if router._wants(ev.CallStarted):
            await router._emit(
                ev.CallStarted(
                    request_id=request.id, provider=state.id, model=state.provider.model, attempt=1, stream=True
                )
            )
        start = router.clock.now()
        ttft: float | None = None
        outcome: str | None = None  # "ok", "failed", or None if the consumer walked away
        stream = state.provider.astream(req)
        chunks = stream.__aiter__()
        try:
            while True:
                try:  # the timeout bounds the wait for the first chunk and between chunks
                    chunk = await router._timed(chunks.__anext__(), request, state)
                except StopAsyncIteration:
                    break
                if ttft is None:
                    ttft = router.clock.now() - start
                if failover_from is not None:
                    chunk.failover_from = failover_from
                    failover_from = None
                if chunk.done:
                    outcome = "ok"
                    usage = chunk.usage
                    cost = state.provider.pricing.cost(usage.input_tokens, usage.output_tokens) if usage else 0.0
                    latency = router.clock.now() - start
                    router.account_success(call, latency, ttft, cost)
                    if router._wants(ev.CallFinished):
                        await router._emit(
                            ev.CallFinished(
                                request_id=request.id,
                                provider=state.id,
                                model=state.provider.model,
                                attempt=1,
                                input_tokens=usage.input_tokens if usage else 0,
                                output_tokens=usage.output_tokens if usage else 0,
                                cost_usd=cost,
                                latency_s=latency,
                                ttft_s=ttft,
                                principal=request.principal,
                                project=request.project,
                                stream=True,
                            )
                        )
                    yield chunk
                    return
                received.append(chunk.text)
                yield chunk
            raise StreamBroken(f"{state.id}: stream ended without a final chunk", provider=state.id)
        except ProviderError as exc:
            outcome = "failed"
            router.account_failure(call)
            errors.append(exc)
            tried.append(state.id)
            if router._wants(ev.CallFailed):
                await router._emit(
                    ev.CallFailed(
                        request_id=request.id,
                        provider=state.id,
                        model=state.provider.model,
                        attempt=1,
                        error_type=type(exc).__name__,
                        error=exc.message,
                        retryable=exc.retryable,
                        latency_s=router.clock.now() - start,
                    )
                )
            nxt = next((s.id for s in ranked[i + 1 :]), None)
            if nxt is not None and router._wants(ev.StreamFailover):
                await router._emit(
                    ev.StreamFailover(
                        request_id=request.id,
                        failed=state.id,
                        next=nxt,
                        chars_received=sum(map(len, received)),
                        reason=f"{type(exc).__name__}: {exc.message}",
                    )
                )
            failover_from = state.id
            continue
        finally:
            await stream.aclose()
            if outcome is None:  # the consumer stopped or was cancelled: the call is abandoned
                router.abandon_call(call)
    raise router._all_failed(request, tried, errors)


async def simulated_stream(provider: SimulatedProvider, request: ChatRequest) -> AsyncIterator[StreamChunk]:
    """:meth:`SimulatedProvider.astream <lumina_lab.providers.simulated.SimulatedProvider.astream>`, sleeping
    out the draws of :meth:`~lumina_lab.providers.simulated.SimulatedProvider.stream_sample` on its clock."""
    provider._admit()
    provider.inflight += 1
    try:
        s = provider._stream_draws(request)
        if s.error is not None:
            if isinstance(s.error, ProviderTimeout):
                await provider.clock.sleep(s.fail_after_s)
            raise s.error
        if s.ttft_s > 0:
            await provider.clock.sleep(s.ttft_s)
        n_out, per_token, breaks_at = s.output_tokens, s.per_token_s, s.breaks_at
        for i, word in enumerate(provider.stream_words(s)):
            if breaks_at is not None and i == breaks_at:
                raise StreamBroken(f"{provider.id}: stream cut after {i} tokens (simulated)", provider=provider.id)
            if per_token > 0 and i:
                await provider.clock.sleep(per_token)
            yield StreamChunk(text=word, provider=provider.id, index=i)
        yield StreamChunk(
            text="",
            provider=provider.id,
            index=n_out,
            done=True,
            usage=Usage(estimate_tokens(request), n_out),
            finish_reason="stop",
        )
    except (asyncio.CancelledError, GeneratorExit):
        provider.cancelled += 1
        raise
    finally:
        provider.inflight -= 1
