"""LangChainProvider against langchain-core's own fake chat models."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeMessagesListChatModel,
    GenericFakeChatModel,
    ParrotFakeChatModel,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from lumina_lab.errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamBroken,
    ValidationError,
)
from lumina_lab.providers.adapters.langchain import (
    LangChainProvider,
    content_text,
    to_langchain_messages,
)
from lumina_lab.providers.base import Provider
from lumina_lab.providers.types import ChatRequest, Message, Pricing


def generic(*messages: AIMessage | str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(messages))


async def collect(provider: LangChainProvider, request: ChatRequest) -> list:
    return [chunk async for chunk in provider.astream(request)]


# -- fakes built on langchain-core's base classes ------------------------------------


class CapturingModel(GenericFakeChatModel):
    """Records the messages and kwargs each call receives."""

    log: Any = None

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.log.append((list(messages), dict(kwargs)))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


class TunableModel(CapturingModel):
    """Declares temperature and max_tokens, like real chat models do."""

    model_name: str = "tunable-1"
    temperature: float | None = None
    max_tokens: int | None = None


class RaisingModel(GenericFakeChatModel):
    """Raises ``error`` from every call (sync, async and streaming paths)."""

    error: Any = None

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise self.error

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        raise self.error
        yield  # pragma: no cover - makes this an async generator


class UsageStreamModel(GenericFakeChatModel):
    """Streams like OpenAI/Anthropic: usage and finish reason spread over the chunks."""

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata={"input_tokens": 12, "output_tokens": 0, "total_tokens": 12}
            )
        )
        for part in ("Hel", "lo", "!"):
            yield ChatGenerationChunk(message=AIMessageChunk(content=part))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={"input_tokens": 0, "output_tokens": 3, "total_tokens": 3},
                response_metadata={"stop_reason": "max_tokens"},
            )
        )


class SlowStreamModel(GenericFakeChatModel):
    """Streams many chunks slowly; records what it produced and whether it was closed."""

    log: Any = None

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        try:
            for i in range(1000):
                await asyncio.sleep(0.01)
                self.log["produced"] = i + 1
                yield ChatGenerationChunk(message=AIMessageChunk(content=f"t{i} "))
        finally:
            self.log["closed"] = True


class SlowInvokeModel(GenericFakeChatModel):
    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        await asyncio.sleep(5)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="late"))])


class FakeRateLimitError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Response:
    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers


class HTTPStatusError(Exception):
    def __init__(self, message: str, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = _Response(status_code, headers or {})


class ReadTimeout(Exception):
    pass


# -- construction ----------------------------------------------------------------------


def test_declaration_defaults_and_protocol() -> None:
    provider = LangChainProvider(FakeListChatModel(responses=["x"]))
    assert provider.model == "FakeListChatModel"
    assert provider.id == "FakeListChatModel"
    assert provider.pricing == Pricing()
    assert isinstance(provider, Provider)
    assert "FakeListChatModel" in repr(provider)

    named = LangChainProvider(TunableModel(messages=iter([]), log=[]), id="t")
    assert (named.id, named.model) == ("t", "tunable-1")
    explicit = LangChainProvider(FakeListChatModel(responses=["x"]), model="gpt-4", id="openai")
    assert explicit.model == "gpt-4"
    assert explicit.pricing.input_per_m > 0  # list price from the shipped snapshot


def test_rejects_something_that_is_not_a_chat_model() -> None:
    with pytest.raises(ValidationError, match="not a langchain chat model"):
        LangChainProvider(object())


def test_importing_the_adapter_does_not_import_langchain() -> None:
    code = (
        "import sys, json; import lumina_lab.providers.adapters.langchain; "
        "print(json.dumps([m for m in sys.modules if m.startswith('langchain')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


# -- ainvoke -----------------------------------------------------------------------------


async def test_text_round_trip() -> None:
    provider = LangChainProvider(FakeListChatModel(responses=["héllo 🌍\nworld"]), id="fake")
    request = ChatRequest("say hi")
    response = await provider.ainvoke(request)
    assert response.text == "héllo 🌍\nworld"
    assert response.provider == "fake"
    assert response.model == "FakeListChatModel"
    assert response.request_id == request.id
    assert response.finish_reason == "stop"
    assert response.latency_s >= 0


async def test_usage_from_usage_metadata_gives_tokens_and_cost() -> None:
    message = AIMessage(
        content="forty-two",
        usage_metadata={"input_tokens": 1000, "output_tokens": 250, "total_tokens": 1250},
        response_metadata={"finish_reason": "length"},
    )
    provider = LangChainProvider(generic(message), pricing=Pricing(input_per_m=2.0, output_per_m=10.0))
    response = await provider.ainvoke(ChatRequest("question"))
    assert response.text == "forty-two"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1000, 250)
    assert response.cost_usd == pytest.approx((1000 * 2.0 + 250 * 10.0) / 1e6)
    assert "usage_estimated" not in response.metadata
    assert response.finish_reason == "length"


async def test_usage_is_estimated_when_the_model_reports_none() -> None:
    provider = LangChainProvider(FakeListChatModel(responses=["hello"]), pricing={"input_per_m": 1, "output_per_m": 1})
    request = ChatRequest([Message("system", "be nice"), Message("user", "abcdefghi")])  # 7 + 9 chars
    response = await provider.ainvoke(request)
    assert response.usage.input_tokens == math.ceil(16 / 4)
    assert response.usage.output_tokens == math.ceil(5 / 4)
    assert response.metadata["usage_estimated"] is True
    assert response.cost_usd == pytest.approx((4 + 2) / 1e6)


async def test_message_roles_are_converted() -> None:
    log: list = []
    provider = LangChainProvider(CapturingModel(messages=iter(["ok"]), log=log))
    request = ChatRequest(
        [
            Message("system", "you are terse"),
            Message("user", "hi"),
            Message("assistant", "hello"),
            Message("tool", '{"x": 1}'),
            Message("user", "again"),
        ]
    )
    await provider.ainvoke(request)
    ((messages, _kwargs),) = log
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, ToolMessage, HumanMessage]
    assert [m.content for m in messages] == ["you are terse", "hi", "hello", '{"x": 1}', "again"]


async def test_parrot_model_echoes_the_last_user_message() -> None:
    provider = LangChainProvider(ParrotFakeChatModel())
    response = await provider.ainvoke(ChatRequest([Message("system", "s"), Message("user", "echo me")]))
    assert response.text == "echo me"


async def test_messages_list_model_and_content_blocks() -> None:
    blocks = AIMessage(content=[{"type": "text", "text": "part one, "}, {"type": "image_url"}, "part two"])
    provider = LangChainProvider(FakeMessagesListChatModel(responses=[blocks]))
    response = await provider.ainvoke(ChatRequest("q"))
    assert response.text == "part one, part two"


def test_message_conversion_helpers() -> None:
    out = to_langchain_messages([{"role": "tool", "content": "r", "tool_call_id": "call_1"}, HumanMessage("x")])
    assert isinstance(out[0], ToolMessage) and out[0].tool_call_id == "call_1"
    assert isinstance(out[1], HumanMessage)
    with pytest.raises(ValidationError, match="role 'robot'"):
        to_langchain_messages([{"role": "robot", "content": "beep"}])
    assert content_text(None) == ""
    assert content_text(["a", {"type": "text", "text": "b"}]) == "ab"


async def test_max_tokens_and_temperature_are_bound_only_when_the_model_declares_them() -> None:
    log: list = []
    tunable = LangChainProvider(TunableModel(messages=iter(["a"]), log=log))
    await tunable.ainvoke(ChatRequest("q", max_tokens=64, temperature=0.2))
    assert log[-1][1] == {"max_tokens": 64, "temperature": 0.2}

    plain_log: list = []
    plain = LangChainProvider(CapturingModel(messages=iter(["a", "b"]), log=plain_log))
    await plain.ainvoke(ChatRequest("q", max_tokens=64, temperature=0.2))
    assert plain_log[-1][1] == {}

    forced = LangChainProvider(CapturingModel(messages=iter(["a"]), log=plain_log), bind_params=True)
    await forced.ainvoke(ChatRequest("q", temperature=0.0))
    assert plain_log[-1][1] == {"temperature": 0.0}

    never = LangChainProvider(TunableModel(messages=iter(["a"]), log=log), bind_params=False)
    await never.ainvoke(ChatRequest("q", max_tokens=5))
    assert log[-1][1] == {}


# -- astream ------------------------------------------------------------------------------


async def test_stream_yields_chunks_in_order_then_a_done_chunk() -> None:
    provider = LangChainProvider(generic("hello big world"), id="g")
    chunks = await collect(provider, ChatRequest("abcd"))
    body, final = chunks[:-1], chunks[-1]
    assert [c.text for c in body] == ["hello", " ", "big", " ", "world"]
    assert [c.index for c in chunks] == list(range(6))
    assert all(not c.done and c.provider == "g" for c in body)
    assert final.done and final.text == "" and final.finish_reason == "stop"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (1, math.ceil(len("hello big world") / 4))
    assert provider.last_ttft_s is not None and provider.last_ttft_s >= 0


async def test_stream_sums_usage_metadata_of_the_chunks_and_skips_empty_ones() -> None:
    provider = LangChainProvider(UsageStreamModel(messages=iter([])))
    chunks = await collect(provider, ChatRequest("q"))
    assert [c.text for c in chunks] == ["Hel", "lo", "!", ""]
    final = chunks[-1]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 3)
    assert final.finish_reason == "length"


async def test_fake_list_model_streams_character_by_character() -> None:
    provider = LangChainProvider(FakeListChatModel(responses=["abc"]))
    chunks = await collect(provider, ChatRequest("q"))
    assert [c.text for c in chunks] == ["a", "b", "c", ""]
    assert chunks[-1].done


async def test_cancelling_the_stream_consumer_stops_the_model() -> None:
    log: dict = {"produced": 0, "closed": False}
    provider = LangChainProvider(SlowStreamModel(messages=iter([]), log=log))
    first = asyncio.Event()
    seen: list[str] = []

    async def consume() -> None:
        async for chunk in provider.astream(ChatRequest("q")):
            seen.append(chunk.text)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    produced = log["produced"]
    await asyncio.sleep(0.1)
    assert log["produced"] == produced < 1000
    assert log["closed"] is True


async def test_breaking_out_of_the_stream_closes_the_model_stream() -> None:
    log: dict = {"produced": 0, "closed": False}
    provider = LangChainProvider(SlowStreamModel(messages=iter([]), log=log))
    stream = provider.astream(ChatRequest("q"))
    async for _chunk in stream:
        break
    await stream.aclose()
    assert log["closed"] is True
    assert log["produced"] == 1


# -- errors ---------------------------------------------------------------------------------


async def test_generic_failure_becomes_provider_unavailable_with_cause() -> None:
    error = RuntimeError("connection refused")
    provider = LangChainProvider(RaisingModel(messages=iter([]), error=error), id="bad")
    with pytest.raises(ProviderUnavailable, match="connection refused") as info:
        await provider.ainvoke(ChatRequest("q"))
    assert info.value.__cause__ is error
    assert info.value.provider == "bad"
    assert info.value.hint


async def test_rate_limit_by_class_name_keeps_retry_after() -> None:
    provider = LangChainProvider(RaisingModel(messages=iter([]), error=FakeRateLimitError("slow down", 2.5)))
    with pytest.raises(RateLimited, match="slow down") as info:
        await provider.ainvoke(ChatRequest("q"))
    assert info.value.retry_after == 2.5
    assert isinstance(info.value.__cause__, FakeRateLimitError)


async def test_http_429_with_retry_after_header_is_rate_limited() -> None:
    error = HTTPStatusError("too many requests", 429, {"retry-after": "7"})
    provider = LangChainProvider(RaisingModel(messages=iter([]), error=error))
    with pytest.raises(RateLimited) as info:
        await provider.ainvoke(ChatRequest("q"))
    assert (info.value.status, info.value.retry_after) == (429, 7.0)


async def test_server_error_status_is_kept() -> None:
    provider = LangChainProvider(RaisingModel(messages=iter([]), error=HTTPStatusError("bad gateway", 502)))
    with pytest.raises(ProviderUnavailable) as info:
        await provider.ainvoke(ChatRequest("q"))
    assert info.value.status == 502


@pytest.mark.parametrize("error", [TimeoutError("took too long"), ReadTimeout("read timed out")])
async def test_timeouts_become_provider_timeout(error: Exception) -> None:
    provider = LangChainProvider(RaisingModel(messages=iter([]), error=error))
    with pytest.raises(ProviderTimeout, match=str(error)) as info:
        await provider.ainvoke(ChatRequest("q"))
    # asyncio re-creates a TimeoutError crossing the executor thread: same type and text.
    assert type(info.value.__cause__) is type(error)
    assert str(info.value.__cause__) == str(error)


async def test_request_timeout_is_enforced() -> None:
    provider = LangChainProvider(SlowInvokeModel(messages=iter([])))
    with pytest.raises(ProviderTimeout, match=r"after 0\.05 s"):
        await provider.ainvoke(ChatRequest("q", timeout_s=0.05))


async def test_stream_errors_are_mapped() -> None:
    limited = LangChainProvider(RaisingModel(messages=iter([]), error=FakeRateLimitError("429", 1.0)))
    with pytest.raises(RateLimited):
        await collect(limited, ChatRequest("q"))

    before_first = LangChainProvider(FakeListChatModel(responses=["abcdef"], error_on_chunk_number=0))
    with pytest.raises(ProviderUnavailable):
        await collect(before_first, ChatRequest("q"))

    midway = LangChainProvider(FakeListChatModel(responses=["abcdef"], error_on_chunk_number=3))
    seen: list[str] = []
    with pytest.raises(StreamBroken) as info:
        async for chunk in midway.astream(ChatRequest("q")):
            seen.append(chunk.text)
    assert seen == ["a", "b", "c"]
    assert type(info.value.__cause__).__name__ == "FakeListChatModelError"
    assert isinstance(info.value, ProviderError)


async def test_stream_wait_timeout() -> None:
    log: dict = {"produced": 0, "closed": False}
    provider = LangChainProvider(SlowStreamModel(messages=iter([]), log=log))
    with pytest.raises(ProviderTimeout):
        await collect(provider, ChatRequest("q", timeout_s=0.001))
    assert log["closed"] is True
