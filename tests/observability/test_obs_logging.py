"""Structured logs carry the trace ids of the active span."""

from __future__ import annotations

import io
import json
import logging

import pytest

from lumina_lab.events import trace_scope
from lumina_lab.observability import configure_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logger():
    log = logging.getLogger("lumina.test.obs")
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)


def test_json_lines_when_not_a_terminal(logger: logging.Logger) -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, logger=logger)
    with trace_scope("ab" * 16, "cd" * 8):
        logger.info("routed %s", "req-1", extra={"provider": "sim-a", "cost_usd": 0.5})
    logger.warning("outside")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    first, second, third = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["message"] == "routed req-1" and first["level"] == "INFO" and first["logger"] == "lumina.test.obs"
    assert (first["trace_id"], first["span_id"]) == ("ab" * 16, "cd" * 8)
    assert (first["provider"], first["cost_usd"]) == ("sim-a", 0.5)
    assert second["trace_id"] is None
    assert third["exc_type"] == "RuntimeError" and "boom" in third["exc"]


def test_text_on_a_terminal_and_reconfiguring_replaces_the_handler(logger: logging.Logger) -> None:
    tty = _Tty()
    configure_logging(stream=tty, logger=logger)
    configure_logging(stream=tty, logger=logger, level="DEBUG")
    assert len(logger.handlers) == 1
    with trace_scope("12" * 16, "34" * 8):
        logger.debug("hello")
    line = tty.getvalue().strip()
    assert line.endswith("hello") and f"[trace={'12' * 16} span={'34' * 8}]" in line and "DEBUG" in line


def test_opentelemetry_spans_are_picked_up(logger: logging.Logger) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    buf = io.StringIO()
    configure_logging(json=True, stream=buf, logger=logger)
    with tracer.start_as_current_span("work") as span:
        logger.info("inside an otel span")
        ctx = span.get_span_context()
    record = json.loads(buf.getvalue())
    assert record["trace_id"] == f"{ctx.trace_id:032x}" and record["span_id"] == f"{ctx.span_id:016x}"
    assert trace.get_current_span().get_span_context().is_valid is False
