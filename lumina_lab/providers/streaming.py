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

from ..errors import ValidationError
from .types import StreamChunk, Usage

__all__ = ["StreamResult", "buffered", "collect", "iterate_in_thread"]

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
