"""Observability: spans derived from the event stream, a local span store, OTLP export, Prometheus metrics,
alerts and structured logs.

Nothing here is imported by ``import lumina_lab``; opentelemetry-sdk and prometheus-client load only
when an exporter or the metrics endpoint is used.

>>> from lumina_lab.observability import AlertRule
>>> AlertRule("budget", "budget_remaining_usd < 5").threshold
5.0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .alerts import AlertEvaluator, AlertRule, rules_from_config
    from .events import AlertFired, AlertResolved, SpanEnded, SpanStarted
    from .export import OTelExportSink, SpanStoreProcessor, make_exporter
    from .hub import Observability, SpanHandle, aspan, span
    from .logging import configure_logging
    from .metrics import Metrics
    from .server import MetricsServer, jupyter_handler, metrics_app, start_metrics_server
    from .spans import SpanBuilder, SpanRecord
    from .store import SpanStore
    from .trace import Trace

_WHERE = {
    "AlertEvaluator": "alerts",
    "AlertRule": "alerts",
    "rules_from_config": "alerts",
    "AlertFired": "events",
    "AlertResolved": "events",
    "SpanEnded": "events",
    "SpanStarted": "events",
    "OTelExportSink": "export",
    "SpanStoreProcessor": "export",
    "make_exporter": "export",
    "Observability": "hub",
    "SpanHandle": "hub",
    "aspan": "hub",
    "span": "hub",
    "configure_logging": "logging",
    "Metrics": "metrics",
    "MetricsServer": "server",
    "jupyter_handler": "server",
    "metrics_app": "server",
    "start_metrics_server": "server",
    "SpanBuilder": "spans",
    "SpanRecord": "spans",
    "SpanStore": "store",
    "Trace": "trace",
}

__all__ = [
    "AlertEvaluator",
    "AlertFired",
    "AlertResolved",
    "AlertRule",
    "Metrics",
    "MetricsServer",
    "OTelExportSink",
    "Observability",
    "SpanBuilder",
    "SpanEnded",
    "SpanHandle",
    "SpanRecord",
    "SpanStarted",
    "SpanStore",
    "SpanStoreProcessor",
    "Trace",
    "aspan",
    "configure_logging",
    "jupyter_handler",
    "make_exporter",
    "metrics_app",
    "rules_from_config",
    "span",
    "start_metrics_server",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lumina_lab.observability' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
