"""The :class:`Provider` protocol: what the router needs of a model endpoint.

Kept apart from :class:`~lumina_lab.providers.base.BaseProvider` (which re-exports it) because a
runtime-checkable protocol cannot be compiled with the router's hot path (see ``mypyc.ini``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from .types import Capabilities, ChatRequest, ChatResponse, Limits, Pricing, StreamChunk

__all__ = ["Provider"]


@runtime_checkable
class Provider(Protocol):
    """A model endpoint the router can call.

    ``ainvoke`` returns a whole answer; ``astream`` yields :class:`StreamChunk`
    objects, the last with ``done=True`` and ``usage``.  Failures raise
    :class:`~lumina_lab.errors.ProviderError` subclasses (``RateLimited``,
    ``ProviderTimeout``, ``ProviderUnavailable``, ``StreamBroken``).
    Cancelling the task that awaits either one cancels the call.
    """

    id: str
    model: str
    capabilities: Capabilities
    pricing: Pricing
    limits: Limits

    async def ainvoke(self, request: ChatRequest) -> ChatResponse: ...

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...
