"""Any langchain-core chat model as a Lumina :class:`~lumina_lab.providers.base.Provider`.

>>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
>>> provider = LangChainProvider(FakeListChatModel(responses=["hello"]), id="fake")
>>> provider.id, provider.model
('fake', 'FakeListChatModel')

``langchain_core`` is imported only when a request is converted, so importing
this module (and :mod:`lumina_lab.providers`) stays light.

Token usage comes from ``AIMessage.usage_metadata`` (summed over the chunks
when streaming).  Models that do not report usage get an estimate of one token
per four characters, and the response says so with
``metadata["usage_estimated"] = True``.

Exceptions raised by the model become :class:`~lumina_lab.errors.ProviderError`
subclasses: rate limits (a class name containing ``RateLimit`` or an HTTP 429)
become :class:`~lumina_lab.errors.RateLimited`, timeouts become
:class:`~lumina_lab.errors.ProviderTimeout`, a failure after a stream has
started becomes :class:`~lumina_lab.errors.StreamBroken`, and anything else
:class:`~lumina_lab.errors.ProviderUnavailable`.  The original exception is
chained (``__cause__``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import nullcontext
from typing import Any

from ...errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamBroken,
    ValidationError,
)
from ..base import BaseProvider
from ..types import Capabilities, ChatRequest, ChatResponse, Limits, Message, Pricing, StreamChunk, Usage

__all__ = ["LangChainProvider"]

#: Request fields passed to the model with ``.bind(...)`` when the model declares them.
_BINDABLE = ("max_tokens", "temperature")

#: Provider-specific finish reasons mapped to the OpenAI-style names used by Lumina.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "max_tokens": "length",
    "MAX_TOKENS": "length",
    "tool_use": "tool_calls",
}


class LangChainProvider(BaseProvider):
    """Wrap a langchain-core ``BaseChatModel`` (OpenAI, Anthropic, Ollama, fakes, ...).

    Args:
        chat_model: the chat model to call.
        model: model name (default: the chat model's ``model_name`` or ``model``
            attribute, else its class name).
        id: provider id (default: the model name).
        capabilities / pricing / limits: as for :class:`~lumina_lab.providers.base.BaseProvider`.
        bind_params: pass ``max_tokens`` and ``temperature`` of a request to the
            model with ``chat_model.bind(...)``.  ``None`` (default): only the
            ones the chat model declares as fields; ``True``: always; ``False``: never.

    Attributes:
        last_ttft_s: seconds to the first content chunk of the latest stream
            (``None`` before any stream produced content).
    """

    def __init__(
        self,
        chat_model: Any,
        *,
        model: str | None = None,
        id: str | None = None,
        capabilities: Capabilities | dict | None = None,
        pricing: Pricing | dict | None = None,
        limits: Limits | dict | None = None,
        bind_params: bool | None = None,
    ) -> None:
        if not (callable(getattr(chat_model, "ainvoke", None)) and callable(getattr(chat_model, "astream", None))):
            raise ValidationError(
                f"chat_model={chat_model!r} is not a langchain chat model (it needs ainvoke and astream)",
                input=chat_model,
                hint="pass a langchain_core BaseChatModel, e.g. ChatOpenAI(model=...)",
            )
        super().__init__(
            model or _model_name(chat_model),
            id=id,
            capabilities=capabilities,
            pricing=pricing,
            limits=limits,
        )
        self.chat_model = chat_model
        self.bind_params = bind_params
        self.last_ttft_s: float | None = None

    # -- calls -------------------------------------------------------------

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        lc_messages = to_langchain_messages(request.messages)  # type: ignore[arg-type]
        runnable = self._runnable(request)
        start = time.perf_counter()
        timeout = asyncio.timeout(request.timeout_s) if request.timeout_s else nullcontext()
        try:
            async with timeout:
                message = await runnable.ainvoke(lc_messages)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request) from exc
        latency = time.perf_counter() - start
        text = content_text(getattr(message, "content", message))
        usage, estimated = self._usage(getattr(message, "usage_metadata", None), request, text)
        metadata: dict[str, Any] = {}
        if estimated:
            metadata["usage_estimated"] = True
        return ChatResponse(
            text=text,
            provider=self.id,
            model=self.model,
            usage=usage,
            cost_usd=self.pricing.cost(usage.input_tokens, usage.output_tokens),
            latency_s=latency,
            finish_reason=_finish_reason(getattr(message, "response_metadata", None)) or "stop",
            request_id=request.id,
            metadata=metadata,
        )

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        lc_messages = to_langchain_messages(request.messages)  # type: ignore[arg-type]
        runnable = self._runnable(request)
        start = time.perf_counter()
        self.last_ttft_s = None
        index = 0
        parts: list[str] = []
        usage_seen = False
        input_tokens = output_tokens = 0
        finish_reason: str | None = None
        iterator = runnable.astream(lc_messages)
        try:
            while True:
                try:
                    # The timeout is per wait for the next chunk (no yield inside it).
                    timeout = asyncio.timeout(request.timeout_s) if request.timeout_s else nullcontext()
                    async with timeout:
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except ProviderError:
                    raise
                except Exception as exc:
                    raise self._map_error(exc, request, started=index > 0) from exc
                um = getattr(chunk, "usage_metadata", None)
                if um:
                    usage_seen = True
                    input_tokens += int(um.get("input_tokens") or 0)
                    output_tokens += int(um.get("output_tokens") or 0)
                finish_reason = _finish_reason(getattr(chunk, "response_metadata", None)) or finish_reason
                text = content_text(getattr(chunk, "content", chunk))
                if not text:
                    continue
                if self.last_ttft_s is None:
                    self.last_ttft_s = time.perf_counter() - start
                parts.append(text)
                yield StreamChunk(text=text, provider=self.id, index=index)
                index += 1
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        if usage_seen:
            usage = Usage(input_tokens, output_tokens)
        else:
            usage, _ = self._usage(None, request, "".join(parts))
        yield StreamChunk(
            text="",
            provider=self.id,
            index=index,
            done=True,
            usage=usage,
            finish_reason=finish_reason or "stop",
        )

    # -- helpers -----------------------------------------------------------

    def _runnable(self, request: ChatRequest) -> Any:
        values = {"max_tokens": request.max_tokens, "temperature": request.temperature}
        if self.bind_params is False:
            return self.chat_model
        accepted = _declared_fields(self.chat_model) if self.bind_params is None else set(_BINDABLE)
        kwargs = {k: v for k, v in values.items() if v is not None and k in accepted}
        if kwargs and callable(getattr(self.chat_model, "bind", None)):
            return self.chat_model.bind(**kwargs)
        return self.chat_model

    def _usage(self, usage_metadata: Mapping[str, Any] | None, request: ChatRequest, text: str) -> tuple[Usage, bool]:
        if usage_metadata:
            return (
                Usage(int(usage_metadata.get("input_tokens") or 0), int(usage_metadata.get("output_tokens") or 0)),
                False,
            )
        prompt_chars = sum(len(m.content) for m in request.messages)  # type: ignore[union-attr]
        return Usage(math.ceil(prompt_chars / 4), math.ceil(len(text) / 4)), True

    def _map_error(self, exc: BaseException, request: ChatRequest, *, started: bool = False) -> ProviderError:
        name = type(exc).__name__
        detail = str(exc) or name
        status = _status_code(exc)
        where = f"{self.id} ({self.model})"
        if "RateLimit" in name or status == 429:
            return RateLimited(
                f"{where} is rate limited: {name}: {detail}",
                retry_after=_retry_after(exc),
                provider=self.id,
                status=status,
                hint="wait and retry, send fewer requests, or declare limits=Limits(rpm=...) for this provider",
            )
        if isinstance(exc, TimeoutError) or "Timeout" in name or status in (408, 504):
            after = f" after {request.timeout_s:g} s" if request.timeout_s else ""
            return ProviderTimeout(
                f"{where} timed out{after}: {name}: {detail}",
                provider=self.id,
                status=status,
                hint="retry, raise ChatRequest.timeout_s, or route to a faster provider",
            )
        if started:
            return StreamBroken(
                f"{where} broke off its stream: {name}: {detail}",
                provider=self.id,
                status=status,
                hint="retry the request; the router can fail over to another provider",
            )
        return ProviderUnavailable(
            f"{where} failed: {name}: {detail}",
            provider=self.id,
            status=status,
            hint="check the model's credentials, endpoint and arguments, or route to another provider",
        )


def to_langchain_messages(messages: list[Message] | list[Any]) -> list[Any]:
    """Convert Lumina messages (or ``{"role", "content"}`` dicts) to langchain message objects."""
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    for m in messages:
        if isinstance(m, BaseMessage):
            out.append(m)
            continue
        role, content = (m["role"], m["content"]) if isinstance(m, Mapping) else (m.role, m.content)
        if role == "system":
            out.append(SystemMessage(content=content))
        elif role == "user":
            out.append(HumanMessage(content=content))
        elif role == "assistant":
            out.append(AIMessage(content=content))
        elif role == "tool":
            tool_call_id = (m.get("tool_call_id") if isinstance(m, Mapping) else None) or ""
            out.append(ToolMessage(content=content, tool_call_id=tool_call_id))
        else:
            raise ValidationError(
                f"message role {role!r} is not one of system, user, assistant, tool",
                input=m,
                hint="use Message('user', text) and friends",
            )
    return out


def content_text(content: Any) -> str:
    """The text of a langchain message content: a string, or a list of strings and ``{"type": "text"}`` blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return str(content)


def _model_name(chat_model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        try:
            value = getattr(chat_model, attr, None)
        except Exception:
            value = None
        if isinstance(value, str) and value:
            return value
    return type(chat_model).__name__


def _declared_fields(chat_model: Any) -> set[str]:
    fields = getattr(type(chat_model), "model_fields", None) or {}
    names = set(fields)
    names.update(f.alias for f in fields.values() if getattr(f, "alias", None))
    return names & set(_BINDABLE)


def _finish_reason(response_metadata: Mapping[str, Any] | None) -> str | None:
    if not response_metadata:
        return None
    reason = response_metadata.get("finish_reason") or response_metadata.get("stop_reason")
    if not isinstance(reason, str) or not reason:
        return None
    return _FINISH_REASONS.get(reason, reason)


def _status_code(exc: BaseException) -> int | None:
    for obj in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status", "http_status"):
            value = getattr(obj, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _retry_after(exc: BaseException) -> float | None:
    value: Any = getattr(exc, "retry_after", None)
    if value is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if headers is not None:
            try:
                value = headers.get("retry-after") or headers.get("Retry-After")
            except Exception:
                value = None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
