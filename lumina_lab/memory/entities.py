"""Entities in text, dependency-free: names, places, dates (absolute and relative) and numbers.

:func:`extract_entities` finds, in one text:

* **dates** — absolute (``"8 May, 2023"``, ``"May 8th 2023"``, ``"2023-05-08"``, ``"May 2023"``,
  ``"in 2022"``, ``"in June"``, ``"on Saturday"``) and relative to a reference time ``ref``
  (``"yesterday"``, ``"today"``, ``"last Saturday"``, ``"last week"``, ``"last weekend"``,
  ``"two weeks ago"``, ``"a few days ago"``, ``"last month"``, ``"next year"``, ``"last summer"``,
  ``"recently"``...).  Each becomes a :class:`DateSpan` ``[start, end)`` in the reference's
  time zone (naive datetimes are taken as UTC).  Without ``ref`` only absolute dates resolve
  (a weekday or a bare month needs a year: it needs ``ref``).
* **numbers** — digits (``"3"``, ``"1,200"``, ``"4.5"``) and number words (``"two"``, ``"twenty-one"``,
  ``"a couple"``, ``"twice"``), with their value; years inside dates are not numbers again.
* **names** and **places** — runs of capitalised words (``"Dr. Seuss"``, ``"New York"``,
  ``"Charlotte's Web"``).  A capitalised word that opens a sentence counts only when it is
  not a common English word (``"Hey"``, ``"Thanks"``, ``"The"`` are not names).  A name
  right after ``in``/``at``/``from``/``to``/``near``/``visited``... is a *place*; otherwise a *name*.

These are heuristics in the spirit of a fast first pass (no model): they find most names
and dates in chat text and never fail on odd input.  Dates resolve against ``ref`` as a
person would read them on that day: ``"last Saturday"`` said on Monday 8 May 2023 is
Saturday 6 May.

>>> from datetime import datetime
>>> ref = datetime(2023, 5, 8, 13, 56)
>>> [(e.kind, e.text, str(e.value)) for e in extract_entities("I went to a support group in Boston yesterday.", ref)]
[('place', 'Boston', 'Boston'), ('date', 'yesterday', '2023-05-07')]
>>> parse_dates("Melanie ran a charity race last Sunday", ref)[0].value.label
'2023-05-07'
>>> str(parse_dates("two weeks ago", ref)[0].value)
'2023-04-21..2023-04-27'
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import ValidationError

__all__ = [
    "KINDS",
    "DateSpan",
    "Entity",
    "entity_key",
    "extract_entities",
    "parse_dates",
    "parse_numbers",
    "to_datetime",
]

KINDS: tuple[str, ...] = ("name", "place", "date", "number")
"""Entity kinds :func:`extract_entities` finds."""

_DAY = timedelta(days=1)
MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m} | {
    m.lower(): i for i, m in enumerate(calendar.month_abbr) if m
}
MONTHS["sept"] = 9
del MONTHS["may"]  # "may" the verb; the month is matched capitalised only (see _MONTH)
WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}
SEASONS = {"spring": (3, 5), "summer": (6, 8), "fall": (9, 11), "autumn": (9, 11), "winter": (12, 2)}
_UNITS = {
    "day": 1,
    "days": 1,
    "week": 7,
    "weeks": 7,
    "weekend": 7,
    "weekends": 7,
    "month": 30,
    "months": 30,
    "year": 365,
    "years": 365,
}

_SMALL = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_FUZZY = {"a": 1, "an": 1, "a couple of": 2, "a couple": 2, "couple of": 2, "a few": 3, "few": 3, "several": 3}
_ADVERBS = {"once": 1, "twice": 2, "thrice": 3}


# Words that may open a sentence capitalised without being a name: function words, greetings,
# interjections and the commonest sentence-initial verbs, adverbs and adjectives of chat text.
def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_COMMON = _wordset(
    """
    a about above after again against all also although always am an and another any anyway are as at
    be because been before being below besides between both but by can could did do does doing done down
    during each either else even ever every everything few for from further had has have having he her here
    hers herself him himself his how however i if in into is it its itself just let lets maybe me might more
    most much must my myself neither never next no nor not now of off often on once one only or other
    otherwise our ours ourselves out over own perhaps quite rather really same she should since so some
    something sometimes still such than that the their theirs them themselves then there these they this
    those though through thus to today tomorrow too under until up upon us very was we were what whatever
    when whenever where whether which while who whoever whom whose why will with within without would yet
    you your yours yourself yourselves yesterday tonight
    hey hi hello hiya howdy yo bye goodbye thanks thank thx cheers congrats congratulations wow whoa oh ooh
    ah aw aww awesome amazing great good nice cool sweet lovely glad sorry sure ok okay yes yeah yep yup nope
    nah hmm haha lol omg well right totally definitely absolutely exactly indeed true agreed alright welcome
    please sounds sound looks look seems seem love like hope wish guess think know bet mean feel felt glad
    happy excited exciting interesting incredible fantastic wonderful beautiful stunning impressive
    gotta gonna wanna same speaking talking anyway btw besides also plus sadly luckily hopefully honestly
    actually basically recently lately last first second finally then meanwhile later earlier soon just
    got get getting went go going gone had made make making took take taking saw see seeing tried try trying
    started start working work keep kept been having doing being let's that's it's i'm i've i'd i'll you're
    you've you'll he's she's we're we've they're there's here's what's who's how's can't don't didn't
    doesn't isn't wasn't won't wouldn't couldn't shouldn't haven't hasn't aren't
    mr mrs ms dr st
    """
)
_PLACE_CUES = _wordset("in at from to near visited visiting visit around across toward towards into")
_TITLES = _wordset("dr mr mrs ms st prof")

_NUMBER_WORD = "|".join(sorted([*_SMALL, *_TENS, *_SCALES], key=len, reverse=True))
_COUNT = (
    r"(?:\d+|"
    + "|".join(
        sorted(
            [*_SMALL, *_TENS, "a couple of", "a couple", "couple of", "a few", "few", "several", "an", "a"],
            key=len,
            reverse=True,
        )
    )
    + r")"
)
# "May" only capitalised (the verb is common); other months in any case.
_MONTH = r"(?:(?-i:May)|(?i:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r"))\.?"
_WEEKDAY = r"(?:" + "|".join(WEEKDAYS) + r")s?"
_ORD = r"(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d\d"

_DATE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("iso", re.compile(r"\b(?P<y>" + _YEAR + r")-(?P<m>\d\d?)-(?P<d>\d\d?)\b")),
    (
        "dmy",
        re.compile(
            r"\b(?P<d>\d\d?)" + _ORD + r"(?:\s+of)?\s+(?P<mon>" + _MONTH + r"),?\s+(?P<y>" + _YEAR + r")\b", re.I
        ),
    ),
    ("mdy", re.compile(r"\b(?P<mon>" + _MONTH + r")\s+(?P<d>\d\d?)" + _ORD + r",?\s+(?P<y>" + _YEAR + r")\b", re.I)),
    ("dm", re.compile(r"\b(?P<d>\d\d?)" + _ORD + r"(?:\s+of)?\s+(?P<mon>" + _MONTH + r")\b", re.I)),
    (
        "md",
        re.compile(r"\b(?P<mon>" + _MONTH + r")\s+(?P<d>\d\d?)" + _ORD + r"\b(?!\s*(?:,\s*)?(?:" + _YEAR + r"))", re.I),
    ),
    ("my", re.compile(r"\b(?P<mon>" + _MONTH + r"),?\s+(?P<y>" + _YEAR + r")\b", re.I)),
    ("ago", re.compile(r"\b(?P<n>" + _COUNT + r")\s+(?P<unit>days?|weeks?|weekends?|months?|years?)\s+ago\b", re.I)),
    ("in_n", re.compile(r"\bin\s+(?P<n>" + _COUNT + r")\s+(?P<unit>days?|weeks?|months?|years?)\b", re.I)),
    ("rel_unit", re.compile(r"\b(?P<rel>last|this|next|past|coming)\s+(?P<unit>week|weekend|month|year)\b", re.I)),
    ("rel_wd", re.compile(r"\b(?P<rel>last|this|next|on|past|coming)\s+(?P<wd>" + _WEEKDAY + r")\b", re.I)),
    (
        "rel_season",
        re.compile(r"\b(?P<rel>last|this|next|in|past)\s+(?P<season>spring|summer|fall|autumn|winter)\b", re.I),
    ),
    (
        "rel_month",
        re.compile(
            r"\b(?P<rel>last|this|next|in|since|during|early|late|mid)\s*-?\s*(?P<mon>" + _MONTH + r")\b(?!\s+\d)", re.I
        ),
    ),
    (
        "day_word",
        re.compile(
            r"\b(?P<w>the day before yesterday|yesterday|today|tonight|tomorrow|last night|this morning|"
            r"this afternoon|this evening|the other day|recently|lately|the other week)\b",
            re.I,
        ),
    ),
    ("year", re.compile(r"(?<![\d.,$£€])\b(?P<y>" + _YEAR + r")\b(?![\d.,]\d|\s*%)")),
    ("weekday", re.compile(r"\b(?P<wd>" + "|".join(d.capitalize() for d in WEEKDAYS) + r")s?\b")),
]


@dataclass(frozen=True, slots=True)
class DateSpan:
    """A time interval ``[start, end)`` a date expression refers to.

    Attributes:
        start: first instant (inclusive).
        end: instant after the last (exclusive).
        granularity: ``"day"``, ``"week"``, ``"month"``, ``"season"``, ``"year"`` or ``"fuzzy"`` (vague spans
            like ``"recently"``).
        relative: whether it was resolved against a reference time.
    """

    start: datetime
    end: datetime
    granularity: str = "day"
    relative: bool = False

    @property
    def label(self) -> str:
        """A short readable form: ``2023-05-07``, ``2023-05``, ``2023`` or ``start..end`` (inclusive days)."""
        last = self.end - _DAY
        if self.granularity == "day" and last.date() == self.start.date():
            return self.start.date().isoformat()
        if self.granularity == "month":
            return self.start.strftime("%Y-%m")
        if self.granularity == "year":
            return str(self.start.year)
        return f"{self.start.date().isoformat()}..{last.date().isoformat()}"

    def __str__(self) -> str:
        return self.label

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    def contains(self, when: datetime | float) -> bool:
        """Whether ``when`` (a datetime or epoch seconds) falls in the span."""
        ts = when if isinstance(when, int | float) else to_datetime(when).timestamp()
        return self.start_ts <= ts < self.end_ts

    def overlaps(self, other: DateSpan) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity found in a text.

    Attributes:
        text: the words as written.
        kind: one of :data:`KINDS`.
        start: offset of its first character.
        end: offset just past its last character.
        value: a :class:`DateSpan` for dates, a number for numbers, the cleaned name for names and places.
    """

    text: str
    kind: str
    start: int
    end: int
    value: Any = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Normalised identity: lowercase name (possessive and title dots dropped), a date label, a number."""
        if self.kind == "date":
            return self.value.label
        if self.kind == "number":
            v = self.value
            return str(int(v)) if float(v).is_integer() else f"{v:g}"
        return entity_key(self.text)


def entity_key(name: str) -> str:
    """The key names are merged under: lowercase, possessive ``'s`` and dots dropped, spaces collapsed.

    >>> entity_key("Dr. Seuss's")
    'dr seuss'
    """
    s = re.sub(r"['\u2019]s\b", "", name.strip())
    s = s.replace(".", " ").replace("\u2019", "'")
    return " ".join(s.lower().split())


# ---------------------------------------------------------------------- time helpers
_LOCOMO_TIME = re.compile(r"^\s*(\d{1,2}):(\d\d)\s*([ap]m)\s+on\s+(.+)$", re.I)


def to_datetime(value: datetime | date | float | int | str) -> datetime:
    """A timezone-aware datetime from a datetime, a date, epoch seconds or a string.

    Strings may be ISO 8601 (``"2023-05-08"``, ``"2023-05-08T13:56:00"``), or written dates like
    ``"8 May, 2023"``, ``"May 8, 2023"`` and ``"1:56 pm on 8 May, 2023"``.  Naive values are UTC.

    Raises:
        ValidationError: the value is not a time, or a string no format reads.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValidationError(f"time {value!r} is not a finite number of epoch seconds", input=value)
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        s = value.strip()
        try:
            return to_datetime(datetime.fromisoformat(s.replace("Z", "+00:00")))
        except ValueError:
            pass
        hour = minute = 0
        m = _LOCOMO_TIME.match(s)
        if m:
            hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
            minute = int(m.group(2))
            s = m.group(4)
        for kind in ("dmy", "mdy"):
            for name, pat in _DATE_PATTERNS:
                if name == kind and (dm := pat.fullmatch(s.strip().rstrip("."))):
                    d = _ymd(dm)
                    if d is not None:
                        return datetime(d.year, d.month, d.day, hour, minute, tzinfo=UTC)
    raise ValidationError(
        f"cannot read {value!r} as a time",
        input=value,
        hint="pass a datetime, epoch seconds, an ISO date ('2023-05-08') or a date like '8 May, 2023'",
    )


def _ymd(m: re.Match[str]) -> date | None:
    try:
        return date(int(m.group("y")), _month(m.group("mon")), int(m.group("d")))
    except (ValueError, KeyError):
        return None


def _month(text: str) -> int:
    t = text.lower().rstrip(".")
    return 5 if t == "may" else MONTHS[t]


def _midnight(d: datetime) -> datetime:
    return d.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_span(d: datetime, days: int = 1, granularity: str = "day", relative: bool = True) -> DateSpan:
    s = _midnight(d)
    return DateSpan(s, s + timedelta(days=days), granularity, relative)


def _month_span(year: int, month: int, tz: Any, relative: bool) -> DateSpan:
    s = datetime(year, month, 1, tzinfo=tz)
    e = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return DateSpan(s, e, "month", relative)


def _year_span(year: int, tz: Any, relative: bool) -> DateSpan:
    return DateSpan(datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz), "year", relative)


def _week_of(d: datetime) -> datetime:
    return _midnight(d) - timedelta(days=d.weekday())


def _count(text: str) -> float | None:
    t = " ".join(text.lower().split())
    if t in _FUZZY:
        return _FUZZY[t]
    if t.isdigit():
        return int(t)
    return _words_to_number(t)


def _words_to_number(text: str) -> float | None:
    total = current = 0
    seen = False
    for w in re.split(r"[\s-]+", text.lower()):
        if not w or w == "and":
            continue
        if w in _SMALL:
            current += _SMALL[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in _SCALES:
            scale = _SCALES[w]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * scale
                current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _resolve(name: str, m: re.Match[str], ref: datetime | None) -> DateSpan | None:
    """The span of one date match, or ``None`` when it needs a reference time it lacks (or is impossible)."""
    tz = ref.tzinfo if ref is not None else UTC
    g = m.groupdict()
    if name in ("iso", "dmy", "mdy"):
        try:
            d = date(int(g["y"]), int(g["m"]) if name == "iso" else _month(g["mon"]), int(g["d"]))
        except (ValueError, KeyError):
            return None
        return _day_span(datetime(d.year, d.month, d.day, tzinfo=tz), relative=False)
    if name == "my":
        return _month_span(int(g["y"]), _month(g["mon"]), tz, False)
    if name == "year":
        return _year_span(int(g["y"]), tz, False)
    if ref is None:
        return None
    if name in ("dm", "md"):
        try:
            d = datetime(ref.year, _month(g["mon"]), int(g["d"]), tzinfo=tz)
        except (ValueError, KeyError):
            return None
        if d > ref + timedelta(days=31):  # a date well after "now" without a year is last year's
            d = d.replace(year=d.year - 1)
        return _day_span(d)
    if name == "ago":
        n = _count(g["n"])
        if n is None:
            return None
        unit = g["unit"].lower()
        if unit.startswith("day"):
            if g["n"].lower() in ("a few", "few", "several"):
                return DateSpan(_midnight(ref) - timedelta(days=5), _midnight(ref) - timedelta(days=1), "fuzzy", True)
            return _day_span(ref - timedelta(days=n))
        if unit.startswith("week"):  # the seven days around that day
            start = _midnight(ref) - timedelta(days=7 * n + 3)
            return DateSpan(start, start + timedelta(days=7), "week", True)
        if unit.startswith("month"):
            y, mo = divmod(ref.year * 12 + ref.month - 1 - int(n), 12)
            return _month_span(y, mo + 1, tz, True)
        return _year_span(ref.year - int(n), tz, True)
    if name == "in_n":
        n = _count(g["n"])
        if n is None:
            return None
        days = _UNITS[g["unit"].lower()] * n
        return DateSpan(
            _midnight(ref + timedelta(days=days)) - timedelta(days=max(1, days // 7)),
            _midnight(ref + timedelta(days=days)) + timedelta(days=max(1, days // 7)),
            "fuzzy",
            True,
        )
    if name == "rel_unit":
        rel, unit = g["rel"].lower(), g["unit"].lower()
        shift = {"last": -1, "past": -1, "this": 0, "next": 1, "coming": 1}[rel]
        if unit == "week":
            if rel == "past":
                return DateSpan(_midnight(ref) - timedelta(days=7), _midnight(ref) + _DAY, "fuzzy", True)
            start = _week_of(ref) + timedelta(days=7 * shift)
            return DateSpan(start, start + timedelta(days=7), "week", True)
        if unit == "weekend":
            sat = _week_of(ref) + timedelta(days=5)  # this week's Saturday
            sat += timedelta(days=7 * shift) if rel != "coming" else timedelta(0)
            return DateSpan(sat, sat + timedelta(days=2), "week", True)
        if unit == "month":
            y, mo = divmod(ref.year * 12 + ref.month - 1 + shift, 12)
            return _month_span(y, mo + 1, tz, True)
        return _year_span(ref.year + shift, tz, True)
    if name in ("rel_wd", "weekday"):
        wd = WEEKDAYS[g["wd"].lower().rstrip("s") if g["wd"].lower().rstrip("s") in WEEKDAYS else g["wd"].lower()]
        rel = (g.get("rel") or "on").lower()
        today = _midnight(ref)
        back = (today.weekday() - wd) % 7
        if rel in ("next", "coming"):
            ahead = (wd - today.weekday()) % 7 or 7
            return _day_span(today + timedelta(days=ahead))
        if rel == "this":
            return _day_span(_week_of(ref) + timedelta(days=wd))
        # "last"/"on"/"past"/bare: the most recent such day before today (today itself for "on")
        if back == 0 and rel != "on":
            back = 7
        return _day_span(today - timedelta(days=back))
    if name == "rel_season":
        rel, season = g["rel"].lower(), g["season"].lower()
        first, last = SEASONS[season]

        def occurrence(y: int) -> DateSpan:  # the season that starts in year y
            end_y, end_m = (y + 1, 3) if season == "winter" else (y, last + 1)
            return DateSpan(datetime(y, first, 1, tzinfo=tz), datetime(end_y, end_m, 1, tzinfo=tz), "season", True)

        spans = [occurrence(y) for y in range(ref.year - 2, ref.year + 2)]
        if rel in ("last", "past"):
            return [x for x in spans if x.end <= ref][-1]
        if rel == "next":
            return next(x for x in spans if x.start > ref)
        return [x for x in spans if x.start <= ref][-1]  # this/in: the current or most recent one
    if name == "rel_month":
        rel = g["rel"].lower()
        mo = _month(g["mon"])
        year = ref.year
        if rel == "last":
            year = year - 1 if mo >= ref.month else year
        elif rel == "next":
            year = year + 1 if mo <= ref.month else year
        elif mo > ref.month + 1:  # "in June" said in March: last June unless it is the coming one
            year -= 1
        return _month_span(year, mo, tz, True)
    if name == "day_word":
        w = " ".join(g["w"].lower().split())
        today = _midnight(ref)
        if w in ("today", "tonight", "this morning", "this afternoon", "this evening"):
            return _day_span(today)
        if w in ("yesterday", "last night"):
            return _day_span(today - _DAY)
        if w == "the day before yesterday":
            return _day_span(today - 2 * _DAY)
        if w == "tomorrow":
            return _day_span(today + _DAY)
        if w in ("the other day", "the other week"):
            return DateSpan(today - timedelta(days=10), today, "fuzzy", True)
        return DateSpan(today - timedelta(days=30), today + _DAY, "fuzzy", True)  # recently, lately
    return None


def parse_dates(text: str, ref: datetime | date | float | str | None = None) -> list[Entity]:
    """The date expressions of ``text`` as ``date`` entities whose ``value`` is a :class:`DateSpan`.

    Longer expressions win over the shorter ones inside them (``"8 May, 2023"`` is one date,
    not a day-month and a year).  Expressions that need a reference time are skipped when
    ``ref`` is ``None``.

    Raises:
        ValidationError: ``text`` is not a string or ``ref`` is not a time.
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a str, not {type(text).__name__}", input=text)
    r = to_datetime(ref) if ref is not None else None
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []
    for name, pat in _DATE_PATTERNS:
        for m in pat.finditer(text):
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            span = _resolve(name, m, r)
            if span is None:
                continue
            taken.append((s, e))
            found.append(Entity(m.group(0), "date", s, e, span))
    return sorted(found, key=lambda x: x.start)


_NUM_RE = re.compile(
    r"(?<![\w.])(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w])"
    r"|\b(?P<words>(?:(?:" + _NUMBER_WORD + r")(?:[\s-]+(?:and[\s-]+)?)?)+)\b"
    r"|\b(?P<adv>once|twice|thrice|a couple|a few|several)\b",
    re.I,
)


def parse_numbers(text: str) -> list[Entity]:
    """Numbers written with digits or words, as ``number`` entities with their value.

    >>> [(e.text, e.value) for e in parse_numbers("two dogs, 1,200 steps and twenty-one days")]
    [('two', 2), ('1,200', 1200), ('twenty-one', 21)]
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a str, not {type(text).__name__}", input=text)
    out = []
    for m in _NUM_RE.finditer(text):
        if m.group("digits"):
            raw = m.group("digits")
            v = float(raw.replace(",", ""))
            value: float | int = int(v) if v.is_integer() else v
            out.append(Entity(raw, "number", m.start(), m.end(), value))
        elif m.group("words"):
            raw = m.group("words").strip(" -")
            raw = re.sub(r"[\s-]+and$", "", raw)
            if raw.lower() in ("one",):  # "one" is mostly a pronoun ("the red one")
                continue
            n = _words_to_number(raw)
            if n is not None:
                out.append(Entity(raw, "number", m.start(), m.start() + len(raw), n))
        else:
            raw = m.group("adv")
            n = _ADVERBS.get(raw.lower(), _FUZZY.get(raw.lower()))
            out.append(Entity(raw, "number", m.start(), m.end(), n))
    return out


_CAP_WORD = r"(?:(?:Dr|Mr|Mrs|Ms|St|Prof)\.|[A-Z][\w'\u2019&-]*|[A-Z]\.)"
_NAME_RUN = re.compile(
    r"(?<![\w'\u2019])(?P<run>" + _CAP_WORD + r"(?:\s+(?:of|the|de|van|von|and|&)?\s*" + _CAP_WORD + r")*)"
)
_SENTENCE_START = re.compile(r"(?:^|[.!?…]\s+|[:;]\s+|\n\s*|[\"“(\[]\s*)$")


def _names(text: str, taken: list[tuple[int, int]]) -> list[Entity]:
    out: list[Entity] = []
    for m in _NAME_RUN.finditer(text):
        s, e = m.span("run")
        run = m.group("run")
        words = run.split()
        # a run that opens a sentence loses its leading common words ("Thanks Caroline" -> "Caroline")
        opening = bool(_SENTENCE_START.search(text[:s]))
        while words and (
            (
                words[0].lower().strip("'\u2019") in _COMMON
                and (opening or words[0].lower() in ("i", "i'm", "i've", "i'd", "i'll"))
            )
            or words[0].lower().rstrip(".") in MONTHS
            or words[0].lower().rstrip("s") in WEEKDAYS
            or words[0] in ("May",)
        ):
            s = text.index(words[0], s) + len(words[0])
            s += len(text[s:]) - len(text[s:].lstrip())
            words = words[1:]
            opening = False
        # trailing connectors and dates leave the run
        while words and (
            words[-1].lower() in ("of", "the", "de", "and", "&")
            or words[-1].lower().rstrip(".") in MONTHS
            or words[-1] == "May"
            or words[-1].lower().rstrip("s") in WEEKDAYS
        ):
            words = words[:-1]
        if not words:
            continue
        name = " ".join(words)
        e = s + len(name) if text[s : s + len(name)] == name else e
        name = name.rstrip(".")
        if re.fullmatch(r"[A-Z]\.?|I", name) or name.lower() in _COMMON or name.lower().rstrip(".") in _TITLES:
            continue
        if any(s < te and ts < e for ts, te in taken):
            continue
        before = text[:s].split()
        kind = "place" if before and before[-1].lower().strip(",") in _PLACE_CUES else "name"
        clean = re.sub(r"['\u2019]s$", "", name)
        out.append(Entity(name, kind, s, s + len(name), clean))
    return out


def extract_entities(
    text: str,
    ref: datetime | date | float | str | None = None,
    *,
    kinds: Iterable[str] = KINDS,
) -> list[Entity]:
    """Every entity of ``text`` (of the given ``kinds``), in order of position.

    Args:
        text: any text; a ``"Speaker: ..."`` prefix is read as the opening of a sentence.
        ref: the time the text was written, for relative dates (``None``: only absolute dates).
        kinds: which of :data:`KINDS` to find.

    Raises:
        ValidationError: ``text`` is not a string, an unknown kind, or ``ref`` is not a time.
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a str, not {type(text).__name__}", input=text)
    want = set([kinds] if isinstance(kinds, str) else kinds)
    if bad := want - set(KINDS):
        raise ValidationError(f"unknown entity kinds {sorted(bad)}", input=sorted(bad), hint=f"use some of {KINDS}")
    dates = parse_dates(text, ref)
    taken = [(d.start, d.end) for d in dates]
    out: list[Entity] = [d for d in dates if "date" in want]
    if "number" in want:
        out += [n for n in parse_numbers(text) if not any(n.start < te and ts < n.end for ts, te in taken)]
    if want & {"name", "place"}:
        out += [x for x in _names(text, taken) if x.kind in want]
    return sorted(out, key=lambda x: (x.start, x.end))
