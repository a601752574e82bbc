"""OpenAICompatibleProvider against a real local HTTP server speaking the OpenAI wire format.

Everything goes through a socket to :mod:`openai_server` except one test of
the ``transport=`` seam.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from openai_server import Drop, Error, OpenAIServer, Raw, Reply, Sleep, Stream

from lumina_lab.errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamBroken,
    ValidationError,
)
from lumina_lab.providers.adapters.openai_http import OpenAICompatibleProvider, parse_retry_after
from lumina_lab.providers.base import Provider
from lumina_lab.providers.types import ChatRequest, Message, Pricing, StreamChunk

PRICING = Pricing(input_per_m=1.0, output_per_m=2.0)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
async def provider(server: OpenAIServer) -> AsyncIterator[OpenAICompatibleProvider]:
    p = OpenAICompatibleProvider(
        "test-model", id="local", base_url=server.base_url, api_key="sk-test", pricing=PRICING, timeout_s=5
    )
    yield p
    await p.aclose()


async def collect(provider: OpenAICompatibleProvider, request: ChatRequest | str = "hi") -> list[StreamChunk]:
    req = request if isinstance(request, ChatRequest) else ChatRequest(request)
    async with provider.astream(req) as stream:
        return [c async for c in stream]


async def call(provider: OpenAICompatibleProvider, mode: str) -> object:
    if mode == "invoke":
        return await provider.ainvoke(ChatRequest("hi"))
    return await collect(provider)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- answers -------------------------------------------------------------------------------------


async def test_answer_is_parsed_with_usage_and_cost(provider, server):
    server.push(Reply("Hello there!", usage=(7, 3), finish_reason="length"))
    request = ChatRequest("hi")

    resp = await provider.ainvoke(request)

    assert resp.text == "Hello there!"
    assert (resp.provider, resp.model) == ("local", "test-model")
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (7, 3)
    assert resp.cost_usd == pytest.approx((7 * 1.0 + 3 * 2.0) / 1e6)
    assert resp.finish_reason == "length"
    assert resp.request_id == request.id
    assert 0 < resp.latency_s < 5
    assert "usage_estimated" not in resp.metadata
    assert isinstance(provider, Provider)


async def test_request_body_and_headers(provider, server):
    req = ChatRequest([Message("system", "be brief"), Message("user", "hi")], max_tokens=32, temperature=0.2)

    await provider.ainvoke(req)

    sent = server.last
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 32,
        "temperature": 0.2,
    }
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("lumina-lab/")


async def test_optional_fields_are_left_out(provider, server):
    await provider.ainvoke(ChatRequest("hi"))

    assert set(server.last.body) == {"model", "messages"}


async def test_openai_key_is_not_sent_to_other_hosts_by_default(server, monkeypatch):
    """OPENAI_API_KEY is read only for api.openai.com unless the caller names the variable."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    async with OpenAICompatibleProvider("m", base_url=server.base_url) as p:
        await p.ainvoke(ChatRequest("hi"))
    assert "authorization" not in server.last.headers


async def test_api_key_comes_from_a_named_environment_variable(server, monkeypatch):
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-env")
    async with OpenAICompatibleProvider("m", base_url=server.base_url, api_key_env="LOCAL_LLM_KEY") as p:
        await p.ainvoke(ChatRequest("hi"))
    assert server.last.headers["authorization"] == "Bearer sk-env"

    monkeypatch.delenv("LOCAL_LLM_KEY")
    async with OpenAICompatibleProvider("m", base_url=server.base_url, api_key_env="LOCAL_LLM_KEY") as p:
        await p.ainvoke(ChatRequest("hi"))
    assert "authorization" not in server.last.headers


def test_openai_key_is_used_for_api_openai_com(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    p = OpenAICompatibleProvider("gpt-4o-mini", base_url="https://api.openai.com/v1")
    assert p._api_key == "sk-env"


async def test_extra_headers_are_sent(server):
    async with OpenAICompatibleProvider("m", base_url=server.base_url, api_key="k", headers={"X-Team": "lab"}) as p:
        await p.ainvoke(ChatRequest("hi"))
    assert server.last.headers["x-team"] == "lab"


async def test_missing_usage_is_estimated_from_the_text(provider, server):
    server.push(Reply("abcdefghi", usage=None))

    resp = await provider.ainvoke(ChatRequest("hello"))

    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (2, 3)  # ceil(5/4), ceil(9/4)
    assert resp.metadata["usage_estimated"] is True
    assert resp.cost_usd == pytest.approx((2 + 3 * 2) / 1e6)


async def test_one_client_per_event_loop_is_reused_and_closed(provider, server):
    await provider.ainvoke(ChatRequest("a"))
    client = provider._client()
    await provider.ainvoke(ChatRequest("b"))
    assert provider._client() is client

    await provider.aclose()

    assert client.is_closed
    await provider.ainvoke(ChatRequest("c"))  # a fresh client after aclose()
    assert provider._client() is not client


def test_bad_construction_is_a_validation_error():
    with pytest.raises(ValidationError, match="base_url"):
        OpenAICompatibleProvider("m", base_url="127.0.0.1:8000/v1")
    with pytest.raises(ValidationError, match="timeout_s"):
        OpenAICompatibleProvider("m", base_url="http://x/v1", timeout_s=0)


async def test_the_transport_seam_replaces_the_network():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"role": "assistant", "content": "mocked"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            },
        )

    async with OpenAICompatibleProvider(
        "m", base_url="http://nowhere.invalid/v1", api_key="k", transport=httpx.MockTransport(handler)
    ) as p:
        resp = await p.ainvoke(ChatRequest("hi"))

    assert resp.text == "mocked"
    assert str(seen[0].url) == "http://nowhere.invalid/v1/chat/completions"
    assert json.loads(seen[0].content)["model"] == "m"


# -- streaming -----------------------------------------------------------------------------------


async def test_stream_yields_the_deltas_in_order_then_a_done_chunk(provider, server):
    server.push(Stream(["Hel", "lo", " world"], usage=(4, 3), delay=0.02))

    async with provider.astream(ChatRequest("hi")) as stream:
        chunks = [c async for c in stream]

    assert [c.text for c in chunks] == ["Hel", "lo", " world", ""]
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert [c.done for c in chunks] == [False, False, False, True]
    assert all(c.provider == "local" for c in chunks)
    done = chunks[-1]
    assert (done.usage.input_tokens, done.usage.output_tokens) == (4, 3)
    assert done.finish_reason == "stop"
    assert stream.ttft_s is not None and 0.01 < stream.ttft_s < stream.latency_s
    assert provider.last_ttft_s == stream.ttft_s
    assert stream.text == "Hello world" and stream.usage_estimated is False

    sent = server.last
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.headers["accept"] == "text/event-stream"


async def test_connections_are_kept_alive_across_calls_and_streams(provider, server):
    await provider.ainvoke(ChatRequest("a"))
    await collect(provider)
    await collect(provider)
    await provider.ainvoke(ChatRequest("b"))

    assert len({r.client_port for r in server.requests}) == 1


async def test_a_server_that_ignores_stream_true_still_streams_one_chunk(provider, server):
    server.push(Raw(b'{"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}'))

    chunks = await collect(provider)

    assert [(c.text, c.done) for c in chunks] == [("whole", False), ("", True)]


@pytest.mark.parametrize(
    "variant",
    [
        {"framing": "close"},
        {"multiline": True},
        {"eol": "\r\n"},
        {"eol": "\r"},
        {"comments": False},
        {"done": False},  # a finish_reason without [DONE] is a complete stream
    ],
    ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v),
)
async def test_stream_parses_every_legal_sse_framing(provider, server, variant):
    server.push(Stream(["a", "b", "c"], **variant))

    chunks = await collect(provider)

    assert "".join(c.text for c in chunks) == "abc"
    assert chunks[-1].done and chunks[-1].finish_reason == "stop"


async def test_stream_without_usage_estimates_it(provider, server):
    server.push(Stream(["abcd", "efgh"], usage=None))

    async with provider.astream(ChatRequest("hello")) as stream:
        chunks = [c async for c in stream]

    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (2, 2)
    assert stream.usage_estimated is True


async def test_stream_usage_can_be_turned_off_for_strict_servers(server):
    async with OpenAICompatibleProvider("m", base_url=server.base_url, stream_usage=False) as p:
        await collect(p)
    assert "stream_options" not in server.last.body


async def test_stream_cut_mid_answer_is_stream_broken_with_the_partial_text(provider, server):
    server.push(Stream(["one ", "two ", "three"], cut_after=2))
    received: list[str] = []

    with pytest.raises(StreamBroken) as info:
        async with provider.astream(ChatRequest("hi")) as stream:
            async for chunk in stream:
                received.append(chunk.text)

    assert received == ["one ", "two "]
    assert info.value.partial_text == "one two "
    assert info.value.retryable and info.value.provider == "local"
    assert "local" in str(info.value) and server.base_url in str(info.value)


async def test_stream_closed_cleanly_without_done_or_finish_is_stream_broken(provider, server):
    server.push(Stream(["one ", "two"], framing="close", cut_after=1))

    with pytest.raises(StreamBroken, match=r"without \[DONE\] or a finish_reason") as info:
        await collect(provider)

    assert info.value.partial_text == "one "


async def test_malformed_stream_chunk_is_a_retryable_provider_error(provider, server):
    server.push(Stream(["fine ", "broken", "never"], malformed_at=1))

    with pytest.raises(ProviderError, match="malformed stream chunk") as info:
        await collect(provider)

    assert type(info.value) is ProviderError and info.value.retryable
    assert "oops" in str(info.value)  # names the bad chunk
    assert info.value.partial_text == "fine "


async def test_error_event_inside_a_stream_is_a_provider_error(provider, server):
    body = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {"error": {"message": "overloaded"}}\n\n'
    server.push(Raw(body, content_type="text/event-stream"))

    with pytest.raises(ProviderError, match="overloaded"):
        await collect(provider)


async def test_breaking_out_of_a_stream_closes_the_connection(provider, server):
    server.push(Stream(["tok "] * 500, delay=0.005))

    async with provider.astream(ChatRequest("hi")) as stream:
        async for _ in stream:
            break

    assert await asyncio.to_thread(server.disconnected.wait, 3)


async def test_cancelling_the_consumer_task_closes_the_connection(provider, server):
    server.push(Stream(["tok "] * 500, delay=0.005))
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.astream(ChatRequest("hi")):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(server.disconnected.wait, 3)


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_429_is_rate_limited_with_retry_after(provider, server, mode):
    server.push(Error(429, "Rate limit reached for requests", headers={"Retry-After": "2"}))

    with pytest.raises(RateLimited) as info:
        await call(provider, mode)

    err = info.value
    assert err.retry_after == 2.0
    assert (err.status, err.provider, err.retryable) == (429, "local", True)
    message = str(err)
    assert "'local'" in message and f"{server.base_url}/chat/completions" in message and "429" in message
    assert "Rate limit reached" in message and err.hint


async def test_429_retry_after_as_an_http_date(provider, server):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.push(Error(429, headers={"Retry-After": when}))

    with pytest.raises(RateLimited) as info:
        await provider.ainvoke(ChatRequest("hi"))

    assert 27 <= info.value.retry_after <= 31


def test_parse_retry_after():
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-3"}) is None
    now = datetime(2015, 10, 21, 7, 28, 10, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=now) == 0.0  # in the past


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_5xx_is_provider_unavailable(provider, server, status, mode):
    server.push(Error(status, "The server had an error while processing your request"))

    with pytest.raises(ProviderUnavailable) as info:
        await call(provider, mode)

    assert info.value.status == status and info.value.retryable
    assert str(status) in str(info.value) and "server had an error" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_401_403_are_not_retryable_and_point_at_the_api_key(provider, server, status, mode):
    server.push(Error(status, "Incorrect API key provided"))

    with pytest.raises(ProviderError) as info:
        await call(provider, mode)

    err = info.value
    assert type(err) is ProviderError and err.retryable is False and err.status == status
    assert "Incorrect API key provided" in str(err)
    assert "API key" in err.hint and "api_key" in err.hint
    assert "sk-test" not in str(err)


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_400_carries_the_servers_error_message(provider, server, mode):
    server.push(Error(400, "This model's maximum context length is 8192 tokens"))

    with pytest.raises(ProviderError) as info:
        await call(provider, mode)

    err = info.value
    assert type(err) is ProviderError and err.retryable is False and err.status == 400
    assert "maximum context length is 8192 tokens" in str(err) and "400" in str(err)


async def test_404_hints_at_the_model_and_base_url(provider, server):
    server.push(Error(404, "The model `test-model` does not exist"))

    with pytest.raises(ProviderError, match="does not exist") as info:
        await provider.ainvoke(ChatRequest("hi"))

    assert info.value.retryable is False and "/v1" in info.value.hint


async def test_non_json_error_body_is_quoted(provider, server):
    server.push(Error(502, body=b"<html>Bad Gateway</html>"))

    with pytest.raises(ProviderUnavailable, match="Bad Gateway"):
        await provider.ainvoke(ChatRequest("hi"))


@pytest.mark.parametrize(
    ("body", "match"),
    [(b'{"choices": [{"message": {"content": "cut', "malformed JSON"), (b'{"object": "x"}', "without choices")],
)
async def test_malformed_answer_is_a_retryable_provider_error(provider, server, body, match):
    server.push(Raw(body))

    with pytest.raises(ProviderError, match=match) as info:
        await provider.ainvoke(ChatRequest("hi"))

    assert type(info.value) is ProviderError and info.value.retryable


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_connection_refused_is_provider_unavailable(mode):
    async with OpenAICompatibleProvider("m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k") as p:
        with pytest.raises(ProviderUnavailable, match="could not be reached") as info:
            await call(p, mode)
    assert "base_url" in info.value.hint


async def test_connection_dropped_without_an_answer_is_provider_unavailable(provider, server):
    server.push(Drop())

    with pytest.raises(ProviderUnavailable):
        await provider.ainvoke(ChatRequest("hi"))


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_slow_server_is_a_timeout_within_timeout_s(server, mode):
    server.push(Sleep(5))
    async with OpenAICompatibleProvider("m", id="slow", base_url=server.base_url, timeout_s=0.3) as p:
        t0 = time.perf_counter()
        with pytest.raises(ProviderTimeout, match=r"within 0\.3 s") as info:
            await call(p, mode)
        elapsed = time.perf_counter() - t0

    assert 0.25 < elapsed < 1.5
    assert info.value.retryable and info.value.provider == "slow"


async def test_the_request_timeout_overrides_the_providers(provider, server):
    server.push(Sleep(5))
    t0 = time.perf_counter()

    with pytest.raises(ProviderTimeout):
        await provider.ainvoke(ChatRequest("hi", timeout_s=0.2))

    assert time.perf_counter() - t0 < 1.2


async def test_stream_stalling_mid_answer_is_a_timeout_with_the_partial_text(server):
    server.push(Stream(["first ", "second"], delay=0.0), Stream(["a", "b"], delay=2.0))
    async with OpenAICompatibleProvider("m", base_url=server.base_url, timeout_s=0.3) as p:
        await collect(p)  # no delay: fine
        with pytest.raises(ProviderTimeout, match="stalled") as info:
            await collect(p)
    assert info.value.partial_text == ""


# -- probe ---------------------------------------------------------------------------------------


async def test_aprobe_is_true_when_models_answers(provider, server):
    assert await provider.aprobe() is True
    assert (server.last.method, server.last.path) == ("GET", "/v1/models")
    assert server.last.headers["authorization"] == "Bearer sk-test"


async def test_aprobe_is_false_on_an_error_status_or_no_server(provider, server):
    server.models_status = 503
    assert await provider.aprobe() is False

    async with OpenAICompatibleProvider("m", base_url=f"http://127.0.0.1:{free_port()}/v1") as p:
        assert await p.aprobe() is False
