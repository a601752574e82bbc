"""A small typed filter language over metadata, translated by each vector-store backend.

Build filters with :data:`F` (or pass a Mongo-style dict, see :func:`parse_filter`):

>>> from lumina_lab.memory.filters import F
>>> f = (F.topic == "travel") & F.year.between(2020, 2023) & ~F.tag.isin(["draft", "spam"])
>>> f
And(Eq('topic', 'travel'), Range('year', ge=2020, le=2023), Not(In('tag', ('draft', 'spam'))))
>>> f.matches({"topic": "travel", "year": 2021, "tag": "final"})
True

Semantics every backend follows (the contract tests pin them):

* metadata values are scalars — ``str``, ``int``, ``float``, ``bool`` — or absent;
* ``Eq``/``In`` compare exactly; a ``bool`` never equals a number;
* ``Range`` compares numbers with numbers and strings with strings; a value of
  another type, or an absent key, does not match;
* ``Not(x)`` matches exactly the items ``x`` does not match (absent keys included).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["And", "Eq", "F", "Filter", "In", "Not", "Or", "Range", "Scalar", "check_metadata", "parse_filter"]

Scalar = str | int | float | bool


def _check_value(field: str, value: Any) -> Scalar:
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValidationError(
        f"filter on {field!r} compares with {value!r}, which is not a string, number or bool",
        input=value,
        hint="filters compare metadata with scalars: str, int, finite float or bool",
    )


def _same_kind(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are comparable under the filter rules (bool ≠ number)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return isinstance(a, int | float) and isinstance(b, int | float)


class Filter:
    """Base of filter expressions; combine with ``&``, ``|`` and ``~``."""

    __slots__ = ()

    def __and__(self, other: Filter) -> Filter:
        return And(self, _as_filter(other))

    def __or__(self, other: Filter) -> Filter:
        return Or(self, _as_filter(other))

    def __invert__(self) -> Filter:
        return Not(self)

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether one item's metadata satisfies the filter (the reference semantics)."""
        raise NotImplementedError

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        """A boolean mask over ``n`` rows; ``columns(key)`` gives an object array of values (None = absent)."""
        raise NotImplementedError

    def fields(self) -> set[str]:
        """Metadata keys the filter reads."""
        raise NotImplementedError


def _as_filter(x: Any) -> Filter:
    if isinstance(x, Filter):
        return x
    raise ValidationError(f"{x!r} is not a filter", input=x, hint="combine filters built with F, e.g. F.a == 1")


@dataclass(frozen=True, slots=True, repr=False)
class Eq(Filter):
    """``metadata[field] == value`` (exact; bool never equals a number)."""

    field: str
    value: Scalar

    def __repr__(self) -> str:
        return f"Eq({self.field!r}, {self.value!r})"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        v = metadata.get(self.field)
        return v is not None and _same_kind(v, self.value) and v == self.value

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        return _vector_match(columns(self.field), self.matches_value, n)

    def matches_value(self, v: Any) -> bool:
        return v is not None and _same_kind(v, self.value) and v == self.value

    def fields(self) -> set[str]:
        return {self.field}


@dataclass(frozen=True, slots=True, repr=False)
class In(Filter):
    """``metadata[field]`` is one of ``values``."""

    field: str
    values: tuple[Scalar, ...]

    def __repr__(self) -> str:
        return f"In({self.field!r}, {self.values!r})"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return self.matches_value(metadata.get(self.field))

    def matches_value(self, v: Any) -> bool:
        return v is not None and any(_same_kind(v, x) and v == x for x in self.values)

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        return _vector_match(columns(self.field), self.matches_value, n)

    def fields(self) -> set[str]:
        return {self.field}


@dataclass(frozen=True, slots=True, repr=False)
class Range(Filter):
    """``gt < metadata[field] <= le`` style bounds (any subset of ``gt``, ``ge``, ``lt``, ``le``)."""

    field: str
    gt: Scalar | None = None
    ge: Scalar | None = None
    lt: Scalar | None = None
    le: Scalar | None = None

    def __repr__(self) -> str:
        bounds = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("gt", "ge", "lt", "le") if getattr(self, k) is not None)
        return f"Range({self.field!r}, {bounds})"

    def bounds(self) -> list[tuple[str, Scalar]]:
        return [(k, getattr(self, k)) for k in ("gt", "ge", "lt", "le") if getattr(self, k) is not None]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return self.matches_value(metadata.get(self.field))

    def matches_value(self, v: Any) -> bool:
        if v is None:
            return False
        for op, b in self.bounds():
            if not _same_kind(v, b):
                return False
            if (
                (op == "gt" and not v > b)
                or (op == "ge" and not v >= b)
                or (op == "lt" and not v < b)
                or (op == "le" and not v <= b)
            ):
                return False
        return True

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        return _vector_match(columns(self.field), self.matches_value, n)

    def fields(self) -> set[str]:
        return {self.field}


@dataclass(frozen=True, slots=True, repr=False)
class And(Filter):
    """Every part matches."""

    parts: tuple[Filter, ...]

    def __init__(self, *parts: Filter) -> None:
        flat: list[Filter] = []
        for p in parts:
            flat.extend(p.parts if isinstance(p, And) else (_as_filter(p),))
        object.__setattr__(self, "parts", tuple(flat))

    def __repr__(self) -> str:
        return f"And({', '.join(map(repr, self.parts))})"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(p.matches(metadata) for p in self.parts)

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        out = np.ones(n, dtype=bool)
        for p in self.parts:
            out &= p.mask(columns, n)
        return out

    def fields(self) -> set[str]:
        return set().union(*(p.fields() for p in self.parts))


@dataclass(frozen=True, slots=True, repr=False)
class Or(Filter):
    """At least one part matches."""

    parts: tuple[Filter, ...]

    def __init__(self, *parts: Filter) -> None:
        flat: list[Filter] = []
        for p in parts:
            flat.extend(p.parts if isinstance(p, Or) else (_as_filter(p),))
        object.__setattr__(self, "parts", tuple(flat))

    def __repr__(self) -> str:
        return f"Or({', '.join(map(repr, self.parts))})"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return any(p.matches(metadata) for p in self.parts)

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for p in self.parts:
            out |= p.mask(columns, n)
        return out

    def fields(self) -> set[str]:
        return set().union(*(p.fields() for p in self.parts))


@dataclass(frozen=True, slots=True, repr=False)
class Not(Filter):
    """The part does not match (absent keys included)."""

    part: Filter

    def __repr__(self) -> str:
        return f"Not({self.part!r})"

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return not self.part.matches(metadata)

    def mask(self, columns: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        return ~self.part.mask(columns, n)

    def fields(self) -> set[str]:
        return self.part.fields()


def _vector_match(column: np.ndarray, fn: Callable[[Any], bool], n: int) -> np.ndarray:
    if column is None or len(column) == 0:
        return np.zeros(n, dtype=bool)
    return np.frompyfunc(fn, 1, 1)(column[:n]).astype(bool)


class _Field:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, value: object) -> Filter:  # type: ignore[override]
        return Eq(self.name, _check_value(self.name, value))

    def __ne__(self, value: object) -> Filter:  # type: ignore[override]
        return Not(Eq(self.name, _check_value(self.name, value)))

    def __gt__(self, value: Scalar) -> Filter:
        return Range(self.name, gt=_check_value(self.name, value))

    def __ge__(self, value: Scalar) -> Filter:
        return Range(self.name, ge=_check_value(self.name, value))

    def __lt__(self, value: Scalar) -> Filter:
        return Range(self.name, lt=_check_value(self.name, value))

    def __le__(self, value: Scalar) -> Filter:
        return Range(self.name, le=_check_value(self.name, value))

    __hash__ = None  # type: ignore[assignment]

    def isin(self, values: Iterable[Scalar]) -> Filter:
        """The value is one of ``values``."""
        if isinstance(values, str):
            raise ValidationError(
                f"F.{self.name}.isin() takes a list of values, not the string {values!r}",
                input=values,
                hint=f"write F.{self.name}.isin([{values!r}]) or F.{self.name} == {values!r}",
            )
        return In(self.name, tuple(_check_value(self.name, v) for v in values))

    def between(self, low: Scalar, high: Scalar) -> Filter:
        """``low <= value <= high``."""
        return Range(self.name, ge=_check_value(self.name, low), le=_check_value(self.name, high))


class _FieldFactory:
    """``F.name`` or ``F["name with spaces"]`` starts a filter on a metadata key."""

    def __getattr__(self, name: str) -> _Field:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Field(_check_key(name))

    def __getitem__(self, name: str) -> _Field:
        return _Field(_check_key(name))

    def __repr__(self) -> str:
        return "F"


def _check_key(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"metadata key {name!r} is not a non-empty string", input=name)
    return name


F = _FieldFactory()

_OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte"}


def parse_filter(spec: Filter | Mapping[str, Any] | None) -> Filter | None:
    """A :class:`Filter` from a filter, ``None`` or a Mongo-style dict.

    Dict form: ``{"topic": "travel", "year": {"$gte": 2020, "$lt": 2024}, "tag": {"$in": [...]},
    "$or": [{...}, {...}], "$not": {...}}``; keys side by side are AND-ed.

    >>> parse_filter({"topic": "travel", "year": {"$gte": 2020}})
    And(Eq('topic', 'travel'), Range('year', ge=2020))
    """
    if spec is None or isinstance(spec, Filter):
        return spec
    if not isinstance(spec, Mapping):
        raise ValidationError(
            f"where={spec!r} is not a filter",
            input=spec,
            hint="pass F.key == value expressions or a dict such as {'topic': 'travel', 'year': {'$gte': 2020}}",
        )
    parts: list[Filter] = []
    for key, value in spec.items():
        if key == "$and":
            parts.extend(p for p in (parse_filter(v) for v in value) if p is not None)
        elif key == "$or":
            parts.append(Or(*(p for p in (parse_filter(v) for v in value) if p is not None)))
        elif key == "$not":
            inner = parse_filter(value)
            if inner is not None:
                parts.append(Not(inner))
        elif isinstance(key, str) and key.startswith("$"):
            raise ValidationError(
                f"unknown filter operator {key!r}", input=spec, hint="use $and, $or, $not at the top level"
            )
        elif isinstance(value, Mapping):
            field = F[key]
            for op, arg in value.items():
                if op not in _OPS:
                    raise ValidationError(
                        f"unknown operator {op!r} on {key!r}", input=spec, hint=f"use one of {sorted(_OPS)}"
                    )
                parts.append(
                    {
                        "$eq": lambda a, f=field: f == a,
                        "$ne": lambda a, f=field: f != a,
                        "$in": lambda a, f=field: f.isin(a),
                        "$nin": lambda a, f=field: ~f.isin(a),
                        "$gt": lambda a, f=field: f > a,
                        "$gte": lambda a, f=field: f >= a,
                        "$lt": lambda a, f=field: f < a,
                        "$lte": lambda a, f=field: f <= a,
                    }[op](arg)
                )
        else:
            parts.append(F[key] == value)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(*parts)


def check_metadata(item_id: str, metadata: Any) -> dict[str, Scalar]:
    """Validate one item's metadata: a dict of string keys to scalars (None values are dropped)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(
            f"metadata of {item_id!r} is a {type(metadata).__name__}, not a dict",
            input=metadata,
            hint="pass one dict of str → str/int/float/bool per item",
        )
    out: dict[str, Scalar] = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not k:
            raise ValidationError(f"metadata key {k!r} of {item_id!r} is not a non-empty string", input=k)
        if v is None:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            raise ValidationError(f"metadata {k!r} of {item_id!r} is {v}", input=v, hint="store finite numbers only")
        if not isinstance(v, str | int | float | bool):
            raise ValidationError(
                f"metadata {k!r} of {item_id!r} is a {type(v).__name__}",
                input=v,
                hint="metadata values are scalars (str, int, float, bool); join lists into a string or use several keys",
            )
        out[k] = v
    return out
