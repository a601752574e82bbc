"""Shadow mode: a candidate policy version decides beside the live one; differences become events.

The live engine's decision is the one that counts.  Use the evaluator in place
of the live engine, or :meth:`ShadowEvaluator.attach` it to a bus to re-decide
every ``policy.decided`` event the live enforcement points publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .decision import Decision
from .events import PolicyDecided, PolicyShadowDiff, _wants, aemit, emit

if TYPE_CHECKING:
    import pandas as pd

    from .engine import PolicyEngine

__all__ = ["ShadowEvaluator"]


class ShadowEvaluator:
    """Evaluates each request with ``live`` (returned) and ``candidate`` (compared).

    Args:
        live / candidate: the engines of the two versions.
        bus: where ``policy.shadow.diff`` events go.
        keep: differences kept for :meth:`frame` (the newest).
    """

    def __init__(self, live: PolicyEngine, candidate: PolicyEngine, *, bus: Any = None, keep: int = 10_000) -> None:
        self.live = live
        self.candidate = candidate
        self.bus = bus
        self.keep = keep
        self.compared = 0
        self.differences: list[dict[str, Any]] = []
        self.n_different = 0
        self._subscription: Any = None

    def _compare(self, live: Decision, cand: Decision) -> PolicyShadowDiff | None:
        self.compared += 1
        if live.decision == cand.decision:
            return None
        self.n_different += 1
        r = live.request
        assert r is not None
        row = {
            "principal": r.principal, "action": r.action, "resource": r.resource, "context": dict(r.context),
            "live": live.decision, "candidate": cand.decision, "live_policies": list(live.policies),
            "candidate_policies": list(cand.policies), "explanation": cand.explain(),
        }
        self.differences.append(row)
        del self.differences[: -self.keep]
        if not _wants(self.bus, PolicyShadowDiff):
            return None
        return PolicyShadowDiff(**row, live_version=live.version, candidate_version=cand.version)

    def evaluate(self, principal: Any, action: Any = None, resource: Any = None, context: Mapping[str, Any] | None = None) -> Decision:
        """The live decision (the candidate's is compared and a difference published)."""
        live = self.live.evaluate(principal, action, resource, context, strict=False)
        assert live.request is not None
        cand = self.candidate.evaluate(live.request, strict=False)
        event = self._compare(live, cand)
        if event is not None:
            emit(self.bus, event)
        return live

    async def aevaluate(self, principal: Any, action: Any = None, resource: Any = None, context: Mapping[str, Any] | None = None) -> Decision:
        """Async :meth:`evaluate`."""
        live = self.live.evaluate(principal, action, resource, context, strict=False)
        assert live.request is not None
        cand = self.candidate.evaluate(live.request, strict=False)
        event = self._compare(live, cand)
        if event is not None:
            await aemit(self.bus, event)
        return live

    def attach(self, bus: Any = None, pattern: str = "policy.decided") -> Any:
        """Re-decide with the candidate every live ``policy.decided`` event on ``bus``; return the subscription."""
        bus = bus or self.bus
        self.bus = bus

        async def handle(event: Any) -> None:
            if not isinstance(event, PolicyDecided):
                return
            cand = self.candidate.evaluate(event.principal, event.action, event.resource, event.context, strict=False)
            live = Decision(event.decision, tuple(event.policies), dict(event.annotations), tuple(event.errors), cand.request, event.version)
            diff = self._compare(live, cand)
            if diff is not None:
                await aemit(bus, diff)

        self._subscription = bus.subscribe(pattern, handle, name="policy-shadow")
        return self._subscription

    def frame(self) -> pd.DataFrame:
        """The differences seen so far (newest ``keep``)."""
        import pandas as pd

        cols = ["principal", "action", "resource", "context", "live", "candidate", "live_policies", "candidate_policies", "explanation"]
        return pd.DataFrame(self.differences, columns=cols)

    def __repr__(self) -> str:
        return f"ShadowEvaluator({self.compared} compared, {self.n_different} different)"
