"""The Prometheus endpoint: a WSGI app, a small threaded server, tornado handlers, and metrics of the event log.

``lumina metrics serve`` and ``lab.serve_metrics()`` run :func:`start_metrics_server`; :func:`metrics_app`
is a WSGI app and :func:`jupyter_handler` a tornado handler class for embedding the endpoint in another
server. ``lumina serve`` (``/metrics``) and the Jupyter server extension (``/lumina/metrics``) serve a
:class:`StoreMetrics`: the metrics of every process on the machine, folded from the shared event log.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MetricsServer",
    "StoreMetrics",
    "as_registry",
    "jupyter_handler",
    "metrics_app",
    "start_metrics_server",
]


def as_registry(source: Any = None) -> Any:
    """A prometheus-client registry from a :class:`Metrics`, an :class:`Observability` hub, a ``Lab``,
    a registry or collector, or ``None`` (the process-wide default registry)."""
    from .metrics import Metrics, need_prometheus_client

    need_prometheus_client()
    if source is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    if hasattr(source, "collect"):  # a registry, a collector, a StoreMetrics
        return source
    metrics = source
    for attr in ("observability", "metrics"):  # Lab -> hub -> Metrics
        inner = getattr(metrics, attr, None)
        if inner is not None:
            metrics = inner
    if isinstance(metrics, Metrics):
        return metrics.registry()
    raise TypeError(f"cannot serve metrics of {source!r}: pass a Lab, an Observability hub, Metrics or a registry")


def metrics_app(source: Any = None) -> Any:
    """A WSGI app answering ``GET /metrics`` (any path) with the Prometheus text format."""
    from prometheus_client import make_wsgi_app

    return make_wsgi_app(as_registry(source))


class MetricsServer:
    """A running metrics endpoint (:func:`start_metrics_server`)."""

    def __init__(self, httpd: Any, thread: Any, host: str) -> None:
        self.httpd = httpd
        self.thread = thread
        self.host = host
        self.port: int = httpd.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetricsServer({self.url!r})"


def start_metrics_server(port: int = 9464, source: Any = None, *, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``source``'s metrics on ``http://host:port/metrics`` from a daemon thread (``port=0``: any free port)."""
    from prometheus_client import start_http_server

    from ..errors import ConfigError

    try:
        httpd, thread = start_http_server(port, addr=host, registry=as_registry(source))
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc}",
            key="observability.metrics_port",
            value=port,
            hint="choose another port (0 picks a free one)",
        ) from None
    return MetricsServer(httpd, thread, host)


def jupyter_handler(source: Any = None, *, base: type | None = None) -> Any:
    """A tornado ``RequestHandler`` class serving the metrics (the exposition runs in a worker thread).

    Args:
        source: what :func:`as_registry` accepts (a :class:`StoreMetrics` catches up with the log when read).
        base: the handler class to derive from. With a Jupyter server's ``JupyterHandler`` (or ``APIHandler``)
            the endpoint is authenticated like every handler of that server (``tornado.web.authenticated``).

    >>> web_app.add_handlers(".*$", [(url_path_join(base, "lumina", "metrics"), jupyter_handler(lab))])  # doctest: +SKIP
    """
    from prometheus_client import CONTENT_TYPE_LATEST
    from tornado import web
    from tornado.ioloop import IOLoop

    registry = as_registry(source)
    parent = base or web.RequestHandler

    async def get(self: Any) -> None:
        text = await IOLoop.current().run_in_executor(None, exposition, registry)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(text)

    body = {"get": web.authenticated(get) if base is not None else get}
    return type("LuminaMetricsHandler", (parent,), body)


def exposition(source: Any = None) -> bytes:
    """The Prometheus text format of ``source`` (see :func:`as_registry`)."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(as_registry(source)))


class StoreMetrics:
    """:class:`Metrics` of what every process writes to the event log, caught up each time they are read.

    No thread and nothing on the hot path: each scrape (:meth:`collect`) reads the rows stored since the
    previous one (``store._tail_rows``, as ``lumina events tail`` does), folds them and answers. Counters
    start at zero when this object is made (``since``), as a Prometheus exporter's do at its start; the
    windowed gauges (``request_rate``, ``error_rate``) see the events when they are folded, so they lag by
    at most one scrape interval.

    Args:
        store: an event store (``lab.store``; the file store sees every process), or a function returning it
            (opened on first read).
        since: count events stored from this time on (default: now); ``None``: everything in the log.
        metrics: the :class:`Metrics` to fold into (default: a new one).
        max_rows: at most this many rows are folded per read (the rest on the next one).
    """

    def __init__(
        self,
        store: Any,
        *,
        since: datetime | str | None = "now",
        metrics: Any = None,
        max_rows: int = 200_000,
    ) -> None:
        from .metrics import Metrics

        self._store = store
        self.since: datetime | None = datetime.now(UTC) if since == "now" else since  # type: ignore[assignment]
        self.metrics = metrics if metrics is not None else Metrics()
        self.max_rows = max_rows
        self.folded = 0
        self.skipped = 0
        self._state: Any = None
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        if callable(self._store) and not hasattr(self._store, "_tail_rows"):
            self._store = self._store()
        return self._store

    def catch_up(self) -> int:
        """Fold what was stored since the last call; return how many events were folded."""
        with self._lock:
            store = self.store
            if len(self._pending) < self.max_rows:
                rows, self._state = store._tail_rows(self._state, None, self.since if self._state is None else None)
                self._pending.extend(rows)
            rows, self._pending = self._pending[: self.max_rows], self._pending[self.max_rows :]
            events = []
            for row in rows:
                try:
                    events.append(store.registry.load(row))
                except Exception:  # an event type this process does not know (a newer plugin): not a metric
                    self.skipped += 1
            if events:
                self.metrics.apply_many(events)
            self.folded += len(events)
            return len(events)

    def collect(self) -> Any:
        """Prometheus metric families of the current values (what a registry's ``collect`` gives)."""
        self.catch_up()
        return self.metrics.families()

    def snapshot(self) -> dict[str, Any]:
        """Current values (:meth:`Metrics.snapshot`), caught up first."""
        self.catch_up()
        return dict(self.metrics.snapshot())

    def exposition(self) -> str:
        """The Prometheus text format, caught up first."""
        return exposition(self).decode()

    def __repr__(self) -> str:
        return f"StoreMetrics(folded={self.folded}, skipped={self.skipped}, since={self.since})"
