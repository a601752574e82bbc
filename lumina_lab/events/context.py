"""Trace context stamped on events.

When an OpenTelemetry span is active, events carry its trace and span ids, so
events and traces join later.  OpenTelemetry is consulted only if the
application already imported it (no import cost otherwise).  Without it,
:func:`trace_scope` sets ids for a block of code.
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
import sys
from collections.abc import Iterator

__all__ = ["current_trace_ids", "trace_scope"]

_scope: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "lumina_trace", default=(None, None)
)


def current_trace_ids() -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` as lowercase hex of the active span, or ``(None, None)``."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is not None:
        ctx = otel.get_current_span().get_span_context()
        if ctx.is_valid:
            return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    return _scope.get()


@contextlib.contextmanager
def trace_scope(trace_id: str | None = None, span_id: str | None = None) -> Iterator[str]:
    """Stamp events created inside the block with ``trace_id`` (new if omitted).

    >>> with trace_scope() as tid:
    ...     len(tid)
    32
    """
    trace_id = trace_id or secrets.token_hex(16)
    token = _scope.set((trace_id, span_id or secrets.token_hex(8)))
    try:
        yield trace_id
    finally:
        _scope.reset(token)
