"""Policy lab: Cedar policies (``cedarpy``), attribute providers, a versioned store, a simulator, enforcement.

>>> from lumina_lab.policy import PolicyEngine, DictEntities
>>> engine = PolicyEngine(
...     '@id("owners") permit(principal, action, resource) when { resource.owner == principal };',
...     [DictEntities("User", {"ann": {}, "bob": {}}), DictEntities("Doc", {"d1": {"owner": "ann"}}, refs={"owner": "User"})],
... )
>>> engine.evaluate('User::"ann"', "edit", 'Doc::"d1"')
Decision(ALLOW by policy0 "owners": User::"ann" edit Doc::"d1")
>>> engine.evaluate('User::"bob"', "edit", 'Doc::"d1"').explain()
'DENY User::"bob" edit Doc::"d1": no permit policy applies (default deny)'

``cedarpy`` itself is imported on first use (parsing, evaluating), not by importing this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attributes import (
        AttributeProvider,
        CallableEntities,
        DictEntities,
        DuckDBEntities,
        JsonEntities,
        ObjectEntities,
        Ref,
        collection_entities,
        provider_entities,
        to_cedar_value,
        tool_entities,
    )
    from .decision import ALLOW, DENY, NO_DECISION, Decision, Request
    from .enforce import MemoryGate, PolicyGate, RouterPolicy, acting_as, current_principal, router_context
    from .engine import PolicyEngine
    from .entities import EntityStore, EntityView
    from .events import PolicyDecided, PolicyDeniedEvent, PolicyShadowDiff, PolicyVersionPublished
    from .examples import ExampleResult, find_examples, run_example
    from .policies import Link, Policies, PolicyInfo, PolicyIssue, load_links
    from .requests import RequestSet
    from .schema import Schema
    from .shadow import ShadowEvaluator
    from .simulator import Coverage, DecisionMatrix, Explanation, PolicyDiff, Simulator
    from .store import PolicyStore, PolicyVersion
    from .workbench import PolicyLab

__all__ = [
    "ALLOW",
    "DENY",
    "NO_DECISION",
    "AttributeProvider",
    "CallableEntities",
    "Coverage",
    "Decision",
    "DecisionMatrix",
    "DictEntities",
    "DuckDBEntities",
    "EntityStore",
    "EntityView",
    "ExampleResult",
    "Explanation",
    "JsonEntities",
    "Link",
    "MemoryGate",
    "ObjectEntities",
    "Policies",
    "PolicyDecided",
    "PolicyDeniedEvent",
    "PolicyDiff",
    "PolicyEngine",
    "PolicyGate",
    "PolicyInfo",
    "PolicyIssue",
    "PolicyLab",
    "PolicyShadowDiff",
    "PolicyStore",
    "PolicyVersion",
    "PolicyVersionPublished",
    "Ref",
    "Request",
    "RequestSet",
    "RouterPolicy",
    "Schema",
    "ShadowEvaluator",
    "Simulator",
    "acting_as",
    "collection_entities",
    "current_principal",
    "find_examples",
    "load_links",
    "provider_entities",
    "router_context",
    "run_example",
    "to_cedar_value",
    "tool_entities",
]

_WHERE = {
    "ALLOW": "decision",
    "AttributeProvider": "attributes",
    "CallableEntities": "attributes",
    "Coverage": "simulator",
    "DENY": "decision",
    "Decision": "decision",
    "DecisionMatrix": "simulator",
    "DictEntities": "attributes",
    "DuckDBEntities": "attributes",
    "EntityStore": "entities",
    "EntityView": "entities",
    "ExampleResult": "examples",
    "Explanation": "simulator",
    "JsonEntities": "attributes",
    "Link": "policies",
    "MemoryGate": "enforce",
    "NO_DECISION": "decision",
    "ObjectEntities": "attributes",
    "Policies": "policies",
    "PolicyDecided": "events",
    "PolicyDeniedEvent": "events",
    "PolicyDiff": "simulator",
    "PolicyEngine": "engine",
    "PolicyGate": "enforce",
    "PolicyInfo": "policies",
    "PolicyIssue": "policies",
    "PolicyLab": "workbench",
    "PolicyShadowDiff": "events",
    "PolicyStore": "store",
    "PolicyVersion": "store",
    "PolicyVersionPublished": "events",
    "Ref": "attributes",
    "Request": "decision",
    "RequestSet": "requests",
    "RouterPolicy": "enforce",
    "Schema": "schema",
    "ShadowEvaluator": "shadow",
    "Simulator": "simulator",
    "acting_as": "enforce",
    "collection_entities": "attributes",
    "current_principal": "enforce",
    "find_examples": "examples",
    "load_links": "policies",
    "provider_entities": "attributes",
    "router_context": "enforce",
    "run_example": "examples",
    "to_cedar_value": "attributes",
    "tool_entities": "attributes",
}


def __getattr__(name: str) -> Any:  # submodules (numpy, pydantic, cedarpy) load on first use
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lumina_lab.policy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
