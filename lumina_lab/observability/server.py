"""The Prometheus endpoint: a WSGI app, a small threaded server, and a handler for the Jupyter server.

``lumina serve`` mounts :func:`metrics_app`; ``lumina metrics serve`` and
``lab.serve_metrics()`` run :func:`start_metrics_server`; the Jupyter server
extension registers :func:`jupyter_handler` (a tornado handler class).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MetricsServer", "as_registry", "jupyter_handler", "metrics_app", "start_metrics_server"]


def as_registry(source: Any = None) -> Any:
    """A prometheus-client registry from a :class:`Metrics`, an :class:`Observability` hub, a ``Lab``,
    a registry or collector, or ``None`` (the process-wide default registry)."""
    from .metrics import Metrics, need_prometheus_client

    need_prometheus_client()
    if source is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    if hasattr(source, "collect"):
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


def jupyter_handler(source: Any = None) -> Any:
    """A tornado ``RequestHandler`` class serving the metrics (for the Jupyter server extension).

    >>> web_app.add_handlers(".*$", [(url_path_join(base, "lumina", "metrics"), jupyter_handler(lab))])  # doctest: +SKIP
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from tornado import web

    registry = as_registry(source)

    class LuminaMetricsHandler(web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", CONTENT_TYPE_LATEST)
            self.write(generate_latest(registry))

    return LuminaMetricsHandler
