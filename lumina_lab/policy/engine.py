"""The policy engine: Cedar decisions for requests, with the policies that decided them.

Policies, schema and entities are parsed once (``cedarpy`` handles) and
reused for every request; entities are parsed again only when an attribute
provider's data changed.  Decisions of identical requests are cached until
the entities or policies change.

>>> engine = PolicyEngine('permit(principal, action == Action::"read", resource) when { resource.public };',
...                       [{"uid": {"type": "Doc", "id": "d1"}, "attrs": {"public": True}, "parents": []},
...                        {"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": []}])
>>> engine.evaluate('User::"ann"', "read", 'Doc::"d1"').allowed
True
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PolicyDenied, ValidationError
from .decision import ALLOW, DENY, NO_DECISION, Decision, Request, context_dict
from .entities import EntityStore
from .events import PolicyDecided, PolicyDeniedEvent, _wants, aemit, emit
from .policies import Policies
from .schema import Schema
from .uids import format_uid, parse_uid, uid_key

if TYPE_CHECKING:
    pass

__all__ = ["PolicyEngine"]

_DECISIONS = {"Allow": ALLOW, "Deny": DENY, "NoDecision": NO_DECISION}


def _as_policies(policies: Any) -> Policies:
    if isinstance(policies, Policies):
        return policies
    if isinstance(policies, Path) or (isinstance(policies, str) and policies.strip() and "\n" not in policies and Path(policies).is_dir()):
        return Policies.from_dir(policies)
    return Policies(policies)


def _as_schema(schema: Any) -> Schema | None:
    if schema is None or isinstance(schema, Schema):
        return schema
    return Schema(schema)


def _as_entities(entities: Any) -> EntityStore:
    if entities is None:
        return EntityStore()
    if isinstance(entities, EntityStore):
        return entities
    if isinstance(entities, (list, str, Path)) and not (isinstance(entities, list) and entities and not isinstance(entities[0], Mapping)):
        return EntityStore(entities)
    return EntityStore(*entities)


class PolicyEngine:
    """Evaluates requests against Cedar policies.

    Args:
        policies: :class:`Policies`, Cedar text, a ``.cedar`` file or a folder (``policies.cedar`` + ``linked``),
            or a :class:`~lumina_lab.policy.store.PolicyVersion` (then its schema is used too).
        entities: an :class:`EntityStore`, Cedar JSON entities (list, text, file), or attribute providers.
        schema: a :class:`Schema` (or its text/file): entities and requests are validated against it.
        bus: where decision and denial events go (built only when someone subscribes).
        unknown: a principal or resource not in the entities: ``"error"`` (raise :class:`ValidationError`),
            ``"deny"`` (deny, with the reason as an error) or ``"evaluate"`` (let Cedar decide).
        record: which :meth:`evaluate` calls publish ``policy.decided``: ``"none"`` or ``"all"``
            (enforcement through :meth:`authorize` publishes when someone subscribes).
        sample: the share of enforcement decisions published as ``policy.decided`` (denials are
            always published as ``policy.denied``).
        cache_size: decisions of identical requests kept (0: no cache).
        validate: check the policies against the schema now (a violation raises :class:`ValidationError`).
    """

    def __init__(
        self,
        policies: Any,
        entities: Any = None,
        schema: Any = None,
        *,
        bus: Any = None,
        unknown: str = "error",
        record: str = "none",
        cache_size: int = 65_536,
        validate: bool = True,
        version: int | None = None,
        sample: float = 1.0,
    ) -> None:
        from .store import PolicyVersion

        if isinstance(policies, PolicyVersion):
            version = policies.number if version is None else version
            schema = schema if schema is not None else policies.schema
            policies = policies.policies
        if unknown not in ("error", "deny", "evaluate"):
            raise ValidationError(f"unknown={unknown!r}", hint="use 'error', 'deny' or 'evaluate'")
        if record not in ("none", "all"):
            raise ValidationError(f"record={record!r}", hint="use 'none' or 'all'")
        self.policies = _as_policies(policies)
        self.schema = _as_schema(schema)
        self.entities = _as_entities(entities)
        self.bus = bus
        self.unknown = unknown
        self.record = record
        self.version = version
        self.sample = sample
        self.cache_size = cache_size
        self._cache: dict[tuple[Any, ...], tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
        self._cache_key: Any = None
        self._uids: dict[Any, str] = {}
        self._known: tuple[Any, frozenset[str]] | None = None
        if validate and self.schema is not None:
            self.policies.check(self.schema)
        self.policies.handle  # noqa: B018  parse now

    # ------------------------------------------------------------------ parsed state
    @property
    def schema_handle(self) -> Any:
        return self.schema.handle if self.schema is not None else None

    def entities_handle(self) -> Any:
        """The parsed entities (re-parsed only after an attribute provider changed)."""
        return self.entities.handle(self.schema)

    def invalidate(self) -> None:
        """Reload every attribute provider and forget cached decisions."""
        self.entities.invalidate()
        self._cache.clear()

    def _known_uids(self) -> frozenset[str]:
        ents = self.entities.entities()
        if self._known is None or self._known[0] is not ents:
            self._known = (ents, frozenset(format_uid(*parse_uid(e["uid"])) for e in ents))
        return self._known[1]

    def _uid(self, value: Any, what: str) -> str:
        try:
            return self._uids[value]
        except (KeyError, TypeError):
            pass
        if what == "action" and isinstance(value, str) and "::" not in value:
            key = f'Action::"{value}"'
        else:
            key = uid_key(value, what=what)
        try:
            if len(self._uids) > 100_000:
                self._uids.clear()
            self._uids[value] = key
        except TypeError:
            pass
        return key

    def request(self, principal: Any, action: Any, resource: Any, context: Mapping[str, Any] | None = None) -> Request:
        """A :class:`Request` from any uid forms (``"read"`` means ``Action::"read"``)."""
        if isinstance(principal, Request):
            return principal
        return Request(
            self._uid(principal, "principal"),
            self._uid(action, "action"),
            self._uid(resource, "resource"),
            context_dict(context),
        )

    # ------------------------------------------------------------------ evaluation
    def _check_known(self, req: Request, extra: frozenset[str] = frozenset()) -> str | None:
        if self.unknown == "evaluate":
            return None
        known = self._known_uids()
        for what, uid in (("principal", req.principal), ("resource", req.resource)):
            if uid not in known and uid not in extra:
                msg = f"unknown {what} {uid}: it is not in the entities"
                if self.unknown == "error":
                    raise ValidationError(
                        msg,
                        input=uid,
                        hint="add it through an attribute provider (engine.entities.add(...)), fix the uid, or "
                        "construct the engine with unknown='deny' or 'evaluate'",
                    )
                return msg
        return None

    def _decide(self, reqs: Sequence[Request], extra: Sequence[Mapping[str, Any]] | None = None) -> list[Decision]:
        import cedarpy

        ents = self.entities_handle()
        extra_uids: frozenset[str] = frozenset()
        if extra:
            delta = [dict(e) for e in extra]
            extra_uids = frozenset(format_uid(*parse_uid(e["uid"])) for e in delta)
            try:
                ents = ents.with_added_json_str(json.dumps(delta), self.schema_handle)
            except ValueError as exc:
                from .entities import _explain

                raise _explain(delta, self.schema, str(exc)) from None
        state = (id(ents) if extra else self.entities.version, self.policies.digest)
        if state != self._cache_key:
            self._cache.clear()
            self._cache_key = state
        cache = self._cache if (self.cache_size and not extra) else None
        out: list[Decision | None] = [None] * len(reqs)
        todo: list[int] = []
        keys: list[Any] = []
        for i, req in enumerate(reqs):
            unknown = self._check_known(req, extra_uids)
            if unknown is not None:
                out[i] = Decision(DENY, (), {}, (unknown,), req, self.version)
                keys.append(None)
                continue
            key = (req.principal, req.action, req.resource, repr(req.context)) if cache is not None else None
            keys.append(key)
            hit = cache.get(key) if cache is not None else None
            if hit is not None:
                out[i] = self._decision(hit, req)
            else:
                todo.append(i)
        if todo:
            results = cedarpy.is_authorized_batch(
                [reqs[i].to_cedar() for i in todo], self.policies.handle, ents, self.schema_handle
            )
            for i, res in zip(todo, results, strict=True):
                d = res.diagnostics
                raw = (_DECISIONS[res.decision.value], tuple(d.reasons), tuple(d.errors))
                if cache is not None:
                    if len(cache) >= self.cache_size:
                        cache.clear()
                    cache[keys[i]] = raw
                out[i] = self._decision(raw, reqs[i])
        return out  # type: ignore[return-value]

    def _decision(self, raw: tuple[str, tuple[str, ...], tuple[str, ...]], req: Request) -> Decision:
        d, reasons, errors = raw
        labels = self.policies
        annotations = {p: a for p in reasons if (a := labels.label(p)) != p}
        return Decision(d, reasons, annotations, errors, req, self.version)

    def evaluate(
        self,
        principal: Any,
        action: Any = None,
        resource: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        entities: Sequence[Mapping[str, Any]] | None = None,
        strict: bool = True,
    ) -> Decision:
        """Decide one request (nothing is enforced).

        Args:
            principal / action / resource: uids in any form (or pass a :class:`Request` as ``principal``).
            context: the request context.
            entities: extra Cedar JSON entities for this request only (e.g. the resource being checked).
            strict: raise :class:`ValidationError` when the request does not match the schema
                (otherwise: a ``no_decision`` Decision).
        """
        decision, ms = self._evaluate(principal, action, resource, context, entities, strict)
        if self.record == "all" and _wants(self.bus, PolicyDecided):
            emit(self.bus, self._decided_event(decision, "engine", ms))
        return decision

    def _evaluate(
        self, principal: Any, action: Any, resource: Any, context: Mapping[str, Any] | None,
        entities: Sequence[Mapping[str, Any]] | None, strict: bool,
    ) -> tuple[Decision, float]:
        """One decision and the milliseconds it took (nothing published)."""
        req, decision, ms = self._timed(principal, action, resource, context, entities)
        if strict and decision.decision == NO_DECISION:
            raise ValidationError(
                f"request {req} does not match the schema: {'; '.join(decision.errors)}",
                input=req.to_json(),
                hint="check the entity types the action applies to and the context attributes the schema declares",
            )
        return decision, ms

    def _timed(
        self, principal: Any, action: Any, resource: Any, context: Mapping[str, Any] | None,
        entities: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[Request, Decision, float]:
        """The request, its decision and the milliseconds deciding took."""
        req = self.request(principal, action, resource, context)
        t0 = time.perf_counter()
        decision = self._decide([req], entities)[0]
        return req, decision, (time.perf_counter() - t0) * 1000.0

    async def aevaluate(
        self,
        principal: Any,
        action: Any = None,
        resource: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        entities: Sequence[Mapping[str, Any]] | None = None,
        strict: bool = True,
    ) -> Decision:
        """Async :meth:`evaluate`."""
        decision, ms = self._evaluate(principal, action, resource, context, entities, strict)
        if self.record == "all" and _wants(self.bus, PolicyDecided):
            await aemit(self.bus, self._decided_event(decision, "engine", ms))
        return decision

    def evaluate_batch(
        self, requests: Iterable[Any], *, entities: Sequence[Mapping[str, Any]] | None = None
    ) -> list[Decision]:
        """Decide many requests (Requests, dicts with principal/action/resource/context, or a RequestSet).

        Invalid requests get a ``no_decision`` Decision; nothing raises per request.
        """
        from .requests import RequestSet

        if not isinstance(requests, RequestSet) and (
            isinstance(requests, str | bytes | Mapping) or not isinstance(requests, Iterable)
        ):
            raise ValidationError(
                f"requests is a {type(requests).__name__}, not a list of requests",
                input=requests,
                hint="pass Requests, dicts with principal/action/resource(/context), or a RequestSet",
            )
        if isinstance(requests, RequestSet):
            reqs = [self.request(p, a, r, c) for p, a, r, c in zip(requests.principals, requests.actions, requests.resources, requests.contexts, strict=True)]
        else:
            reqs = []
            for i, r in enumerate(requests):
                if isinstance(r, Request):
                    reqs.append(r)
                elif isinstance(r, Mapping):
                    try:
                        reqs.append(self.request(r["principal"], r["action"], r["resource"], r.get("context")))
                    except KeyError as exc:
                        raise ValidationError(f"request #{i} has no {exc}", input=r) from None
                else:
                    reqs.append(self.request(*r))
        return self._decide(reqs, entities)

    async def aevaluate_batch(self, requests: Iterable[Any], **kwargs: Any) -> list[Decision]:
        """Async :meth:`evaluate_batch` (runs in a worker thread)."""
        return await asyncio.to_thread(self.evaluate_batch, list(requests), **kwargs)

    # ------------------------------------------------------------------ enforcement
    def _sampled(self) -> bool:
        if self.sample >= 1.0:
            return True
        import random

        return random.random() < self.sample

    def _decided_event(self, d: Decision, point: str, ms: float | None = None) -> PolicyDecided:
        r = d.request
        assert r is not None
        return PolicyDecided(
            principal=r.principal, action=r.action, resource=r.resource, context=dict(r.context), decision=d.decision,
            policies=list(d.policies), annotations=dict(d.annotations), errors=list(d.errors), point=point,
            version=d.version, ms=ms,
        )

    def _denied(self, d: Decision, point: str, ms: float | None = None) -> tuple[PolicyDenied, PolicyDeniedEvent | None]:
        r = d.request
        assert r is not None
        explanation = d.explain()
        hint = (
            "a forbid policy applies; change the request or the policy"
            if d.policies
            else "no permit policy applies to this principal, action and resource; add one or change the request"
        )
        exc = PolicyDenied(explanation, hint=hint, input=r.to_json())
        exc.decision = d  # type: ignore[attr-defined]
        event = None
        if _wants(self.bus, PolicyDeniedEvent):
            event = PolicyDeniedEvent(
                principal=r.principal, action=r.action, resource=r.resource, context=dict(r.context),
                policies=list(d.policies), annotations=dict(d.annotations), errors=list(d.errors),
                explanation=explanation, point=point, version=d.version, ms=ms,
            )
        return exc, event

    def authorize(
        self,
        principal: Any,
        action: Any = None,
        resource: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        point: str = "engine",
        entities: Sequence[Mapping[str, Any]] | None = None,
    ) -> Decision:
        """Enforce: return the allow Decision, or raise :class:`PolicyDenied` (with the explanation).

        Publishes ``policy.decided`` (and ``policy.denied`` on a denial) when someone subscribes.
        """
        _, d, ms = self._timed(principal, action, resource, context, entities)
        if self._sampled() and _wants(self.bus, PolicyDecided):
            emit(self.bus, self._decided_event(d, point, ms))
        if not d.allowed:
            exc, event = self._denied(d, point, ms)
            if event is not None:
                emit(self.bus, event)
            raise exc
        return d

    async def aauthorize(
        self,
        principal: Any,
        action: Any = None,
        resource: Any = None,
        context: Mapping[str, Any] | None = None,
        *,
        point: str = "engine",
        entities: Sequence[Mapping[str, Any]] | None = None,
    ) -> Decision:
        """Async :meth:`authorize`."""
        _, d, ms = self._timed(principal, action, resource, context, entities)
        if self._sampled() and _wants(self.bus, PolicyDecided):
            await aemit(self.bus, self._decided_event(d, point, ms))
        if not d.allowed:
            exc, event = self._denied(d, point, ms)
            if event is not None:
                await aemit(self.bus, event)
            raise exc
        return d

    def filter_allowed(
        self,
        principal: Any,
        action: Any,
        resources: Sequence[Any],
        context: Mapping[str, Any] | None = None,
        *,
        entities: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[bool]:
        """Whether ``principal`` may do ``action`` to each of ``resources`` (one batch, nothing raised).

        ``entities``: Cedar JSON entities for this call only (e.g. search results with their attributes).
        """
        reqs = [self.request(principal, action, r, context) for r in resources]
        return [d.allowed for d in self._decide(reqs, entities)]

    def authorize_many(self, principal: Any, action: Any, resources: Sequence[Any], context: Mapping[str, Any] | None = None, **kw: Any) -> list[Any]:
        """The ``resources`` that ``principal`` may ``action`` (order kept)."""
        return [r for r, ok in zip(resources, self.filter_allowed(principal, action, resources, context, **kw), strict=True) if ok]

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        schema = f", schema {self.schema.name!r}" if self.schema else ""
        ver = f", version {self.version}" if self.version is not None else ""
        return f"PolicyEngine({self.policies!r}, {self.entities!r}{schema}{ver})"
