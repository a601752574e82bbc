"""chunk(): chunks cover the text, respect the size, overlap as asked, cut where each kind of text
suggests (paragraphs, definitions, headings, turns, table rows with the header repeated), and are
deterministic; detect_kind() recognises each kind."""

from __future__ import annotations

import itertools

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory.chunking import KINDS, Chunk, chunk, detect_kind, estimate_tokens

pytestmark = pytest.mark.timeout(30)

PROSE = """The history of the duck is long. Ducks lay eggs every day! Do they sell them at the market? Janet does.

She keeps sixteen ducks in a pen behind the barn; every morning she collects the eggs, eats three for \
breakfast and bakes muffins with four.
The rest go to the farmers' market, where she sells them for two dollars each.

A third paragraph follows with enough words to make it reasonably long, long enough to need cutting."""

CODE = '''import os
import sys


def add(a, b):
    """Add two numbers."""
    return a + b


@decorator
# a comment about the class
class Greeter:
    def __init__(self, name):
        self.name = name

    def greet(self):
        return f"hello {self.name}"


if __name__ == "__main__":
    print(add(1, 2))
'''

MARKDOWN = """# Title

Intro paragraph with some words in it.

## Section one

Text of section one. More text here.

```python
# not a heading
def f():
    return 1
```

## Section two

- item one
- item two
"""

DIALOGUE = """Alice: Hi Bob, how are you today?
Bob: I'm fine, thanks. And you?
Alice: Great. Did you see the game last night? It was amazing, the last minute goal was incredible.
Bob: No, I missed it.
"""

TABLE = "| name | age |\n|---|---|\n" + "".join(f"| person{i} | {20 + i} |\n" for i in range(30))
CSV = "name,age,city\n" + "".join(f"p{i},{i},town{i}\n" for i in range(40))
CJK = "这是一个很长的中文句子。" * 30
ONE_WORD = "x" * 500

DOCS = {
    "prose": PROSE,
    "code": CODE,
    "markdown": MARKDOWN,
    "dialogue": DIALOGUE,
    "table": TABLE,
    "csv": CSV,
    "cjk": CJK,
    "one_word": ONE_WORD,
}


def check(text: str, chunks: list[Chunk], size: int, overlap: int) -> None:
    """The guarantees of chunk()."""
    covered = [False] * len(text)
    for k, c in enumerate(chunks):
        assert c.index == k
        for i in range(c.start, c.end):
            covered[i] = True
        if c.kind == "table" and k > 0:
            assert c.text.endswith(text[c.start : c.end]) and len(c.text) > c.end - c.start
        else:
            assert c.text == text[c.start : c.end]
        if estimate_tokens(c.text) > size:  # only a table row too long on its own (after its header)
            assert c.kind == "table" and len(text[max(c.start, text.index("\n") + 1) : c.end].splitlines()) <= 2, c
    assert all(covered)
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start and a.end < b.end
        assert b.start <= a.end  # no gap
        assert estimate_tokens(text[b.start : a.end]) <= overlap


@pytest.mark.parametrize("name", sorted(DOCS))
@pytest.mark.parametrize(("size", "overlap"), [(3, 0), (3, 2), (8, 2), (20, 0), (20, 5), (50, 10), (400, 64)])
def test_guarantees(name: str, size: int, overlap: int) -> None:
    text = DOCS[name]
    chunks = chunk(text, size=size, overlap=overlap)
    check(text, chunks, size, overlap)
    assert chunk(text, size=size, overlap=overlap) == chunks  # deterministic


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_on_every_text(kind: str) -> None:
    for text in DOCS.values():
        check(text, chunk(text, size=16, overlap=4, kind=kind), 16 if kind != "table" else 10**9, 4)


def test_detect_kind() -> None:
    assert detect_kind(PROSE) == "prose"
    assert detect_kind(CODE) == "code"
    assert detect_kind(MARKDOWN) == "markdown"
    assert detect_kind(DIALOGUE) == "dialogue"
    assert detect_kind(TABLE) == "table"
    assert detect_kind(CSV) == "table"
    assert detect_kind("a\tb\n1\t2\n3\t4\n") == "table"
    assert detect_kind("function f(x) {\n  return x + 1;\n}\n") == "code"
    assert detect_kind("# Title\n\nSome text.") == "markdown"
    assert detect_kind("Note: this is one remark in prose.\nIt goes on.") == "prose"
    assert detect_kind("Hello, world. Fine, thanks.\nYes, indeed.\nWell, ok.") == "prose"  # commas in sentences
    assert detect_kind("") == "prose" and detect_kind("   \n") == "prose"
    with pytest.raises(ValidationError):
        detect_kind(None)  # type: ignore[arg-type]


def test_overlap_is_used_when_possible() -> None:
    chunks = chunk(PROSE, size=30, overlap=8)
    assert len(chunks) >= 3
    shared = [estimate_tokens(PROSE[b.start : a.end]) for a, b in itertools.pairwise(chunks)]
    assert all(s >= 4 for s in shared), shared  # word-granular, so a little under 8
    assert all(PROSE[c.start - 1].isspace() for c in chunks[1:])  # overlaps start at a word
    no_overlap = chunk(PROSE, size=30, overlap=0)
    assert all(a.end == b.start for a, b in itertools.pairwise(no_overlap))


def test_prose_cuts_at_paragraphs_first() -> None:
    chunks = chunk(PROSE, size=60, overlap=0)
    assert chunks[0].text.endswith("Janet does.\n\n")
    assert all(c.text.rstrip()[-1] in ".!?" for c in chunks)  # whole sentences


def test_code_cuts_before_definitions_with_their_decorators() -> None:
    chunks = chunk(CODE, size=16, overlap=0)
    starts = [c.text.split("\n", 1)[0] for c in chunks]
    assert starts[:3] == ["import os", "def add(a, b):", "@decorator"]
    assert all(CODE[c.start - 1] == "\n" for c in chunks[1:])  # whole lines
    assert all(c.kind == "code" for c in chunks)
    # overlaps start at a line
    for c in chunk(CODE, size=30, overlap=8)[1:]:
        assert CODE[c.start - 1] == "\n"


def test_markdown_cuts_at_headings_not_inside_fences() -> None:
    chunks = chunk(MARKDOWN, size=30, overlap=0)
    heads = [c.text.split("\n", 1)[0] for c in chunks]
    assert "## Section one" in heads and "## Section two" in heads
    assert "# not a heading" not in heads
    fenced = next(c for c in chunks if "```python" in c.text)
    assert "return 1\n```" in fenced.text  # the fenced block stays whole


def test_dialogue_cuts_at_turns() -> None:
    chunks = chunk(DIALOGUE, size=25, overlap=0)
    assert len(chunks) >= 2
    assert all(c.text.split(":", 1)[0] in ("Alice", "Bob") for c in chunks)


def test_tables_repeat_the_header_and_never_cut_rows() -> None:
    chunks = chunk(TABLE, size=40, overlap=0)
    assert len(chunks) > 3
    for c in chunks:
        assert c.text.startswith("| name | age |\n|---|---|\n")
        assert c.text.endswith("|\n")
        assert estimate_tokens(c.text) <= 40
    rows = [line for c in chunks for line in c.text.splitlines()[2:]]
    assert rows == TABLE.splitlines()[2:]  # every row once, in order (no overlap)
    overlapping = chunk(TABLE, size=40, overlap=5)
    assert overlapping[1].text.splitlines()[2] == overlapping[0].text.splitlines()[-1]  # one whole row repeated
    # a row too long for the size is a chunk of its own, with the header
    wide = "a,b\n1,2\n" + "x" * 200 + ",y\n3,4\n"
    parts = chunk(wide, size=10, overlap=0, kind="table")
    assert [p.text for p in parts][1:] == ["a,b\n" + "x" * 200 + ",y\n", "a,b\n3,4\n"]


def test_custom_length_function() -> None:
    words = lambda s: len(s.split())  # noqa: E731
    chunks = chunk(PROSE, size=12, overlap=3, length=words)
    assert all(words(c.text) <= 12 for c in chunks)
    assert all(words(PROSE[b.start : a.end]) <= 3 for a, b in itertools.pairwise(chunks))
    assert "".join(c.text for c in chunk(PROSE, size=12, overlap=0, length=words)) == PROSE
    # hard cuts respect it too
    cjk = chunk(CJK, size=7, overlap=0, length=len)
    assert all(len(c.text) <= 7 for c in cjk) and "".join(c.text for c in cjk) == CJK


def test_small_and_empty_texts() -> None:
    assert chunk("") == []
    (only,) = chunk("Just one sentence.")
    assert (only.text, only.start, only.end, only.index, only.kind) == ("Just one sentence.", 0, 18, 0, "prose")
    assert chunk("   ") == [Chunk("   ", 0, 3, 0, "prose")]
    assert "Just one" in repr(only) and "index=0" in repr(only)


def test_long_unbroken_text_is_cut_between_characters() -> None:
    chunks = chunk(ONE_WORD, size=10, overlap=2)
    assert all(len(c.text) <= 40 for c in chunks)
    # pieces of size - overlap tokens, so that 2 tokens (8 characters) of overlap fit
    assert [c.start for c in chunks[:3]] == [0, 24, 56] and chunks[0].end == 32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "size"),
        ({"size": 2.5}, "size"),
        ({"overlap": -1}, "overlap"),
        ({"size": 10, "overlap": 10}, "overlap"),
        ({"kind": "poetry"}, "kind"),
        ({"length": 3}, "length"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        chunk("some text", **kwargs)
    with pytest.raises(ValidationError, match="takes a str"):
        chunk(b"bytes")  # type: ignore[arg-type]


def test_bad_kind_names_the_allowed_kinds() -> None:
    with pytest.raises(ValidationError) as info:
        chunk("x", kind="poetry")
    assert all(k in info.value.hint for k in KINDS) and "auto" in info.value.hint
