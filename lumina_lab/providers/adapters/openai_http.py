"""A provider for any OpenAI-compatible ``/v1/chat/completions`` endpoint.

Works with OpenAI itself and with the local servers that speak its wire
format (vLLM, Ollama, LM Studio, llama.cpp's server).  HTTP goes through
:mod:`httpx`, imported on first use so that ``import lumina_lab.providers``
stays light.

Failures become typed :class:`~lumina_lab.errors.ProviderError` subclasses:

==========================================  ======================================
what happened                               raised
==========================================  ======================================
HTTP 429                                    :class:`RateLimited` (``retry_after``)
HTTP 5xx, connection refused/reset          :class:`ProviderUnavailable`
no answer within the timeout, HTTP 408      :class:`ProviderTimeout`
HTTP 401 / 403                              :class:`ProviderError` (not retryable)
other HTTP 4xx                              :class:`ProviderError` (not retryable)
malformed JSON (answer or stream chunk)     :class:`ProviderError` (retryable)
stream ended without ``[DONE]`` or a        :class:`StreamBroken`
``finish_reason``, or cut by the network
==========================================  ======================================

Errors raised after a stream has started carry the text received so far in
``partial_text``.

>>> p = OpenAICompatibleProvider("llama3", base_url="http://127.0.0.1:8000/v1", api_key="x")
>>> p
OpenAICompatibleProvider(id='llama3', model='llama3')
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..._version import __version__
from ...errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamBroken,
    ValidationError,
)
from ..base import BaseProvider
from ..types import Capabilities, ChatRequest, ChatResponse, Limits, Pricing, StreamChunk, Usage

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = ["OpenAICompatibleProvider", "OpenAIStream", "parse_retry_after"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_EXCERPT = 200  # characters of a bad body / chunk quoted in an error message
_DRAIN_S = 0.1  # longest wait for the end of a stream's body after [DONE]


class OpenAICompatibleProvider(BaseProvider):
    """A chat model served over the OpenAI HTTP API.

    Args:
        model: model name sent in the request body (``"gpt-4o-mini"``, ``"llama3.1:8b"``...).
        base_url: the API root, ending in ``/v1`` (``"http://127.0.0.1:8000/v1"`` for vLLM,
            ``"http://127.0.0.1:11434/v1"`` for Ollama, ``"http://127.0.0.1:1234/v1"`` for LM Studio).
        api_key: sent as ``Authorization: Bearer ...``.  When ``None`` it is read from the
            environment variable named by ``api_key_env``; when neither gives one, no
            ``Authorization`` header is sent (fine for local servers).
        api_key_env: environment variable holding the key (``None``: do not look).  The default,
            ``OPENAI_API_KEY``, is read only when ``base_url`` is on api.openai.com, so an OpenAI key
            never reaches a third-party or local server by accident.
        id, capabilities, pricing, limits: see :class:`~lumina_lab.providers.base.BaseProvider`.
        timeout_s: for :meth:`ainvoke`, the deadline of the whole call; for :meth:`astream`,
            the longest wait for the first byte and between two chunks.  A request's own
            ``timeout_s`` overrides it.
        connect_timeout_s: the longest wait to open the TCP/TLS connection.
        transport: an :mod:`httpx` transport to use instead of the network (a test seam:
            ``httpx.MockTransport(handler)``, or ``httpx.AsyncHTTPTransport(retries=2)``).
        headers: extra headers sent with every request.
        stream_usage: ask for token usage at the end of streams
            (``stream_options.include_usage``); turn off for servers that reject the field.

    One :class:`httpx.AsyncClient` (and so one connection pool) is kept per event loop,
    created on first use; :meth:`aclose` (or ``async with provider:``) closes it.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        id: str | None = None,
        capabilities: Capabilities | dict | None = None,
        pricing: Pricing | dict | None = None,
        limits: Limits | dict | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        transport: Any = None,
        headers: Mapping[str, str] | None = None,
        stream_usage: bool = True,
    ) -> None:
        super().__init__(model, id=id, capabilities=capabilities, pricing=pricing, limits=limits)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValidationError(
                f"base_url={base_url!r} must be an http:// or https:// URL",
                input=base_url,
                hint='pass the API root, e.g. base_url="http://127.0.0.1:8000/v1"',
            )
        for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
            if not isinstance(value, int | float) or not value > 0:
                raise ValidationError(f"{name}={value!r} must be a positive number of seconds", input=value)
        self.base_url = base_url.rstrip("/")
        if api_key is None and api_key_env:
            # never hand an OpenAI key to another host unless the caller names the variable explicitly
            default_env = api_key_env == "OPENAI_API_KEY"
            host = (httpx_url_host(base_url) or "").lower()
            if not default_env or host == "api.openai.com":
                api_key = os.environ.get(api_key_env) or None
        self._api_key = api_key
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.stream_usage = stream_usage
        self._transport = transport
        self._headers = {"User-Agent": f"lumina-lab/{__version__}", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        #: time to first token of the latest stream (also on each :class:`OpenAIStream`).
        self.last_ttft_s: float | None = None

    # -- HTTP plumbing ---------------------------------------------------------------------

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _client(self) -> httpx.AsyncClient:
        """The client of the running event loop (created on first use)."""
        import httpx

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            for other in [lp for lp in self._clients if lp.is_closed()]:  # loops gone without aclose()
                del self._clients[other]
            client = httpx.AsyncClient(
                transport=self._transport,
                headers=self._headers,
                timeout=self._timeout(self.timeout_s),
                follow_redirects=False,
            )
            self._clients[loop] = client
        return client

    def _timeout(self, seconds: float) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(seconds, connect=min(self.connect_timeout_s, seconds))

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop (and forget those of other, closed loops)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called outside a loop
            loop = None
        for other, client in list(self._clients.items()):
            if other is loop:
                del self._clients[other]
                await client.aclose()
            elif other.is_closed():
                del self._clients[other]

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aprobe(self) -> bool:
        """True if ``GET {base_url}/models`` answers 2xx within ``min(timeout_s, 5)`` seconds."""
        import httpx

        timeout = min(self.timeout_s, 5.0)
        try:
            async with asyncio.timeout(timeout):
                resp = await self._client().get(f"{self.base_url}/models", timeout=self._timeout(timeout))
        except (httpx.HTTPError, OSError, TimeoutError):
            return False
        return resp.is_success

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[union-attr]
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    def _where(self, url: str) -> str:
        return f"provider {self.id!r} (POST {url})"

    def _transport_error(self, exc: BaseException, url: str, timeout: float) -> ProviderError:
        """Map an httpx/asyncio exception raised before any answer arrived."""
        import httpx

        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
            return ProviderTimeout(
                f"{self._where(url)} did not {phase} within {timeout:g} s",
                provider=self.id,
                hint="the server may be overloaded or the model still loading; raise timeout_s "
                "(provider or request) or route to another provider",
            )
        return ProviderUnavailable(
            f"{self._where(url)} could not be reached: {type(exc).__name__}: {exc}",
            provider=self.id,
            hint=f"check that the server is running and that base_url={self.base_url!r} is right",
        )

    def _http_error(self, resp: httpx.Response, url: str) -> ProviderError:
        """Map a non-2xx answer to a typed error (the body must have been read)."""
        status = resp.status_code
        detail = _server_message(resp.content)
        where = f"{self._where(url)} answered HTTP {status}"
        said = f": {detail}" if detail else ""
        if status == 429:
            retry_after = parse_retry_after(resp.headers)
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return RateLimited(
                f"{where} (rate limited){said}{wait}",
                provider=self.id,
                status=status,
                retry_after=retry_after,
                hint="wait and retry, lower this provider's rpm/tpm limits, or route to another provider",
            )
        if status >= 500:
            return ProviderUnavailable(
                f"{where} (server error){said}",
                provider=self.id,
                status=status,
                hint="the server failed or is overloaded; retry later or route to another provider",
            )
        if status == 408:
            return ProviderTimeout(
                f"{where} (request timeout){said}", provider=self.id, status=status, hint="retry, or raise timeout_s"
            )
        if status in (401, 403):
            return ProviderError(
                f"{where} ({'unauthorized' if status == 401 else 'forbidden'}){said}",
                provider=self.id,
                status=status,
                retryable=False,
                hint="check the API key: pass api_key=... or set the environment variable named by api_key_env"
                + (" (none was sent)" if self._api_key is None else ""),
            )
        if status == 404:
            hint = (
                f"check model={self.model!r} and that base_url={self.base_url!r} is the API root (usually ends in /v1)"
            )
        else:
            hint = "the server rejected the request; fix it per the message above (model name, max_tokens, context length...)"
        return ProviderError(f"{where}{said}", provider=self.id, status=status, retryable=False, hint=hint)

    def _malformed(self, what: str, raw: str | bytes, url: str, exc: Exception | None = None) -> ProviderError:
        reason = f" ({exc})" if exc else ""
        return ProviderError(
            f"{self._where(url)} sent malformed {what}{reason}: {_excerpt(raw)}",
            provider=self.id,
            hint="the server does not speak the OpenAI wire format correctly; check base_url, or retry",
        )

    # -- calls -----------------------------------------------------------------------------

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        """Send ``request`` and return the whole answer (deadline: ``timeout_s``)."""
        import httpx

        url = self.chat_url
        timeout = request.timeout_s or self.timeout_s
        body = self._body(request, stream=False)
        client = self._client()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                resp = await client.post(url, json=body, timeout=self._timeout(timeout))
        except (httpx.TransportError, TimeoutError) as exc:
            raise self._transport_error(exc, url, timeout) from exc
        latency = time.perf_counter() - t0
        if not resp.is_success:
            raise self._http_error(resp, url)
        data, text, finish_reason = self._parse_answer(resp.content, url)
        usage, estimated = _usage(data.get("usage"), request, text)
        metadata: dict[str, Any] = {}
        if data.get("id"):
            metadata["response_id"] = data["id"]
        if data.get("model") and data["model"] != self.model:
            metadata["served_model"] = data["model"]
        if estimated:
            metadata["usage_estimated"] = True
        return ChatResponse(
            text=text,
            provider=self.id,
            model=self.model,
            usage=usage,
            cost_usd=self.pricing.cost(usage.input_tokens, usage.output_tokens),
            latency_s=latency,
            finish_reason=finish_reason,
            request_id=request.id,
            tried=[self.id],
            metadata=metadata,
        )

    def _parse_answer(self, content: bytes, url: str) -> tuple[dict[str, Any], str, str]:
        """The JSON object, text and finish reason of a whole (non-streamed) answer."""
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise self._malformed("JSON", content, url, exc) from exc
        if not isinstance(data, dict):
            raise self._malformed("JSON (not an object)", content, url)
        if data.get("error"):
            raise self._body_error(data, url)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish_reason = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("an answer without choices[0].message", content, url) from exc
        return data, text, finish_reason

    def _body_error(self, data: dict[str, Any], url: str) -> ProviderError:
        detail = _server_message(data) or "unknown error"
        return ProviderError(
            f"{self._where(url)} reported an error: {detail}",
            provider=self.id,
            hint="retry, or route to another provider",
        )

    def astream(self, request: ChatRequest) -> OpenAIStream:
        """Stream the answer: one chunk per content delta, then a ``done`` chunk with usage.

        The result is an async iterator (and async context manager); after the
        last chunk it holds ``ttft_s``, ``latency_s``, ``text``, ``usage`` and
        ``usage_estimated``.  Breaking out of the loop or cancelling the task
        closes the HTTP response (immediately with ``async with`` or ``aclose()``,
        else when the iterator is garbage-collected).
        """
        return OpenAIStream(self, request)

    async def _stream(self, request: ChatRequest, state: OpenAIStream) -> AsyncIterator[StreamChunk]:
        import httpx

        url = self.chat_url
        timeout = request.timeout_s or self.timeout_s
        body = self._body(request, stream=True)
        client = self._client()
        t0 = time.perf_counter()
        parts: list[str] = []
        index = 0
        finish_reason: str | None = None
        usage_data: Any = None
        done = False

        def broken(exc: ProviderError) -> ProviderError:
            exc.partial_text = "".join(parts)  # type: ignore[attr-defined]
            return exc

        try:
            async with client.stream(
                "POST", url, json=body, headers={"Accept": "text/event-stream"}, timeout=self._timeout(timeout)
            ) as resp:
                if not resp.is_success:
                    await resp.aread()
                    raise self._http_error(resp, url)
                if resp.headers.get("content-type", "").startswith("application/json"):
                    # A server (or proxy) that ignored "stream": a whole answer, sent as one chunk.
                    try:
                        answer, whole, finish_reason = self._parse_answer(await resp.aread(), url)
                    except ProviderError as exc:
                        raise broken(exc) from exc.__cause__
                    usage_data, done = answer.get("usage"), True
                    if whole:
                        state.ttft_s = self.last_ttft_s = time.perf_counter() - t0
                        parts.append(whole)
                        yield StreamChunk(text=whole, provider=self.id, index=index)
                        index += 1
                decoder = _SSEDecoder()
                lines: AsyncIterator[str] = _no_lines() if done else resp.aiter_lines()
                try:
                    async for line in lines:
                        data = decoder.feed(line)
                        if data is None:
                            continue
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        try:
                            event = json.loads(data)
                        except ValueError as exc:
                            raise broken(self._malformed("stream chunk", data, url, exc)) from exc
                        if not isinstance(event, dict):
                            raise broken(self._malformed("stream chunk (not an object)", data, url))
                        if event.get("error"):
                            raise broken(self._body_error(event, url))
                        if event.get("usage"):
                            usage_data = event["usage"]
                        try:
                            choices = event.get("choices") or []
                            choice = choices[0] if choices else {}
                            delta = (choice.get("delta") or {}).get("content") or ""
                            finish_reason = choice.get("finish_reason") or finish_reason
                        except (AttributeError, TypeError) as exc:
                            raise broken(self._malformed("stream chunk", data, url)) from exc
                        if delta:
                            if not parts:
                                state.ttft_s = self.last_ttft_s = time.perf_counter() - t0
                            parts.append(delta)
                            yield StreamChunk(text=delta, provider=self.id, index=index)
                            index += 1
                    else:
                        tail = decoder.flush()  # an unterminated last event: only "[DONE]" is accepted
                        done = tail is not None and tail.strip() == "[DONE]"
                except httpx.TimeoutException as exc:
                    raise broken(
                        ProviderTimeout(
                            f"{self._where(url)} stream stalled: no data for {timeout:g} s after {len(parts)} chunk(s)",
                            provider=self.id,
                            hint="the server is overloaded or stuck; raise timeout_s or route to another provider",
                        )
                    ) from exc
                except httpx.TransportError as exc:
                    raise broken(
                        StreamBroken(
                            f"{self._where(url)} stream was cut after {len(parts)} chunk(s): "
                            f"{type(exc).__name__}: {exc}",
                            provider=self.id,
                            hint="the connection dropped mid-answer; retry or fail over (partial_text holds "
                            "what arrived)",
                        )
                    ) from exc
                if not done and finish_reason is None:
                    raise broken(
                        StreamBroken(
                            f"{self._where(url)} stream ended after {len(parts)} chunk(s) without [DONE] or a "
                            "finish_reason",
                            provider=self.id,
                            hint="the server closed the stream mid-answer; retry or fail over (partial_text holds "
                            "what arrived)",
                        )
                    )
                text = "".join(parts)
                usage, estimated = _usage(usage_data, request, text)
                state.text = text
                state.usage = usage
                state.usage_estimated = estimated
                state.finish_reason = finish_reason or "stop"
                state.latency_s = time.perf_counter() - t0
                yield StreamChunk(
                    text="", provider=self.id, index=index, done=True, usage=usage, finish_reason=state.finish_reason
                )
                # Read the end of the body (normally already here), so that the connection goes
                # back to the pool instead of being closed; never wait long for it.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_DRAIN_S):
                        async for _ in lines:
                            pass
        except (httpx.TransportError, TimeoutError) as exc:  # before the answer started
            raise self._transport_error(exc, url, timeout) from exc


class OpenAIStream:
    """The async iterator returned by :meth:`OpenAICompatibleProvider.astream`.

    Iterate it for :class:`StreamChunk` objects; use ``async with`` (or call
    :meth:`aclose`) to close the HTTP response as soon as you stop reading.
    Once the ``done`` chunk has been produced it also holds the call's
    statistics.
    """

    __slots__ = ("_agen", "finish_reason", "latency_s", "provider", "text", "ttft_s", "usage", "usage_estimated")

    def __init__(self, provider: OpenAICompatibleProvider, request: ChatRequest) -> None:
        self.provider = provider
        self.ttft_s: float | None = None
        self.latency_s: float | None = None
        self.text: str | None = None
        self.usage: Usage | None = None
        self.usage_estimated = False
        self.finish_reason: str | None = None
        self._agen = provider._stream(request, self)

    def __aiter__(self) -> OpenAIStream:
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        await self._agen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> OpenAIStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _SSEDecoder:
    """Server-Sent Events, per the WHATWG spec, reduced to what chat streams use: ``data``.

    Feed it lines (without their terminator); it returns an event's data when a
    blank line ends an event that had some.  Comments (``:...``), ``event``,
    ``id`` and ``retry`` fields and unknown fields are ignored; several
    ``data`` lines in one event are joined with ``\\n``.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    >>> parse_retry_after({"retry-after": "2"})
    2.0
    >>> parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
    ...                   now=datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC))
    30.0
    """
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000
        except ValueError:
            pass
        else:
            if math.isfinite(value) and value >= 0:
                return value
    raw = (lower.get("retry-after") or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def _no_lines() -> AsyncIterator[str]:
    return
    yield  # an empty async generator


def _usage(raw: Any, request: ChatRequest, text: str) -> tuple[Usage, bool]:
    """Usage from the server's ``usage`` object; missing counts are estimated (~4 characters a token)."""
    raw = raw if isinstance(raw, dict) else {}
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    estimated = False
    if not isinstance(prompt, int):
        prompt, estimated = math.ceil(len(request.prompt_text) / 4), True
    if not isinstance(completion, int):
        completion, estimated = math.ceil(len(text) / 4), True
    return Usage(input_tokens=prompt, output_tokens=completion), estimated


def _server_message(body: bytes | dict[str, Any]) -> str:
    """The error message in an OpenAI-style (or vLLM/Ollama-style) error body, else the body's start."""
    data: Any = body
    if isinstance(body, bytes | bytearray):
        if not body.strip():
            return ""
        try:
            data = json.loads(body)
        except ValueError:
            return _excerpt(body)
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            extra = [str(err[k]) for k in ("type", "code") if err.get(k)]
            if msg:
                return f"{msg}" + (f" [{', '.join(extra)}]" if extra else "")
        elif isinstance(err, str) and err:
            return err
        for key in ("message", "detail"):
            if isinstance(data.get(key), str) and data[key]:
                return data[key]
    return _excerpt(json.dumps(data) if not isinstance(data, bytes | bytearray) else data)


def _excerpt(raw: str | bytes, limit: int = _EXCERPT) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def httpx_url_host(url: str) -> str | None:
    """Host of ``url`` (without importing httpx)."""
    from urllib.parse import urlsplit

    return urlsplit(url).hostname
