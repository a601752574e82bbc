"""The provider registry: run-time registration, discovery, health, and a capability index."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import WALL, Clock
from ..errors import ConfigError, ValidationError
from .base import Provider
from .messages import CAPABILITIES, ChatRequest, check_capability
from .resilience import CircuitBreaker, RateLimiter
from .stats import ProviderStats

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ENTRY_POINT_GROUP", "ProviderRegistry", "ProviderState", "provider_from_config"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "lumina_lab.providers"


@dataclass(eq=False)
class ProviderState:
    """A registered provider with its statistics, breaker and health.

    The provider's id, ``limits.max_concurrency`` and ``pricing`` are copied to plain
    attributes when the state is made (``id``, ``max_concurrency``, ``input_per_m``,
    ``output_per_m``): the router reads them several times per request, and a chain
    of attribute lookups through the provider and its pydantic models costs more than
    the decision itself.  Providers declare limits and prices once; to change them,
    register the provider again (``registry.register(p, replace=True)``) or call
    :meth:`refresh`.
    """

    provider: Provider
    stats: ProviderStats
    breaker: CircuitBreaker
    healthy: bool = True
    last_probe_error: str | None = None
    limiter: RateLimiter | None = None
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    started: set[int] = field(default_factory=set)  # dispatch numbers of the calls in flight
    id: str = field(init=False)
    max_concurrency: int | None = field(init=False)
    slot_cap: int = field(init=False)  # max_concurrency, or sys.maxsize when unlimited (one comparison)
    input_per_m: float = field(init=False)
    output_per_m: float = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Copy the provider's id, concurrency limit and prices again (after changing them in place)."""
        p = self.provider
        self.id = p.id
        limits = getattr(p, "limits", None)
        cap = self.max_concurrency = getattr(limits, "max_concurrency", None)
        self.slot_cap = sys.maxsize if cap is None else cap
        pricing = getattr(p, "pricing", None)
        self.input_per_m = getattr(pricing, "input_per_m", 0.0)
        self.output_per_m = getattr(pricing, "output_per_m", 0.0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """``provider.pricing.cost(...)`` from the copied prices (the same arithmetic, so the same float)."""
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6

    def begin(self) -> int:
        """Record a dispatch; return its number."""
        stats = self.stats
        stats.inflight += 1  # stats.on_dispatch(), inlined: once per call
        n = stats.dispatched = stats.dispatched + 1
        self.started.add(n)
        return n

    def end(self, n: int) -> int:
        """Record that call ``n`` ended; return how many calls that started before it are still in flight."""
        started = self.started
        started.discard(n)
        older = 0  # counted here, not kept in order: only a failure asks (a success just discards)
        for m in started:
            if m < n:
                older += 1
        return older

    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ProviderState({self.id!r}, breaker={self.breaker.state}, healthy={self.healthy})"


class ProviderRegistry:
    """Providers by id, with a capability index for fast candidate lookup.

    Args:
        clock: time source for breakers.
        breaker: keyword arguments for each provider's :class:`CircuitBreaker`.
        on_breaker_change: called with ``(provider_id, old, new, failure_rate)``.
    """

    def __init__(
        self,
        providers: Iterable[Provider] = (),
        *,
        clock: Clock = WALL,
        breaker: dict[str, Any] | None = None,
        on_breaker_change: Callable[[str, str, str, float], None] | None = None,
    ) -> None:
        self.clock = clock
        self.breaker_options = dict(breaker or {})
        self.on_breaker_change = on_breaker_change
        self._states: dict[str, ProviderState] = {}
        self._index: dict[str, set[str]] = {c: set() for c in CAPABILITIES}
        self._cache: dict[Any, tuple[ProviderState, ...]] = {}
        for p in providers:
            self.register(p)

    # ------------------------------------------------------------------ registration
    def register(self, provider: Provider, *, replace: bool = False) -> ProviderState:
        """Add ``provider`` (an object following the :class:`Provider` protocol)."""
        for attr in ("id", "model", "capabilities", "pricing", "limits", "ainvoke", "astream"):
            if not hasattr(provider, attr):
                raise ValidationError(
                    f"{provider!r} is not a provider: it has no {attr!r}",
                    input=provider,
                    hint="wrap it with LangChainProvider(...) or subclass BaseProvider",
                )
        pid = provider.id
        if pid in self._states and not replace:
            raise ValidationError(f"a provider with id {pid!r} is already registered", hint="pass replace=True")

        def changed(old: str, new: str, rate: float, pid: str = pid) -> None:
            if self.on_breaker_change is not None:
                self.on_breaker_change(pid, old, new, rate)

        state = ProviderState(
            provider, ProviderStats(), CircuitBreaker(clock=self.clock, on_change=changed, **self.breaker_options)
        )
        limits = provider.limits
        if limits.rpm is not None or limits.tpm is not None:
            state.limiter = RateLimiter(rpm=limits.rpm, tpm=limits.tpm, clock=self.clock)
        self._states[pid] = state
        for cap in CAPABILITIES:
            if provider.capabilities.level(cap) > 0:
                self._index[cap].add(pid)
            else:
                self._index[cap].discard(pid)
        self._cache.clear()
        return state

    def unregister(self, provider_id: str) -> None:
        """Remove a provider; in-flight calls finish."""
        if provider_id not in self._states:
            raise ValidationError(f"no provider {provider_id!r}", hint=f"registered: {sorted(self._states)}")
        del self._states[provider_id]
        for ids in self._index.values():
            ids.discard(provider_id)
        self._cache.clear()

    def __getitem__(self, provider_id: str) -> ProviderState:
        try:
            return self._states[provider_id]
        except KeyError:
            raise ValidationError(
                f"no provider {provider_id!r}", input=provider_id, hint=f"registered: {sorted(self._states)}"
            ) from None

    def __contains__(self, provider_id: object) -> bool:
        return provider_id in self._states

    def __iter__(self) -> Iterator[ProviderState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    # ------------------------------------------------------------------ lookup
    def candidates(self, request: ChatRequest) -> tuple[ProviderState, ...]:
        """Healthy providers whose capabilities serve ``request`` (cached per requirement)."""
        needs = request.needs
        key: Any  # (needs, min_context, language, model): needs as a frozenset, or a dict's sorted items
        if type(needs) is frozenset:  # the usual type: the key below without a call
            key = (needs, request.min_context, request.language, request.model)
        else:
            nkey = tuple(sorted(needs.items())) if isinstance(needs, dict) else frozenset(needs)
            key = (nkey, request.min_context, request.language, request.model)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        names = needs.keys() if isinstance(needs, dict) else needs
        for n in names:
            check_capability(n)
        ids: set[str] | None = None
        for n in names:
            ids = set(self._index[n]) if ids is None else ids & self._index[n]
        pool = [self._states[i] for i in sorted(ids)] if ids is not None else list(self._states.values())
        out = tuple(
            s
            for s in pool
            if s.provider.capabilities.supports(needs, min_context=request.min_context, language=request.language)
            and (request.model is None or request.model in (s.provider.id, s.provider.model))
        )
        self._cache[key] = out
        return out

    # ------------------------------------------------------------------ health
    async def probe(self, *, timeout_s: float = 5.0) -> dict[str, bool]:
        """Actively probe providers that offer ``aprobe()``; mark unhealthy ones."""

        async def one(state: ProviderState) -> tuple[str, bool]:
            probe = getattr(state.provider, "aprobe", None)
            if probe is None:
                return state.id, state.healthy
            try:
                ok = bool(await asyncio.wait_for(probe(), timeout_s))
                state.last_probe_error = None if ok else "probe answered not ok"
            except Exception as exc:
                ok = False
                state.last_probe_error = f"{type(exc).__name__}: {exc}"
            if ok != state.healthy:
                log.info("provider %s is now %s", state.id, "healthy" if ok else "unhealthy")
            state.healthy = ok
            return state.id, ok

        results = await asyncio.gather(*(one(s) for s in self))
        self._cache.clear()
        return dict(results)

    async def monitor(self, interval_s: float = 30.0, *, timeout_s: float = 5.0, rounds: int | None = None) -> None:
        """Probe every ``interval_s`` seconds (on the registry's clock) until cancelled or ``rounds`` are done.

        Run it as a task: ``task = asyncio.create_task(registry.monitor(15))``.
        """
        done = 0
        while rounds is None or done < rounds:
            await self.probe(timeout_s=timeout_s)
            done += 1
            if rounds is not None and done >= rounds:
                return
            await self.clock.sleep(interval_s)

    def table(self) -> pd.DataFrame:
        """Providers with capabilities, prices, breaker state, health and passive statistics."""
        import pandas as pd

        rows = []
        for s in self:
            p = s.provider
            caps = p.capabilities
            rows.append(
                {
                    "id": p.id,
                    "model": p.model,
                    "capabilities": ",".join(c for c in CAPABILITIES if caps.level(c) > 0),
                    "context": caps.context_window,
                    "in_usd_per_m": p.pricing.input_per_m,
                    "out_usd_per_m": p.pricing.output_per_m,
                    "breaker": s.breaker.state,
                    "healthy": s.healthy,
                    **s.stats.snapshot(),
                }
            )
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False)

    def __repr__(self) -> str:
        return f"ProviderRegistry({', '.join(self._states)})"

    # ------------------------------------------------------------------ discovery
    def discover_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register providers advertised by installed packages under entry-point ``group``.

        Each entry point names a provider object, a provider class or a factory
        returning a provider or a list of providers.
        """
        from importlib.metadata import entry_points

        added = []
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                made = obj() if callable(obj) and not hasattr(obj, "ainvoke") else obj
            except Exception as exc:
                raise ConfigError(
                    f"entry point {ep.name!r} ({ep.value}) in group {group!r} failed to load: {exc}",
                    key=ep.name,
                    hint="fix or uninstall the package that declares it",
                ) from exc
            for p in made if isinstance(made, (list, tuple)) else [made]:
                self.register(p, replace=True)
                added.append(p.id)
        return added

    def load_config(self, entries: Iterable[dict[str, Any]], *, clock: Clock | None = None) -> list[str]:
        """Register providers from configuration entries (``[[providers]]`` in ``lumina.toml``)."""
        added = []
        for i, entry in enumerate(entries):
            p = provider_from_config(entry, index=i, clock=clock or self.clock)
            self.register(p, replace=True)
            added.append(p.id)
        return added


_KINDS = ("simulated", "openai")


def provider_from_config(entry: dict[str, Any], *, index: int = 0, clock: Clock = WALL) -> Provider:
    """Build one provider from a config entry, e.g. ``{"kind": "openai", "model": ..., "base_url": ...}``."""
    entry = dict(entry)
    kind = entry.pop("kind", None)
    where = f"providers[{index}]"
    if kind not in _KINDS:
        raise ConfigError(
            f"{where}.kind = {kind!r} is not a provider kind",
            key=f"{where}.kind",
            value=kind,
            allowed=", ".join(_KINDS),
            hint=f"use one of {_KINDS}",
        )
    if "model" not in entry:
        raise ConfigError(f"{where} needs a 'model'", key=f"{where}.model", hint='add model = "..."')
    try:
        if kind == "simulated":
            from .simulated import SimulatedProvider

            return SimulatedProvider(clock=clock, **entry)
        from .adapters.openai_http import OpenAICompatibleProvider

        return OpenAICompatibleProvider(**entry)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}", key=where, hint="check the option names of this provider kind") from None
