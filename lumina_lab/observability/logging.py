"""Structured logs carrying trace ids: JSON lines when the stream is not a terminal, readable text when it is.

>>> import io, json, logging
>>> buf = io.StringIO()
>>> _ = configure_logging(stream=buf, logger="docs.example")
>>> logging.getLogger("docs.example").info("routed", extra={"provider": "sim-a"})
>>> record = json.loads(buf.getvalue())
>>> record["message"], record["provider"], sorted(k for k in record if k.endswith("_id"))
('routed', 'sim-a', ['span_id', 'trace_id'])
"""

from __future__ import annotations

import json as _json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from ..events.context import current_trace_ids

__all__ = ["TEXT_FORMAT", "JsonFormatter", "TraceContextFilter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "trace_id", "span_id"}


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id``/``span_id`` of the active span (ours or OpenTelemetry's) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            record.trace_id, record.span_id = current_trace_ids()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, trace_id, span_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "trace_id", None) is None:
            record.trace_id, record.span_id = current_trace_ids()
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": record.trace_id,  # type: ignore[attr-defined]
            "span_id": getattr(record, "span_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return _json.dumps(out, default=str)


def configure_logging(
    json: bool | None = None,
    *,
    level: int | str | None = logging.INFO,
    stream: IO[str] | None = None,
    logger: str | logging.Logger = "",
) -> logging.Handler:
    """Send ``logger``'s records (the root logger by default) to ``stream`` (stderr) with trace ids.

    Args:
        json: JSON lines (``True``), text (``False``), or ``None``: JSON unless ``stream`` is a terminal.
        level: level set on the logger (``None`` leaves it).

    Calling it again replaces the handler it added before.  Returns the handler.
    """
    stream = stream if stream is not None else sys.stderr
    if json is None:
        isatty = getattr(stream, "isatty", None)
        json = not (callable(isatty) and isatty())
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    handler._lumina = True  # type: ignore[attr-defined]
    target = logging.getLogger(logger) if isinstance(logger, str) else logger
    for old in list(target.handlers):
        if getattr(old, "_lumina", False):
            target.removeHandler(old)
    target.addHandler(handler)
    if level is not None:
        target.setLevel(level)
    return handler
