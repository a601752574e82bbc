"""A Cedar schema, parsed once: from Cedar schema text, JSON text, a dict or a file."""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .source import line_col, locate

__all__ = ["Schema"]

_EXT_TYPES = re.compile(r"\b(ipaddr|decimal|datetime|duration|Extension)\b")


class Schema:
    """A Cedar schema (``.cedarschema`` text or JSON), parsed once.

    Args:
        source: Cedar schema text, JSON schema text, a dict, or a path to a file.
        name: how errors name it (default: the file name, else ``schema``).

    Raises:
        ValidationError: the schema does not parse (line and column given when they can be found).
    """

    def __init__(self, source: str | Path | dict[str, Any], *, name: str | None = None) -> None:
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and _is_file(source)):
            path = Path(source)
            name = name or path.name
            source = path.read_text()
        if isinstance(source, dict):
            source = json.dumps(source)
        if not isinstance(source, str):
            raise ValidationError(f"a schema is text, a dict or a path, not {type(source).__name__}", input=source)
        self.text: str = source
        self.name = name or "schema"
        self.format = "json" if source.lstrip().startswith("{") else "cedar"
        self.handle  # parse now: errors belong to whoever loads the schema  # noqa: B018

    @cached_property
    def handle(self) -> Any:
        """The parsed ``cedarpy.Schema``."""
        import cedarpy

        parse = cedarpy.Schema.from_json_str if self.format == "json" else cedarpy.Schema.from_str
        try:
            return parse(self.text)
        except ValueError as exc:
            msg = str(exc)
            where = f"{self.name}: {msg}"
            if self.format == "cedar":
                offset = locate(self.text, msg.removeprefix("error parsing schema: "), parse)
                line, col = line_col(self.text, offset)
                src = (self.text.splitlines() or [""])[line - 1]
                where = f"{self.name}:{line}:{col}: {msg}\n    {src}\n    {' ' * (col - 1)}^"
            raise ValidationError(
                where,
                input=self.name,
                hint="fix the schema (Cedar schema syntax: https://docs.cedarpolicy.com/schema/human-readable-schema.html)",
            ) from None

    @cached_property
    def has_extension_types(self) -> bool:
        """Whether the schema declares extension-typed values (strings it parses as ip, decimal, datetime...)."""
        return bool(_EXT_TYPES.search(self.text))

    def declaration(self, entity_type: str) -> str | None:
        """The Cedar text that declares ``entity_type`` (for error messages), if it can be found."""
        text = str(self.handle) if self.format == "json" else self.text
        basename = entity_type.rsplit("::", 1)[-1]
        m = re.search(rf"(?m)^\s*entity\s+[^;{{]*\b{re.escape(basename)}\b[^;]*?(;|\}};)", text, re.S)
        return " ".join(m.group(0).split()) if m else None

    def __repr__(self) -> str:
        return f"Schema({self.name!r}, format={self.format!r}, {len(self.text)} chars)"


def _is_file(s: str) -> bool:
    if len(s) > 1024 or s.lstrip().startswith(("{", "namespace", "entity", "action", "type", "//")):
        return False
    try:
        return Path(s).is_file()
    except OSError:
        return False
