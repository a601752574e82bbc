"""The policy simulator: run request sets through policy versions without acting.

Like the AWS IAM policy simulator: a decision matrix for a request set (from a
grid, files or the event log), which policy decided each request, what
changes between two versions and why, which policies never decide anything,
which requests fall to the default deny, and a per-policy explanation of one
request.

>>> sim = Simulator('@id("read") permit(principal, action == Action::"read", resource);',
...                 [{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": []},
...                  {"uid": {"type": "Doc", "id": "d"}, "attrs": {}, "parents": []}])
>>> m = sim.run(RequestSet.grid(['User::"a"'], ["read", "write"], ['Doc::"d"']))
>>> list(m.frame["decision"])
['allow', 'deny']
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError
from .decision import ALLOW, DENY, NO_DECISION, Decision, Request
from .engine import PolicyEngine, _as_entities, _as_policies, _as_schema
from .grouping import Evaluation, GroupedEvaluator
from .policies import Policies
from .requests import RequestSet
from .schema import Schema

if TYPE_CHECKING:
    import pandas as pd

    from .entities import EntityStore
    from .shadow import ShadowEvaluator
    from .store import PolicyStore

__all__ = ["Coverage", "DecisionMatrix", "Explanation", "PolicyDiff", "Simulator"]

_CODES = {0: DENY, 1: ALLOW, 2: NO_DECISION}


class DecisionMatrix:
    """Decisions of a request set under one policy version (arrays inside; :attr:`frame` for a DataFrame)."""

    def __init__(self, requests: RequestSet, evaluation: Evaluation, policies: Policies, version: Any = None) -> None:
        self.requests = requests
        self.evaluation = evaluation
        self.policies = policies
        self.version = version

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def decision(self) -> np.ndarray:
        """0 deny, 1 allow, 2 no decision, per request."""
        return self.evaluation.decision

    @property
    def allowed(self) -> np.ndarray:
        return self.evaluation.decision == 1

    def __getitem__(self, i: int) -> Decision:
        d, pol, errs = self.evaluation.result(i)
        ann = {p: a for p in pol if (a := self.policies.label(p)) != p}
        return Decision(d, pol, ann, errs, self.requests[i], self.version if isinstance(self.version, int) else None)

    def _labels(self) -> tuple[np.ndarray, list[str], list[str]]:
        """Per request: a code into (policy ids text, determining labels text) categories."""
        ev = self.evaluation
        texts: dict[tuple[str, ...], int] = {}
        pat_code = np.empty(len(ev.patterns), dtype=np.int64)
        for i, (_, pol, _, _) in enumerate(ev.patterns):
            pat_code[i] = texts.setdefault(pol, len(texts))
        codes = pat_code[ev.pattern] if len(ev.pattern) else np.zeros(0, dtype=np.int64)
        for row, (_, pol, _) in ev.overrides.items():
            codes[row] = texts.setdefault(pol, len(texts))
        keys = list(texts)
        return codes, [", ".join(k) for k in keys], [", ".join(self.policies.label(p) for p in k) for k in keys]

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per request: principal, action, resource, context, decision, policies (ids), determining
        (``@id`` labels), errors, and ``name``/``expected``/``match`` when the requests carry them."""
        import pandas as pd

        rs, ev = self.requests, self.evaluation
        codes, ids, labels = self._labels()
        data: dict[str, Any] = {}
        if rs.names is not None:
            data["name"] = rs.names
        data["principal"] = rs.principals
        data["action"] = rs.actions
        data["resource"] = rs.resources
        data["context"] = rs.contexts
        data["decision"] = pd.Categorical.from_codes(ev.decision.astype(np.int64), categories=[DENY, ALLOW, NO_DECISION])
        data["policies"] = pd.Categorical.from_codes(codes, categories=_unique_categories(ids))
        data["determining"] = pd.Categorical.from_codes(codes, categories=_unique_categories(labels))
        if ev.overrides:
            errors = np.full(len(rs), "", dtype=object)
            for row, (_, _, errs) in ev.overrides.items():
                errors[row] = "; ".join(errs)
            data["errors"] = errors
        else:
            data["errors"] = pd.Categorical.from_codes(np.zeros(len(rs), dtype=np.int64), categories=[""])
        if rs.expected is not None:
            data["expected"] = rs.expected
        frame = pd.DataFrame(data)
        if rs.expected is not None:
            frame["match"] = [e is None or e == d for e, d in zip(rs.expected, frame["decision"].astype(str), strict=True)]
        return frame

    def summary(self, by: str = "action") -> pd.DataFrame:
        """Counts of allow / deny / no decision per ``by`` (a column of :attr:`frame`)."""
        f = self.frame
        out = f.groupby([by, "decision"], observed=False).size().unstack("decision", fill_value=0)
        return out.reindex(columns=[ALLOW, DENY, NO_DECISION], fill_value=0)

    def pivot(self, action: str | None = None, *, index: str = "principal", columns: str = "resource") -> pd.DataFrame:
        """A principal x resource table of decisions (for one ``action``, or all of them)."""
        f = self.frame
        if action is not None:
            want = action if "::" in action else f'Action::"{action}"'
            f = f[f["action"] == want]
        return f.pivot_table(index=index, columns=columns, values="decision", aggfunc=lambda s: "/".join(sorted(set(map(str, s)))))

    @property
    def counts(self) -> dict[str, int]:
        c = np.bincount(self.evaluation.decision.astype(np.int64), minlength=3)
        return {ALLOW: int(c[1]), DENY: int(c[0]), NO_DECISION: int(c[2])}

    def mismatches(self) -> pd.DataFrame:
        """Requests whose decision differs from the expected one (needs expected decisions)."""
        if self.requests.expected is None:
            raise ValidationError("these requests carry no expected decisions", hint="load them from ALLOW/ and DENY/ folders")
        return self.frame[~self.frame["match"]]

    @property
    def passed(self) -> bool:
        """Every expected decision was reproduced."""
        return self.requests.expected is not None and bool(self.frame["match"].all())

    def __repr__(self) -> str:
        c = self.counts
        ver = f" (version {self.version})" if self.version is not None else ""
        return f"DecisionMatrix({len(self)} requests{ver}: {c[ALLOW]} allow, {c[DENY]} deny, {c[NO_DECISION]} no decision)"

    def _repr_html_(self) -> str:
        c = self.counts
        head = self.frame.head(20).drop(columns=["context"]).to_html(index=False)
        return (
            f"<b>Decision matrix</b> — {len(self)} requests: <span style='color:#1a7f37'>{c[ALLOW]} allow</span>, "
            f"<span style='color:#cf222e'>{c[DENY]} deny</span>, {c[NO_DECISION]} no decision{head}"
        )


def _unique_categories(values: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for v in values:
        seen[v] += 1
        out.append(v if seen[v] == 1 else f"{v} ({seen[v]})")
    return out


# ------------------------------------------------------------------------------------- diff
def _policy_keys(policies: Policies) -> dict[str, tuple[str, str]]:
    """policy id -> (identity across versions, normalized text)."""
    out = {}
    for info in policies:
        text = " ".join(info.statement.text.split())
        if info.kind == "link":
            link = next(link for link in policies.links if link.id == info.id)
            text += " " + json.dumps(dict(link.values), sort_keys=True)
            ident = f"link:{info.id}"
        else:
            ident = f"@id:{info.annotation}" if info.annotation else f"text:{text}"
        out[info.id] = (ident, text)
    return out


def _match_policies(old: Policies, new: Policies) -> tuple[dict[str, str], dict[str, str]]:
    """Status of each policy across versions: matched by ``@id`` (or link id), else by identical text,
    else by position (same id and effect): ``unchanged``/``changed``/``removed`` (old), ``new`` (new)."""
    ok, nk = _policy_keys(old), _policy_keys(new)
    status_old: dict[str, str] = {}
    matched_new: dict[str, str] = {}
    new_by_ident = {ident: pid for pid, (ident, _) in nk.items()}
    new_by_text = {text: pid for pid, (ident, text) in nk.items() if ident.startswith("text:")}
    for pid, (ident, text) in ok.items():
        other = new_by_ident.get(ident)
        if other is None and ident.startswith("text:"):
            other = new_by_text.get(text)
            positional = pid in nk and nk[pid][0].startswith("text:") and pid not in matched_new.values()
            if other is None and positional and old.info(pid).effect == new.info(pid).effect:
                other = pid
        if other is None or other in matched_new:
            status_old[pid] = "removed"
            continue
        matched_new[other] = pid
        status_old[pid] = "unchanged" if nk[other][1] == text else "changed"
    status_new = {pid: ("new" if pid not in matched_new else status_old[matched_new[pid]]) for pid in nk}
    return status_old, status_new


class PolicyDiff:
    """What changes between two policy versions on the same requests, and why."""

    def __init__(self, old: DecisionMatrix, new: DecisionMatrix) -> None:
        self.old, self.new = old, new
        o, n = old.evaluation, new.evaluation
        self.changed: np.ndarray = o.decision != n.decision
        self.status_old, self.status_new = _match_policies(old.policies, new.policies)

    def _name(self, policies: Policies, pid: str, status: str) -> str:
        label = policies.label(pid)
        name = pid if label == pid else f'{pid} "{label}"'
        return f"{name} ({status})" if status != "unchanged" else name

    def why(self, i: int) -> str:
        """Why request ``i`` changed decision (or ``""`` if it did not)."""
        od, opol, oerr = self.old.evaluation.result(i)
        nd, npol, nerr = self.new.evaluation.result(i)
        if od == nd:
            return ""
        oname = [self._name(self.old.policies, p, self.status_old.get(p, "?")) for p in opol]
        nname = [self._name(self.new.policies, p, self.status_new.get(p, "?")) for p in npol]
        if nd == NO_DECISION:
            return "the request is invalid under the new version: " + "; ".join(nerr)
        if od == NO_DECISION:
            return "the request was invalid under the old version: " + "; ".join(oerr)
        if nd == ALLOW:
            text = f"now permitted by {', '.join(nname)}"
            if opol:
                gone = [f"{n}: no longer applies" if self.status_old.get(p) == "unchanged" else n for p, n in zip(opol, oname, strict=True)]
                text += f"; was forbidden by {', '.join(gone)}"
            else:
                text += " (was default deny)"
            return text
        if npol:
            return f"now forbidden by {', '.join(nname)} (was permitted by {', '.join(oname)})"
        gone = [f"{n}: no longer applies" if self.status_old.get(p) == "unchanged" else n for p, n in zip(opol, oname, strict=True)]
        return f"no permit applies any more (was permitted by {', '.join(gone)})"

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The requests whose decision changed: request, old and new decision and policies, and why."""
        import pandas as pd

        rows = np.flatnonzero(self.changed)
        rs = self.old.requests
        cache: dict[tuple[Any, ...], str] = {}
        out = []
        for i in rows.tolist():
            key = (self.old.evaluation.result(i), self.new.evaluation.result(i))
            why = cache.get(key)
            if why is None:
                why = cache[key] = self.why(i)
            od, opol, _ = key[0]
            nd, npol, _ = key[1]
            out.append({
                "principal": rs.principals[i], "action": rs.actions[i], "resource": rs.resources[i], "context": rs.contexts[i],
                "old": od, "new": nd, "old_policies": ", ".join(opol), "new_policies": ", ".join(npol), "why": why,
            })
        cols = ["principal", "action", "resource", "context", "old", "new", "old_policies", "new_policies", "why"]
        return pd.DataFrame(out, columns=cols)

    def summary(self) -> pd.DataFrame:
        """Counts of each transition (old decision → new decision), changed ones first."""
        import pandas as pd

        o = self.old.evaluation.decision.astype(np.int64)
        n = self.new.evaluation.decision.astype(np.int64)
        counts = np.bincount(o * 3 + n, minlength=9)
        rows = [
            {"old": _CODES[a], "new": _CODES[b], "requests": int(counts[a * 3 + b]), "changed": a != b}
            for a in range(3) for b in range(3) if counts[a * 3 + b]
        ]
        return pd.DataFrame(rows).sort_values(["changed", "requests"], ascending=[False, False]).reset_index(drop=True)

    @property
    def n_changed(self) -> int:
        return int(self.changed.sum())

    def policy_changes(self) -> pd.DataFrame:
        """Policies added, removed or changed between the versions."""
        import pandas as pd

        rows = [{"policy": p, "label": self.old.policies.label(p), "status": s, "version": "old"} for p, s in self.status_old.items() if s != "unchanged"]
        rows += [{"policy": p, "label": self.new.policies.label(p), "status": s, "version": "new"} for p, s in self.status_new.items() if s == "new"]
        return pd.DataFrame(rows, columns=["policy", "label", "status", "version"])

    def __repr__(self) -> str:
        return f"PolicyDiff({self.n_changed} of {len(self.changed)} requests change decision)"

    def _repr_html_(self) -> str:
        f = self.frame.head(20).drop(columns=["context"])
        return f"<b>Policy diff</b> — {self.n_changed} of {len(self.changed)} requests change decision{self.summary().to_html(index=False)}{f.to_html(index=False)}"


# ------------------------------------------------------------------------------------- coverage
class Coverage:
    """Which policies decide requests of a set, which never do, and which requests fall to the default deny."""

    def __init__(self, matrix: DecisionMatrix) -> None:
        self.matrix = matrix
        ev = matrix.evaluation
        counts = np.bincount(ev.pattern.astype(np.int64), minlength=len(ev.patterns)) if len(ev.pattern) else np.zeros(len(ev.patterns), dtype=np.int64)
        by_policy: Counter[str] = Counter()
        for row in ev.overrides:
            counts[ev.pattern[row]] -= 1
        for (_, pol, _, _), c in zip(ev.patterns, counts.tolist(), strict=True):
            for p in pol:
                by_policy[p] += c
        for _, pol, _ in ev.overrides.values():
            for p in pol:
                by_policy[p] += 1
        self.determining: dict[str, int] = {info.id: by_policy.get(info.id, 0) for info in matrix.policies}
        self.default_deny_mask: np.ndarray = np.zeros(len(matrix), dtype=bool)
        pat_dd = np.array([d == DENY and not pol for d, pol, _, _ in ev.patterns], dtype=bool)
        if len(ev.pattern):
            self.default_deny_mask = pat_dd[ev.pattern]
        for row, (d, pol, _) in ev.overrides.items():
            self.default_deny_mask[row] = d == DENY and not pol

    @property
    def never_determining(self) -> list[str]:
        """Policies that decided none of the requests."""
        return [p for p, c in self.determining.items() if c == 0]

    @property
    def default_deny(self) -> int:
        """Requests denied because no permit applied (and no forbid decided)."""
        return int(self.default_deny_mask.sum())

    def default_deny_requests(self) -> pd.DataFrame:
        """Those requests."""
        return self.matrix.frame[self.default_deny_mask]

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per policy: id, label, effect, requests it determined, share of all requests."""
        import pandas as pd

        n = max(len(self.matrix), 1)
        rows = [
            {"policy": info.id, "label": info.label, "effect": info.effect, "kind": info.kind, "determining": self.determining[info.id], "share": self.determining[info.id] / n}
            for info in self.matrix.policies
        ]
        return pd.DataFrame(rows, columns=["policy", "label", "effect", "kind", "determining", "share"])

    def __repr__(self) -> str:
        return f"Coverage({len(self.never_determining)} of {len(self.determining)} policies never determine a decision; {self.default_deny} requests default-denied)"

    def _repr_html_(self) -> str:
        never = ", ".join(html.escape(self.matrix.policies.label(p)) for p in self.never_determining) or "none"
        return f"<b>Coverage</b> — never determining: {never}; default deny: {self.default_deny} of {len(self.matrix)}{self.frame.to_html(index=False)}"


# ------------------------------------------------------------------------------------- explain
@dataclass
class Explanation:
    """One request, its decision, and what every policy made of it."""

    decision: Decision
    rows: list[dict[str, Any]]

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["policy", "label", "effect", "applies", "determining", "error"])

    def __str__(self) -> str:
        lines = [self.decision.explain()]
        for r in self.rows:
            mark = "*" if r["determining"] else ("+" if r["applies"] else ("!" if r["error"] else " "))
            err = f"  error: {r['error']}" if r["error"] else ""
            lines.append(f"  {mark} {r['effect']:<6} {r['label']}{err}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.decision._repr_html_() + self.frame().to_html(index=False)


# ------------------------------------------------------------------------------------- simulator
class Simulator:
    """Runs request sets through policy versions.

    Args:
        policies: the default policies (anything :class:`PolicyEngine` takes, a :class:`PolicyEngine`
            (its policies, entities and schema), or ``None`` with a ``store``).
        entities: the entities (attribute providers); the same for every version simulated.
        schema: the default schema (a version from a store brings its own).
        store: a :class:`~lumina_lab.policy.store.PolicyStore`: then versions can be named by number.
        workers: processes for large simulations (see :class:`GroupedEvaluator`).
        progress: progress bars on long runs.
    """

    def __init__(
        self,
        policies: Any = None,
        entities: Any = None,
        schema: Any = None,
        *,
        store: PolicyStore | None = None,
        workers: int | None = None,
        progress: bool = True,
    ) -> None:
        if isinstance(policies, PolicyEngine):
            entities = policies.entities if entities is None else entities
            schema = policies.schema if schema is None else schema
            policies = policies.policies
        self.store = store
        self.entities: EntityStore = _as_entities(entities)
        self.schema: Schema | None = _as_schema(schema)
        self.policies = _as_policies(policies) if policies is not None else None
        self.workers = workers
        self.progress = progress
        self._evaluators: dict[tuple[Any, ...], GroupedEvaluator] = {}

    def _resolve(self, policies: Any) -> tuple[Policies, Schema | None, Any]:
        from .store import PolicyVersion

        if policies is None:
            if self.policies is not None:
                return self.policies, self.schema, None
            if self.store is not None and self.store.live is not None:
                v = self.store.live
                return v.policies, v.schema or self.schema, v.number
            raise ValidationError("no policies to simulate", hint="pass policies= or a store with a published version")
        if isinstance(policies, int):
            if self.store is None:
                raise ValidationError(f"version {policies} needs a policy store", hint="Simulator(store=...)")
            policies = self.store.get(policies)
        if isinstance(policies, PolicyVersion):
            return policies.policies, policies.schema or self.schema, policies.number
        if isinstance(policies, PolicyEngine):
            return policies.policies, policies.schema, policies.version
        # an unpublished edit (text, a file, Policies) is read against the default schema, else the live
        # version's, as publishing it would be: without one, datetimes and typed references do not parse
        schema = self.schema
        if schema is None and self.store is not None and self.store.live is not None:
            schema = self.store.live.schema
        return _as_policies(policies), schema, None

    def evaluator(self, policies: Any = None) -> GroupedEvaluator:
        """The (cached) grouped evaluator of a version; builds the parsed state."""
        pol, schema, _ = self._resolve(policies)
        key = (pol.digest, id(schema), id(self.entities))
        ev = self._evaluators.get(key)
        if ev is None:
            ev = self._evaluators[key] = GroupedEvaluator(pol, self.entities, schema, workers=self.workers, progress=self.progress)
            self.entities.handle(schema)
        return ev

    def run(self, requests: Any, *, policies: Any = None) -> DecisionMatrix:
        """Decide every request (a RequestSet, request dicts, a DataFrame, or a file/folder)."""
        from .grouping import gc_paused

        with gc_paused():
            rs = RequestSet.of(requests)
            pol, _, version = self._resolve(policies)
            return DecisionMatrix(rs, self.evaluator(policies).run(rs), pol, version)

    def diff(self, old: Any, new: Any, requests: Any) -> PolicyDiff:
        """Run ``requests`` through two versions (numbers, PolicyVersions, Policies, text or folders)."""
        rs = RequestSet.of(requests)
        return PolicyDiff(self.run(rs, policies=old), self.run(rs, policies=new))

    def coverage(self, requests: Any, *, policies: Any = None) -> Coverage:
        """Which policies determine decisions of ``requests``, which never do, and the default denies."""
        return Coverage(self.run(requests, policies=policies))

    def explain(
        self, principal: Any, action: Any = None, resource: Any = None, context: Mapping[str, Any] | None = None, *, policies: Any = None
    ) -> Explanation:
        """The decision of one request, and for every policy whether it applies (evaluated alone) or errs."""
        import cedarpy

        pol, schema, version = self._resolve(policies)
        engine = PolicyEngine(pol, self.entities, schema, unknown="evaluate", validate=False, version=version)
        req = principal if isinstance(principal, Request) else engine.request(principal, action, resource, context)
        decision = engine.evaluate(req, strict=False)
        ents, sch = self.entities.handle(schema), schema.handle if schema is not None else None
        rows = []
        for info in pol:
            res = cedarpy.is_authorized(req.to_cedar(), pol.subset([info.id]), ents, sch)
            rows.append({
                "policy": info.id, "label": info.label, "effect": info.effect,
                "applies": info.id in res.diagnostics.reasons, "determining": info.id in decision.policies,
                "error": "; ".join(res.diagnostics.errors),
            })
        return Explanation(decision, rows)

    def shadow(self, candidate: Any, *, live: Any = None, bus: Any = None) -> ShadowEvaluator:
        """A :class:`~lumina_lab.policy.shadow.ShadowEvaluator`: the live version decides, the candidate is compared."""
        from .shadow import ShadowEvaluator

        lp, ls, lv = self._resolve(live)
        cp, cs, cv = self._resolve(candidate)
        return ShadowEvaluator(
            PolicyEngine(lp, self.entities, ls, validate=False, version=lv, bus=bus),
            PolicyEngine(cp, self.entities, cs, validate=False, version=cv),
            bus=bus,
        )

    def __repr__(self) -> str:
        return f"Simulator({self.policies!r}, {self.entities!r})"
