"""What each policy can observe of a request: the attribute paths it reads, and how.

The simulator groups requests that no policy can tell apart.  For that it
needs, per policy, the attribute paths read from ``principal``, ``resource``
and ``context`` (``resource.owner``, ``context.hour``...), which values are
the left side of ``in`` (their ancestors matter), and which are only compared
with literals (then only the value's class matters: ``context.hour`` compared
with ``8`` and ``18`` has five classes).  Anything that cannot be analysed
soundly (tags, attributes of computed values) marks the policy ``exact``:
its requests are then grouped by identical principal, action, resource and
context only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .uids import format_uid

__all__ = ["PathNode", "PolicyShape", "analyse"]

_CMP = {"eq", "not_eq", "less", "less_eq", "greater", "greater_eq"}
ROOTS = ("principal", "resource", "context")


@dataclass
class PathNode:
    """One attribute path below a root (``principal.manager.dept`` is ``manager`` -> ``dept``)."""

    children: dict[str, PathNode] = field(default_factory=dict)
    in_left: bool = False  # the value is the left side of `in`: its ancestors matter
    raw: bool = False  # the value is used as a whole somewhere
    has: bool = False  # presence is tested
    longs: set[int] = field(default_factory=set)  # compared with these Long literals
    strings: set[str] = field(default_factory=set)  # compared with these String literals
    cmp_other: bool = False  # compared with a literal of another kind

    def child(self, name: str) -> PathNode:
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = PathNode()
        return node

    @property
    def whole(self) -> bool:
        """Whether the value itself (not only what is below it) can be observed."""
        return self.raw or self.in_left or bool(self.longs or self.strings) or self.cmp_other

    def spec(self) -> tuple[Any, ...]:
        """A hashable description (policies with equal specs group requests the same way)."""
        kids = tuple(sorted((k, v.spec()) for k, v in self.children.items()))
        return (self.in_left, self.raw, self.has, tuple(sorted(self.longs)), tuple(sorted(self.strings)), self.cmp_other, kids)

    def abstraction(self) -> tuple[str, Any] | None:
        """How to encode this node's value: ``None`` (as is), ``("long", thresholds)``, ``("str", literals)``,
        ``("presence", None)``.  Only leaves compared solely with literals of one kind are abstracted."""
        if self.children or self.raw or self.in_left or self.cmp_other:
            return None
        if self.longs and not self.strings:
            return ("long", tuple(sorted(self.longs)))
        if self.strings and not self.longs:
            return ("str", frozenset(self.strings))
        if not self.longs and not self.strings and self.has:
            return ("presence", None)
        return None


@dataclass
class PolicyShape:
    """What one policy reads from a request (see the module docstring)."""

    id: str
    effect: str
    roots: dict[str, PathNode] = field(default_factory=lambda: {r: PathNode() for r in ROOTS})
    used: set[str] = field(default_factory=set)  # roots referenced at all (and "action")
    context_whole: bool = False  # the context record is used as a whole (not only through paths)
    exact: str | None = None  # why this policy cannot be analysed (then: group by identical requests)
    literals: set[str] = field(default_factory=set)  # entity uids written in the policy (or its link)

    def key_spec(self) -> tuple[Any, ...]:
        """Policies with equal key specs group requests identically (so they are evaluated together)."""
        if self.exact:
            return ("exact",)
        return (
            tuple(sorted(self.used)),
            self.context_whole,
            *(self.roots[r].spec() if r in self.used else None for r in ROOTS),
        )

    def context_paths(self) -> list[tuple[str, ...]]:
        """Paths read below ``context`` (``[("hour",), ("consent", "client")]``)."""
        out: list[tuple[str, ...]] = []

        def walk(node: PathNode, prefix: tuple[str, ...]) -> None:
            for k, child in node.children.items():
                out.append((*prefix, k))
                walk(child, (*prefix, k))

        walk(self.roots["context"], ())
        return out


class _Exact(Exception):
    pass


def _uid(e: Any) -> str:
    return format_uid(str(e.type), e.id)


def _literal(expr: Any) -> tuple[str, Any] | None:
    from cedarpy import pst

    if isinstance(expr, pst.LongLit):
        return ("long", expr.value)
    if isinstance(expr, pst.StringLit):
        return ("str", expr.value)
    if isinstance(expr, pst.BoolLit):
        return ("bool", expr.value)
    if isinstance(expr, pst.UnaryOp) and expr.op == "neg" and isinstance(expr.arg, pst.LongLit):
        return ("long", -expr.arg.value)
    return None


class _Walker:
    def __init__(self, shape: PolicyShape, slots: dict[str, str]) -> None:
        self.shape = shape
        self.slots = slots

    def path(self, expr: Any) -> tuple[str, tuple[str, ...]] | None:
        """``(root, attrs)`` when ``expr`` is a chain of attribute reads on a variable or literal entity."""
        from cedarpy import pst

        attrs: list[str] = []
        while isinstance(expr, pst.GetAttr):
            attrs.append(expr.attr)
            expr = expr.base
        if isinstance(expr, pst.Var):
            return expr.name, tuple(reversed(attrs))
        if isinstance(expr, pst.EntityLit):
            self.shape.literals.add(_uid(expr.value))
            return "literal", tuple(reversed(attrs))
        return None

    def node(self, root: str, attrs: tuple[str, ...]) -> PathNode | None:
        if root not in ROOTS:
            if root == "action":
                self.shape.used.add("action")
            return None  # action and literal entities are the same for every request of a group
        self.shape.used.add(root)
        node = self.shape.roots[root]
        for a in attrs:
            node = node.child(a)
        return node

    def occurrence(self, expr: Any) -> PathNode | None:
        """Register ``expr`` if it is a path; the node (or None)."""
        from cedarpy import pst

        p = self.path(expr)
        if p is None:
            if isinstance(expr, (pst.GetAttr, pst.HasAttr)):
                raise _Exact("it reads an attribute of a computed value")
            return None
        root, attrs = p
        if root == "context" and not attrs:
            self.shape.used.add("context")
            self.shape.context_whole = True
            return None
        return self.node(root, attrs)

    def visit(self, expr: Any) -> None:
        from cedarpy import pst

        if isinstance(expr, pst.Var):
            self.shape.used.add(expr.name)
            if expr.name == "context":
                self.shape.context_whole = True
            elif expr.name in ("principal", "resource"):
                self.shape.roots[expr.name].raw = True
            return
        if isinstance(expr, pst.Slot):
            self.shape.literals.add(self.slots[f"?{expr.name}"])
            return
        if isinstance(expr, pst.EntityLit):
            self.shape.literals.add(_uid(expr.value))
            return
        if isinstance(expr, (pst.BoolLit, pst.LongLit, pst.StringLit)):
            return
        if isinstance(expr, pst.GetAttr):
            node = self.occurrence(expr)
            if node is not None:
                node.raw = True
            else:
                self.visit_base(expr)
            return
        if isinstance(expr, pst.HasAttr):
            p = self.path(expr.base)
            if p is None:
                raise _Exact("it tests `has` on a computed value")
            root, attrs = p
            if root == "context" and not attrs:
                self.shape.used.add("context")
            node = self.node(root, attrs)
            if node is not None:
                for a in expr.attrs:
                    node = node.child(a)
                node.has = True
            return
        if isinstance(expr, pst.BinaryOp):
            op = expr.op
            if op in ("get_tag", "has_tag"):
                raise _Exact("it reads entity tags")
            if op == "in":
                self.in_left(expr.left)
                self.visit(expr.right)
                return
            if op in _CMP:
                for a, b in ((expr.left, expr.right), (expr.right, expr.left)):
                    lit = _literal(b)
                    if lit is not None and self.path(a) is not None:
                        node = self.occurrence(a)
                        if node is not None:
                            self.compared(node, lit)
                            return
                        self.visit(a)
                        return
            if op == "contains" and isinstance(expr.left, pst.Set):
                lits = [_literal(x) for x in expr.left.elements]
                if lits and all(x is not None for x in lits) and self.path(expr.right) is not None:
                    node = self.occurrence(expr.right)
                    if node is not None:
                        for lit in lits:
                            self.compared(node, lit)  # type: ignore[arg-type]
                        return
            self.visit(expr.left)
            self.visit(expr.right)
            return
        if isinstance(expr, pst.UnaryOp):
            self.visit(expr.arg)
            return
        if isinstance(expr, pst.Like):
            self.visit(expr.base)
            return
        if isinstance(expr, pst.Is):
            if expr.in_expr is not None:
                self.in_left(expr.base)
                self.visit(expr.in_expr)
            else:
                self.visit(expr.base)
            return
        if isinstance(expr, pst.IfThenElse):
            for e in (expr.cond, expr.then_expr, expr.else_expr):
                self.visit(e)
            return
        if isinstance(expr, pst.Set):
            for e in expr.elements:
                self.visit(e)
            return
        if isinstance(expr, pst.Record):
            for e in expr.fields.values():
                self.visit(e)
            return
        raise _Exact(f"it uses {type(expr).__name__}, which the grouping does not analyse")

    def visit_base(self, expr: Any) -> None:
        from cedarpy import pst

        base = expr
        while isinstance(base, pst.GetAttr):
            base = base.base
        self.visit(base)

    def in_left(self, expr: Any) -> None:
        from cedarpy import pst

        if isinstance(expr, pst.Var) and expr.name in ("principal", "resource"):
            self.shape.used.add(expr.name)
            self.shape.roots[expr.name].in_left = True
            return
        if isinstance(expr, pst.Var) and expr.name == "action":
            self.shape.used.add("action")
            return
        if isinstance(expr, pst.EntityLit):
            self.shape.literals.add(_uid(expr.value))
            return
        node = self.occurrence(expr)
        if node is not None:
            node.in_left = True
            return
        if self.path(expr) is not None:  # a literal entity's attribute: constant
            return
        raise _Exact("`in` has a computed left side")

    @staticmethod
    def compared(node: PathNode, lit: tuple[str, Any]) -> None:
        kind, value = lit
        if kind == "long":
            node.longs.add(value)
        elif kind == "str":
            node.strings.add(value)
        else:
            node.cmp_other = True

    def scope(self, var: str, constraint: Any) -> None:
        from cedarpy import pst

        if isinstance(constraint, pst.ScopeAny):
            return
        self.shape.used.add(var)
        entity = getattr(constraint, "entity", None)
        if entity is not None:
            self.shape.literals.add(self.slots[f"?{entity.name}"] if isinstance(entity, pst.Slot) else _uid(entity))
        if isinstance(constraint, (pst.ScopeIn, pst.ScopeIsIn)):
            self.shape.roots[var].in_left = True
        elif isinstance(constraint, pst.ScopeEq):
            self.shape.roots[var].raw = True


def analyse_one(policy_id: str, template: Any, slots: dict[str, str] | None = None) -> PolicyShape:
    """The :class:`PolicyShape` of one policy (``slots``: the values of a template link)."""
    from cedarpy import pst

    shape = PolicyShape(policy_id, template.effect)
    w = _Walker(shape, slots or {})
    try:
        w.scope("principal", template.principal)
        w.scope("resource", template.resource)
        if not isinstance(template.action, pst.ScopeAny):
            shape.used.add("action")
            entities = template.action.entities if isinstance(template.action, pst.ActionIn) else (template.action.entity,)
            shape.literals.update(_uid(e) for e in entities)
        for clause in template.clauses:
            w.visit(clause.expr)
    except _Exact as exc:
        shape.exact = str(exc)
    except KeyError as exc:  # an unfilled slot
        shape.exact = f"slot {exc} is not filled"
    return shape


def analyse(pst_set: Any) -> list[PolicyShape]:
    """Shapes of every static policy and template link of a ``cedarpy.pst.PolicySet``."""
    out = [analyse_one(pid, t) for pid, t in pst_set.static_policies.items()]
    for link in pst_set.template_links:
        slots = {f"?{k}": _uid(v) for k, v in link.values.items()}
        out.append(analyse_one(link.new_id, pst_set.templates[link.template_id], slots))
    return out


def long_class(thresholds: tuple[int, ...], members: Iterable[int] | frozenset[int], v: int) -> tuple[int, bool]:
    """The class of ``v`` among ``thresholds``: where it falls, and whether it equals one."""
    return bisect.bisect_left(thresholds, v), v in members
