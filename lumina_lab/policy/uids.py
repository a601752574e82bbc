"""Cedar entity uids: parse the forms people write, format one canonical string.

A uid is a type and an id.  Users write it as Cedar text (``User::"alice"``),
as a JSON object (``{"type": "User", "id": "alice"}``, or Cedar's escape
``{"__entity": {...}}``) or as a ``(type, id)`` pair.  Inside Lumina a uid is
its canonical string, :func:`format_uid` — equal uids give equal strings, so
the string is a dictionary key — and Cedar receives the JSON object form,
which needs no escaping.

>>> parse_uid('User::"alice"')
('User', 'alice')
>>> format_uid("App::Doc", 'say "hi"')
'App::Doc::"say \\\\"hi\\\\""'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import ValidationError

__all__ = ["entity_ref", "format_uid", "is_entity_ref", "parse_uid", "uid_json", "uid_key"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_UID_RE = re.compile(rf'^\s*({_NAME}(?:\s*::\s*{_NAME})*)\s*::\s*"((?:[^"\\]|\\.)*)"\s*$', re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'", "*": "*"}
_TYPE_RE = re.compile(rf"^{_NAME}(?:::{_NAME})*$")


def _unescape(text: str, raw: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and text[i + 2 : i + 3] == "{":
            end = text.find("}", i + 3)
            try:
                out.append(chr(int(text[i + 3 : end], 16)))
            except ValueError:
                end = -1
            if end < 0:
                raise ValidationError(f"bad \\u{{...}} escape in entity uid {raw!r}", input=raw)
            i = end + 1
        else:
            raise ValidationError(
                f"unknown escape '\\{nxt}' in entity uid {raw!r}", input=raw, hint='write ids like User::"alice"'
            )
    return "".join(out)


def parse_uid(value: Any, *, what: str = "entity uid") -> tuple[str, str]:
    """``(type, id)`` of ``value``: ``'User::"alice"'``, ``{"type", "id"}``, ``{"__entity": ...}`` or a pair.

    Raises:
        ValidationError: ``value`` is not a uid in any of these forms (the message names ``what``).
    """
    if isinstance(value, str):
        m = _UID_RE.match(value)
        if m is None:
            raise ValidationError(
                f"{what} {value!r} is not a Cedar entity uid",
                input=value,
                hint='write it as Type::"id", e.g. User::"alice" (the id in double quotes)',
            )
        return re.sub(r"\s+", "", m.group(1)), _unescape(m.group(2), value)
    if isinstance(value, Mapping):
        inner = value.get("__entity", value)
        if isinstance(inner, Mapping) and isinstance(inner.get("type"), str) and isinstance(inner.get("id"), str):
            return _checked_type(inner["type"], value, what), inner["id"]
    elif isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return _checked_type(value[0], value, what), value[1]
    else:
        t, i = getattr(value, "type", None), getattr(value, "id", None)
        if isinstance(i, str) and t is not None and not callable(t):
            return _checked_type(str(t), value, what), i
    raise ValidationError(
        f"{what} {value!r} is not a Cedar entity uid",
        input=value,
        hint='pass \'User::"alice"\', {"type": "User", "id": "alice"} or ("User", "alice")',
    )


def _checked_type(t: str, value: Any, what: str) -> str:
    if not _TYPE_RE.match(t):
        raise ValidationError(
            f"{what} {value!r} has entity type {t!r}, which is not a Cedar name",
            input=value,
            hint="entity types are names such as User or MyApp::Document",
        )
    return t


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_uid(type: str, id: str) -> str:
    """The canonical Cedar text of a uid, e.g. ``User::"alice"``."""
    return f"{type}::{_quote(id)}"


def uid_key(value: Any, *, what: str = "entity uid") -> str:
    """The canonical string of any uid form (see :func:`parse_uid`)."""
    if isinstance(value, str):
        m = _UID_RE.match(value)
        if m is not None and "\\" not in value and value.isprintable() and " " not in value[: value.index('"')]:
            return value
    return format_uid(*parse_uid(value, what=what))


def uid_json(key: str) -> dict[str, str]:
    """``{"type": ..., "id": ...}`` of a canonical uid string (the form Cedar requests take)."""
    t, i = parse_uid(key)
    return {"type": t, "id": i}


def entity_ref(type: str, id: str) -> dict[str, dict[str, str]]:
    """A reference to an entity as an attribute or context value: ``{"__entity": {"type", "id"}}``."""
    return {"__entity": {"type": type, "id": id}}


def is_entity_ref(value: Any) -> bool:
    """Whether a JSON value may be an entity reference (``__entity``, or an object of exactly type and id)."""
    if not isinstance(value, dict):
        return False
    if "__entity" in value:
        return True
    return len(value) == 2 and isinstance(value.get("type"), str) and isinstance(value.get("id"), str)
