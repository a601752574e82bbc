"""Run a Cedar example folder: policies, schema, entities, links and ALLOW/DENY requests.

The layout of ``cedar-policy/cedar-examples`` (``cedar-example-use-cases/<app>``)::

    policies.cedar  policies.cedarschema  entities.json  [linked]  ALLOW/*.json  DENY/*.json

The folder a request sits in is its expected decision.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from .engine import PolicyEngine
from .entities import EntityStore
from .policies import Policies
from .requests import RequestSet
from .schema import Schema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ExampleResult", "find_examples", "run_example"]


def find_examples(path: str | Path) -> list[Path]:
    """The example folders at or below ``path`` (folders holding ``policies.cedar``)."""
    path = Path(path)
    if (path / "policies.cedar").is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob("policies.cedar"))
    if not found:
        raise ValidationError(
            f"no Cedar example in {str(path)!r}", input=str(path), hint="a folder with policies.cedar, entities.json, ALLOW/ and DENY/"
        )
    return found


@dataclass
class ExampleResult:
    """The outcome of one example folder."""

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    schema_used: bool = True
    error: str | None = None

    @property
    def passed(self) -> int:
        return sum(r["ok"] for r in self.rows)

    @property
    def failed(self) -> int:
        return len(self.rows) - self.passed

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0 and bool(self.rows)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["request", "expected", "decision", "ok", "policies", "errors"])

    def __repr__(self) -> str:
        if self.error:
            return f"ExampleResult({self.path.name}: error)"
        return f"ExampleResult({self.path.name}: {self.passed} passed, {self.failed} failed)"

    def _repr_html_(self) -> str:
        if self.error:
            return f"<b>{html.escape(str(self.path))}</b>: <pre>{html.escape(self.error)}</pre>"
        return f"<b>{html.escape(str(self.path))}</b>: {self.passed} passed, {self.failed} failed{self.frame().to_html(index=False)}"


def run_example(path: str | Path, *, use_schema: bool = True) -> ExampleResult:
    """Evaluate every request of an example folder through :class:`PolicyEngine` and compare.

    With ``use_schema`` (the default) policies are validated and entities and requests are checked
    against ``policies.cedarschema``; entities that do not conform raise :class:`ValidationError`
    naming the entity and attribute.  ``use_schema=False`` evaluates without the schema.
    """
    path = Path(path)
    policies = Policies.from_dir(path)
    schema_file = path / "policies.cedarschema"
    schema = Schema(schema_file) if use_schema and schema_file.is_file() else None
    entities_file = path / "entities.json"
    store = EntityStore(entities_file) if entities_file.is_file() else EntityStore()
    engine = PolicyEngine(policies, store, schema, unknown="evaluate")
    requests = RequestSet.load(path)
    decisions = engine.evaluate_batch(requests)
    result = ExampleResult(path, schema_used=schema is not None)
    for i, d in enumerate(decisions):
        expected = requests.expected[i] if requests.expected else None
        result.rows.append({
            "request": requests.names[i] if requests.names else str(i),
            "expected": expected,
            "decision": d.decision,
            "ok": expected is None or expected == d.decision,
            "policies": ", ".join(f"{p} ({a})" if (a := d.annotations.get(p)) else p for p in d.policies),
            "errors": "; ".join(d.errors),
        })
    return result
