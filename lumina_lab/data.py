"""Paths of the small data files shipped with Lumina Lab (``datasets/`` in the repository)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ValidationError

__all__ = ["checkout", "dataset_path", "pricing_snapshot", "team_notes"]

_INSTALLED = Path(__file__).parent / "_datasets"  # wheel installs
_REPO = Path(__file__).parent.parent / "datasets"  # editable installs and checkouts


def checkout() -> Path:
    """The folder this package's source checkout is in: the one holding ``notebooks/`` and ``datasets/``,
    with ``../shared`` (external data) beside it.

    That is the package's parent folder, except in a compiled build (:mod:`lumina_lab.compiled`), which
    lives in a cache folder and names the checkout it was built from.  In a wheel install it is
    site-packages, which holds neither.
    """
    here = Path(__file__).resolve().parent
    marker = here / "_checkout.txt"
    if marker.is_file():
        return Path(marker.read_text(encoding="utf-8").strip())
    return here.parent


def dataset_path(name: str) -> Path:
    """Path of the shipped data file ``name`` (e.g. ``"pricing.json"``)."""
    for root in (_INSTALLED, _REPO):
        path = root / name
        if path.exists():
            return path
    available = sorted(p.name for root in (_INSTALLED, _REPO) if root.is_dir() for p in root.iterdir())
    raise ValidationError(f"no shipped dataset named {name!r}", input=name, hint=f"available: {available}")


@cache
def pricing_snapshot() -> dict[str, Any]:
    """The dated list-price snapshot: ``{"as_of", "source", "models": {name: {"input", "output"}}}``."""
    return json.loads(dataset_path("pricing.json").read_text(encoding="utf-8"))


def team_notes() -> list[dict[str, Any]]:
    """The shipped demo corpus: 30 notes of a fictional platform team (``id``, ``text``, ``team``, ``kind``, ``date``)."""
    lines = dataset_path("team_notes.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
