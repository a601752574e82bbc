"""Files only their owner may read: the key ring, the users file, the tokens file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["home_file", "write_private_json"]


def home_file(*parts: str, home: str | os.PathLike[str] | None = None) -> Path:
    """``home / parts`` (``home`` default: the configured ``LUMINA_HOME``)."""
    if home is None:
        from ..config import load_settings

        home = load_settings().home
    return Path(home).joinpath(*parts)


def write_private_json(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path``, mode 0600 from the start, replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
