"""Integer codes for columns of a request set: distinct values numbered, tuples of codes combined.

The simulator works on a million requests as a few numpy arrays: each column (principals, context
values...) becomes codes once per distinct value, and keys are combinations of codes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .uids import is_entity_ref

__all__ = [
    "ABSENT",
    "column",
    "combine",
    "contexts",
    "dense",
    "gc_paused",
    "has_entity",
    "intern",
    "intern_values",
    "pack",
    "representatives",
    "vtype",
]

_I64 = (-(2**63), 2**63 - 1)


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored after): bulk work over a million requests makes many
    short-lived objects and no cycles, and each full collection would walk every object of the set."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ------------------------------------------------------------------------------------- codes
def dense(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes 0..k-1 (one per distinct value of ``x``, values >= 0), and k."""
    if len(x) == 0:
        return x.astype(np.int64), 0
    top = int(x.max())
    if top < 4 * len(x) + 1024:  # small values: a lookup table beats hashing
        seen = np.zeros(top + 1, dtype=np.int64)
        seen[x] = 1
        lut = np.cumsum(seen) - 1
        return lut[x], int(lut[-1]) + 1
    import pandas as pd

    codes, uniques = pd.factorize(x, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False), len(uniques)


def combine(parts: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, int]:
    """Dense codes of the tuples of ``parts`` (each an int array of codes >= 0).

    Parts are packed into one int64 (mixed radix) as long as it fits, then numbered once.
    """
    if not parts:
        return np.zeros(n, dtype=np.int64), 1
    code = parts[0].astype(np.int64, copy=False)
    bound = int(code.max()) + 1 if n else 1
    for p in parts[1:]:
        m = int(p.max()) + 1 if n else 1
        if m == 1:
            continue
        if bound * m >= 2**62:
            code, bound = dense(code)
        code = code * m + p
        bound *= m
    return dense(code)


def pack(parts: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Codes of the tuples of ``parts``: packed (mixed radix) while small, else numbered densely."""
    if not parts:
        return np.zeros(n, dtype=np.int64)
    code = parts[0].astype(np.int64, copy=False)
    bound = int(code.max()) + 1 if n else 1
    for p in parts[1:]:
        m = int(p.max()) + 1 if n else 1
        if m == 1:
            continue
        if bound * m >= 2**40:
            code, bound = dense(code)
        code = code * m + p
        bound *= m
    return code


def representatives(codes: np.ndarray, k: int) -> np.ndarray:
    """One row (a representative) of each code 0..k-1, in code order."""
    rows = np.empty(k, dtype=np.int64)
    rows[codes] = np.arange(len(codes), dtype=np.int64)  # with repeats, some row of that code wins
    return rows


def intern(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes of hashable values (in order of first appearance) and the distinct values.

    Values equal in Python share a code (``True`` and ``1`` too: callers that may mix them
    tag the values first)."""
    uniques = list(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(uniques)}
    return np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values)), uniques


def vtype(v: Any) -> str:
    t = type(v)
    if t is int:
        return "int" if _I64[0] <= v <= _I64[1] else "bigint"
    if t in (str, bool, dict, list, float):
        return t.__name__
    if v is ABSENT:
        return "absent"
    if v is None:
        return "null"
    return "other:" + t.__name__


def intern_values(col: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes of a context column: values equal as JSON share a code (True is not 1, dicts by content)."""
    try:
        codes, uniq = intern(col)
    except TypeError:  # dicts or lists
        pass
    else:
        if all(type(u) is str or u is ABSENT for u in uniq):
            return codes, uniq  # only strings: nothing else can have merged into them
        types = set(map(type, col))
        if types <= {str, _Absent, bool} or types <= {str, _Absent, int}:
            return codes, uniq
    keys = [
        (type(v), json.dumps(v, sort_keys=True, default=str)) if isinstance(v, (dict, list)) else (type(v), v)
        for v in col
    ]
    codes, uniq = intern(keys)
    first: dict[int, Any] = {}
    for c, v in zip(codes.tolist(), col, strict=True):
        first.setdefault(c, v)
    return codes, [first[i] for i in range(len(uniq))]


def column(ctxs: list[dict[str, Any]], key: str) -> list[Any]:
    """The values of ``key`` in every context (:data:`ABSENT` where missing)."""
    try:
        return list(map(operator.itemgetter(key), ctxs))  # the usual case, without a Python frame per request
    except KeyError:
        return [c.get(key, ABSENT) for c in ctxs]


def has_entity(v: Any) -> bool:
    if isinstance(v, dict):
        return is_entity_ref(v) or any(has_entity(x) for x in v.values())
    if isinstance(v, list):
        return any(has_entity(x) for x in v)
    return False


def contexts(ctxs: list[Any]) -> list[dict[str, Any]]:
    """Contexts as dicts (``None`` is empty, JSON text is parsed); anything else is an error."""
    types = set(map(type, ctxs))
    if types <= {dict}:
        return ctxs
    from collections.abc import Mapping

    from ..errors import ValidationError

    out = []
    for i, c in enumerate(ctxs):
        if c is None:
            c = {}
        elif isinstance(c, str):
            c = json.loads(c) if c.strip() else {}
        elif isinstance(c, Mapping):
            c = dict(c)
        if not isinstance(c, dict):
            raise ValidationError(f"request #{i}: context must be an object, got {type(c).__name__}", input=c)
        out.append(c)
    return out
