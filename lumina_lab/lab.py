"""The :class:`Lab`: one object that wires configuration, the bus and the event store.

>>> lab = Lab(profile="test")          # doctest: +SKIP
>>> lab.publish(SomethingHappened(x=1))  # doctest: +SKIP
>>> lab.query(type="something.*")        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .errors import ConfigError, LuminaError
from .events.bus import InProcessBus
from .events.model import Event, set_default_source

if TYPE_CHECKING:
    import pandas as pd

    from .events.store import BufferedEventStore
    from .memory import VectorMemory
    from .observability import Observability, Trace
    from .observability.hub import SpanHandle
    from .observability.server import MetricsServer
    from .policy import PolicyLab
    from .providers import (
        BudgetManager,
        ChatRequest,
        ChatResponse,
        ProviderRegistry,
        RouteDecision,
        Router,
        StreamChunk,
    )
    from .security import KeyRing

__all__ = ["Lab"]


def _store_group(settings: Settings) -> str:
    """Name of the durable broker consumer that feeds the file store under ``settings.home`` on this host."""
    import hashlib
    import socket

    key = f"{socket.gethostname()}:{Path(settings.events_dir).expanduser().resolve()}"
    return f"event-store-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


class Lab:
    """Lumina Lab in one process: settings, the event bus, and the event store attached to it.

    Args:
        profile: ``dev``, ``test`` or ``prod`` (see :mod:`lumina_lab.config`).
        home: ``LUMINA_HOME`` for this lab (default ``~/.lumina``).
        settings: ready :class:`~lumina_lab.config.Settings` (then the other arguments are ignored).
        **overrides: any other setting, e.g. ``events={"store": "memory"}``.
    """

    def __init__(
        self,
        *,
        profile: str | None = None,
        home: str | Path | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            if profile is not None:
                overrides["profile"] = profile
            if home is not None:
                overrides["home"] = home
            settings = load_settings(**overrides)
        self.settings = settings
        if settings.source:
            set_default_source(settings.source)
        ev = settings.events
        from .events.store import open_store

        self.store: BufferedEventStore = open_store(settings)
        store_subscriber = "event-store"
        if ev.bus == "memory":
            self.bus = InProcessBus(queue_size=ev.queue_size, overflow=ev.overflow, retries=ev.handler_retries)
        else:  # a broker: events reach (and come from) other processes and machines
            from .events.brokers import open_bus

            if ev.store == "file":  # processes sharing this home's files share one durable consumer: stored once
                store_subscriber = _store_group(settings)
            try:
                self.bus = open_bus(
                    ev.bus,
                    ev.bus_url,
                    namespace=ev.bus_namespace,
                    queue_size=ev.queue_size,
                    overflow=ev.overflow,
                    retries=ev.handler_retries,
                    durable_names=[store_subscriber] if store_subscriber != "event-store" else [],
                )
                self.bus.connect_sync()  # fail here, with the URL and the fix, if the broker is unreachable
            except BaseException:
                self.store.close()
                raise
        self.store.attach(self.bus, name=store_subscriber)
        #: metrics, alerts and span export (``None`` when ``observability.tracing`` and ``.metrics`` are off)
        self.observability: Observability | None = None
        obs = settings.observability
        if obs.tracing or obs.metrics:
            from .observability.hub import Observability, _lazy

            self.observability = Observability.from_settings(settings, self.bus, self.store)
            if self.observability.metrics is not None:  # live gauges, once the lab has built these
                self.observability.watch(registry=_lazy(self, "providers"), budgets=_lazy(self, "budgets"))

    # providers and routing -------------------------------------------------------------------
    @cached_property
    def providers(self) -> ProviderRegistry:
        """The provider registry: configured providers plus installed entry points."""
        from .providers import ProviderRegistry

        registry = ProviderRegistry()
        registry.load_config(self.settings.providers)
        registry.discover_entry_points()
        return registry

    @cached_property
    def budgets(self) -> BudgetManager:
        """Budgets from the configuration (add more with ``lab.budgets.add(Budget(...))``)."""
        from .providers import Budget, BudgetManager

        budgets = []
        for i, entry in enumerate(self.settings.budgets):
            try:
                budgets.append(Budget(**entry))
            except (TypeError, LuminaError) as exc:
                raise ConfigError(
                    f"budgets[{i}]: {exc}", key=f"budgets[{i}]", hint="see lumina_lab.providers.Budget"
                ) from None
        return BudgetManager(budgets)

    @cached_property
    def memory(self) -> VectorMemory:
        """Vector memory on the configured store and embedder, publishing ``memory.*`` events on :attr:`bus`."""
        from .memory import VectorMemory, embedder_from
        from .memory.stores import open_vector_store

        m = self.settings.memory
        options = dict(m.options)
        if m.backend == "duckdb" and "path" not in options:
            options["path"] = Path(self.settings.home) / "memory" / "vectors.duckdb"
        if m.encrypt:
            if m.backend != "duckdb":
                raise ConfigError(
                    f"memory.encrypt seals texts in the duckdb store, not in {m.backend}",
                    key="memory.encrypt",
                    hint="use memory.backend = 'duckdb', or the server's own encryption at rest",
                )
            options["encryption"] = self.keys
            options["sealed_metadata"] = list(m.sealed_metadata)
        elif m.sealed_metadata:
            raise ConfigError(
                "memory.sealed_metadata needs memory.encrypt = true", key="memory.sealed_metadata", hint="set both"
            )
        if m.shards > 1:
            from .memory import ShardedVectorStore

            base = options.pop("path", None)
            shards = []
            for j in range(m.shards):
                opts = dict(options)
                if m.backend == "duckdb":
                    opts["path"] = Path(base).with_name(f"vectors-{j}-of-{m.shards}.duckdb")
                shards.append(open_vector_store(m.backend, **opts))
            store = ShardedVectorStore(shards)
        else:
            store = open_vector_store(m.backend, **options)
        return VectorMemory(store, embedder=embedder_from(m.embedder), bus=self.bus, cache_size=m.cache_size)

    @cached_property
    def keys(self) -> KeyRing:
        """The key ring that seals sensitive fields: ``$LUMINA_MASTER_KEY`` if set, else
        ``home/keys/keyring.json`` (created on first use); its changes are audit events on :attr:`bus`."""
        from .security import KeyRing

        return KeyRing.configured(self.settings.home, create=True, bus=self.bus)

    @cached_property
    def policy(self) -> PolicyLab:
        """The policy lab: versioned Cedar policies (in ``LUMINA_HOME/policies``), entities, the live engine,
        the simulator and enforcement points, publishing ``policy.*`` events on :attr:`bus`."""
        from .policy import PolicyLab

        return PolicyLab(path=Path(self.settings.home) / "policies", bus=self.bus)

    @cached_property
    def router(self) -> Router:
        """The router over :attr:`providers`, publishing its events on :attr:`bus`."""
        from .providers import RetryPolicy, Router

        r = self.settings.routing
        return Router(
            self.providers,
            r.strategy,
            bus=self.bus,
            budgets=self.budgets,
            retry=RetryPolicy(attempts=r.retries),
            timeout_s=r.timeout_s,
            hedge_after_s=r.hedge_after_s,
        )

    def route(self, prompt: str | ChatRequest, **fields: Any) -> RouteDecision:
        """Where ``prompt`` would be routed, and why the other providers would not be used (no call)."""
        from .providers import ChatRequest

        request = prompt if isinstance(prompt, ChatRequest) else ChatRequest.of(prompt, **fields)
        return self.router.plan(request)

    def ask(self, prompt: str | ChatRequest, **fields: Any) -> ChatResponse:
        """Route and answer ``prompt`` from synchronous code (notebook cells, scripts)."""
        import asyncio

        from .errors import BusError

        loop = self.bus._ensure_loop_sync()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise BusError("lab.ask() cannot wait inside the lab's own event loop", hint="use `await lab.aask(...)`")
        return asyncio.run_coroutine_threadsafe(self.router.ainvoke(prompt, **fields), loop).result()

    async def aask(self, prompt: str | ChatRequest, **fields: Any) -> ChatResponse:
        """Async :meth:`ask` (runs on the lab's loop, so events and stores stay on one loop)."""
        import asyncio

        loop = self.bus._ensure_loop_sync()
        if asyncio.get_running_loop() is loop:
            return await self.router.ainvoke(prompt, **fields)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.router.ainvoke(prompt, **fields), loop))

    def stream(self, prompt: str | ChatRequest, *, buffer: int = 64, **fields: Any) -> Iterator[StreamChunk]:
        """Stream an answer into synchronous code, chunk by chunk (failover included).

        >>> for chunk in lab.stream("tell me a story", max_tokens=200):  # doctest: +SKIP
        ...     print(chunk.text, end="")
        """
        from .providers.streaming import iterate_in_thread

        loop = self.bus._ensure_loop_sync()
        return iterate_in_thread(self.router.astream(prompt, **fields), loop, buffer)

    def feedback(self, request_id: str, reward: float) -> bool:
        """Score an answer in [0, 1] for learning strategies."""
        return self.router.feedback(request_id, reward)

    # observability -------------------------------------------------------------------------
    def run(self, name: str, *, session: str | None = None, **attributes: Any) -> AbstractContextManager[SpanHandle]:
        """A span around a block of notebook code: what it routes, searches and decides becomes its children.

        >>> with lab.run("compare strategies", session="exp-7"):  # doctest: +SKIP
        ...     lab.ask("...")
        """
        from .observability.hub import span

        return span(self.bus, name, kind="run", session=session, **attributes)

    def traces(self, since: Any = None, until: Any = None, **filters: Any) -> pd.DataFrame:
        """Traces, newest first, with cost and tokens rolled up (filters: model, provider, session, status,
        name, project, min_cost, max_cost, in_progress, where, limit, order; see ``SpanStore.traces``).

        Spans are derived from the event log (every process's, with the file store) when asked.
        """
        return self._spans().traces(since, until, **filters)

    def trace(self, trace_id: str) -> Trace:
        """One trace: spans with per-span roll-ups; shows a waterfall in a notebook."""
        return self._spans().trace(trace_id)

    def _spans(self) -> Any:
        from .observability.store import SpanStore

        self.sync()
        if self.observability is not None:
            self.observability.flush()
        return SpanStore(self.store)

    def serve_metrics(self, port: int = 0, *, host: str = "127.0.0.1") -> MetricsServer:
        """Serve Prometheus metrics of this lab on ``http://host:port/metrics`` (``port=0``: a free port)."""
        if self.observability is None or self.observability.metrics is None:
            raise ConfigError(
                "metrics are off for this lab",
                key="observability.metrics",
                value=False,
                hint="Lab(observability={'metrics': True}) or LUMINA_OBSERVABILITY__METRICS=true",
            )
        return self.observability.serve_metrics(port, host=host)

    # sync helpers for notebooks and scripts ------------------------------------------------
    def publish(self, *events: Event) -> None:
        """Publish events from synchronous code (waits for queue space)."""
        if len(events) == 1:
            self.bus.publish_sync(events[0])
        else:
            self.bus.publish_many_sync(events)

    async def apublish(self, *events: Event) -> None:
        """Publish events from async code."""
        for ev in events:
            await self.bus.publish(ev)

    def sync(self) -> int:
        """Wait until every published event is handled and stored; return events stored."""
        self.bus.drain_sync()
        return self.store.flush()

    async def async_sync(self) -> int:
        """Async :meth:`sync`."""
        await self.bus.drain()
        return await self.store.aflush()

    def query(self, where: str | None = None, **filters: Any) -> pd.DataFrame:
        """Stored events (after :meth:`sync`); see :meth:`BufferedEventStore.query`."""
        self.sync()
        return self.store.query(where, **filters)

    def sql(self, query: str, params: Any = None) -> pd.DataFrame:
        """SQL over ``events``, ``dead_letters``, ``dead_marks`` (after :meth:`sync`)."""
        self.sync()
        return self.store.sql(query, params)

    def close(self) -> None:
        """Handle and store everything published, then release resources."""
        try:
            if "memory" in self.__dict__:
                self.memory.close()
            self.bus.close_sync()
        finally:
            try:
                if self.observability is not None:
                    self.observability.close()
            finally:
                self.store.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab(profile={self.settings.profile!r}, home={str(self.settings.home)!r}, store={self.store!r})"

    def _repr_html_(self) -> str:
        s = self.settings
        return (
            f"<b>Lumina Lab</b> — profile <code>{s.profile}</code>, home <code>{s.home}</code><br>"
            f"event store: {self.store!r}<br>bus: {self.bus!r}"
        )
