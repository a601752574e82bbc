"""Scripted providers and a small harness: a router on a bus, the memory event store, the observability hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from lumina_lab.errors import ProviderUnavailable, StreamBroken
from lumina_lab.events import InProcessBus
from lumina_lab.events.store import MemoryEventStore
from lumina_lab.observability import Observability, SpanStore
from lumina_lab.providers import BaseProvider, ChatRequest, ChatResponse, ProviderRegistry, RetryPolicy, Router
from lumina_lab.providers.types import StreamChunk, Usage


class Scripted(BaseProvider):
    """Answers per a script: each call takes the next outcome (then ``ok`` forever).

    Outcomes: ``"ok"``, ``"fail"`` (retryable), ``"fatal"`` (not retryable), ``("slow", seconds)``,
    ``("break", n_chunks)`` (streams: break after ``n`` chunks).
    """

    def __init__(self, model: str, *, id: str, script: Sequence[Any] = (), out: int = 10, price: float = 1.0) -> None:
        super().__init__(model, id=id, pricing={"input_per_m": price, "output_per_m": 4 * price})
        self.script = list(script)
        self.out = out
        self.calls = 0

    def _next(self) -> Any:
        outcome = self.script[self.calls] if self.calls < len(self.script) else "ok"
        self.calls += 1
        return outcome

    def _response(self, request: ChatRequest) -> ChatResponse:
        usage = Usage(5, self.out)
        return ChatResponse(
            f"answer from {self.id}", self.id, self.model, usage, self.pricing.cost(5, self.out), ttft_s=0.001
        )

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        outcome = self._next()
        if isinstance(outcome, tuple) and outcome[0] == "slow":
            await asyncio.sleep(outcome[1])
        elif outcome == "fail":
            raise ProviderUnavailable(f"{self.id} is down", provider=self.id)
        elif outcome == "fatal":
            raise ProviderUnavailable(f"{self.id} refused", provider=self.id, retryable=False)
        await asyncio.sleep(0)
        return self._response(request)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        outcome = self._next()
        n_before_break = outcome[1] if isinstance(outcome, tuple) and outcome[0] == "break" else None
        for i in range(3):
            if n_before_break is not None and i == n_before_break:
                raise StreamBroken(f"{self.id}: stream cut", provider=self.id)
            await asyncio.sleep(0.002)
            yield StreamChunk(f"part{i} ", self.id, index=i)
        yield StreamChunk("", self.id, index=3, done=True, usage=Usage(5, self.out))


class Harness:
    """Router + bus + memory event store + observability hub, on the caller's event loop."""

    def __init__(self, providers: Sequence[BaseProvider], strategy: str = "cheapest", **router: Any) -> None:
        self.bus = InProcessBus()
        self.events = MemoryEventStore()
        self.events.attach(self.bus)
        self.obs = Observability(self.bus, self.events, metrics=True, **router.pop("obs", {}))
        router.setdefault("retry", RetryPolicy(attempts=1))
        self.router = Router(ProviderRegistry(providers), strategy, bus=self.bus, **router)
        self.store = SpanStore(self.events)

    async def settle(self) -> None:
        await self.obs.aflush()

    def spans(self) -> list[dict[str, Any]]:
        return self.store.records("SELECT * FROM spans ORDER BY start_ts, span_id")

    def close(self) -> None:
        self.obs.close()
        self.events.close()


def tree(spans: list[dict[str, Any]]) -> list[tuple[int, str, str, str | None, str]]:
    """``(depth, name, kind, attempt_kind, status)`` depth-first, siblings by start time."""
    ids = {s["span_id"] for s in spans}
    kids: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        kids.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
    out: list[tuple[int, str, str, str | None, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(kids.get(parent, []), key=lambda s: (s["start_ts"], s["span_id"])):
            out.append((depth, s["name"], s["kind"], s.get("attempt_kind"), s["status"]))
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return out
