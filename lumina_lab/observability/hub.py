"""The :class:`Observability` hub: tracing, metrics and alerts for one bus and its event store.

::

    router, memory, policy, lab.run ──events──▶ bus ─┬─▶ event store (already there) ◀── SpanStore: spans,
                                                    │                                    traces, roll-ups (SQL)
                                                    └─"*"─▶ Observability._handle(batch)
                                                            ├─ Metrics ──▶ Prometheus endpoint
                                                            │     └─ AlertEvaluator ──▶ alert.fired / alert.resolved
                                                            └─ SpanBuilder ──▶ OTLP / console (only when exporting)

Local tracing costs nothing at publish time: spans are derived from the event log when queried.
The subscriber exists only for metrics and for export; a timer thread settles exported requests and
evaluates alerts while nothing happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..clock import WALL, Clock
from ..events.context import current_trace_ids, trace_scope
from .alerts import AlertEvaluator, AlertRule, rules_from_config
from .events import SpanEnded, SpanStarted
from .metrics import Metrics
from .spans import SpanBuilder
from .store import SpanStore

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Settings
    from .server import MetricsServer
    from .trace import Trace

__all__ = ["Observability", "SpanHandle", "aspan", "span"]

log = logging.getLogger(__name__)


class SpanHandle:
    """The span opened by :func:`span`: its ids, and attributes reported when it ends."""

    __slots__ = ("attributes", "name", "span_id", "trace_id")

    def __init__(self, name: str, trace_id: str, span_id: str) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.attributes: dict[str, Any] = {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def __repr__(self) -> str:
        return f"SpanHandle({self.name!r}, trace_id={self.trace_id!r}, span_id={self.span_id!r})"


def _enter(name: str) -> tuple[SpanHandle, str | None, contextlib.ExitStack]:
    trace_id, parent = current_trace_ids()
    trace_id = trace_id or secrets.token_hex(16)
    handle = SpanHandle(name, trace_id, secrets.token_hex(8))
    stack = contextlib.ExitStack()
    stack.enter_context(trace_scope(trace_id, handle.span_id))
    if "opentelemetry.trace" in sys.modules:  # make our span the current OpenTelemetry span too
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        ctx = otel_trace.SpanContext(
            int(trace_id, 16), int(handle.span_id, 16), is_remote=False, trace_flags=otel_trace.TraceFlags(1)
        )
        token = otel_context.attach(otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(ctx)))
        stack.callback(otel_context.detach, token)
    return handle, parent, stack


def _started(
    handle: SpanHandle, parent: str | None, kind: str, session: str | None, attrs: dict[str, Any]
) -> SpanStarted:
    return SpanStarted(
        trace_id=handle.trace_id,
        span_id=handle.span_id,
        name=handle.name,
        kind=kind,
        parent_id=parent,
        session=session,
        attributes=attrs,
    )


def _ended(handle: SpanHandle, parent: str | None, kind: str, status: str, error: str | None, t0: float) -> SpanEnded:
    return SpanEnded(
        trace_id=handle.trace_id,
        span_id=handle.span_id,
        name=handle.name,
        kind=kind,
        parent_id=parent,
        status=status,
        error=error,
        duration_s=time.perf_counter() - t0,
        attributes=handle.attributes,
    )


@contextlib.contextmanager
def span(
    bus: Any, name: str, *, kind: str = "run", session: str | None = None, **attributes: Any
) -> Iterator[SpanHandle]:
    """Open a span around a block of synchronous code (a notebook run).

    Everything published inside — routed requests, memory searches, policy decisions — carries its
    trace id and becomes its child.  The span is announced with ``span.started``/``span.ended``
    events, so it is stored and derived like everything else.
    """
    handle, parent, stack = _enter(name)
    with stack:
        bus.publish_sync(_started(handle, parent, kind, session, attributes))
        t0 = time.perf_counter()
        status, error = "ok", None
        try:
            yield handle
        except BaseException as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            bus.publish_sync(_ended(handle, parent, kind, status, error, t0))


@contextlib.asynccontextmanager
async def aspan(
    bus: Any, name: str, *, kind: str = "run", session: str | None = None, **attributes: Any
) -> AsyncIterator[SpanHandle]:
    """Async :func:`span`."""
    handle, parent, stack = _enter(name)
    with stack:
        await bus.publish(_started(handle, parent, kind, session, attributes))
        t0 = time.perf_counter()
        status, error = "ok", None
        try:
            yield handle
        except BaseException as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await bus.publish(_ended(handle, parent, kind, status, error, t0))


class Observability:
    """Tracing, metrics and alerts for ``bus`` (and the event store attached to it).

    Args:
        bus: the event bus (an :class:`~lumina_lab.events.InProcessBus`).
        events: the event store the bus feeds: spans are derived from it (:attr:`store`).
        tracing: ``lab.run`` spans, span queries, and export when an exporter is set.
        metrics: fold events into :class:`Metrics` (Prometheus endpoint, alert rules).
        exporter: ``none``, ``console``, ``otlp_http`` or ``otlp_grpc`` (or an SDK ``SpanExporter``): finished
            spans are also sent there (derived live from the same events by a :class:`SpanBuilder`, same ids).
        endpoint, headers: of the OTLP exporter.
        service_name: OpenTelemetry ``service.name``.
        alerts: :class:`AlertRule` objects or dicts (``name``, ``expr``, ``for_s``, ``severity``).
        clock: time of the metrics windows and alert periods.
        tick_s: period of the timer (settling exported requests, alerts while idle).

    >>> obs = Observability(bus, events=store)          # doctest: +SKIP
    >>> with obs.span("experiment 1"): ...               # doctest: +SKIP
    >>> obs.traces(model="gpt-4.1")                      # doctest: +SKIP
    """

    def __init__(
        self,
        bus: Any,
        events: Any = None,
        *,
        tracing: bool = True,
        metrics: bool = True,
        exporter: Any = "none",
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        service_name: str = "lumina-lab",
        alerts: Iterable[AlertRule | Mapping[str, Any]] = (),
        clock: Clock | None = None,
        tick_s: float = 0.5,
        settle_s: float = 0.25,
        window_s: float = 60.0,
        alert_interval_s: float = 1.0,
        name: str = "observability",
        batch: int = 1024,
    ) -> None:
        self.bus = bus
        self.events = events
        self.tracing = tracing
        self.clock = clock or WALL
        self.lock = threading.RLock()
        self.tick_s = tick_s
        self.alert_interval_s = alert_interval_s
        self.metrics: Metrics | None = Metrics(clock=self.clock, window_s=window_s) if metrics else None
        self.store: SpanStore | None = SpanStore(events) if tracing and events is not None else None
        self.exporter: Any = None
        self.builder: SpanBuilder | None = None
        if tracing and exporter and exporter != "none":
            from .export import OTelExportSink, make_exporter

            self.exporter = OTelExportSink(
                make_exporter(exporter, endpoint, headers=headers), service_name=service_name
            )
            self.builder = SpanBuilder([self.exporter], settle_s=settle_s)
        self.alerts = AlertEvaluator(
            rules_from_config(alerts), self.metrics or Metrics(clock=self.clock), bus=bus, clock=self.clock
        )
        self._last_alert = -float("inf")
        self._servers: list[MetricsServer] = []
        self._closed = False
        live = self.metrics is not None or self.builder is not None
        self.subscription = (
            bus.subscribe("*", self._handle, name=name, batch=batch) if bus is not None and live else None
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.builder is not None or self.alerts.rules:
            self._start_timer()

    def _start_timer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="lumina-observability", daemon=True)
            self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, bus: Any, events: Any = None, **overrides: Any) -> Observability:
        """The hub ``settings.observability`` describes, for ``bus`` and its event store ``events``."""
        o = settings.observability
        options: dict[str, Any] = {
            "tracing": bool(o.tracing),
            "metrics": bool(o.metrics if o.metrics is not None else o.tracing),
            "exporter": o.exporter,
            "endpoint": o.endpoint,
            "headers": o.headers,
            "service_name": o.service_name,
            "alerts": o.alerts,
        }
        options.update(overrides)
        hub = cls(bus, events, **options)
        if o.metrics_port is not None and hub.metrics is not None:
            hub.serve_metrics(o.metrics_port, host=o.metrics_host)
        return hub

    # ------------------------------------------------------------------ the subscriber
    def _handle(self, batch: list[Any]) -> None:
        builder = self.builder
        if builder is not None:
            with self.lock:
                builder.apply_many(batch)
        metrics = self.metrics
        if metrics is not None:
            metrics.apply_many(batch)
            if self.alerts.rules:
                now = self.clock.now()
                if now - self._last_alert >= min(self.alert_interval_s, 0.25) or now < self._last_alert:
                    self._last_alert = now
                    self._publish_nowait(self.alerts.step(now))

    def _publish_nowait(self, events: list[Any]) -> None:
        """Publish from the subscriber (on the bus loop) without ever waiting on our own queue."""
        from ..errors import BusFull

        for ev in events:
            try:
                self.bus.publish_nowait(ev)
            except BusFull:
                asyncio.get_running_loop().create_task(self.bus.publish(ev))

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self._tick_once()
            except Exception as exc:  # keep ticking
                log.warning("observability tick failed: %s", exc)

    def _tick_once(self) -> None:
        if self.builder is not None:
            with self.lock:
                self.builder.settle()
        if self.alerts.rules and self.metrics is not None:
            now = self.clock.now()
            if now - self._last_alert >= self.alert_interval_s:
                self._last_alert = now
                events = self.alerts.step(now)
                if events and self.bus is not None and not getattr(self.bus, "_closed", False):
                    self.bus.publish_many_sync(events)

    # ------------------------------------------------------------------ spans opened by code
    def span(self, name: str, *, kind: str = "run", session: str | None = None, **attributes: Any) -> Any:
        """A context manager: a span around a block of code (see :func:`span`)."""
        return span(self.bus, name, kind=kind, session=session, **attributes)

    def aspan(self, name: str, *, kind: str = "run", session: str | None = None, **attributes: Any) -> Any:
        """Async :meth:`span`."""
        return aspan(self.bus, name, kind=kind, session=session, **attributes)

    def span_processor(self) -> Any:
        """An OpenTelemetry SDK ``SpanProcessor`` recording SDK spans as ``span.*`` events (so in the span store)."""
        from .export import SpanStoreProcessor

        return SpanStoreProcessor(self.bus)

    # ------------------------------------------------------------------ flushing
    def flush(self, timeout: float | None = 30.0) -> None:
        """Handle every published event, store it, settle and export finished requests."""
        drain = getattr(self.bus, "drain_sync", None)
        if drain is not None and not self._closed and not getattr(self.bus, "_closed", False):
            drain(timeout)
        self._settle_and_write()

    async def aflush(self) -> None:
        """Async :meth:`flush`."""
        if self.bus is not None and not self._closed and not getattr(self.bus, "_closed", False):
            await self.bus.drain()
        await asyncio.to_thread(self._settle_and_write)

    def _settle_and_write(self) -> None:
        if self.events is not None:
            self.events.flush()
        if self.builder is not None:
            with self.lock:
                self.builder.settle(force=True)
        if self.exporter is not None:
            self.exporter.force_flush()

    # ------------------------------------------------------------------ queries
    def _need_store(self) -> SpanStore:
        if self.store is None:
            from ..errors import ConfigError

            raise ConfigError(
                "no span store: tracing is off or no event store was given",
                key="observability.tracing",
                value=self.tracing,
                hint="set observability.tracing = true, and pass the event store: Observability(bus, events=store)",
            )
        return self.store

    def traces(self, since: Any = None, until: Any = None, **filters: Any) -> pd.DataFrame:
        """Traces with rolled-up cost and tokens (see :meth:`SpanStore.traces`)."""
        store = self._need_store()
        self.flush()
        return store.traces(since, until, **filters)

    def trace(self, trace_id: str) -> Trace:
        """One trace with a waterfall view."""
        store = self._need_store()
        self.flush()
        return store.trace(trace_id)

    def spans(self, trace_id: Any = None, **filters: Any) -> pd.DataFrame:
        store = self._need_store()
        self.flush()
        return store.spans(trace_id, **filters)

    def stats(self, by: Any = "model", **filters: Any) -> pd.DataFrame:
        store = self._need_store()
        self.flush()
        return store.stats(by, **filters)

    def sessions(self, **filters: Any) -> pd.DataFrame:
        store = self._need_store()
        self.flush()
        return store.sessions(**filters)

    # ------------------------------------------------------------------ metrics and alerts
    def _need_metrics(self) -> Metrics:
        if self.metrics is None:
            from ..errors import ConfigError

            raise ConfigError(
                "metrics are off", key="observability.metrics", value=False, hint="set observability.metrics = true"
            )
        return self.metrics

    def watch(self, *, registry: Any = None, budgets: Any = None) -> None:
        """Read breaker states from ``registry`` and remaining budget from ``budgets`` (objects or callables)."""
        m = self._need_metrics()
        if registry is not None:
            m.watch_registry(registry)
        if budgets is not None:
            m.watch_budgets(budgets)

    def snapshot(self) -> dict[str, Any]:
        """Current metric values (what alert rules see)."""
        return self._need_metrics().snapshot()

    def add_alert(self, rule: AlertRule | str, expr: Any = None, **options: Any) -> AlertRule:
        """Add an alert rule: ``add_alert(AlertRule(...))`` or ``add_alert("name", "error_rate > 0.2 for 10s")``."""
        self._need_metrics()
        if not isinstance(rule, AlertRule):
            rule = AlertRule(rule, expr, **options)
        self.alerts.add(rule)
        self._start_timer()
        return rule

    def evaluate_alerts(self, now: float | None = None) -> list[Any]:
        """Evaluate alert rules now and publish what fires or clears (normally automatic)."""
        self._need_metrics()
        return self.alerts.evaluate(now)

    def serve_metrics(self, port: int = 0, *, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the Prometheus endpoint (``port=0``: a free port; see ``.url``)."""
        from .server import start_metrics_server

        server = start_metrics_server(port, self._need_metrics(), host=host)
        self._servers.append(server)
        return server

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the timer, export what is left, stop servers and the exporter, unsubscribe."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            if self.builder is not None:
                with self.lock:
                    self.builder.settle(force=True)
        finally:
            self._closed = True
            if self.subscription is not None and not getattr(self.bus, "_closed", False):
                try:
                    self.subscription.unsubscribe()
                except RuntimeError:  # the bus's loop is gone (asyncio.run ended): nothing to detach from
                    pass
            for server in self._servers:
                server.close()
            if self.exporter is not None:
                self.exporter.shutdown()

    def __enter__(self) -> Observability:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = [f"tracing={'on' if self.tracing else 'off'}"]
        if self.exporter is not None:
            parts.append(f"export={type(self.exporter.exporter).__name__}")
        if self.metrics is not None:
            parts.append(f"metrics={self.metrics.events_observed} events")
        if self.alerts.rules:
            parts.append(f"alerts={len(self.alerts.rules)}")
        return f"Observability({', '.join(parts)})"


def _lazy(obj: Any, attr: str) -> Any:
    """A callable reading ``obj.__dict__[attr]`` without creating it (for cached properties of a Lab)."""
    ref = weakref.ref(obj)

    def get() -> Any:
        target = ref()
        return None if target is None else target.__dict__.get(attr)

    return get
