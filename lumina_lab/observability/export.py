"""Export spans through the OpenTelemetry SDK: OTLP over HTTP or gRPC (any collector, Jaeger, Tempo,
Phoenix), or the console; and record the SDK's own spans in the span store.

:class:`OTelExportSink` is a span sink: each finished span becomes an SDK
``ReadableSpan`` handed to a ``BatchSpanProcessor`` (export happens on the SDK's
thread).  :class:`SpanStoreProcessor` goes the other way: an SDK
``SpanProcessor`` that writes spans made with an OpenTelemetry tracer (yours,
or an instrumentation library's) into the event log, hence the span store, open ones included.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .._version import __version__
from ..errors import ConfigError
from .spans import SpanRecord, otel_attributes

__all__ = ["OTelExportSink", "SpanStoreProcessor", "make_exporter", "to_readable_span"]

EXPORTERS = ("none", "console", "otlp_http", "otlp_grpc")
_PACKAGES = {
    "otlp_http": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry-exporter-otlp-proto-http"),
    "otlp_grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "opentelemetry-exporter-otlp-proto-grpc"),
}


def make_exporter(
    kind: Any, endpoint: str | None = None, *, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0
) -> Any:
    """An OpenTelemetry ``SpanExporter``: ``console``, ``otlp_http`` or ``otlp_grpc``.

    ``otlp_http`` takes a base URL (``http://collector:4318``; ``/v1/traces`` is added when the URL has
    no path) or the full traces URL; ``otlp_grpc`` takes ``host:port`` or ``http(s)://host:port``
    (plain ``http`` means an insecure channel).
    """
    if not isinstance(kind, str):  # an exporter object already (e.g. the SDK's InMemorySpanExporter)
        return kind
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout)  # the stdout of now (the SDK's default is bound at import)
    if kind not in _PACKAGES:
        raise ConfigError(
            f"unknown span exporter {kind!r}",
            key="observability.exporter",
            value=kind,
            allowed=", ".join(EXPORTERS),
            hint=f"use one of {', '.join(EXPORTERS)}",
        )
    module, package = _PACKAGES[kind]
    try:
        mod = __import__(module, fromlist=["OTLPSpanExporter"])
    except ImportError:
        raise ConfigError(
            f"the {kind} span exporter needs the {package} package",
            key="observability.exporter",
            value=kind,
            hint=f"pip install {package}  (or pip install 'lumina-lab[observability]')",
        ) from None
    if kind == "otlp_http":
        url = endpoint or "http://localhost:4318"
        from urllib.parse import urlsplit

        if urlsplit(url).path in ("", "/"):
            url = url.rstrip("/") + "/v1/traces"
        return mod.OTLPSpanExporter(endpoint=url, headers=dict(headers or {}), timeout=timeout_s)
    target = endpoint or "localhost:4317"
    insecure = not target.startswith("https://")
    return mod.OTLPSpanExporter(
        endpoint=target, insecure=insecure, headers=dict(headers or {}) or None, timeout=timeout_s
    )


def _ns(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_readable_span(span: SpanRecord, resource: Any, scope: Any) -> Any:
    """The SDK ``ReadableSpan`` of a finished :class:`SpanRecord`."""
    from opentelemetry.sdk.trace import Event as SpanEvent
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    flags = TraceFlags(TraceFlags.SAMPLED)
    ctx = SpanContext(int(span.trace_id, 16), int(span.span_id, 16), is_remote=False, trace_flags=flags)
    parent = None
    if span.parent_id:
        parent = SpanContext(int(span.trace_id, 16), int(span.parent_id, 16), is_remote=False, trace_flags=flags)
    if span.status == "ok":
        status = Status(StatusCode.OK)
    elif span.status == "error":
        status = Status(StatusCode.ERROR, f"{span.error_type}: {span.error}" if span.error else span.error_type)
    else:
        status = Status(StatusCode.UNSET)
    from .spans import _attr_value

    events = [
        SpanEvent(name, {k: _attr_value(v) for k, v in attrs.items() if v is not None}, timestamp=_ns(ts))
        for name, ts, attrs in (span.events or ())
    ]
    if span.ttft_s is not None:
        ttft_ns = _ns(span.start_ts) + int(span.ttft_s * 1e9)
        events.insert(
            0, SpanEvent("first_token", {"gen_ai.response.time_to_first_chunk": span.ttft_s}, timestamp=ttft_ns)
        )
    if span.error and span.status == "error":
        events.append(
            SpanEvent(
                "exception",
                {"exception.type": span.error_type or "Error", "exception.message": span.error},
                _ns(span.end_ts or span.start_ts),
            )
        )
    return ReadableSpan(
        name=span.name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes=otel_attributes(span),
        events=events,
        kind=SpanKind.CLIENT if span.kind == "attempt" else SpanKind.INTERNAL,
        status=status,
        start_time=_ns(span.start_ts),
        end_time=_ns(span.end_ts or span.start_ts),
        instrumentation_scope=scope,
    )


class OTelExportSink:
    """A span sink exporting finished spans through an SDK span exporter (batched, on the SDK's thread).

    Args:
        exporter: an OpenTelemetry ``SpanExporter`` (see :func:`make_exporter`).
        service_name: ``service.name`` of the resource.
        resource_attributes: more resource attributes.
        batch: use a ``BatchSpanProcessor`` (else a ``SimpleSpanProcessor``: one export per span).
    """

    def __init__(
        self,
        exporter: Any,
        *,
        service_name: str = "lumina-lab",
        resource_attributes: Mapping[str, Any] | None = None,
        batch: bool = True,
        schedule_delay_ms: float = 500,
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.exporter = exporter
        self.resource = Resource.create({"service.name": service_name, **dict(resource_attributes or {})})
        self.scope = InstrumentationScope("lumina_lab", __version__)
        self.processor = (
            BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
            if batch
            else SimpleSpanProcessor(exporter)
        )
        self.exported = 0

    def span_opened(self, span: SpanRecord) -> None:
        pass  # OTLP carries finished spans only; open ones are visible in the local store

    def span_closed(self, span: SpanRecord) -> None:
        if span.exported:  # a request reopened by a late event: its first export stands
            return
        span.exported = True
        self.exported += 1
        self.processor.on_end(to_readable_span(span, self.resource, self.scope))

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return bool(self.processor.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        self.processor.shutdown()


def _dt(ns: int | None) -> datetime:
    return datetime.now(UTC) if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class SpanStoreProcessor:
    """An OpenTelemetry SDK ``SpanProcessor`` that records SDK spans as ``span.started``/``span.ended`` events.

    Spans made with an OpenTelemetry tracer (yours, or an instrumentation library's) then land in the
    event log and the span store beside the router's, open ones included; GenAI attributes
    (``gen_ai.request.model``, ``gen_ai.usage.*``, ``lumina.cost_usd``) become span columns.

    >>> provider.add_span_processor(lab.observability.span_processor())  # doctest: +SKIP
    """

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    @staticmethod
    def _ids(span: Any) -> tuple[str, str, str | None]:
        ctx = span.get_span_context() if hasattr(span, "get_span_context") else span.context
        parent = span.parent
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{parent.span_id:016x}" if parent is not None else None

    @staticmethod
    def _kind(attrs: Mapping[str, Any]) -> str:
        kind = attrs.get("lumina.span.kind")
        if kind:
            return str(kind)
        return "llm" if ("gen_ai.request.model" in attrs or "gen_ai.operation.name" in attrs) else "span"

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        from .events import SpanStarted

        trace_id, span_id, parent = self._ids(span)
        attrs = {k: _plain(v) for k, v in (span.attributes or {}).items()}
        self.bus.publish_sync(
            SpanStarted(
                trace_id=trace_id,
                span_id=span_id,
                ts=_dt(span.start_time),
                name=span.name,
                kind=self._kind(attrs),
                parent_id=parent,
                session=attrs.get("session.id"),
                attributes=attrs,
            )
        )

    def on_end(self, span: Any) -> None:
        from .events import SpanEnded

        trace_id, span_id, parent = self._ids(span)
        attrs = {k: _plain(v) for k, v in (span.attributes or {}).items()}
        code = getattr(getattr(span.status, "status_code", None), "name", "UNSET")
        error = None
        if code == "ERROR":
            error = f"{attrs.get('error.type', 'Error')}: {span.status.description or ''}".rstrip(": ")
        start, end = span.start_time or 0, span.end_time or span.start_time or 0
        self.bus.publish_sync(
            SpanEnded(
                trace_id=trace_id,
                span_id=span_id,
                ts=_dt(span.end_time),
                name=span.name,
                kind=self._kind(attrs),
                parent_id=parent,
                status="error" if code == "ERROR" else "ok",
                error=error,
                duration_s=max(end - start, 0) / 1e9,
                attributes=attrs,
            )
        )

    def _on_ending(self, span: Any) -> None:  # hook of recent SDKs
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
