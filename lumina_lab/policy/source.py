"""Cedar policy text: statements, their ids and annotations, and parse errors with line and column.

Cedar names the policies of a text by position (``policy0``, ``policy1``, ...;
templates count too) and reports a syntax error without saying where it is.
This module splits a text into its statements (a small lexer that knows
strings and ``//`` comments), so every policy has its id, ``@id`` annotation
and line, and a syntax error can be pinned to the statement, line and column
where it happens.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PolicySyntaxError", "Statement", "line_col", "locate", "split_policies", "syntax_errors", "tokens"]

_PUNCT = ("::", "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "-", "+", "*", "(", ")", "[", "]", "{", "}")
_PUNCT += (",", ";", ".", "@", "?", ":", "=")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # ident, number, string, punct, invalid
    text: str
    start: int
    end: int


def tokens(text: str) -> list[Token]:
    """Cedar tokens of ``text`` (comments and whitespace skipped; unknown characters as ``invalid``)."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                out.append(Token("invalid", text[i:], i, n))
                return out
            out.append(Token("string", text[i : j + 1], i, j + 1))
            i = j + 1
        elif m := _IDENT.match(text, i):
            out.append(Token("ident", m.group(), i, m.end()))
            i = m.end()
        elif m := _NUMBER.match(text, i):
            out.append(Token("number", m.group(), i, m.end()))
            i = m.end()
        else:
            for p in _PUNCT:
                if text.startswith(p, i):
                    out.append(Token("punct", p, i, i + len(p)))
                    i += len(p)
                    break
            else:
                out.append(Token("invalid", ch, i, i + 1))
                i += 1
    return out


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _unquote(s: str) -> str:
    from .uids import _unescape

    try:
        return _unescape(s[1:-1], s)
    except Exception:
        return s[1:-1]


@dataclass(frozen=True)
class Statement:
    """One policy or template of a text, with where it is."""

    index: int
    start: int
    end: int
    text: str
    annotations: dict[str, str] = field(default_factory=dict)
    effect: str | None = None
    is_template: bool = False
    complete: bool = True

    @property
    def policy_id(self) -> str:
        """Cedar's positional id of this statement (``policy0``, ...)."""
        return f"policy{self.index}"

    @property
    def label(self) -> str:
        """``@id`` annotation if any, else the positional id."""
        return self.annotations.get("id") or self.policy_id


def split_policies(text: str) -> list[Statement]:
    """The statements of a Cedar policy text, in order (each up to and including its ``;``)."""
    toks = tokens(text)
    out: list[Statement] = []
    current: list[Token] = []

    def flush(complete: bool) -> None:
        if not current:
            return
        start, end = current[0].start, current[-1].end
        annotations: dict[str, str] = {}
        k = 0
        while k < len(current) and current[k].text == "@" and current[k].kind == "punct":
            if k + 1 < len(current) and current[k + 1].kind == "ident":
                name, value = current[k + 1].text, ""
                k += 2
                if k + 2 < len(current) and current[k].text == "(" and current[k + 1].kind == "string":
                    value = _unquote(current[k + 1].text)
                    k += 3
                annotations.setdefault(name, value)
            else:
                break
        effect = current[k].text if k < len(current) and current[k].kind == "ident" else None
        is_template = any(
            t.text == "?" and j + 1 < len(current) and current[j + 1].text in ("principal", "resource")
            for j, t in enumerate(current)
        )
        out.append(Statement(len(out), start, end, text[start:end], annotations, effect, is_template, complete))
        current.clear()

    for tok in toks:
        current.append(tok)
        if tok.kind == "punct" and tok.text == ";":
            flush(True)
    flush(False)
    return out


@dataclass(frozen=True)
class PolicySyntaxError:
    """A syntax error in a policy text, pinned to a statement, line and column."""

    policy_id: str | None
    annotation: str | None
    line: int
    column: int
    message: str
    source_line: str
    source: str = "policies"

    def __str__(self) -> str:
        who = ""
        if self.policy_id:
            who = f" in policy {self.policy_id}" + (f' (@id "{self.annotation}")' if self.annotation else "")
        caret = " " * (self.column - 1) + "^"
        return f"{self.source}:{self.line}:{self.column}{who}: {self.message}\n    {self.source_line}\n    {caret}"


def _parses(parse: Callable[[str], Any], text: str) -> str | None:
    try:
        parse(text)
    except ValueError as exc:
        return str(exc)
    return None


_UNEXPECTED = re.compile(r"unexpected token `(.+?)`")
_QUOTED = re.compile(r"`([^`]+)`")


def locate(text: str, message: str, parse: Callable[[str], Any]) -> int:
    """Offset in ``text`` where the parse error ``message`` (from ``parse(text)``) most likely is.

    ``unexpected token `X```: the first ``X`` such that the text cut right after it
    fails on that token (a prefix that is fine so far fails at its end instead);
    ``unexpected end of input``: the end; ``invalid token``: the first character no
    Cedar token starts with; anything else quoting a snippet: where it occurs.
    """
    toks = tokens(text)
    if not toks:
        return 0
    if "end of input" in message:
        return len(text.rstrip())
    m = _UNEXPECTED.search(message)
    if m:
        wanted = m.group(1)
        hits = [t for t in toks if t.text == wanted]
        for t in hits[:64]:
            got = _parses(parse, text[: t.end])
            if got is not None and f"unexpected token `{wanted}`" in got:
                return t.start
        if hits:
            return hits[0].start
    if "invalid token" in message:
        bad = next((t for t in toks if t.kind == "invalid"), None)
        if bad is not None:
            return bad.start
    for snippet in _QUOTED.findall(message) + re.findall(r":\s*(\S+)\s*$", message):
        pos = text.find(snippet)
        if pos >= 0:
            return pos
    return toks[0].start


def syntax_errors(text: str, parse: Callable[[str], Any] | None = None, *, source: str = "policies") -> list[PolicySyntaxError]:
    """Every statement of ``text`` that does not parse, located (empty if the text parses).

    ``parse`` defaults to ``cedarpy.PolicySet.from_str``.
    """
    if parse is None:
        import cedarpy

        parse = cedarpy.PolicySet.from_str
    whole = _parses(parse, text)
    if whole is None:
        return []
    lines = text.splitlines() or [""]
    found: list[PolicySyntaxError] = []
    for st in split_policies(text):
        msg = _parses(parse, st.text)
        if msg is None and st.complete:
            continue
        if msg is None:  # parses alone but has no ';' (the last statement)
            msg, offset = "unexpected end of input: the policy has no closing ';'", st.end
        else:
            offset = st.start + locate(st.text, msg, parse)
            if not st.complete and "end of input" in msg:
                msg += " (the policy has no closing ';')"
        line, col = line_col(text, offset)
        found.append(
            PolicySyntaxError(st.policy_id, st.annotations.get("id"), line, col, msg, lines[line - 1], source)
        )
    if not found:
        offset = locate(text, whole, parse)
        line, col = line_col(text, offset)
        found.append(PolicySyntaxError(None, None, line, col, whole, lines[min(line, len(lines)) - 1], source))
    return found
