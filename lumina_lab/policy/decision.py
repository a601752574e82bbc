"""A request to authorize, and the decision about it (with the policies that decided, and errors)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from .uids import parse_uid, uid_key

__all__ = ["ALLOW", "DENY", "NO_DECISION", "Decision", "Request"]

ALLOW, DENY, NO_DECISION = "allow", "deny", "no_decision"


def _short(uid: str) -> str:
    try:
        t, i = parse_uid(uid)
    except Exception:
        return uid
    return f'{t.rsplit("::", 1)[-1]}::"{i}"'


def context_dict(context: Any) -> dict[str, Any]:
    """A request's context as a new dict (``None`` or empty: ``{}``); anything but a mapping is named."""
    if not context:
        return {}
    if not isinstance(context, Mapping):
        raise ValidationError(
            f"context is a {type(context).__name__}, not a mapping",
            input=context,
            hint='pass a dict of attributes, e.g. context={"mfa": True}',
        )
    return dict(context)


@dataclass(frozen=True, slots=True)
class Request:
    """Who (``principal``) wants to do what (``action``) to what (``resource``), in which ``context``.

    Uids are canonical strings (``User::"alice"``); any uid form is accepted by :meth:`of`.
    """

    principal: str
    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, principal: Any, action: Any, resource: Any, context: Mapping[str, Any] | None = None) -> Request:
        """A request from any uid forms (``'User::"a"'``, ``{"type", "id"}``, pairs); ``Action::`` may be left out."""
        if isinstance(action, str) and "::" not in action:
            action = f'Action::"{action}"'
        return cls(
            uid_key(principal, what="principal"),
            uid_key(action, what="action"),
            uid_key(resource, what="resource"),
            context_dict(context),
        )

    def to_cedar(self) -> dict[str, Any]:
        """The request as ``cedarpy`` takes it."""
        p, a, r = parse_uid(self.principal), parse_uid(self.action), parse_uid(self.resource)
        return {
            "principal": {"type": p[0], "id": p[1]},
            "action": {"type": a[0], "id": a[1]},
            "resource": {"type": r[0], "id": r[1]},
            "context": dict(self.context),
        }

    def to_json(self) -> dict[str, Any]:
        """The request in the Cedar examples' JSON layout."""
        return {"principal": self.principal, "action": self.action, "resource": self.resource, "context": dict(self.context)}

    def __str__(self) -> str:
        ctx = f" {json.dumps(dict(self.context), sort_keys=True)}" if self.context else ""
        return f"{_short(self.principal)} {parse_uid(self.action)[1]} {_short(self.resource)}{ctx}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request.

    Attributes:
        decision: ``"allow"``, ``"deny"`` or ``"no_decision"`` (the request itself was invalid).
        policies: ids of the determining policies: the permits that allowed, or the forbids that denied
            (empty for a default deny).
        annotations: ``@id`` annotation of each determining policy that has one.
        errors: evaluation errors (a policy that errors is skipped; the request is never silently allowed).
        request: what was decided.
        version: the policy version that decided, when known.
    """

    decision: str
    policies: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    request: Request | None = None
    version: int | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW

    def __bool__(self) -> bool:
        return self.decision == ALLOW

    @property
    def determining(self) -> list[str]:
        """Labels of the determining policies: their ``@id`` if annotated, else their ids."""
        return [self.annotations.get(p) or p for p in self.policies]

    @property
    def default_deny(self) -> bool:
        """Denied because no permit applied (no forbid decided)."""
        return self.decision == DENY and not self.policies

    def explain(self) -> str:
        """One paragraph: the decision, which policies decided it, and any errors."""
        who = str(self.request) if self.request else "the request"
        ver = f" (policy version {self.version})" if self.version is not None else ""
        if self.decision == NO_DECISION:
            text = f"NO DECISION for {who}{ver}: the request is invalid"
        elif self.decision == ALLOW:
            text = f"ALLOW {who}{ver}: permitted by {_names(self)}"
        elif self.policies:
            text = f"DENY {who}{ver}: forbidden by {_names(self)}"
        else:
            text = f"DENY {who}{ver}: no permit policy applies (default deny)"
        if self.errors:
            text += "; errors: " + "; ".join(self.errors)
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "policies": list(self.policies),
            "annotations": dict(self.annotations),
            "errors": list(self.errors),
            "request": self.request.to_json() if self.request else None,
            "version": self.version,
        }

    def __repr__(self) -> str:
        by = f" by {', '.join(_quoted(self))}" if self.policies else (" (default deny)" if self.decision == DENY else "")
        err = f", {len(self.errors)} error{'s' if len(self.errors) > 1 else ''}" if self.errors else ""
        req = f": {self.request}" if self.request else ""
        return f"Decision({self.decision.upper()}{by}{err}{req})"

    def _repr_html_(self) -> str:
        color = {"allow": "#1a7f37", "deny": "#cf222e"}.get(self.decision, "#9a6700")
        rows = "".join(
            f"<li><code>{html.escape(p)}</code>{' — ' + html.escape(self.annotations[p]) if p in self.annotations else ''}</li>"
            for p in self.policies
        )
        errs = "".join(f"<li>{html.escape(e)}</li>" for e in self.errors)
        return (
            f"<div><b style='color:{color}'>{self.decision.upper()}</b> "
            f"{html.escape(str(self.request)) if self.request else ''}"
            + (f"<br>determined by:<ul>{rows}</ul>" if rows else ("<br>default deny" if self.decision == DENY else ""))
            + (f"errors:<ul>{errs}</ul>" if errs else "")
            + "</div>"
        )


def _quoted(d: Decision) -> list[str]:
    return [f'{p} "{d.annotations[p]}"' if p in d.annotations else p for p in d.policies]


def _names(d: Decision) -> str:
    return ", ".join(_quoted(d))
