"""Helpers of the policy tests: the Cedar examples folder (fixture), and plain-cedarpy reference decisions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NON_CONFORMING = {"document_cloud", "github_example"}  # entities.json does not match their own schema (SOURCE.md)


def examples_root() -> Path:
    return Path(os.environ.get("LUMINA_CEDAR_EXAMPLES") or REPO.parent / "shared" / "datasets" / "cedar-examples")


def example_apps() -> list[Path]:
    root = examples_root()
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("policies.cedar"))


def require_examples() -> Path:
    """The examples folder, or skip the test (with the reason) when it is absent."""
    root = examples_root()
    if not root.is_dir():
        pytest.skip(f"the Cedar examples are not at {root} (set LUMINA_CEDAR_EXAMPLES to their folder)")
    return root


def app_name(path: Path) -> str:
    return path.relative_to(examples_root()).as_posix()


def reference(requests: Any, policies: Any, store: Any, schema: Any) -> list[tuple[str, set[str], tuple[str, ...]]]:
    """(decision, determining policy ids, errors) of each request, from plain ``cedarpy.is_authorized_batch``."""
    import cedarpy

    from lumina_lab.policy.uids import parse_uid

    def uid(v: Any) -> dict[str, str]:
        t, i = parse_uid(v if not isinstance(v, str) or "::" in v else f'Action::"{v}"')
        return {"type": t, "id": i}

    reqs = [
        {"principal": uid(p), "action": uid(a), "resource": uid(r), "context": dict(c or {})}
        for p, a, r, c in zip(requests.principals, requests.actions, requests.resources, requests.contexts, strict=True)
    ]
    res = cedarpy.is_authorized_batch(reqs, policies.handle, store.handle(schema), schema.handle if schema is not None else None)
    names = {"Allow": "allow", "Deny": "deny", "NoDecision": "no_decision"}
    return [(names[r.decision.value], set(r.diagnostics.reasons), tuple(r.diagnostics.errors)) for r in res]


def assert_same_as_cedar(matrix: Any, ref: list[tuple[str, set[str], tuple[str, ...]]]) -> None:
    """Every decision, determining policy set and error list equals plain cedarpy's."""
    bad = []
    for i, (d, pol, errs) in enumerate(ref):
        got = matrix.evaluation.result(i)
        if (got[0], set(got[1]), tuple(got[2])) != (d, pol, errs):
            bad.append((i, str(matrix.requests[i]), got, (d, pol, errs)))
    assert not bad, f"{len(bad)} of {len(ref)} differ from cedarpy, e.g. {bad[:3]}"
