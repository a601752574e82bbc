"""Attribute providers: where the entities (and their attributes) that policies read come from.

Each provider returns Cedar JSON entities (``{"uid", "attrs", "parents"}``) and
caches them until :meth:`AttributeProvider.invalidate` (or its ``ttl_s``)
says to load again.  An :class:`~lumina_lab.policy.entities.EntityStore`
merges providers and hands Cedar one parsed entity set.

>>> users = DictEntities("User", {"alice": {"role": "admin", "team": Ref("Team", "core")}},
...                      parents={"alice": ['Group::"admins"']})
>>> users.entities()[0]["attrs"]["team"]
{'__entity': {'type': 'Team', 'id': 'core'}}
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .uids import format_uid, parse_uid

__all__ = [
    "AttributeProvider",
    "CallableEntities",
    "DictEntities",
    "DuckDBEntities",
    "JsonEntities",
    "ObjectEntities",
    "Ref",
    "collection_entities",
    "provider_entities",
    "to_cedar_value",
    "tool_entities",
]

_I64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to an entity, as an attribute value: ``Ref("User", "alice")``."""

    type: str
    id: str

    def __str__(self) -> str:
        return format_uid(self.type, self.id)


def to_cedar_value(value: Any, *, where: str = "value") -> Any:
    """A Python value as Cedar JSON (``None`` means: leave the attribute out).

    ``bool``/``int``/``str`` as they are; ``float`` and ``Decimal`` as ``decimal``;
    ``datetime``/``date`` as ``datetime``; ``timedelta`` as ``duration``; IP addresses
    and networks as ``ip``; :class:`Ref` as an entity reference; mappings as records;
    lists, tuples and sets as sets.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not _I64[0] <= value <= _I64[1]:
            raise ValidationError(f"{where} = {value} does not fit Cedar's 64-bit Long", input=value)
        return value
    if isinstance(value, Ref):
        return {"__entity": {"type": value.type, "id": value.id}}
    if isinstance(value, (float, decimal.Decimal)):
        d = decimal.Decimal(str(value)).quantize(decimal.Decimal("0.0001"))
        if abs(d) >= 922337203685477:
            raise ValidationError(f"{where} = {value} is outside Cedar's decimal range", input=value)
        return {"__extn": {"fn": "decimal", "arg": f"{d:.4f}"}}
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        v = value.astimezone(dt.UTC)
        return {"__extn": {"fn": "datetime", "arg": v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"}}
    if isinstance(value, dt.date):
        return {"__extn": {"fn": "datetime", "arg": value.isoformat()}}
    if isinstance(value, dt.timedelta):
        return {"__extn": {"fn": "duration", "arg": f"{round(value.total_seconds() * 1000)}ms"}}
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return {"__extn": {"fn": "ip", "arg": str(value)}}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            cv = to_cedar_value(v, where=f"{where}.{k}")
            if cv is not None:
                out[str(k)] = cv
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [to_cedar_value(v, where=f"{where}[]") for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort(key=lambda x: json.dumps(x, sort_keys=True))
        return [x for x in items if x is not None]
    raise ValidationError(
        f"{where} = {value!r} ({type(value).__name__}) has no Cedar type",
        input=value,
        hint="use bool, int, str, float/Decimal, datetime, timedelta, Ref(...), dicts, lists or sets",
    )


def _entity(type_: str, id_: Any, attrs: Mapping[str, Any] | None, parents: Iterable[Any] | None, where: str) -> dict:
    pars = []
    for p in parents or ():
        t, i = parse_uid(p.__str__() if isinstance(p, Ref) else p, what=f"{where} parent")
        pars.append({"type": t, "id": i})
    return {
        "uid": {"type": type_, "id": str(id_)},
        "attrs": to_cedar_value(dict(attrs or {}), where=where) or {},
        "parents": pars,
    }


class AttributeProvider:
    """Base class: loads entities, caches them until invalidated (or ``ttl_s`` passes).

    Subclasses implement :meth:`load`.  :attr:`version` changes whenever reloaded
    data differ, so whoever parsed the entities knows to parse them again.
    """

    name = "provider"

    def __init__(self, *, ttl_s: float | None = None, name: str | None = None) -> None:
        self.ttl_s = ttl_s
        if name:
            self.name = name
        self.version = 0
        self._cache: list[dict[str, Any]] | None = None
        self._digest: str | None = None
        self._loaded_at = 0.0

    def load(self) -> list[dict[str, Any]]:
        """Fetch the entities (Cedar JSON dicts).  Called only when the cache is empty or stale."""
        raise NotImplementedError

    def entities(self) -> list[dict[str, Any]]:
        """The entities, from the cache when fresh."""
        stale = self.ttl_s is not None and time.monotonic() - self._loaded_at > self.ttl_s
        if self._cache is None or stale:
            data = self.load()
            digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
            if digest != self._digest:
                self.version += 1
                self._digest = digest
            self._cache = data
            self._loaded_at = time.monotonic()
        return self._cache

    def refresh(self) -> int:
        """Reload if stale (ttl) and return :attr:`version`."""
        self.entities()
        return self.version

    def invalidate(self) -> None:
        """Drop the cache: the next :meth:`entities` loads again."""
        self._cache = None

    def __repr__(self) -> str:
        n = len(self._cache) if self._cache is not None else "?"
        return f"{type(self).__name__}({self.name!r}, {n} entities, version {self.version})"


class JsonEntities(AttributeProvider):
    """Cedar JSON entities: a list of dicts, JSON text, or a path to a ``.json`` file (re-read on invalidate)."""

    name = "json"

    def __init__(self, source: str | Path | list[dict[str, Any]], **kw: Any) -> None:
        super().__init__(**kw)
        self.source = source
        if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("[")):
            self.name = Path(source).name

    def load(self) -> list[dict[str, Any]]:
        src = self.source
        if isinstance(src, list):
            return src
        text = src
        if isinstance(src, Path) or not src.lstrip().startswith("["):
            path = Path(src)
            if not path.is_file():
                raise ValidationError(f"entities file {str(path)!r} does not exist", input=str(path))
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{self.name}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", input=self.name
            ) from None
        if not isinstance(data, list):
            raise ValidationError(f"{self.name}: Cedar entities are a JSON list, got {type(data).__name__}")
        return data


class DictEntities(AttributeProvider):
    """Entities of one type from ``{id: {attribute: value}}`` (values converted by :func:`to_cedar_value`).

    Args:
        type: the entity type, e.g. ``"User"``.
        records: attributes by id (a mapping, or a callable returning one).
        parents: parent uids by id (``'Group::"admins"'``, ``("Group", "admins")`` or :class:`Ref`).
        refs: attributes whose string values are ids of entities of a type, e.g. ``{"owner": "User"}``.
    """

    def __init__(
        self,
        type: str,
        records: Mapping[Any, Mapping[str, Any]] | Callable[[], Mapping[Any, Mapping[str, Any]]],
        *,
        parents: Mapping[Any, Iterable[Any]] | None = None,
        refs: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.type = type
        self.name = kw.get("name") or type
        self.records = records
        self.parents = parents or {}
        self.refs = dict(refs or {})

    def load(self) -> list[dict[str, Any]]:
        records = self.records() if callable(self.records) else self.records
        out = []
        for id_, attrs in records.items():
            attrs = dict(attrs)
            for attr, ref_type in self.refs.items():
                v = attrs.get(attr)
                if isinstance(v, str):
                    attrs[attr] = Ref(ref_type, v)
                elif isinstance(v, (list, tuple, set, frozenset)):
                    attrs[attr] = type(v)(Ref(ref_type, x) if isinstance(x, str) else x for x in v)
            out.append(_entity(self.type, id_, attrs, self.parents.get(id_, ()), f"{self.type}::{id_!r}"))
        return out


class CallableEntities(AttributeProvider):
    """Entities from a function: it returns Cedar JSON entities, or ``{id: attrs}`` when ``type`` is given."""

    def __init__(self, fn: Callable[[], Any], *, type: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.fn = fn
        self.type = type
        self.name = kw.get("name") or getattr(fn, "__name__", "callable")

    def load(self) -> list[dict[str, Any]]:
        data = self.fn()
        if self.type is not None:
            return DictEntities(self.type, data).load()
        if not isinstance(data, list):
            raise ValidationError(
                f"attribute provider {self.name!r} returned {type(data).__name__}, not a list of Cedar entities",
                hint="return [{'uid': {...}, 'attrs': {...}, 'parents': [...]}], or pass type= and return {id: attrs}",
            )
        return data


class DuckDBEntities(AttributeProvider):
    """Entities of one type from a DuckDB table or query: one row per entity.

    Args:
        type: entity type of the rows.
        query: a table name or a ``SELECT``.
        con: a DuckDB connection (default: a new in-memory one, or ``database``).
        database: path of a DuckDB file to open read-only.
        id: the id column.
        parents: a column of parent uids (a string or a list of strings), if any.
        refs: columns holding ids of other entities, e.g. ``{"owner": "User"}``.
        columns: the attribute columns (default: every other column).
    """

    def __init__(
        self,
        type: str,
        query: str,
        *,
        con: Any = None,
        database: str | Path | None = None,
        id: str = "id",
        parents: str | None = None,
        refs: Mapping[str, str] | None = None,
        columns: Iterable[str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.type, self.query, self.con, self.database = type, query, con, database
        self.id_column, self.parents_column = id, parents
        self.refs = dict(refs or {})
        self.columns = list(columns) if columns is not None else None
        self.name = kw.get("name") or f"duckdb:{type}"

    def load(self) -> list[dict[str, Any]]:
        import duckdb

        sql = self.query if self.query.lstrip().lower().startswith(("select", "with", "from")) else f"SELECT * FROM {self.query}"
        con = self.con
        own = con is None
        if own:
            con = duckdb.connect(str(self.database), read_only=True) if self.database else duckdb.connect()
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        except duckdb.Error as exc:
            raise ValidationError(f"attribute provider {self.name!r}: {exc}", input=sql) from None
        finally:
            if own:
                con.close()
        if self.id_column not in names:
            raise ValidationError(
                f"attribute provider {self.name!r}: no id column {self.id_column!r} in {names}",
                hint="pass id='your_id_column'",
            )
        attr_cols = self.columns or [c for c in names if c not in (self.id_column, self.parents_column)]
        records: dict[Any, dict[str, Any]] = {}
        parents: dict[Any, list[Any]] = {}
        for row in rows:
            rec = dict(zip(names, row, strict=True))
            rid = rec[self.id_column]
            records[rid] = {c: rec[c] for c in attr_cols}
            if self.parents_column:
                p = rec[self.parents_column]
                parents[rid] = [] if p is None else ([p] if isinstance(p, str) else list(p))
        return DictEntities(self.type, records, parents=parents, refs=self.refs).load()


class ObjectEntities(AttributeProvider):
    """Entities from any objects: ``id(obj)`` names each, ``attrs(obj)`` gives its attributes.

    >>> ObjectEntities("Tool", [len], id=lambda f: f.__name__, attrs=lambda f: {"risk": "low"}).entities()[0]["uid"]
    {'type': 'Tool', 'id': 'len'}
    """

    def __init__(
        self,
        type: str,
        objects: Iterable[Any] | Callable[[], Iterable[Any]],
        *,
        id: Callable[[Any], Any],
        attrs: Callable[[Any], Mapping[str, Any]] | None = None,
        parents: Callable[[Any], Iterable[Any]] | None = None,
        extra: Mapping[Any, Mapping[str, Any]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.type, self.objects = type, objects
        self.id_of, self.attrs_of, self.parents_of = id, attrs, parents
        self.extra = {str(k): dict(v) for k, v in (extra or {}).items()}
        self.name = kw.get("name") or type

    def load(self) -> list[dict[str, Any]]:
        objects = self.objects() if callable(self.objects) else self.objects
        out = []
        for obj in objects:
            oid = str(self.id_of(obj))
            attrs = dict(self.attrs_of(obj)) if self.attrs_of else {}
            attrs.update(self.extra.get(oid, {}))
            parents = self.parents_of(obj) if self.parents_of else ()
            out.append(_entity(self.type, oid, attrs, parents, f"{self.type}::{oid!r}"))
        return out


def provider_entities(
    registry: Any,
    *,
    type: str = "Provider",
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    parents: Mapping[str, Iterable[Any]] | None = None,
) -> ObjectEntities:
    """The providers of a :class:`~lumina_lab.providers.ProviderRegistry` as entities.

    Attributes: ``model``, ``kind`` (class name), ``input_per_m`` / ``output_per_m`` (USD per million
    tokens, as Cedar decimals), ``context_window``, each capability as a level 0-100 (``code``,
    ``vision``...), plus ``extra[provider_id]`` (e.g. ``{"approved": True, "region": "eu"}``).
    """

    def attrs(state: Any) -> dict[str, Any]:
        p = state.provider
        caps = p.capabilities
        out: dict[str, Any] = {
            "model": p.model,
            "kind": p.__class__.__name__,
            "input_per_m": p.pricing.input_per_m,
            "output_per_m": p.pricing.output_per_m,
            "context_window": caps.context_window,
        }
        from ..providers.types import CAPABILITIES

        for cap in CAPABILITIES:
            out[cap] = round(caps.level(cap) * 100)
        return out

    pars = {str(k): list(v) for k, v in (parents or {}).items()}
    return ObjectEntities(
        type,
        lambda: list(registry),
        id=lambda s: s.id,
        attrs=attrs,
        parents=lambda s: pars.get(s.id, ()),
        extra=extra,
        name=f"providers:{type}",
    )


def tool_entities(
    tools: Iterable[Any],
    *,
    type: str = "Tool",
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    parents: Mapping[str, Iterable[Any]] | None = None,
) -> ObjectEntities:
    """Tools (functions, or objects with ``name`` such as langchain tools) as entities named by their name."""
    pars = {str(k): list(v) for k, v in (parents or {}).items()}

    def name_of(t: Any) -> str:
        return str(getattr(t, "name", None) or getattr(t, "__name__", None) or t)

    def attrs(t: Any) -> dict[str, Any]:
        doc = getattr(t, "description", None) or (t.__doc__ or "").strip().split("\n")[0]
        return {"name": name_of(t), "description": doc or ""}

    return ObjectEntities(
        type, list(tools), id=name_of, attrs=attrs, parents=lambda t: pars.get(name_of(t), ()), extra=extra, name=f"tools:{type}"
    )


def collection_entities(
    collections: Iterable[Any],
    *,
    type: str = "Collection",
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    parents: Mapping[str, Iterable[Any]] | None = None,
) -> ObjectEntities:
    """Memory collections (objects with ``name`` and optional ``metadata`` dict) as entities."""
    pars = {str(k): list(v) for k, v in (parents or {}).items()}

    def name_of(c: Any) -> str:
        return str(getattr(c, "name", None) or getattr(c, "id", None) or c)

    def attrs(c: Any) -> dict[str, Any]:
        meta = getattr(c, "metadata", None)
        return dict(meta) if isinstance(meta, Mapping) else {}

    return ObjectEntities(
        type, list(collections), id=name_of, attrs=attrs, parents=lambda c: pars.get(name_of(c), ()), extra=extra,
        name=f"collections:{type}",
    )
