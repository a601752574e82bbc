"""Entity extraction: names, places, numbers, and dates resolved against the time a text was said."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import pytest

import lumina_lab.memory.entities as entities_module
from lumina_lab.errors import ValidationError
from lumina_lab.memory.entities import (
    DateSpan,
    entity_key,
    extract_entities,
    parse_dates,
    parse_numbers,
    to_datetime,
)

REF = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)  # a Monday


def dates(text: str, ref=REF) -> list[str]:
    return [e.value.label for e in parse_dates(text, ref)]


def test_docstring_examples():
    assert doctest.testmod(entities_module, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I went to a support group yesterday", "2023-05-07"),
        ("we talked today", "2023-05-08"),
        ("last night was fun", "2023-05-07"),
        ("the day before yesterday", "2023-05-06"),
        ("tomorrow we fly", "2023-05-09"),
        ("I ran a charity race last Sunday", "2023-05-07"),
        ("last Monday", "2023-05-01"),  # said on a Monday: the one a week before
        ("next Friday", "2023-05-12"),
        ("on Saturday", "2023-05-06"),
        ("three days ago", "2023-05-05"),
        ("2 weeks ago", "2023-04-21..2023-04-27"),
        ("a few days ago", "2023-05-03..2023-05-06"),
        ("last week", "2023-05-01..2023-05-07"),
        ("last weekend", "2023-05-06..2023-05-07"),
        ("this weekend", "2023-05-13..2023-05-14"),
        ("last month", "2023-04"),
        ("next month", "2023-06"),
        ("two months ago", "2023-03"),
        ("last year", "2022"),
        ("4 years ago", "2019"),
        ("last summer", "2022-06-01..2022-08-31"),
        ("in June", "2023-06"),
        ("in December", "2022-12"),
        ("recently", "2023-04-08..2023-05-08"),
    ],
)
def test_relative_dates_resolve_against_the_reference(text, label):
    assert dates(text) == [label]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("on 8 May, 2023", "2023-05-08"),
        ("May 8th, 2023", "2023-05-08"),
        ("the 3rd of June 2022", "2022-06-03"),
        ("2023-05-08", "2023-05-08"),
        ("in March 2021", "2021-03"),
        ("since 2019", "2019"),
    ],
)
def test_absolute_dates_need_no_reference(text, label):
    assert dates(text, None) == [label]
    assert parse_dates(text, None)[0].value.relative is False


def test_relative_dates_without_reference_are_skipped():
    assert dates("yesterday and last Saturday", None) == []
    assert dates("yesterday, 8 May 2023", None) == ["2023-05-08"]


def test_longest_expression_wins_and_may_the_verb_is_not_a_month():
    assert dates("We met on 8 May, 2023.") == ["2023-05-08"]  # not also "2023" and "8 May"
    assert dates("May I come? You may.") == []
    assert dates("It was in May") == ["2023-05"]


def test_date_span_helpers():
    span = parse_dates("yesterday", REF)[0].value
    assert isinstance(span, DateSpan) and span.granularity == "day" and span.relative
    assert span.contains(datetime(2023, 5, 7, 23, 59, tzinfo=UTC))
    assert not span.contains(REF)
    assert span.contains(span.start_ts) and not span.contains(span.end_ts)
    week = parse_dates("last week", REF)[0].value
    assert week.overlaps(span)


def test_numbers():
    got = [
        (e.text, e.value) for e in parse_numbers("I have two dogs, 1,200 steps, 4.5 stars and twenty-one cats; twice")
    ]
    assert got == [("two", 2), ("1,200", 1200), ("4.5", 4.5), ("twenty-one", 21), ("twice", 2)]
    assert parse_numbers("the red one") == []  # "one" as a pronoun


def test_names_places_and_sentence_openers():
    text = (
        "Caroline: Hey Mel! Thanks, I moved from Sweden 4 years ago. I read Charlotte's Web with Dr. Seuss in New York."
    )
    got = [(e.kind, e.text) for e in extract_entities(text, REF)]
    assert ("name", "Caroline") in got and ("name", "Mel") in got
    assert ("place", "Sweden") in got and ("place", "New York") in got
    assert ("name", "Dr. Seuss") in got and ("name", "Charlotte's Web") in got
    assert ("date", "4 years ago") in got and ("number", "4") not in got  # the number is part of the date
    words = {e.text for e in extract_entities(text, REF)}
    assert not words & {"Hey", "Thanks", "I"}


def test_kinds_filter_and_keys():
    got = extract_entities("Ann saw 3 owls in Oslo yesterday", REF, kinds=["place", "number"])
    assert [(e.kind, e.key) for e in got] == [("number", "3"), ("place", "oslo")]
    assert entity_key("Dr. Seuss's") == "dr seuss"
    assert extract_entities("", REF) == []


def test_to_datetime_accepts_common_forms():
    assert to_datetime("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert to_datetime("2023-05-08") == datetime(2023, 5, 8, tzinfo=UTC)
    assert to_datetime(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert to_datetime(datetime(2023, 1, 1)).tzinfo is UTC


@pytest.mark.parametrize("bad", ["not a date", float("nan"), True, None, [2023]])
def test_bad_times_are_refused(bad):
    with pytest.raises(ValidationError):
        to_datetime(bad)


def test_bad_input_is_refused():
    with pytest.raises(ValidationError):
        extract_entities(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown entity kinds"):
        extract_entities("x", kinds=["person"])
    with pytest.raises(ValidationError):
        parse_dates(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        parse_dates("yesterday", "garbage")
