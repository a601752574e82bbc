"""``lab.policy``: the policy lab of a :class:`~lumina_lab.lab.Lab` in one object.

A versioned policy store (in ``LUMINA_HOME/policies``), the entities (attribute
providers), the engine of the live version, the simulator and the enforcement
points, all publishing on the lab's bus.  Enforcement points made here follow
the live version: publish a new one and they use it at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .decision import Decision
from .enforce import MemoryGate, PolicyGate, RouterPolicy
from .engine import PolicyEngine
from .entities import EntityStore
from .requests import RequestSet
from .shadow import ShadowEvaluator
from .simulator import Coverage, DecisionMatrix, Explanation, PolicyDiff, Simulator
from .store import PolicyStore, PolicyVersion

__all__ = ["PolicyLab"]


class PolicyLab:
    """Policies, entities, the live engine, the simulator and enforcement points.

    Args:
        path: where policy versions are kept (``None``: in memory).
        bus: where policy events go.
        entities: initial entity sources (attribute providers, Cedar JSON).
        unknown: how the live engine treats principals/resources missing from the entities.
        sample: the share of enforcement decisions published as ``policy.decided`` (denials: all).
    """

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        bus: Any = None,
        entities: Sequence[Any] = (),
        unknown: str = "error",
        sample: float = 1.0,
    ) -> None:
        self.bus = bus
        self.sample = sample
        self.store = PolicyStore(path, bus=bus)
        self.entities = EntityStore(*entities)
        self.unknown = unknown
        self._engine: tuple[Any, PolicyEngine] | None = None
        self._folder_entities: Any = None

    # versions ---------------------------------------------------------------------------------
    def publish(self, policies: Any, schema: Any = None, links: Any = None, *, message: str = "", validate: bool = True) -> PolicyVersion:
        """Validate and publish a version (it becomes live); see :meth:`PolicyStore.publish`."""
        return self.store.publish(policies, schema, links, message=message, validate=validate)

    def load(self, folder: str | Path, *, message: str | None = None) -> PolicyVersion:
        """Publish a folder (``policies.cedar``, ``policies.cedarschema``, ``linked``) and use its
        ``entities.json`` as the folder's entity source (replacing the one of a previous folder)."""
        folder = Path(folder)
        ents = folder / "entities.json"
        if ents.is_file():
            from .attributes import JsonEntities

            if self._folder_entities is not None and self._folder_entities in self.entities.providers:
                self.entities.providers.remove(self._folder_entities)
            self._folder_entities = JsonEntities(ents)
            self.entities.add(self._folder_entities)
        return self.publish(folder, message=message if message is not None else f"loaded {folder.name}")

    @property
    def live(self) -> PolicyVersion | None:
        return self.store.live

    @property
    def engine(self) -> PolicyEngine:
        """The engine of the live version (rebuilt when another version goes live)."""
        live = self.store.live
        if live is None:
            raise ValidationError("no policy version is published yet", hint="lab.policy.publish('permit(...);') or lab.policy.load(folder)")
        if self._engine is None or self._engine[0] is not live:
            engine = PolicyEngine(live, self.entities, bus=self.bus, unknown=self.unknown, validate=False, sample=self.sample)
            self._engine = (live, engine)
        return self._engine[1]

    # the engine's surface (so gates made here follow the live version) -------------------------
    def request(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine.request(*args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any) -> Decision:
        """Decide a request with the live version (see :meth:`PolicyEngine.evaluate`)."""
        return self.engine.evaluate(*args, **kwargs)

    async def aevaluate(self, *args: Any, **kwargs: Any) -> Decision:
        return await self.engine.aevaluate(*args, **kwargs)

    def evaluate_batch(self, requests: Any, **kwargs: Any) -> list[Decision]:
        return self.engine.evaluate_batch(requests, **kwargs)

    def authorize(self, *args: Any, **kwargs: Any) -> Decision:
        """Enforce with the live version: the allow Decision, or :class:`~lumina_lab.errors.PolicyDenied`."""
        return self.engine.authorize(*args, **kwargs)

    async def aauthorize(self, *args: Any, **kwargs: Any) -> Decision:
        return await self.engine.aauthorize(*args, **kwargs)

    def filter_allowed(self, principal: Any, action: Any, resources: Sequence[Any], context: Mapping[str, Any] | None = None, **kw: Any) -> list[bool]:
        return self.engine.filter_allowed(principal, action, resources, context, **kw)

    def _decide(self, *args: Any, **kwargs: Any) -> list[Decision]:
        return self.engine._decide(*args, **kwargs)

    def _denied(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine._denied(*args, **kwargs)

    # enforcement points -----------------------------------------------------------------------
    def gate(self, **kwargs: Any) -> PolicyGate:
        """A :class:`PolicyGate` (tool calls by default) on the live version."""
        return PolicyGate(self, **kwargs)  # type: ignore[arg-type]

    def router_policy(self, registry: Any = None, *, provider_attrs: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any) -> RouterPolicy:
        """A :class:`RouterPolicy` for ``Router(policy=...)`` on the live version.

        With ``registry`` (e.g. ``lab.providers``) its providers become ``Provider`` entities
        (:func:`~lumina_lab.policy.attributes.provider_entities`, plus ``provider_attrs`` per provider id).
        """
        if registry is not None:
            from .attributes import provider_entities

            self.entities.add(provider_entities(registry, extra=provider_attrs, type=kwargs.get("resource_type", "Provider")))
        return RouterPolicy(self, **kwargs)  # type: ignore[arg-type]

    def memory_gate(self, **kwargs: Any) -> MemoryGate:
        """A :class:`MemoryGate` filtering search results on the live version."""
        return MemoryGate(self, **kwargs)  # type: ignore[arg-type]

    # simulation -------------------------------------------------------------------------------
    @cached_property
    def simulator(self) -> Simulator:
        """The simulator over this lab's store and entities (one, so parsed versions are reused)."""
        return Simulator(store=self.store, entities=self.entities, progress=True)

    def simulate(self, requests: Any, *, version: Any = None) -> DecisionMatrix:
        """Decide ``requests`` with a version (default: live) without enforcing anything."""
        return self.simulator.run(requests, policies=version)

    def diff(self, old: Any, new: Any, requests: Any) -> PolicyDiff:
        """Which of ``requests`` change decision between two versions, and why."""
        return self.simulator.diff(old, new, requests)

    def coverage(self, requests: Any, *, version: Any = None) -> Coverage:
        return self.simulator.coverage(requests, policies=version)

    def explain(self, *args: Any, version: Any = None, **kwargs: Any) -> Explanation:
        return self.simulator.explain(*args, policies=version, **kwargs)

    def shadow(self, candidate: Any) -> ShadowEvaluator:
        """Evaluate ``candidate`` beside the live version; differences become ``policy.shadow.diff`` events."""
        return self.simulator.shadow(candidate, bus=self.bus)

    def logged_requests(self, store: Any, *, since: Any = None) -> RequestSet:
        """The requests the enforcement points decided, from an event store (``policy.decided`` events)."""
        return RequestSet.from_events(store, since=since)

    def __repr__(self) -> str:
        live = f"live v{self.live.number}" if self.live else "nothing published"
        return f"PolicyLab({live}, {len(self.store)} versions, {self.entities!r})"

    def _repr_html_(self) -> str:
        return f"<b>Policy lab</b> — {self!r}<br>" + self.store._repr_html_()
