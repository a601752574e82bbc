"""Injected clocks: the same router, breakers, budgets and rate limits run on wall time or simulated time.

:class:`WallClock` reads :func:`time.monotonic` and sleeps with asyncio.
:class:`ManualClock` is for tests and simulation: time moves only when told
(``advance``), or — with ``autoadvance=True`` — a ``sleep`` jumps the clock
forward at once, so retry timing is exact and tests never wait.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["WALL", "Clock", "LabClock", "ManualClock", "WallClock"]


class Clock(Protocol):
    """Source of time in seconds (monotonic) and of sleeping (any object with ``now()`` and ``async sleep()``;
    not runtime-checkable, so that the compiled build (:mod:`lumina_lab.compiled`) compiles this module)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """Real time: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
        else:
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return "WallClock()"


WALL = WallClock()


class ManualClock:
    """Time that moves only when told to.

    Args:
        start: initial reading.
        autoadvance: a ``sleep(s)`` moves the clock to the sleeper's wake-up
            time immediately (useful for exact, instant retry-timing tests).

    >>> clock = ManualClock()
    >>> clock.advance(1.5); clock.now()
    1.5
    """

    def __init__(self, start: float = 0.0, *, autoadvance: bool = False) -> None:
        self._now = float(start)
        self.autoadvance = autoadvance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.slept: list[float] = []  # every requested sleep, for assertions

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self.autoadvance:
            self._now += seconds
            self._wake()
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def set(self, t: float) -> None:
        """Jump to time ``t`` (not earlier than now) and wake due sleepers; used by the routing lab's engine."""
        if t < self._now:
            raise ValueError(f"time cannot go backwards ({t} < {self._now})")
        self._now = t
        if self._sleepers:
            self._wake()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers whose time has come."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds
        self._wake()

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def next_wakeup(self) -> float | None:
        """When the earliest pending sleeper wakes (None if nobody sleeps)."""
        heap = self._sleepers
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    @property
    def sleepers(self) -> int:
        return sum(1 for *_, f in self._sleepers if not f.done())

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now}, sleepers={self.sleepers})"


class LabClock(ManualClock):
    """A routing-lab replay's clock: simulated time, and the budgets' wall clock (``start_wall`` + simulated
    time) in one call.  Here rather than in the engine so that a compiled engine does not subclass an
    interpreted class."""

    def __init__(self, start_wall: float) -> None:
        super().__init__()
        self.start_wall = start_wall

    def wall(self) -> float:
        return self.start_wall + self._now
