"""Projections: an entity (or a context value) encoded along the attribute paths a policy reads.

Entities that no policy names become placeholders numbered in order of appearance within one
projection (``("E", type, n, exists)``); named ones stay themselves (``("F", uid)``).  Two entities
with equal projections cannot be told apart by the policies that read those paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .analysis import PathNode, long_class
from .codes import ABSENT
from .uids import format_uid, parse_uid

if TYPE_CHECKING:
    from .entities import EntityView

__all__ = ["ABSENT_MARK", "MISSING_MARK", "Projector", "ref_uid"]

ABSENT_MARK = ("!absent",)
MISSING_MARK = ("!missing",)


def _enc(v: Any, tok: Callable[[str], Any]) -> Any:
    """A hashable encoding of a Cedar JSON value (entities as tokens)."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return ("b", v)
    if t is int:
        return ("i", v)
    if t is dict:
        if "__entity" in v:
            return tok(format_uid(*parse_uid(v)))
        if "__extn" in v:
            return ("x", json.dumps(v, sort_keys=True))
        return ("r", tuple(sorted((k, _enc(x, tok)) for k, x in v.items())))
    if t is list:
        return ("l", tuple(_enc(x, tok) for x in v))
    if v is None:
        return ("n",)
    return ("?", repr(v))


_UID_CACHE: dict[tuple[str, str], str] = {}


def _uid_of(t: str, i: str) -> str:
    key = _UID_CACHE.get((t, i))
    if key is None:
        if len(_UID_CACHE) > 1_000_000:
            _UID_CACHE.clear()
        key = _UID_CACHE[(t, i)] = format_uid(t, i)
    return key


def ref_uid(v: Any) -> str | None:
    """The uid of an entity reference value, else None.

    Entity values come from Cedar's own rendering of the parsed entities, where a reference is always
    ``{"__entity": ...}``; a plain ``{"type", "id"}`` object there is a record (as Cedar treats it)."""
    if type(v) is dict:
        e = v.get("__entity")
        if e is not None:
            if type(e) is dict and type(e.get("type")) is str and type(e.get("id")) is str:
                return _uid_of(e["type"], e["id"])
            return format_uid(*parse_uid(v))
    return None


@dataclass(frozen=True)
class _Plan:
    """A path node compiled for fast projection."""

    whole: bool
    ab: tuple[str, Any] | None
    in_left: bool
    kids: tuple[tuple[str, _Plan], ...]


def _compile(node: PathNode) -> _Plan:
    ab = node.abstraction()
    if ab is not None and ab[0] == "long":
        ab = ("long", (ab[1], frozenset(ab[1])))
    return _Plan(node.whole, ab, node.in_left, tuple((k, _compile(node.children[k])) for k in sorted(node.children)))


def _abstract(ab: tuple[str, Any] | None, v: Any, tok: Callable[[str], Any]) -> Any:
    if ab is None:
        return _enc(v, tok)
    kind, arg = ab
    if kind == "long" and type(v) is int:
        return ("L", long_class(arg[0], arg[1], v))
    if kind == "str" and type(v) is str:
        return ("S", v if v in arg else None)
    if kind == "presence":
        return ("P",)
    return _enc(v, tok)


class Projector:
    """Encodes an entity (or context value) along a policy group's attribute paths."""

    def __init__(self, view: EntityView, fixed: frozenset[str]) -> None:
        self.view = view
        self.fixed = fixed
        self._plans: dict[Any, _Plan] = {}

    def plan(self, node: PathNode) -> _Plan:
        spec = node.spec()
        p = self._plans.get(spec)
        if p is None:
            p = self._plans[spec] = _compile(node)
        return p

    def project_entities(self, plan: _Plan, uids: Sequence[str]) -> tuple[list[tuple[Any, ...]], list[dict[str, int]]]:
        """:meth:`project` of many root entities (a loop without recursion when the paths are one deep)."""
        simple = not plan.in_left and all(not kid.kids and not kid.in_left for _, kid in plan.kids)
        if not simple:
            pairs = [self.project(plan, None, root_uid=u) for u in uids]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        fixed, types, attrs_of = self.fixed, self.view.types, self.view.attrs
        kids = plan.kids
        encs: list[tuple[Any, ...]] = []
        locals_: list[dict[str, int]] = []
        for u in uids:
            local: dict[str, int] = {}

            def tok(x: str, local: dict[str, int] = local) -> Any:
                if x in fixed:
                    return ("F", x)
                i = local.get(x)
                if i is None:
                    i = local[x] = len(local)
                return ("E", types.get(x) or parse_uid(x)[0], i, x in attrs_of)

            attrs = attrs_of.get(u)
            out = [tok(u)]
            if kids:
                if attrs is None:
                    out.append(MISSING_MARK)
                else:
                    for k, kid in kids:
                        if k not in attrs:
                            out.append(ABSENT_MARK)
                            continue
                        v = attrs[k]
                        if kid.whole:
                            out.append(_abstract(kid.ab, v, tok))
                        else:
                            ref = ref_uid(v) if type(v) is dict else None
                            out.append(tok(ref) if ref is not None else ("t", type(v).__name__))
            encs.append(tuple(out))
            locals_.append(local)
        return encs, locals_

    def project(self, plan: _Plan, value: Any, *, root_uid: str | None) -> tuple[tuple[Any, ...], dict[str, int]]:
        local: dict[str, int] = {}
        out: list[Any] = []
        view, fixed = self.view, self.fixed
        types, attrs_of = view.types, view.attrs

        def tok(u: str) -> Any:
            if u in fixed:
                return ("F", u)
            i = local.get(u)
            if i is None:
                i = local[u] = len(local)
            return ("E", types.get(u) or parse_uid(u)[0], i, u in attrs_of)

        def walk(n: _Plan, v: Any, ref: str | None) -> None:
            if n.in_left and ref is not None:
                out.append(("anc", tuple(tok(a) for a in view.ancestors(ref))))
            if not n.kids:
                return
            if ref is not None:
                attrs = attrs_of.get(ref)
                if attrs is None:
                    out.append(MISSING_MARK)
                else:
                    for k, kid in n.kids:
                        child(kid, attrs[k]) if k in attrs else out.append(ABSENT_MARK)
            elif type(v) is dict:
                for k, kid in n.kids:
                    child(kid, v[k]) if k in v else out.append(ABSENT_MARK)
            else:
                out.append(("noattrs", type(v).__name__))

        def child(n: _Plan, v: Any) -> None:
            ref = ref_uid(v) if type(v) is dict else None
            if n.whole:
                out.append(_abstract(n.ab, v, tok))
            elif ref is not None:
                out.append(tok(ref))
            else:
                out.append(("t", type(v).__name__))
            if n.kids or n.in_left:
                walk(n, v, ref)

        if root_uid is not None:
            out.append(tok(root_uid))
            walk(plan, None, root_uid)
        elif value is ABSENT:
            out.append(ABSENT_MARK)
        else:
            child(plan, value)
        return tuple(out), local
