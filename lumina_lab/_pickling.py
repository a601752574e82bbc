"""Pickling frozen dataclasses by their constructor: what a compiled build of them needs (no ``__dict__``
to restore, and a frozen class refuses attribute assignment), and the same result interpreted."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

__all__ = ["reduce_frozen"]


def reduce_frozen(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    """``obj.__reduce__()`` for a frozen dataclass whose ``__init__`` takes its fields in order."""
    return type(obj), tuple(getattr(obj, f.name) for f in fields(obj) if f.init)
