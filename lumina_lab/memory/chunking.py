"""Split documents into overlapping chunks for embedding, along the boundaries their kind suggests.

:func:`chunk` cuts a text into :class:`Chunk` objects of at most ``size``
tokens that together cover every character, consecutive chunks sharing about
``overlap`` tokens.  Where it cuts depends on the kind of text (:func:`detect_kind`
guesses it):

=============  ======================================================================
``prose``      paragraphs, then sentences, lines, words
``markdown``   headings (sections), then blocks (fenced code kept whole), lines, sentences, words
``code``       top-level definitions (with their decorators and comments), then blank
               lines, lines, words
``dialogue``   turns (``Name: ...`` lines), then paragraphs, sentences, words
``table``      rows, never inside one; every chunk repeats the header row(s)
=============  ======================================================================

A unit of one level that does not fit is cut at the next level; what still
does not fit after words is cut between characters, so only a table row (which
is never cut) can exceed ``size``.  Units are then packed greedily: a chunk
takes whole units while they fit.  Tokens are counted as ``ceil(chars / 4)``
(the rule of :func:`lumina_lab.providers.cost.estimate_tokens`) unless a
``length`` function is given, e.g. a real tokenizer's.  Same input, same chunks.

>>> [c.text for c in chunk("One. Two three.\\n\\nFour five six seven.", size=5, overlap=0)]
['One. Two three.\\n\\n', 'Four five six seven.']
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import ValidationError

__all__ = ["KINDS", "Chunk", "chunk", "detect_kind", "estimate_tokens"]

Kind = Literal["prose", "dialogue", "code", "markdown", "table"]
#: The kinds of text :func:`chunk` knows (plus ``"auto"``: :func:`detect_kind`).
KINDS: tuple[str, ...] = ("prose", "dialogue", "code", "markdown", "table")

_PARAGRAPH = re.compile(r"\n(?:[ \t]*\n)+")  # blank lines; the next unit starts at its line's start (indent kept)
_SENTENCE = re.compile(
    r"""(?<=[.!?\u2026])["'\u201d\u2019)\]]*\s+|(?<=[\u3002\uff01\uff1f])[\u300d\u300f\u201d)]*\s*"""
)
_LINE = re.compile(r"\n")
_WORD = re.compile(r"\s+")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)", re.M)
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.M)
_TOP_DEF = re.compile(
    r"^(?:(?:async\s+def|def|class|function|func|fn|impl|struct|enum|trait|interface|module|package|type)\b"
    r"|(?:pub(?:\([\w:]+\))?|export|public|private|protected|static)\s"
    r"|(?:const|let|var)\s+\w+\s*=\s*(?:async\s*)?(?:\(|function\b)"
    r"|if\s+__name__\b)",
    re.M,
)
_NESTED_DEF = re.compile(r"^[ \t]+(?:async\s+def|def|class|function|fn|func|pub\s+fn)\b", re.M)
_PREFIX_LINE = re.compile(r"[ \t]*(?:@|#|//|/\*|\*|--)")  # decorators and comments belong to the definition below
_TURN = re.compile(
    r"^[ \t]*(?:\*\*)?(?:[A-Z][\w'.\-]*(?:[ \t][A-Z][\w'.\-]*){0,3}|user|assistant|system|human|ai|bot)"
    r"(?:\*\*)?[ \t]*:(?:\*\*)?(?:[ \t]|$)",
    re.M,
)
_CODE_LINE = re.compile(
    r"^\s*(?:(?:def|class|import|return|elif|else|for|while|try|except|finally|with|async|await|yield|raise|"
    r"const|let|var|function|fn|pub|use|package|func|public|private|protected|static|struct|enum|impl|"
    r"interface|switch|case|break|continue)\b|from\s+[\w.]+\s+import\b|#include\b|if\s*\(|@\w+)"
    r"|[{};]\s*$|^\s*[}\])]+[;,]?\s*$"
)
_MD_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")


def estimate_tokens(text: str) -> int:
    """About one token per four characters (rounded up): the library-wide rule of thumb."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a document.

    Attributes:
        text: the chunk's text: ``source[start:end]``, except table chunks after the first,
            which are the header row(s) followed by ``source[start:end]``.
        start: offset of its first character in the source (overlap included).
        end: offset just past its last character.
        index: its position in the document's chunk list (0, 1, ...).
        kind: the kind of text it was cut as (``prose``, ``code``, ...).
    """

    text: str
    start: int
    end: int
    index: int
    kind: str

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"Chunk(index={self.index}, kind={self.kind!r}, start={self.start}, end={self.end}, text={preview!r})"


# ---------------------------------------------------------------------- detection


def _is_table(lines: list[str]) -> bool:
    if len(lines) < 2:
        return False
    piped = sum(1 for ln in lines if ln.strip().startswith("|") and ln.strip().endswith("|"))
    if piped >= 0.8 * len(lines):
        return True
    if len(lines) < 3:
        return False
    sentences = sum(1 for ln in lines if ln.rstrip().endswith((".", "!", "?")))
    for delim in ("\t", "|", ",", ";"):
        if delim in ",;" and sentences > 0.05 * len(lines):  # prose with commas, not rows
            continue
        width = lines[0].count(delim)
        if width >= 1 and sum(1 for ln in lines if ln.count(delim) == width) >= 0.9 * len(lines):
            return True
    return False


def detect_kind(text: str) -> Kind:
    """Guess what ``text`` is: ``table``, ``code``, ``markdown``, ``dialogue`` or (by default) ``prose``.

    * markdown: a fenced block, or headings (``# Title``) in a text that is not mostly code;
    * table: most lines start and end with ``|``, or nine lines in ten carry the same number
      (at least one) of tabs, commas, semicolons or pipes;
    * code: at least 30% of the lines look like code (keywords such as ``def``/``return``/``import``
      at the start, or ``{``, ``}``, ``;`` at the end);
    * dialogue: at least two turns (``Name: ...`` lines) by at least two speakers, making up
      40% of the lines.
    """
    if not isinstance(text, str):
        raise ValidationError(f"detect_kind() takes a str, not {type(text).__name__}", input=text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "prose"
    if _FENCE.search(text):
        return "markdown"
    if _is_table(lines):
        return "table"
    code = sum(1 for ln in lines if _CODE_LINE.search(ln))
    if code >= 2 and code >= 0.3 * len(lines):
        return "code"
    if _HEADING.search(text):
        return "markdown"
    speakers = [m.group(0).strip(" \t*:").lower() for ln in lines if (m := _TURN.match(ln))]
    if len(speakers) >= 2 and len(set(speakers)) >= 2 and len(speakers) >= 0.4 * len(lines):
        return "dialogue"
    return "prose"


# ---------------------------------------------------------------------- cut points
# A cutter returns the offsets strictly inside (s, e) where a unit may end; separators stay with the unit before.

Cutter = Callable[[str, int, int], list[int]]


def _after(pattern: re.Pattern[str]) -> Cutter:
    """Cut after each match of ``pattern`` (the separator ends the unit before)."""

    def cut(text: str, s: int, e: int) -> list[int]:
        return [m.end() for m in pattern.finditer(text, s, e) if s < m.end() < e]

    return cut


def _before(pattern: re.Pattern[str]) -> Cutter:
    """Cut before each match of ``pattern`` (a heading or a turn starts a unit)."""

    def cut(text: str, s: int, e: int) -> list[int]:
        return [m.start() for m in pattern.finditer(text, s, e) if s < m.start() < e]

    return cut


def _fences(text: str) -> list[tuple[int, int]]:
    """Spans of fenced code blocks (an unclosed fence runs to the end)."""
    spans: list[tuple[int, int]] = []
    opened: tuple[int, str] | None = None
    for m in _FENCE.finditer(text):
        if opened is None:
            opened = (m.start(), m.group(1))
        elif m.group(1) == opened[1]:
            spans.append((opened[0], text.find("\n", m.end()) + 1 or len(text)))
            opened = None
    if opened is not None:
        spans.append((opened[0], len(text)))
    return spans


def _outside(cutter: Cutter, fences: list[tuple[int, int]]) -> Cutter:
    """``cutter``, without the cuts that fall strictly inside a fenced block."""
    if not fences:
        return cutter
    starts = [f[0] for f in fences]

    def cut(text: str, s: int, e: int) -> list[int]:
        keep = []
        for p in cutter(text, s, e):
            i = bisect.bisect_right(starts, p - 1) - 1  # the last fence opened before p
            if i < 0 or not fences[i][0] < p < fences[i][1]:
                keep.append(p)
        return keep

    return cut


def _definitions(text: str, s: int, e: int) -> list[int]:
    """Cut before top-level definitions, moving up over the decorators and comments right above them."""
    cuts = []
    for m in _TOP_DEF.finditer(text, s, e):
        p = m.start()
        while p > s:
            prev = text.rfind("\n", s, p - 1) + 1  # start of the line above
            line = text[max(prev, s) : p - 1]
            if not line.strip() or not _PREFIX_LINE.match(line):
                break
            p = max(prev, s)
        if s < p < e and (not cuts or cuts[-1] != p):
            cuts.append(p)
    return cuts


_LEVELS: dict[str, list[Cutter]] = {
    "prose": [_after(_PARAGRAPH), _after(_SENTENCE), _after(_LINE), _after(_WORD)],
    "dialogue": [_before(_TURN), _after(_PARAGRAPH), _after(_SENTENCE), _after(_WORD)],
    "code": [_definitions, _after(_PARAGRAPH), _before(_NESTED_DEF), _after(_LINE), _after(_WORD)],
}


# ---------------------------------------------------------------------- splitting and packing


class _Measure:
    """Token counts of spans of one text (O(1) for the default rule)."""

    def __init__(self, text: str, length: Callable[[str], int] | None) -> None:
        self.text = text
        self.length = length

    def __call__(self, s: int, e: int) -> int:
        if self.length is None:
            return -(-(e - s) // 4)
        return int(self.length(self.text[s:e]))


def _hard_cuts(measure: _Measure, s: int, e: int, size: int) -> list[tuple[int, int]]:
    """Cut ``[s, e)`` between characters into pieces of at most ``size`` tokens (at least one character each)."""
    pieces = []
    while s < e:
        if measure.length is None:
            end = min(e, s + 4 * size)
        else:  # the longest prefix that fits (token counts grow with the span)
            lo, hi = s + 1, e
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if measure(s, mid) <= size:
                    lo = mid
                else:
                    hi = mid - 1
            end = lo
        pieces.append((s, end))
        s = end
    return pieces


def _split(
    text: str, s: int, e: int, levels: list[Cutter], size: int, measure: _Measure, hard: int
) -> list[tuple[int, int]]:
    """``[s, e)`` as consecutive pieces of at most ``size`` tokens, cut at the coarsest level that works;
    text with no boundary left is cut into pieces of ``hard`` tokens (``size - overlap``, so overlap fits)."""
    if measure(s, e) <= size:
        return [(s, e)]
    for depth, cutter in enumerate(levels):
        cuts = cutter(text, s, e)
        if cuts:
            pieces: list[tuple[int, int]] = []
            bounds = [s, *cuts, e]
            for a, b in itertools.pairwise(bounds):
                pieces.extend(_split(text, a, b, levels[depth + 1 :], size, measure, hard))
            return pieces
    return _hard_cuts(measure, s, e, hard)


def _first_fit(candidates: list[int], pos: int, overlap: int, measure: _Measure) -> int | None:
    """The first of the ascending ``candidates`` whose span up to ``pos`` has at most ``overlap`` tokens."""
    # token counts shrink as the start moves right: bisect on "fits"
    i = bisect.bisect_left(candidates, True, key=lambda c: measure(c, pos) <= overlap)
    return candidates[i] if i < len(candidates) else None


def _overlap_start(text: str, lo: int, pos: int, overlap: int, measure: _Measure, *, lines: bool = False) -> int:
    """The earliest word start (with ``lines``: line start, if one fits) in ``(lo, pos]`` whose span up
    to ``pos`` has at most ``overlap`` tokens; ``pos`` (no overlap) if none."""
    window = text[lo:pos]
    if lines:
        found = _first_fit([lo + m.end() for m in _LINE.finditer(window) if lo + m.end() < pos], pos, overlap, measure)
        if found is not None:
            return found
    if _WORD.search(window):
        candidates = [lo + m.end() for m in _WORD.finditer(window) if lo + m.end() < pos]
    else:  # no spaces (e.g. Chinese): any character
        candidates = list(range(lo + 1, pos))
    found = _first_fit(candidates, pos, overlap, measure)
    return pos if found is None else found


def _pack(
    text: str, pieces: list[tuple[int, int]], size: int, overlap: int, measure: _Measure, *, lines: bool = False
) -> list[tuple[int, int]]:
    """Greedy packing of consecutive pieces into spans of at most ``size`` tokens, with overlap."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(pieces)
    while i < n:
        pos, end = pieces[i]
        start = pos
        if spans and overlap > 0:
            budget = min(overlap, max(size - measure(pos, end), 0))
            start = _overlap_start(text, spans[-1][0], pos, budget, measure, lines=lines)
            if measure(start, end) > size:  # a length function that is not subadditive
                start = pos
        i += 1
        while i < n and measure(start, pieces[i][1]) <= size:
            end = pieces[i][1]
            i += 1
        spans.append((start, end))
    return spans


def _table_chunks(text: str, size: int, overlap: int, measure: _Measure) -> list[Chunk]:
    """Rows packed under a repeated header; a row is never cut."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))
    first = next((i for i, ln in enumerate(lines) if ln.strip()), 0)  # blank lines above go with the header
    h = first + 1
    if h < len(lines) and _MD_TABLE_SEP.match(lines[h]):
        h += 1
    header_end = offsets[h]
    header = text[:header_end]
    if header and not header.endswith("\n"):
        header += "\n"
    # rows: each line, with any blank lines after it
    rows: list[tuple[int, int]] = []
    for i in range(h, len(lines)):
        if rows and not lines[i].strip():
            rows[-1] = (rows[-1][0], offsets[i + 1])
        else:
            rows.append((offsets[i], offsets[i + 1]))
    if not rows:
        return [Chunk(text, 0, len(text), 0, "table")]

    def cost(s: int, e: int) -> int:
        return measure(0, header_end) + measure(s, e) if s >= header_end else measure(0, e)

    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(rows):
        start = 0 if not spans else rows[i][0]
        if spans and overlap > 0:  # whole rows of the chunk before, up to `overlap` tokens
            j = i
            while j - 1 >= 0 and rows[j - 1][0] > spans[-1][0] and rows[j - 1][0] >= header_end:
                if measure(rows[j - 1][0], rows[i][0]) > overlap or cost(rows[j - 1][0], rows[i][1]) > size:
                    break
                j -= 1
            start = rows[j][0]
        end = rows[i][1]
        i += 1
        while i < len(rows) and cost(start, rows[i][1]) <= size:
            end = rows[i][1]
            i += 1
        spans.append((start, end))
    return [
        Chunk(text[s:e] if s < header_end else header + text[s:e], s, e, k, "table") for k, (s, e) in enumerate(spans)
    ]


def chunk(
    text: str,
    size: int = 256,
    overlap: int = 32,
    kind: str = "auto",
    *,
    length: Callable[[str], int] | None = None,
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``size`` tokens, consecutive ones sharing up to ``overlap``.

    Guarantees: every character of ``text`` is in at least one chunk; chunks are in order
    (``start`` and ``end`` strictly increase); each has at most ``size`` tokens, except a
    table row too long on its own (with its header); each chunk after the first starts
    at most ``overlap`` tokens before the end of the one before (less when the overlap
    and the next unit would not fit together), at a word start; the result depends only on the
    arguments.  An empty text has no chunks.

    Args:
        text: the document.
        size: most tokens per chunk (the default 256 is all-MiniLM-L6-v2's window).
        overlap: tokens repeated from the end of one chunk at the start of the next
            (``0 <= overlap < size``); tables repeat whole rows.
        kind: ``"auto"`` (see :func:`detect_kind`) or one of :data:`KINDS`.
        length: counts the tokens of a string (default: :func:`estimate_tokens`); it must
            not decrease when a string grows.

    Raises:
        ValidationError: a non-string text, or a bad ``size``, ``overlap`` or ``kind``.
    """
    if not isinstance(text, str):
        raise ValidationError(f"chunk() takes a str, not {type(text).__name__}", input=text)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValidationError(f"size={size!r} must be a positive integer (tokens)", input=size)
    if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap < size:
        raise ValidationError(f"overlap={overlap!r} must be an integer with 0 <= overlap < size={size}", input=overlap)
    if kind != "auto" and kind not in KINDS:
        raise ValidationError(
            f"kind={kind!r} is not a kind of text I know",
            input=kind,
            hint="use 'auto' or one of " + ", ".join(repr(k) for k in KINDS),
        )
    if length is not None and not callable(length):
        raise ValidationError(f"length={length!r} must be a function str -> int", input=length)
    if not text:
        return []
    resolved = detect_kind(text) if kind == "auto" else kind
    measure = _Measure(text, length)
    if resolved == "table":
        return _table_chunks(text, size, overlap, measure)
    if resolved == "markdown":
        fences = _fences(text)
        levels = [
            _outside(_before(_HEADING), fences),
            _outside(_after(_PARAGRAPH), fences),
            _after(_LINE),
            _after(_SENTENCE),
            _after(_WORD),
        ]
    else:
        levels = _LEVELS[resolved]
    pieces = _split(text, 0, len(text), levels, size, measure, max(size - overlap, 1))
    spans = _pack(text, pieces, size, overlap, measure, lines=resolved == "code")
    return [Chunk(text[s:e], s, e, k, resolved) for k, (s, e) in enumerate(spans)]
