"""The filter language: building, parsing dicts, reference semantics, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory.filters import And, Eq, F, In, Not, Or, Range, check_metadata, parse_filter


def test_operators_build_expressions():
    assert (F.a == 1) == Eq("a", 1)
    assert F.a.isin(["x", "y"]) == In("a", ("x", "y"))
    assert (F.n > 2) == Range("n", gt=2)
    assert F.n.between(1, 3) == Range("n", ge=1, le=3)
    assert (F.a != 1) == Not(Eq("a", 1))
    assert ((F.a == 1) & (F.b == 2) & (F.c == 3)).parts == (Eq("a", 1), Eq("b", 2), Eq("c", 3))
    assert isinstance((F.a == 1) | (F.b == 2), Or)
    assert F["with space"].isin([1]).field == "with space"
    assert ((F.a == 1) & (F.b > 2)).fields() == {"a", "b"}


def test_dicts_parse_like_mongo_queries():
    f = parse_filter({"topic": "t", "n": {"$gte": 1, "$lt": 5}, "$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]})
    assert f == And(Eq("topic", "t"), Range("n", ge=1), Range("n", lt=5), Or(Eq("a", 1), In("b", (2, 3))))
    assert parse_filter({"$not": {"a": 1}}) == Not(Eq("a", 1))
    assert parse_filter({"a": {"$nin": [1]}}) == Not(In("a", (1,)))
    assert parse_filter(None) is None and parse_filter({}) is None


def test_reference_semantics():
    md = {"n": 3, "flag": True, "s": "abc", "x": 1.5}
    assert (F.n == 3).matches(md) and not (F.n == 3.5).matches(md)
    assert not (F.flag == 1).matches(md) and (F.flag == True).matches(md)  # noqa: E712
    assert not (F.n == True).matches({"n": 1})  # noqa: E712
    assert (F.s > "abb").matches(md) and not (F.s > 1).matches(md)
    assert not (F.missing == 1).matches(md) and (~(F.missing == 1)).matches(md)
    assert F.x.between(1, 2).matches(md)


def test_masks_agree_with_matches():
    rows = [{"n": i, "t": "ab"[i % 2]} | ({"b": True} if i % 3 == 0 else {}) for i in range(30)]
    cols = {k: np.array([r.get(k) for r in rows], dtype=object) for k in ("n", "t", "b")}
    for f in [F.n > 10, F.t.isin(["a"]), ~(F.b == True), (F.n < 5) | (F.t == "b"), F.n.between(3, 9) & ~(F.t == "a")]:  # noqa: E712
        mask = f.mask(lambda k: cols.get(k, np.full(30, None, dtype=object)), 30)
        assert mask.tolist() == [f.matches(r) for r in rows], f


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: F.a == [1], "not a string, number or bool"),
        (lambda: F.a == float("nan"), "not a string, number or bool"),
        (lambda: F.a.isin("xy"), "takes a list of values"),
        (lambda: parse_filter({"a": {"$regex": "x"}}), "unknown operator"),
        (lambda: parse_filter({"$nor": []}), "unknown filter operator"),
        (lambda: parse_filter("a = 1"), "not a filter"),
        (lambda: (F.a == 1) & "b", "not a filter"),
    ],
)
def test_bad_filters_are_clear_errors(build, message):
    with pytest.raises(ValidationError, match=message):
        build()


def test_metadata_is_checked():
    assert check_metadata("i", {"a": 1, "b": None, "c": np.int64(2)}) == {"a": 1, "c": 2}
    with pytest.raises(ValidationError, match="scalars"):
        check_metadata("i", {"a": {"nested": 1}})
    with pytest.raises(ValidationError, match="not a dict"):
        check_metadata("i", ["a"])
