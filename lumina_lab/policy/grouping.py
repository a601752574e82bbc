"""Exact evaluation of large request sets by equivalence classes.

Cedar decides a request from what its policies can observe.  A permit or
forbid is *satisfied* or not (or errors) depending only on the attribute paths
it reads (see :mod:`.analysis`), and the decision is: deny if a forbid is
satisfied, else allow if a permit is, else deny.  So:

1. requests are checked once per distinct (principal type, action, resource
   type, context shape) for validity against the schema (an invalid request
   gets no decision, whatever the policies);
2. policies are put in groups that read requests the same way (same paths,
   same effect), and for each group every request gets a *key*: the projection
   of its principal and resource onto the paths the group reads (entities that
   no policy names are replaced by placeholders, numbered in order of
   appearance, so ``resource.owner == principal`` stays visible while who the
   owner is does not), the action, the context's classes on the paths read,
   and which entities the principal's and the resource's projections share;
3. each group's policy subset is evaluated by Cedar once per distinct key, and
   the results are combined per request exactly as Cedar combines them.

Two requests with the same key cannot be told apart by the group's policies
(a bijection of unnamed entities maps one onto the other), so the result is
exact: :mod:`benchmarks.policy_simulation` checks it against plain
``cedarpy.is_authorized_batch`` on a million requests.  Requests whose
evaluation raised errors, or that are invalid, are re-evaluated one by one with
the whole policy set, so their error messages are Cedar's own.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .analysis import PathNode, PolicyShape, analyse
from .codes import (
    ABSENT,
    column,
    combine,
    contexts,
    gc_paused,
    has_entity,
    intern,
    intern_values,
    pack,
    representatives,
    vtype,
)
from .decision import ALLOW, DENY, NO_DECISION
from .projection import Projector, ref_uid
from .uids import parse_uid, uid_key

if TYPE_CHECKING:
    from .entities import EntityStore, EntityView
    from .policies import Policies
    from .requests import RequestSet
    from .schema import Schema

__all__ = ["Evaluation", "GroupedEvaluator", "gc_paused"]

_DECISIONS = {"Allow": ALLOW, "Deny": DENY, "NoDecision": NO_DECISION}
_ERR_POLICY = re.compile(r"error while evaluating policy `([^`]+)`")
_CHUNK = 4096


# ------------------------------------------------------------------------------------- results
@dataclass
class Evaluation:
    """Decisions of a request set, as arrays (see :class:`~lumina_lab.policy.simulator.DecisionMatrix`).

    ``decision[i]`` is 0 (deny), 1 (allow) or 2 (no decision); ``pattern[i]`` indexes
    :attr:`patterns`, each ``(decision, determining policies, satisfied policies, errored policies)``
    (when requests were evaluated one by one, "satisfied" holds the determining policies);
    :attr:`overrides` has the exact result of requests with errors or no decision:
    ``row -> (decision, determining policies, errors)``.
    """

    decision: np.ndarray
    pattern: np.ndarray
    patterns: list[tuple[str, tuple[str, ...], frozenset[str], frozenset[str]]]
    overrides: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.decision)

    def result(self, i: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """``(decision, determining policies, errors)`` of request ``i``."""
        got = self.overrides.get(i)
        if got is not None:
            return got
        d, pol, _, _ = self.patterns[int(self.pattern[i])]
        return d, pol, ()


def _parse_result(res: Any) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    d = res.diagnostics
    return _DECISIONS[res.decision.value], tuple(d.reasons), tuple(d.errors)


# ------------------------------------------------------------------------------------- workers
_W: dict[str, Any] = {}


def _worker_init(policies_text: str, links: list[dict[str, Any]], entities_json: str, schema_text: str | None) -> None:
    import cedarpy

    from .policies import Policies
    from .schema import Schema

    schema = Schema(schema_text) if schema_text is not None else None
    _W["policies"] = Policies(policies_text, links)
    _W["schema"] = schema.handle if schema is not None else None
    _W["entities"] = cedarpy.Entities.from_json_str(entities_json, _W["schema"])
    _W["subsets"] = {}


def _worker_eval(ids: tuple[str, ...] | None, requests: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    import cedarpy

    handle = _W["policies"].handle if ids is None else _W["subsets"].get(ids)
    if handle is None:
        handle = _W["subsets"][ids] = _W["policies"].subset(ids)
    res = cedarpy.is_authorized_batch(requests, handle, _W["entities"], _W["schema"])
    return [_parse_result(r) for r in res]


# ------------------------------------------------------------------------------------- evaluator
@dataclass
class _Group:
    ids: tuple[str, ...]
    effect: str
    shape: PolicyShape
    handle: Any = None


class GroupedEvaluator:
    """Evaluates request sets exactly, once per equivalence class (see the module docstring).

    Args:
        policies: the policies.
        entities: the entity store.
        schema: validate requests (and parse entities) with it, or ``None``.
        workers: processes for the evaluations left after grouping (default: up to 4, when there
            are more than ``parallel_above`` of them).
        progress: show a progress bar (``tqdm.auto``).
        grouping: ``"auto"`` (group unless that would not save evaluations), ``"always"``, or ``"never"``
            (each distinct request evaluated once with the whole policy set).
    """

    def __init__(
        self,
        policies: Policies,
        entities: EntityStore,
        schema: Schema | None = None,
        *,
        workers: int | None = None,
        parallel_above: int = 40_000,
        progress: bool = False,
        grouping: str = "auto",
    ) -> None:
        if grouping not in ("auto", "always", "never"):
            from ..errors import ValidationError

            raise ValidationError(f"grouping={grouping!r}", hint="use 'auto', 'always' or 'never'")
        self.grouping = grouping
        self.processes = 1  # used by the last evaluation
        self.policies = policies
        self.store = entities
        self.schema = schema
        self.workers = workers
        self.parallel_above = parallel_above
        self.progress = progress
        self.shapes = {s.id: s for s in analyse(policies.pst)}
        self.effects = {i.id: i.effect for i in policies}
        self.order = {i.id: n for n, i in enumerate(policies)}
        groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for info in policies:
            s = self.shapes[info.id]
            groups[(info.effect, s.key_spec())].append(info.id)
        self.groups = [_Group(tuple(ids), eff, self.shapes[ids[0]]) for (eff, _), ids in groups.items()]

    # entity side -------------------------------------------------------------------------
    def _fixed(self, view: EntityView) -> frozenset[str]:
        """Uids written in any policy, closed over the attributes and ancestors of those entities."""
        fixed: set[str] = set()
        stack: list[str] = []
        for s in self.shapes.values():
            stack.extend(s.literals)
        stack.extend(u for u, t in view.types.items() if t == "Action" or t.endswith("::Action"))

        def refs(v: Any) -> None:
            if isinstance(v, dict):
                r = ref_uid(v)
                if r is not None:
                    stack.append(r)
                    return
                for x in v.values():
                    refs(x)
            elif isinstance(v, list):
                for x in v:
                    refs(x)

        while stack:
            u = stack.pop()
            if u in fixed:
                continue
            fixed.add(u)
            refs(view.attrs.get(u, {}))
            stack.extend(view.ancestors(u))
        return frozenset(fixed)

    # the run -----------------------------------------------------------------------------
    def run(self, rs: RequestSet) -> Evaluation:
        """Decide every request of ``rs``.

        The cyclic garbage collector is paused during the run: it would otherwise walk every object of
        a large request set (a second per million requests) for garbage this code does not make.
        """
        with gc_paused():
            return self._run(rs)

    def _run(self, rs: RequestSet) -> Evaluation:
        import cedarpy

        t0 = time.perf_counter()
        phases: dict[str, float] = {}
        mark = [t0]

        def phase(name: str) -> None:
            now = time.perf_counter()
            phases[name] = round(now - mark[0], 4)
            mark[0] = now

        n = len(rs)
        schema_h = self.schema.handle if self.schema is not None else None
        ents_h = self.store.handle(self.schema)
        view = self.store.view(self.schema)
        fixed = self._fixed(view)
        projector = Projector(view, fixed)

        # 1. principals, actions, resources: codes over canonical uids
        def uid_codes(col: list[Any], what: str) -> tuple[np.ndarray, list[str]]:
            try:
                raw_codes, raw = intern(col)
            except TypeError:  # unhashable uids ({"type", "id"} dicts): canonicalise each
                raw_codes, raw = intern([v if isinstance(v, (str, tuple)) else uid_key(v, what=what) for v in col])
            if what == "action":
                raw = [f'Action::"{a}"' if isinstance(a, str) and "::" not in a else a for a in raw]
            canon = [uid_key(v, what=what) for v in raw]
            remap, uniq = intern(canon)
            return remap[raw_codes], uniq

        p_codes, p_uids = uid_codes(rs.principals, "principal")
        a_codes, a_uids = uid_codes(rs.actions, "action")
        r_codes, r_uids = uid_codes(rs.resources, "resource")
        p_json = [dict(zip(("type", "id"), parse_uid(u), strict=True)) for u in p_uids]
        a_json = [dict(zip(("type", "id"), parse_uid(u), strict=True)) for u in a_uids]
        r_json = [dict(zip(("type", "id"), parse_uid(u), strict=True)) for u in r_uids]
        p_type, _ = intern([j["type"] for j in p_json])
        r_type, _ = intern([j["type"] for j in r_json])
        phase("uids")

        # 2. contexts, key by key
        ctxs = contexts(rs.contexts)
        kv_codes: dict[str, np.ndarray] = {}
        kv_uniq: dict[str, list[Any]] = {}
        key_names = sorted(ctxs[0]) if n else []
        for k in key_names:
            kv_codes[k], kv_uniq[k] = intern_values(column(ctxs, k))
        # every context has exactly the first one's keys iff all have that many and none lacks one
        if n and (set(map(len, ctxs)) != {len(key_names)} or any(ABSENT in u for u in kv_uniq.values())):
            key_names = sorted(set().union(*ctxs))
            for k in key_names:
                if k not in kv_codes:
                    kv_codes[k], kv_uniq[k] = intern_values(column(ctxs, k))
        kt_codes: list[np.ndarray] = []
        nonflat = np.zeros(n, dtype=bool)
        ctx_entities = False
        for k in key_names:
            codes, uniq = kv_codes[k], kv_uniq[k]
            tcodes, _ = intern([vtype(v) for v in uniq])
            kt_codes.append(tcodes[codes])
            deep = np.fromiter((isinstance(v, (dict, list)) for v in uniq), dtype=bool, count=len(uniq))
            if deep.any():
                nonflat |= deep[codes]
                ctx_entities = ctx_entities or any(has_entity(v) for v in uniq if isinstance(v, (dict, list)))
        ctx_full, _ = combine([kv_codes[k] for k in key_names], n)
        ctx_shape, _ = combine(kt_codes, n)
        phase("contexts")

        # 3. validity, once per (types, action, context shape): an empty policy set decides nothing
        exact_ctx = bool(nonflat.any()) or (self.schema is not None and self.schema.has_extension_types)
        # enumerated entity types make a uid valid or not by its id, not only its type
        by_uid = self.schema is not None and re.search(r"\benum\b", self.schema.text) is not None
        p_part, r_part = (p_codes, r_codes) if by_uid else (p_type[p_codes], r_type[r_codes])
        v_codes, v_k = combine([p_part, a_codes, r_part, ctx_full if exact_ctx else ctx_shape], n)
        v_rows = representatives(v_codes, v_k)

        def req(i: int) -> dict[str, Any]:
            return {
                "principal": p_json[p_codes[i]],
                "action": a_json[a_codes[i]],
                "resource": r_json[r_codes[i]],
                "context": ctxs[i],
            }

        empty = cedarpy.PolicySet.from_str("")
        v_res = cedarpy.is_authorized_batch([req(int(i)) for i in v_rows], empty, ents_h, schema_h)
        invalid_group = np.fromiter((r.decision.value == "NoDecision" for r in v_res), dtype=bool, count=len(v_res))
        invalid = invalid_group[v_codes]
        validity = np.where(invalid, v_codes + 1, 0)
        phase("validity")

        # 4. per policy group: keys, then one evaluation per distinct key
        p_proj: dict[Any, tuple[np.ndarray, list[dict[str, int]]]] = {}
        r_proj: dict[Any, tuple[np.ndarray, list[dict[str, int]]]] = {}

        def projections(
            cache: dict[Any, tuple[np.ndarray, list[dict[str, int]]]], node: PathNode, uids: list[str]
        ) -> tuple[np.ndarray, list[dict[str, int]]]:
            spec = node.spec()
            got = cache.get(spec)
            if got is None:
                encs, locals_ = projector.project_entities(projector.plan(node), uids)
                codes, _ = intern(encs)
                got = cache[spec] = (codes, locals_)
            return got

        def relation(pl: list[dict[str, int]], rl: list[dict[str, int]]) -> np.ndarray:
            """Code per request of which entities its principal and resource projections share.

            Each projection numbers its unnamed entities 0, 1, ... (slots); the code is the set
            of slot pairs (principal slot j, resource slot l) holding the same entity, computed
            column by column over the requests."""
            shared = set().union(*pl) & set().union(*rl) if pl and rl else set()
            if not shared:
                return np.zeros(n, dtype=np.int64)
            gid = {u: i for i, u in enumerate(shared)}

            def slots(locals_: list[dict[str, int]]) -> np.ndarray:
                width = max((len(loc) for loc in locals_), default=0)
                arr = np.full((len(locals_), max(width, 1)), -1, dtype=np.int64)
                for row, loc in enumerate(locals_):
                    for u, j in loc.items():
                        g_ = gid.get(u)
                        if g_ is not None:
                            arr[row, j] = g_
                return arr

            ps, rsl = slots(pl), slots(rl)
            pj = [j for j in range(ps.shape[1]) if (ps[:, j] >= 0).any()]
            rj = [j for j in range(rsl.shape[1]) if (rsl[:, j] >= 0).any()]
            bits = []
            for j in pj:
                left = ps[:, j][p_codes]
                for l_ in rj:
                    eq = (left == rsl[:, l_][r_codes]) & (left >= 0)
                    if eq.any():
                        bits.append(eq.astype(np.int64))
            return pack(bits, n) if bits else np.zeros(n, dtype=np.int64)

        ctx_cache: dict[Any, np.ndarray] = {}
        rel_cache: dict[Any, np.ndarray] = {}

        def context_classes(shape: PolicyShape) -> np.ndarray:
            node = shape.roots["context"]
            spec = node.spec()
            if spec in ctx_cache:
                return ctx_cache[spec]
            parts = []
            for k in sorted(node.children):
                child = node.children[k]
                if k not in kv_codes:
                    continue  # absent everywhere: a constant
                table: dict[Any, int] = {}
                plan = projector.plan(child)
                lut = np.array(
                    [table.setdefault(projector.project(plan, v, root_uid=None)[0], len(table)) for v in kv_uniq[k]],
                    dtype=np.int64,
                )
                parts.append(lut[kv_codes[k]])
            got = ctx_cache[spec] = pack(parts, n)
            return got

        outcome_parts: list[np.ndarray] = [validity]
        group_outcomes: list[list[tuple[frozenset[str], frozenset[str]]]] = []
        plans: list[tuple[_Group, np.ndarray, np.ndarray]] = []
        evaluations = 0
        for g in self.groups:
            s = g.shape
            used = s.used
            exact = s.exact is not None or (("context" in used) and ctx_entities)
            if exact:
                parts = [p_codes, a_codes, r_codes, ctx_full]
            else:
                parts = []
                pl = rl = None
                if "principal" in used:
                    pc, pl = projections(p_proj, s.roots["principal"], p_uids)
                    parts.append(pc[p_codes])
                if "action" in used:
                    parts.append(a_codes)
                if "resource" in used:
                    rc, rl = projections(r_proj, s.roots["resource"], r_uids)
                    parts.append(rc[r_codes])
                if "context" in used:
                    parts.append(ctx_full if s.context_whole else context_classes(s))
                if pl is not None and rl is not None:
                    rkey = (s.roots["principal"].spec(), s.roots["resource"].spec())
                    if rkey not in rel_cache:
                        rel_cache[rkey] = relation(pl, rl)
                    parts.append(rel_cache[rkey])
            parts.append(validity)
            codes, k = combine(parts, n)
            first = representatives(codes, k)
            first = first[~invalid[first]]
            plans.append((g, codes, first))
            evaluations += len(first)

        phase("keys")
        distinct, n_distinct = combine([p_codes, a_codes, r_codes, ctx_full], n)
        if self.grouping == "never" or (self.grouping == "auto" and evaluations >= n_distinct // 2):
            # grouping would not pay: evaluate each distinct request once
            return self._direct(distinct, n_distinct, req, ents_h, schema_h, len(v_rows), t0, phases)
        results = self._evaluate(plans, req, ents_h, schema_h, evaluations)
        phase("cedar")
        for (g, codes, first), res in zip(plans, results, strict=True):
            table: dict[tuple[frozenset[str], frozenset[str]], int] = {(frozenset(), frozenset()): 0}
            k = int(codes.max()) + 1 if n else 1
            lut = np.zeros(k, dtype=np.int64)
            for row, (_, reasons, errors) in zip(first.tolist(), res, strict=True):
                errored = set()
                for e in errors:
                    m = _ERR_POLICY.search(e)
                    errored.update([m.group(1)] if m else g.ids)
                lut[codes[row]] = table.setdefault((frozenset(reasons), frozenset(errored)), len(table))
            outcome_parts.append(lut[codes])
            group_outcomes.append(list(table))

        # 5. combine per request, as Cedar does
        pattern, k = combine(outcome_parts, n)
        first = representatives(pattern, k)
        patterns = []
        decision_of_pattern = np.empty(k, dtype=np.int8)
        needs_exact = np.zeros(k, dtype=bool)
        for pi, row in enumerate(first.tolist()):
            if invalid[row]:
                patterns.append((NO_DECISION, (), frozenset(), frozenset()))
                decision_of_pattern[pi] = 2
                needs_exact[pi] = True
                continue
            sat: set[str] = set()
            err: set[str] = set()
            for gi, outs in enumerate(group_outcomes):
                s_, e_ = outs[int(outcome_parts[gi + 1][row])]
                sat |= s_
                err |= e_
            forbids = sorted((p for p in sat if self.effects[p] == "forbid"), key=self.order.__getitem__)
            permits = sorted((p for p in sat if self.effects[p] == "permit"), key=self.order.__getitem__)
            if forbids:
                d, pol = DENY, tuple(forbids)
            elif permits:
                d, pol = ALLOW, tuple(permits)
            else:
                d, pol = DENY, ()
            patterns.append((d, pol, frozenset(sat), frozenset(err)))
            decision_of_pattern[pi] = 1 if d == ALLOW else 0
            needs_exact[pi] = bool(err)
        decision = decision_of_pattern[pattern]
        phase("combine")

        # 6. requests with errors (or invalid): Cedar's own messages, one by one
        overrides: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
        rows = np.flatnonzero(needs_exact[pattern])
        disagreements = 0
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK].tolist()
            res = cedarpy.is_authorized_batch([req(i) for i in chunk], self.policies.handle, ents_h, schema_h)
            for i, r in zip(chunk, res, strict=True):
                d, pol, errs = _parse_result(r)
                overrides[i] = (d, tuple(sorted(pol, key=lambda p: self.order.get(p, 0))), errs)
                code = {ALLOW: 1, DENY: 0, NO_DECISION: 2}[d]
                if code != decision[i]:
                    disagreements += 1
                    decision[i] = code
        phase("exact")
        stats = {
            "requests": n,
            "validity_checks": len(v_rows),
            "policy_groups": len(self.groups),
            "evaluations": evaluations,
            "exact_reevaluations": len(rows),
            "disagreements": disagreements,
            "processes": self.processes,
            "seconds": time.perf_counter() - t0,
            "phases": phases,
        }
        return Evaluation(decision, pattern.astype(np.int32), patterns, overrides, stats)

    def _direct(
        self,
        distinct: np.ndarray,
        k: int,
        req: Callable[[int], dict[str, Any]],
        ents_h: Any,
        schema_h: Any,
        validity_checks: int,
        t0: float,
        phases: dict[str, float],
    ) -> Evaluation:
        """Each distinct request evaluated once with the whole policy set (small or ungroupable sets)."""
        rows = representatives(distinct, k)
        whole = _Group((), "both", None, self.policies.handle)  # type: ignore[arg-type]
        (results,) = self._evaluate([(whole, distinct, rows)], req, ents_h, schema_h, k, ids=None)
        table: dict[tuple[str, tuple[str, ...]], int] = {}
        lut = np.empty(k, dtype=np.int64)
        errored: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
        for g, (d, reasons, errors) in enumerate(results):
            pol = tuple(sorted(reasons, key=lambda p: self.order.get(p, 0)))
            lut[g] = table.setdefault((d, pol), len(table))
            if errors:
                errored[g] = (d, pol, errors)
        patterns = [(d, pol, frozenset(pol), frozenset()) for d, pol in table]
        pattern = lut[distinct]
        codes = np.array([{ALLOW: 1, DENY: 0, NO_DECISION: 2}[d] for d, _ in table], dtype=np.int8)
        overrides: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
        if errored:
            with_errors = np.isin(distinct, np.fromiter(errored, dtype=np.int64, count=len(errored)))
            for i in np.flatnonzero(with_errors).tolist():
                overrides[i] = errored[int(distinct[i])]
        phases["cedar"] = round(time.perf_counter() - t0 - sum(phases.values()), 4)
        stats = {
            "requests": len(distinct), "validity_checks": validity_checks, "policy_groups": 0, "evaluations": k,
            "exact_reevaluations": 0, "disagreements": 0, "processes": self.processes,
            "seconds": time.perf_counter() - t0, "phases": phases,
        }
        return Evaluation(codes[pattern] if len(table) else np.zeros(0, dtype=np.int8), pattern.astype(np.int32), patterns, overrides, stats)

    # evaluation of representatives ---------------------------------------------------------
    def _evaluate(
        self,
        plans: list[tuple[_Group, np.ndarray, np.ndarray]],
        req: Callable[[int], dict[str, Any]],
        ents_h: Any,
        schema_h: Any,
        total: int,
        ids: Any = False,
    ) -> list[list[tuple[str, tuple[str, ...], tuple[str, ...]]]]:
        import cedarpy

        tasks: list[tuple[int, tuple[str, ...] | None, list[dict[str, Any]]]] = []
        for gi, (g, _, first) in enumerate(plans):
            rows = first.tolist()
            for start in range(0, len(rows), _CHUNK):
                tasks.append((gi, g.ids if ids is False else ids, [req(i) for i in rows[start : start + _CHUNK]]))
        out: list[list[tuple[str, tuple[str, ...], tuple[str, ...]]]] = [[] for _ in plans]
        bar = None
        if self.progress and total > _CHUNK:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="policy groups", unit="eval", leave=False)
        workers = self.workers if self.workers is not None else min(4, os.cpu_count() or 1)
        self.processes = 1
        try:
            if workers > 1 and total > self.parallel_above and len(tasks) > 1:
                self.processes = workers
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor

                schema_text = self.schema.text if self.schema is not None else None
                args = (self.policies.text, [link.to_json() for link in self.policies.links], self.store.json(), schema_text)
                with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=args) as pool:
                    futures = [pool.submit(_worker_eval, ids, reqs) for _, ids, reqs in tasks]
                    for (gi, _, reqs), fut in zip(tasks, futures, strict=True):
                        out[gi].extend(fut.result())
                        if bar is not None:
                            bar.update(len(reqs))
            else:
                for gi, _, reqs in tasks:
                    g = plans[gi][0]
                    if g.handle is None:
                        g.handle = self.policies.subset(g.ids)
                    res = cedarpy.is_authorized_batch(reqs, g.handle, ents_h, schema_h)
                    out[gi].extend(_parse_result(r) for r in res)
                    if bar is not None:
                        bar.update(len(reqs))
        finally:
            if bar is not None:
                bar.close()
        return out
