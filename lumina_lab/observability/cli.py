"""``lumina metrics serve`` and ``lumina traces``: the Prometheus endpoint and the span store from a shell."""

from __future__ import annotations

import threading
import time
from typing import Any

import click

__all__ = ["metrics", "traces"]


def _friendly(fn: Any) -> Any:
    """User mistakes print one message with the fix and exit with status 2 (as in ``lumina_lab.cli``)."""
    import functools
    import sys

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import LuminaError

        try:
            return fn(*args, **kwargs)
        except LuminaError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)

    return wrapper


def _register_event_types() -> None:
    """Import the modules that define the event types the metrics fold (to read them back from the log)."""
    import importlib

    for mod in (
        "lumina_lab.providers.events",
        "lumina_lab.memory.events",
        "lumina_lab.policy.events",
        "lumina_lab.observability.events",
    ):
        try:
            importlib.import_module(mod)
        except ImportError:  # an optional area not installed
            pass


def follow_events(
    store: Any, metrics: Any, *, since: Any = None, poll_s: float = 0.5, stop: threading.Event | None = None
) -> None:
    """Fold events of every process (the event log, followed live) into ``metrics`` until ``stop`` is set."""
    from datetime import UTC, datetime

    from ..errors import SchemaError
    from ..events.store.base import _as_time

    _register_event_types()
    stop = stop or threading.Event()
    since_t = _as_time(since, "since") or datetime.now(UTC)
    state: Any = None
    while not stop.is_set():
        rows, state = store._tail_rows(state, None, since_t)  # the store's incremental reader (as tail() uses)
        for row in rows:
            try:
                event = store.registry.load(row)
            except SchemaError:  # an application's own event type: not ours to fold
                continue
            metrics.apply(event)
        stop.wait(poll_s)


@click.group()
def metrics() -> None:
    """Prometheus metrics of Lumina Lab."""


@metrics.command("serve")
@click.option("--port", type=int, default=9464, show_default=True, help="Port of /metrics (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--since", default=None, help="Also fold stored events from this long ago (15m, 2h, ISO time).")
@click.option("--poll", type=float, default=0.5, show_default=True, help="Seconds between looks at the event log.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C).")
@_friendly
def metrics_serve(port: int, host: str, since: str | None, poll: float, duration: float | None) -> None:
    """Serve /metrics for every process on this machine.

    Follows the event log (which every notebook kernel and server writes), folds it into the
    metrics, evaluates the alert rules of [observability] (appending alert.* events to the log)
    and serves the Prometheus text format.
    """
    from ..config import load_settings
    from ..events.store import open_store
    from .alerts import AlertEvaluator, rules_from_config
    from .metrics import Metrics
    from .server import start_metrics_server

    settings = load_settings()
    store = open_store(settings)
    m = Metrics()
    rules = rules_from_config(settings.observability.alerts)
    alerts = AlertEvaluator(rules, m)
    server = start_metrics_server(port, m, host=host)
    click.echo(f"serving {server.url} (events from {settings.events_dir})", err=True)
    stop = threading.Event()
    follower = threading.Thread(
        target=follow_events, args=(store, m), kwargs={"since": since, "poll_s": poll, "stop": stop}, daemon=True
    )
    follower.start()
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)) if deadline else 1.0)
            if rules:
                fired = alerts.step()
                if fired:
                    store.append(fired)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        follower.join(30)
        server.close()
        store.close()


@click.group()
def traces() -> None:
    """Traces in the span store (every process on this machine)."""


def _span_store() -> Any:
    """Spans of every process on this machine: derived from the file event log."""
    from ..config import load_settings
    from ..events.store import open_store
    from .store import SpanStore

    settings = load_settings()
    if settings.events.store != "file":
        from ..errors import ConfigError

        raise ConfigError(
            "the memory event store lives inside its process; nothing to read from here",
            key="events.store",
            value=settings.events.store,
            hint="use the dev or prod profile (file stores)",
        )
    return SpanStore(open_store(settings))


@traces.command("list")
@click.option("--since", default="1h", show_default=True, help="Traces started since (15m, 2h, ISO time).")
@click.option("--model", help="Only traces with a call to this model.")
@click.option("--provider", help="Only traces with a call to this provider.")
@click.option("--session", help="Only this session.")
@click.option("--min-cost", type=float, help="Only traces costing at least this (USD).")
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_friendly
def traces_list(
    since: str,
    model: str | None,
    provider: str | None,
    session: str | None,
    min_cost: float | None,
    limit: int,
    fmt: str,
) -> None:
    """Recent traces with rolled-up cost and tokens, newest first."""
    from ..cli import _print_frame

    store = _span_store()
    try:
        frame = store.traces(since, model=model, provider=provider, session=session, min_cost=min_cost, limit=limit)
        cols = [
            "trace_id",
            "root",
            "status",
            "start_ts",
            "duration_ms",
            "calls",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "models",
        ]
        _print_frame(frame[cols], fmt)
    finally:
        store.events.close()


@traces.command("show")
@click.argument("trace_id")
@_friendly
def traces_show(trace_id: str) -> None:
    """Print one trace as an indented tree with durations and rolled-up cost."""
    store = _span_store()
    try:
        trace = store.trace(trace_id)
        click.echo(repr(trace))
        click.echo(trace.tree())
    finally:
        store.events.close()
