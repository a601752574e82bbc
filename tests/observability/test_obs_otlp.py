"""OTLP export over HTTP and gRPC to local receivers that decode the real ``ExportTraceServiceRequest`` protobufs."""

from __future__ import annotations

import gzip
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from obs_helpers import Harness, Scripted

pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from lumina_lab.providers import ChatRequest, RetryPolicy


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def decode(requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> list[dict[str, Any]]:
    """Every span of the requests as a dict (hex ids, attributes, events, status, resource)."""
    out = []
    for req in requests:
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_id": s.parent_span_id.hex() or None,
                            "kind": s.kind,
                            "status": s.status.code,
                            "attributes": {kv.key: _value(kv.value) for kv in s.attributes},
                            "events": {e.name: {kv.key: _value(kv.value) for kv in e.attributes} for e in s.events},
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "scope": ss.scope.name,
                            "resource": resource,
                        }
                    )
    return out


class _HttpReceiver:
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                assert self.headers["Content-Type"] == "application/x-protobuf"
                receiver.paths.append(self.path)
                receiver.requests.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        import grpc

        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request: Any, context: Any) -> Any:  # the generated servicer's method name
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()

    def close(self) -> None:
        self.server.stop(0)


async def _scenario(h: Harness) -> str:
    """A run holding a request with a retry and a fallback, and a stream; returns the run's trace id."""
    with h.obs.span("experiment", session="s-1") as run:
        await h.router.ainvoke(ChatRequest("hello", max_tokens=10))
        async for _ in h.router.astream(ChatRequest("stream", max_tokens=10)):
            pass
    await h.settle()
    return run.trace_id


async def test_otlp_http_export_is_decoded_with_the_store_span_tree() -> None:
    receiver = _HttpReceiver()
    h = Harness(
        [
            Scripted("gpt-4.1-mini", id="a", script=["fail", "fail"], price=1),
            Scripted("claude-3-7-sonnet", id="b", price=2),
        ],
        retry=RetryPolicy(attempts=2, base_s=0.001, jitter=False),
        obs={"exporter": "otlp_http", "endpoint": receiver.endpoint, "service_name": "lumina-test"},
    )
    try:
        trace_id = await _scenario(h)
        local = h.spans()
    finally:
        h.close()
        receiver.close()
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    got = decode(receiver.requests)
    # the same spans, with the same ids, as the local store derives from the event log
    assert sorted((s["name"], s["span_id"], s["parent_id"]) for s in got) == sorted(
        (s["name"], s["span_id"], s["parent_id"]) for s in local
    )
    assert {s["trace_id"] for s in got} == {trace_id}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in got:
        by_name.setdefault(s["name"], []).append(s)
    run = by_name["experiment"][0]
    assert (
        run["parent_id"] is None and run["resource"]["service.name"] == "lumina-test" and run["scope"] == "lumina_lab"
    )
    assert run["attributes"]["session.id"] == "s-1"
    failed = sorted(by_name["chat gpt-4.1-mini"], key=lambda s: s["start"])
    assert [s["attributes"]["lumina.attempt.kind"] for s in failed] == ["first", "retry", "first"]
    assert (
        failed[0]["status"] == 2 and failed[0]["attributes"]["error.type"] == "ProviderUnavailable"
    )  # STATUS_CODE_ERROR
    assert "exception" in failed[0]["events"]
    answer = next(s for s in by_name["chat claude-3-7-sonnet"] if s["attributes"]["lumina.attempt.kind"] == "fallback")
    a = answer["attributes"]
    assert answer["kind"] == 3 and answer["status"] == 1  # SPAN_KIND_CLIENT, STATUS_CODE_OK
    assert (a["gen_ai.system"], a["gen_ai.request.model"], a["gen_ai.operation.name"]) == (
        "anthropic",
        "claude-3-7-sonnet",
        "chat",
    )
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, 10)
    assert a["lumina.cost_usd"] == pytest.approx((5 * 2 + 10 * 8) / 1e6)
    assert a["lumina.breaker_state"] == "closed" and a["openinference.span.kind"] == "LLM"
    routes = {s["attributes"]["lumina.request_id"]: s for s in by_name["route cheapest"]}
    (route,) = routes.values()
    assert route["parent_id"] == run["span_id"] and route["attributes"]["lumina.strategy"] == "cheapest"
    assert route["attributes"]["lumina.cost_usd"] == pytest.approx(a["lumina.cost_usd"])  # rolled up
    assert set(route["events"]) == {"retry", "fallback"}
    stream = by_name["route stream"][0]
    streamed = [s for s in got if s["parent_id"] == stream["span_id"]]
    assert len(streamed) == 1 and streamed[0]["attributes"]["gen_ai.request.stream"] is True
    ttft = streamed[0]["events"]["first_token"]["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttft == pytest.approx(streamed[0]["attributes"]["gen_ai.response.time_to_first_chunk"])
    # the run span carries the whole trace's cost
    total = sum(s["attributes"].get("lumina.cost_usd", 0) for s in got if s["kind"] == 3)
    assert run["attributes"]["lumina.cost_usd"] == pytest.approx(total)


async def test_otlp_grpc_export_with_headers() -> None:
    receiver = _GrpcReceiver()
    h = Harness(
        [Scripted("gemini-2.5-flash", id="g")],
        obs={"exporter": "otlp_grpc", "endpoint": f"127.0.0.1:{receiver.port}", "headers": {"x-team": "lab"}},
    )
    try:
        await h.router.ainvoke(ChatRequest("over grpc", max_tokens=10))
        await h.settle()
    finally:
        h.close()
        receiver.close()
    got = decode(receiver.requests)
    assert sorted(s["name"] for s in got) == ["chat gemini-2.5-flash", "route cheapest"]
    route = next(s for s in got if s["name"] == "route cheapest")
    call = next(s for s in got if s["name"] != "route cheapest")
    assert call["parent_id"] == route["span_id"] and call["trace_id"] == route["trace_id"]
    assert call["attributes"]["gen_ai.system"] == "gcp.gemini"
    assert receiver.metadata[0]["x-team"] == "lab"


def test_console_exporter_prints_spans(capsys: pytest.CaptureFixture[str]) -> None:
    from lumina_lab.observability.export import OTelExportSink, make_exporter
    from lumina_lab.observability.spans import SpanRecord

    sink = OTelExportSink(make_exporter("console"), batch=False)
    from datetime import UTC, datetime

    span = SpanRecord("ab" * 16, "cd" * 8, None, "route cheapest", "route", datetime.now(UTC))
    span.end_ts, span.status = datetime.now(UTC), "ok"
    sink.span_closed(span)
    sink.shutdown()
    out = capsys.readouterr().out
    assert '"name": "route cheapest"' in out and "abababab" in out


def test_unknown_exporter_is_a_config_error() -> None:
    from lumina_lab.errors import ConfigError
    from lumina_lab.observability.export import make_exporter

    with pytest.raises(ConfigError, match="unknown span exporter 'zipkin'"):
        make_exporter("zipkin")
