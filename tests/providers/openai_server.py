"""A real, local HTTP server speaking the OpenAI chat-completions wire format, for tests.

It listens on 127.0.0.1 on a free port, in a background thread (stdlib
:class:`http.server.ThreadingHTTPServer`, HTTP/1.1), and is scripted per
test with a queue of behaviours, one consumed per ``POST .../chat/completions``::

    with OpenAIServer() as server:
        server.push(Reply("Hello!", usage=(7, 2)), Error(429, headers={"Retry-After": "2"}))
        ...  # point a client at server.base_url ("http://127.0.0.1:<port>/v1")
        server.requests[0].body["messages"]

When the queue is empty the server answers ``Reply("ok")``.  A :class:`Reply`
sent to a request with ``"stream": true`` is streamed word by word; use
:class:`Stream` for full control of a stream (framing, delays, a malformed
chunk, a cut connection).  ``GET /v1/models`` lists ``server.models`` with
status ``server.models_status``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["Drop", "Error", "OpenAIServer", "Raw", "Recorded", "Reply", "Sleep", "Stream"]


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes
    body: Any  # parsed JSON, or None
    client_port: int = 0  # the same port twice: the connection was kept alive and reused

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))


class Behaviour:
    def serve(self, h: _Handler, req: Recorded) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _usage(usage: tuple[int, int] | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}


@dataclass
class Reply(Behaviour):
    """A normal answer (JSON; streamed word by word if the request asked to stream)."""

    text: str = "ok"
    usage: tuple[int, int] | None = (5, 1)
    finish_reason: str = "stop"

    def serve(self, h: _Handler, req: Recorded) -> None:
        if req.stream:
            deltas = re.findall(r"\S+\s*|\s+", self.text)
            Stream(deltas, usage=self.usage, finish_reason=self.finish_reason).serve(h, req)
            return
        body: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.body.get("model", "?") if isinstance(req.body, dict) else "?",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text},
                    "finish_reason": self.finish_reason,
                }
            ],
        }
        if self.usage is not None:
            body["usage"] = _usage(self.usage)
        h.send_json(200, body)


@dataclass
class Error(Behaviour):
    """An HTTP error with an OpenAI-style error body (or ``body`` verbatim)."""

    status: int
    message: str = "something went wrong"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def serve(self, h: _Handler, req: Recorded) -> None:
        if self.body is not None:
            h.send_bytes(self.status, self.body, "application/json", self.headers)
            return
        kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(self.status, "server_error")
        payload = {"error": {"message": self.message, "type": kind, "param": None, "code": None}}
        h.send_json(self.status, payload, self.headers)


@dataclass
class Raw(Behaviour):
    """Any body with any status (e.g. malformed JSON with 200)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"

    def serve(self, h: _Handler, req: Recorded) -> None:
        h.send_bytes(self.status, self.body, self.content_type)


@dataclass
class Sleep(Behaviour):
    """Wait ``seconds`` before answering with ``then`` (the wait ends early when the server stops)."""

    seconds: float
    then: Behaviour = field(default_factory=Reply)

    def serve(self, h: _Handler, req: Recorded) -> None:
        if h.server.owner.stopping.wait(self.seconds):
            h.close_connection = True
            return
        self.then.serve(h, req)


@dataclass
class Drop(Behaviour):
    """Close the connection without answering at all."""

    def serve(self, h: _Handler, req: Recorded) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@dataclass
class Stream(Behaviour):
    """A Server-Sent-Events stream of chat-completion chunks.

    Args:
        deltas: the content pieces, one chunk each.
        usage: (prompt, completion) tokens, sent in a final ``choices: []`` chunk when the
            request asked for it (``stream_options.include_usage``); ``None``: never.
        finish_reason: sent in a chunk after the deltas (``None``: not sent).
        done: end with ``data: [DONE]``.
        framing: ``"chunked"`` (``Transfer-Encoding: chunked``, keep-alive) or ``"close"``
            (no length; the end of the body is the end of the connection).
        delay: seconds to wait before each delta.
        malformed_at: index of a delta whose chunk is sent as broken JSON.
        cut_after: close the connection after this many deltas (no finish, no [DONE];
            with chunked framing, without the terminating zero-length chunk).
        comments: also send ``: keep-alive`` comment lines and ``event:``/``id:`` fields.
        multiline: split each chunk's JSON over several ``data:`` lines (legal SSE).
        eol: line terminator (``"\\n"``, ``"\\r\\n"`` or ``"\\r"``).
    """

    deltas: list[str]
    usage: tuple[int, int] | None = (5, 3)
    finish_reason: str | None = "stop"
    done: bool = True
    framing: Literal["chunked", "close"] = "chunked"
    delay: float = 0.0
    malformed_at: int | None = None
    cut_after: int | None = None
    comments: bool = True
    multiline: bool = False
    eol: str = "\n"

    def _event(self, payload: dict[str, Any] | str, n: int) -> bytes:
        eol = self.eol
        text = payload if isinstance(payload, str) else json.dumps(payload)
        lines = []
        if self.comments:
            lines += [": keep-alive", "", "event: message", f"id: {n}"]
        if self.multiline and not isinstance(payload, str):
            text = json.dumps(payload, indent=1)
        lines += [f"data: {part}" for part in text.split("\n")]
        return (eol.join(lines) + eol + eol).encode()

    def serve(self, h: _Handler, req: Recorded) -> None:
        model = req.body.get("model", "?") if isinstance(req.body, dict) else "?"
        want_usage = isinstance(req.body, dict) and bool((req.body.get("stream_options") or {}).get("include_usage"))
        chunked = self.framing == "chunked"
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        def write(data: bytes) -> None:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            h.wfile.flush()

        n = 0
        try:
            write(self._event(chunk({"role": "assistant", "content": ""}), n))  # an empty delta first
            for i, delta in enumerate(self.deltas):
                if self.cut_after is not None and i >= self.cut_after:
                    h.close_connection = True  # no terminating chunk: the body is incomplete
                    return
                if self.delay and h.server.owner.stopping.wait(self.delay):
                    h.close_connection = True
                    return
                n += 1
                if i == self.malformed_at:
                    write(self._event('{"choices": [{"delta": {"content": "oops', n))
                else:
                    write(self._event(chunk({"content": delta}), n))
            if self.finish_reason is not None:
                n += 1
                write(self._event(chunk({}, self.finish_reason), n))
            if want_usage and self.usage is not None:
                n += 1
                last = chunk({})
                last["choices"] = []
                last["usage"] = _usage(self.usage)
                write(self._event(last, n))
            if self.done:
                write(self._event("[DONE]", n + 1))
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True
            h.server.owner.note_disconnect()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Recorded(self.command, self.path, headers, raw, body, self.client_address[1])
        self.server.owner.record(req)
        return req

    def do_POST(self) -> None:
        req = self._record()
        if not self.path.rstrip("/").endswith("/chat/completions"):
            Error(404, f"no route for POST {self.path}").serve(self, req)
            return
        self.server.owner.next_behaviour().serve(self, req)

    def do_GET(self) -> None:
        req = self._record()
        owner = self.server.owner
        if self.path.rstrip("/").endswith("/models"):
            if owner.models_status >= 400:
                Error(owner.models_status, "models unavailable").serve(self, req)
                return
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in owner.models]
            self.send_json(owner.models_status, {"object": "list", "data": data})
            return
        Error(404, f"no route for GET {self.path}").serve(self, req)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: OpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # clients that left mid-answer
        pass


class OpenAIServer:
    """The scriptable server; a context manager (``start()``/``stop()`` also work)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.models: list[str] = ["test-model"]
        self.models_status = 200
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.stopping = threading.Event()
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting --------------------------------------------------------------

    def push(self, *behaviours: Behaviour) -> OpenAIServer:
        with self._lock:
            self._queue.extend(behaviours)
        return self

    def next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else Reply()

    def record(self, req: Recorded) -> None:
        with self._lock:
            self.requests.append(req)

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.disconnected.set()

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    # -- lifecycle --------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> OpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
