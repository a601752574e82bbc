"""Enforcement points: tool calls, provider routing, and memory reads.

Each asks a :class:`~lumina_lab.policy.engine.PolicyEngine`; a denial raises
:class:`~lumina_lab.errors.PolicyDenied` carrying the explanation and is
published as a ``policy.denied`` event (every decision as ``policy.decided``)
when someone subscribes.

>>> from lumina_lab.policy import PolicyEngine, DictEntities
>>> engine = PolicyEngine('permit(principal, action, resource == Tool::"search");',
...                       [DictEntities("User", {"ann": {}}), DictEntities("Tool", {"search": {}, "shell": {}})])
>>> gate = PolicyGate(engine)
>>> @gate.tool
... def shell(cmd: str) -> str:
...     return "ran " + cmd
>>> with acting_as("ann"):
...     shell("ls")
Traceback (most recent call last):
...
lumina_lab.errors.PolicyDenied: DENY User::"ann" call Tool::"shell": no permit policy applies (default deny)
  fix: no permit policy applies to this principal, action and resource; add one or change the request
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ValidationError
from .attributes import to_cedar_value
from .decision import Decision
from .events import PolicyDeniedEvent, _wants, emit
from .uids import format_uid, uid_key

if TYPE_CHECKING:
    from ..providers.registry import ProviderState
    from ..providers.types import ChatRequest
    from .engine import PolicyEngine

__all__ = ["MemoryGate", "PolicyGate", "RouterPolicy", "acting_as", "current_principal"]

F = TypeVar("F", bound=Callable[..., Any])
_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("lumina_policy_principal", default=None)


@contextlib.contextmanager
def acting_as(principal: Any) -> Iterator[None]:
    """Within this block (and tasks started in it), enforcement points act for ``principal``.

    ``principal`` is a uid (``'User::"ann"'``) or a bare id (each gate adds its principal type).
    """
    token = _principal.set(principal if isinstance(principal, str) else uid_key(principal))
    try:
        yield
    finally:
        _principal.reset(token)


def current_principal() -> str | None:
    """The principal set by :func:`acting_as`, if any."""
    return _principal.get()


def _uid(value: Any, default_type: str) -> str:
    if isinstance(value, str) and "::" not in value:
        return format_uid(default_type, value)
    return uid_key(value)


class PolicyGate:
    """Checks an action before it happens (tool calls by default).

    Args:
        engine: the engine that decides.
        action: the action checked (``'Action::"call"'``; a bare name means ``Action::"name"``).
        principal_type: type for bare principal ids (``"User"``).
        resource_type: type for bare resource ids (``"Tool"``).
        point: the name of this enforcement point in events.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        action: str = "call",
        principal_type: str = "User",
        resource_type: str = "Tool",
        point: str = "tool",
    ) -> None:
        self.engine = engine
        self.action = action if "::" in action else f'Action::"{action}"'
        self.principal_type = principal_type
        self.resource_type = resource_type
        self.point = point

    def principal(self, principal: Any = None) -> str:
        """The acting principal: ``principal``, else the one of :func:`acting_as`."""
        p = principal if principal is not None else _principal.get()
        if p is None:
            raise ValidationError(
                f"no principal for the {self.point} check",
                hint="wrap the call in `with acting_as('alice'):` or pass principal=",
            )
        return _uid(p, self.principal_type)

    def check(self, resource: Any, *, principal: Any = None, action: str | None = None, context: Mapping[str, Any] | None = None) -> Decision:
        """Allow or raise :class:`PolicyDenied`."""
        act = action if action is None or "::" in action else f'Action::"{action}"'
        return self.engine.authorize(
            self.principal(principal), act or self.action, _uid(resource, self.resource_type), context, point=self.point
        )

    async def acheck(self, resource: Any, *, principal: Any = None, action: str | None = None, context: Mapping[str, Any] | None = None) -> Decision:
        """Async :meth:`check`."""
        act = action if action is None or "::" in action else f'Action::"{action}"'
        return await self.engine.aauthorize(
            self.principal(principal), act or self.action, _uid(resource, self.resource_type), context, point=self.point
        )

    def allowed(self, resource: Any, *, principal: Any = None, context: Mapping[str, Any] | None = None) -> bool:
        """Whether the check would pass (nothing raised, nothing published)."""
        return self.engine.evaluate(self.principal(principal), self.action, _uid(resource, self.resource_type), context).allowed

    def tool(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        context: Callable[[tuple[Any, ...], dict[str, Any]], Mapping[str, Any]] | None = None,
    ) -> Any:
        """Decorate (or wrap) a tool so every call is checked first: ``@gate.tool`` or ``gate.tool(fn, name=...)``.

        ``context(args, kwargs)`` builds the request context from the call's arguments.
        """

        def wrap(f: F) -> F:
            tool_name = name or getattr(f, "name", None) or f.__name__
            resource = _uid(tool_name, self.resource_type)

            if inspect.iscoroutinefunction(f):

                @functools.wraps(f)
                async def awrapper(*args: Any, **kwargs: Any) -> Any:
                    await self.acheck(resource, context=context(args, kwargs) if context else None)
                    return await f(*args, **kwargs)

                return awrapper  # type: ignore[return-value]

            @functools.wraps(f)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.check(resource, context=context(args, kwargs) if context else None)
                return f(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return wrap(fn) if fn is not None else wrap

    __call__ = tool

    def __repr__(self) -> str:
        return f"PolicyGate({self.point}: {self.action} on {self.resource_type})"


def router_context(request: ChatRequest, state: ProviderState, spent_usd: float | None = None) -> dict[str, Any]:
    """The default context of a routing check (declare these in a schema if you use one).

    ``project``, ``task``, ``classification`` (``request.metadata["classification"]``, default ``"public"``),
    ``max_tokens``, ``predicted_cost_micro_usd`` (this call on this provider) and ``spent_micro_usd``
    (what the principal spent so far, when a ``spent`` source is given; else 0).
    """
    from ..providers.cost import predict_cost

    return {
        "project": request.project or "",
        "task": request.task or "",
        "classification": str(request.metadata.get("classification", "public")),
        "max_tokens": int(request.max_tokens or 0),
        "predicted_cost_micro_usd": round(predict_cost(state.provider.pricing, request) * 1e6),
        "spent_micro_usd": round((spent_usd or 0.0) * 1e6),
    }


class RouterPolicy:
    """The :class:`~lumina_lab.providers.Router` policy hook: may this principal use this provider now?

    ``Router(registry, policy=RouterPolicy(engine))``: for each candidate provider the router asks
    ``principal`` (``User::"<request.principal>"``, or ``anonymous``) x ``Action::"use_provider"`` x
    ``Provider::"<provider id>"`` with :func:`router_context`; a denial excludes the provider with the
    explanation as the reason (and is a ``policy.denied`` event).  Providers become entities with
    :func:`~lumina_lab.policy.attributes.provider_entities`.

    Args:
        engine: the engine that decides.
        spent: ``spent(request) -> USD`` the principal has spent (for budgets per role), e.g.
            :meth:`spend_from_ledger`.
        context: ``context(request, state) -> dict`` to replace :func:`router_context`.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        action: str = "use_provider",
        principal_type: str = "User",
        resource_type: str = "Provider",
        anonymous: str = "anonymous",
        spent: Callable[[ChatRequest], float] | None = None,
        context: Callable[[ChatRequest, ProviderState], Mapping[str, Any]] | None = None,
    ) -> None:
        self.engine = engine
        self.action = action if "::" in action else f'Action::"{action}"'
        self.principal_type = principal_type
        self.resource_type = resource_type
        self.anonymous = anonymous
        self.spent = spent
        self.context = context

    def __call__(self, request: ChatRequest, state: ProviderState) -> bool:
        principal = _uid(request.principal or self.anonymous, self.principal_type)
        if self.context is not None:
            ctx = dict(self.context(request, state))
        else:
            ctx = router_context(request, state, self.spent(request) if self.spent else None)
        self.engine.authorize(principal, self.action, _uid(state.id, self.resource_type), ctx, point="router")
        return True

    @staticmethod
    def spend_from_ledger(ledger: Any) -> Callable[[ChatRequest], float]:
        """``spent`` from a :class:`~lumina_lab.providers.CostLedger` (fed by ``provider.call.finished``)."""

        def spent(request: ChatRequest) -> float:
            return sum(r["cost_usd"] for r in ledger.rows if r["principal"] == request.principal)

        return spent

    def __repr__(self) -> str:
        return f"RouterPolicy({self.action} on {self.resource_type})"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


class MemoryGate:
    """Filters memory search results to what the principal may read.

    Each result is checked as a resource entity made for this one check: its id (``id``), its
    ``metadata`` as attributes (values Cedar cannot hold are left out) and, when the metadata names
    a collection, that collection (``Collection::"name"``) as its parent, so policies can say
    ``resource in Collection::"hr"`` or ``resource.classification == "public"``.

    Args:
        engine: the engine that decides.
        action: the action checked (``read``).
        resource_type: the entity type of results (``Memory``).
        id / metadata: how to get a result's id and metadata (attribute or key names, or callables).
        collection_key: the metadata key naming the collection (``collection``).
    """

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        action: str = "read",
        principal_type: str = "User",
        resource_type: str = "Memory",
        collection_type: str = "Collection",
        id: str | Callable[[Any], Any] = "id",
        metadata: str | Callable[[Any], Mapping[str, Any] | None] = "metadata",
        collection_key: str = "collection",
    ) -> None:
        self.engine = engine
        self.action = action if "::" in action else f'Action::"{action}"'
        self.principal_type = principal_type
        self.resource_type = resource_type
        self.collection_type = collection_type
        self._id = id if callable(id) else (lambda r, k=id: _get(r, k))
        self._meta = metadata if callable(metadata) else (lambda r, k=metadata: _get(r, k))
        self.collection_key = collection_key

    def entity(self, result: Any) -> dict[str, Any]:
        """The Cedar entity of one result."""
        rid = self._id(result)
        if rid is None:
            raise ValidationError(f"memory result {str(result)[:80]} has no id", hint="pass id= to MemoryGate")
        meta = dict(self._meta(result) or {})
        attrs = {}
        for k, v in meta.items():
            try:
                cv = to_cedar_value(v, where=k)
            except ValidationError:
                continue
            if cv is not None:
                attrs[str(k)] = cv
        parents = []
        coll = meta.get(self.collection_key)
        if isinstance(coll, str):
            parents.append({"type": self.collection_type, "id": coll})
        return {"uid": {"type": self.resource_type, "id": str(rid)}, "attrs": attrs, "parents": parents}

    def filter(self, principal: Any, results: Sequence[Any], *, context: Mapping[str, Any] | None = None) -> list[Any]:
        """The results ``principal`` may read, in order; each one withheld is a ``policy.denied`` event."""
        return [r for r, ok in zip(results, self.allowed(principal, results, context=context), strict=True) if ok]

    def allowed(self, principal: Any, results: Sequence[Any], *, context: Mapping[str, Any] | None = None) -> list[bool]:
        """Whether ``principal`` may read each result (one batch; each withheld one is a ``policy.denied`` event).

        A :class:`MemoryGate` is the read gate of a :class:`~lumina_lab.memory.VectorMemory`:
        ``VectorMemory(..., policy=gate)`` calls ``gate(principal, hits)``.
        """
        if not results:
            return []
        p = _uid(principal if principal is not None else current_principal(), self.principal_type)
        ents = [self.entity(r) for r in results]
        uids = [format_uid(e["uid"]["type"], e["uid"]["id"]) for e in ents]
        t0 = time.perf_counter()
        decisions = self.engine._decide([self.engine.request(p, self.action, u, context) for u in uids], _dedupe(ents))
        ms = (time.perf_counter() - t0) * 1000.0 / len(decisions)  # one batch: each decision's share
        if _wants(self.engine.bus, PolicyDeniedEvent):
            for d in decisions:
                if not d.allowed:
                    emit(self.engine.bus, self.engine._denied(d, "memory", ms)[1])  # type: ignore[arg-type]
        return [d.allowed for d in decisions]

    def __call__(self, principal: Any, results: Sequence[Any]) -> list[bool]:
        return self.allowed(principal, results)

    def check(self, principal: Any, result: Any, *, context: Mapping[str, Any] | None = None) -> Decision:
        """Allow reading one result, or raise :class:`PolicyDenied`."""
        p = _uid(principal if principal is not None else current_principal(), self.principal_type)
        ent = self.entity(result)
        uid = format_uid(ent["uid"]["type"], ent["uid"]["id"])
        return self.engine.authorize(p, self.action, uid, context, point="memory", entities=[ent])

    def __repr__(self) -> str:
        return f"MemoryGate({self.action} on {self.resource_type})"


def _dedupe(ents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for e in ents:
        seen.setdefault((e["uid"]["type"], e["uid"]["id"]), e)
    return list(seen.values())

