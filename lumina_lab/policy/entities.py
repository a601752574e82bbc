"""The entity store: attribute providers merged into one Cedar entity set, parsed once per change.

Entities with the same uid from several providers are merged (attributes of
later providers win, parents are united), so one provider can give users'
roles and another their group memberships.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from .attributes import AttributeProvider, JsonEntities
from .uids import format_uid, parse_uid

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["EntityStore", "EntityView"]


def _as_provider(item: Any) -> AttributeProvider:
    if isinstance(item, AttributeProvider):
        return item
    if isinstance(item, (list, str, Path)):
        return JsonEntities(item)
    raise ValidationError(
        f"cannot use {type(item).__name__} as entities",
        input=item,
        hint="pass Cedar JSON entities (a list, JSON text or a file) or an AttributeProvider",
    )


class EntityStore:
    """Entities for policies, from attribute providers (cached; :meth:`invalidate` reloads).

    >>> store = EntityStore([{"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []}])
    >>> len(store)
    1
    """

    def __init__(self, *sources: Any) -> None:
        self.providers: list[AttributeProvider] = [_as_provider(s) for s in sources]
        self._merged: tuple[tuple[int, ...], list[dict[str, Any]]] | None = None
        self._handles: dict[tuple[Any, ...], Any] = {}
        self._views: dict[tuple[Any, ...], EntityView] = {}

    def add(self, source: Any) -> EntityStore:
        """Add a provider (or Cedar JSON entities); return self."""
        self.providers.append(_as_provider(source))
        self._merged = None
        return self

    def invalidate(self, provider: AttributeProvider | None = None) -> None:
        """Reload ``provider`` (or every provider) on next use."""
        for p in self.providers if provider is None else [provider]:
            p.invalidate()
        self._merged = None

    @property
    def version(self) -> tuple[int, ...]:
        """Changes whenever any provider's data changed (providers with a ttl are refreshed here)."""
        return (len(self.providers), *(p.refresh() for p in self.providers))

    def entities(self) -> list[dict[str, Any]]:
        """The merged Cedar JSON entities."""
        version = self.version
        if self._merged is not None and self._merged[0] == version:
            return self._merged[1]
        merged: dict[str, dict[str, Any]] = {}
        for p in self.providers:
            for i, ent in enumerate(p.entities()):
                if not isinstance(ent, Mapping) or "uid" not in ent:
                    raise ValidationError(
                        f"entity #{i} from {p.name!r} has no uid: {str(ent)[:120]}",
                        hint='each entity is {"uid": {"type": ..., "id": ...}, "attrs": {...}, "parents": [...]}',
                    )
                key = format_uid(*parse_uid(ent["uid"], what=f"uid of entity #{i} from {p.name!r}"))
                have = merged.get(key)
                if have is None:
                    merged[key] = {
                        "uid": ent["uid"],
                        "attrs": dict(ent.get("attrs") or {}),
                        "parents": list(ent.get("parents") or []),
                        **({"tags": dict(ent["tags"])} if ent.get("tags") else {}),
                    }
                else:
                    have["attrs"].update(ent.get("attrs") or {})
                    seen = {json.dumps(x, sort_keys=True) for x in have["parents"]}
                    have["parents"] += [x for x in ent.get("parents") or [] if json.dumps(x, sort_keys=True) not in seen]
                    if ent.get("tags"):
                        have.setdefault("tags", {}).update(ent["tags"])
        out = list(merged.values())
        self._merged = (version, out)
        self._handles.clear()
        self._views.clear()
        return out

    def json(self) -> str:
        """The merged entities as Cedar JSON text."""
        return json.dumps(self.entities())

    def handle(self, schema: Schema | None = None) -> Any:
        """The parsed ``cedarpy.Entities`` (validated against ``schema`` if given), cached per version.

        Raises:
            ValidationError: an entity does not conform to the schema (naming the entity and attribute).
        """
        import cedarpy

        ents = self.entities()
        key = (self._merged[0] if self._merged else None, id(schema))
        h = self._handles.get(key)
        if h is None:
            text = json.dumps(ents)
            try:
                h = cedarpy.Entities.from_json_str(text, schema.handle if schema is not None else None)
            except ValueError as exc:
                raise _explain(ents, schema, str(exc)) from None
            self._handles[key] = h
        return h

    def view(self, schema: Schema | None = None) -> EntityView:
        """A Python view of the entities as Cedar sees them (after the schema), for analysis."""
        h = self.handle(schema)
        key = (self._merged[0] if self._merged else None, id(schema))
        v = self._views.get(key)
        if v is None:
            v = self._views[key] = EntityView(json.loads(str(h)))
        return v

    def __len__(self) -> int:
        return len(self.entities())

    def __contains__(self, uid: Any) -> bool:
        key = format_uid(*parse_uid(uid))
        return any(format_uid(*parse_uid(e["uid"])) == key for e in self.entities())

    def __repr__(self) -> str:
        return f"EntityStore({len(self.providers)} provider{'s' if len(self.providers) != 1 else ''}: {', '.join(p.name for p in self.providers)})"


class EntityView:
    """Entities keyed by canonical uid string, with the transitive closure of their ancestors."""

    def __init__(self, entities: Iterable[Mapping[str, Any]]) -> None:
        self.attrs: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        self.types: dict[str, str] = {}
        self.tags: set[str] = set()
        for ent in entities:
            t, i = parse_uid(ent["uid"])
            key = format_uid(t, i)
            self.attrs[key] = ent.get("attrs") or {}
            self.parents[key] = tuple(format_uid(*parse_uid(p)) for p in ent.get("parents") or ())
            self.types[key] = t
            if ent.get("tags"):
                self.tags.add(key)
        self._anc: dict[str, tuple[str, ...]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.attrs

    def ancestors(self, key: str) -> tuple[str, ...]:
        """Every ancestor of ``key`` (transitively), sorted."""
        got = self._anc.get(key)
        if got is not None:
            return got
        seen: set[str] = set()
        stack = list(self.parents.get(key, ()))
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            stack.extend(self.parents.get(p, ()))
        seen.discard(key)
        got = self._anc[key] = tuple(sorted(seen))
        return got


def _explain(entities: list[dict[str, Any]], schema: Schema | None, message: str) -> ValidationError:
    """Find which entity (and which attribute or parent) Cedar refused, and say so."""
    import cedarpy

    sch = schema.handle if schema is not None else None

    def ok(items: list[dict[str, Any]]) -> str | None:
        try:
            cedarpy.Entities.from_json_str(json.dumps(items), sch)
        except ValueError as exc:
            return str(exc)
        return None

    if schema is None:
        return ValidationError(f"the entities do not parse: {message}", hint="check the Cedar JSON entity format")
    for ent in entities:
        err = ok([ent])
        if err is None:
            continue
        uid = format_uid(*parse_uid(ent["uid"]))
        t = parse_uid(ent["uid"])[0]
        decl = schema.declaration(t)
        what = ""
        attrs = dict(ent.get("attrs") or {})
        mismatches = _type_mismatches(attrs, decl) if decl else []
        if ok([{**ent, "attrs": {}, "parents": []}]) is not None and ok([{**ent, "parents": []}]) is not None:
            what = (
                f"entity type `{t}` is not declared in the schema"
                if decl is None
                else "; ".join(mismatches) or "it is missing a required attribute, or its type is declared differently"
            )
        elif ok([{**ent, "parents": []}]) is None and ent.get("parents"):
            bad = [p for p in ent["parents"] if ok([{**ent, "parents": [p]}]) is not None]
            what = "parent " + ", ".join(f"`{format_uid(*parse_uid(p))}`" for p in bad) + " is not allowed by the schema"
        else:
            bad = [k for k in attrs if ok([{**ent, "attrs": {x: v for x, v in attrs.items() if x != k}, "parents": []}]) is None]
            mismatches = _type_mismatches(attrs, decl) if decl else []
            if mismatches:
                what = "; ".join(mismatches)
            elif bad:
                what = "; ".join(
                    f"attribute `{k}` = {json.dumps(attrs[k])[:80]} does not match the schema" for k in bad
                )
            else:
                what = "its attributes do not match the schema"
        return ValidationError(
            f"entity `{uid}` does not conform to {schema.name}: {what}"
            + (f"\n  the schema declares: {decl}" if decl else ""),
            input=uid,
            hint="fix the entity data or the schema; or evaluate without the schema (--no-schema / schema=None)",
        )
    return ValidationError(f"the entities do not conform to {schema.name}: {message}", hint="check entity uids and parents")


_PRIMITIVE = {"String": str, "Long": int, "Bool": bool}


def _declared_attrs(decl: str) -> dict[str, tuple[str, bool]]:
    """Top-level attributes of an ``entity T = {...};`` declaration: name -> (type text, required)."""
    start = decl.find("{")
    if start < 0:
        return {}
    body, depth, parts, cur = decl[start + 1 :], 0, [], []
    for ch in body:
        if ch in "{<":
            depth += 1
        elif ch in "}>":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    out = {}
    for part in parts:
        if ":" not in part:
            continue
        name, typ = part.split(":", 1)
        name = name.strip().strip('"')
        required = not name.endswith("?")
        out[name.rstrip("?").strip('"')] = (typ.strip(), required)
    return out


def _type_mismatches(attrs: Mapping[str, Any], decl: str) -> list[str]:
    """Attributes whose value plainly does not have the declared type (entity type, primitive, set, record)."""
    declared = _declared_attrs(decl)
    if not declared:
        return []
    out = []
    for name, value in attrs.items():
        if name not in declared:
            out.append(f"attribute `{name}` is not declared")
            continue
        typ = declared[name][0]
        shown = json.dumps(value)[:80]
        if typ in _PRIMITIVE:
            py = _PRIMITIVE[typ]
            if not isinstance(value, py) or (py is int and isinstance(value, bool)):
                out.append(f"attribute `{name}` = {shown} should be {typ}")
        elif typ.startswith("Set<") and not isinstance(value, list):
            out.append(f"attribute `{name}` = {shown} should be a {typ}")
        elif isinstance(value, dict) and ("__entity" in value or set(value) == {"type", "id"}):
            ref_type = parse_uid(value)[0]
            if typ.rsplit("::", 1)[-1] != ref_type.rsplit("::", 1)[-1] and not typ.startswith(("{", "Set<")):
                out.append(f"attribute `{name}` refers to a `{ref_type}` entity, but the schema says `{typ}`")
    for name, (typ, required) in declared.items():
        if required and name not in attrs:
            out.append(f"required attribute `{name}` ({typ}) is missing")
    return out
