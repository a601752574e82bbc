"""Shared fixtures: every test runs with its own LUMINA_HOME and no stray LUMINA_* settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_lumina_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("LUMINA_"):
            monkeypatch.delenv(key)
    home = tmp_path / "lumina-home"
    monkeypatch.setenv("LUMINA_HOME", str(home))
    return home


@pytest.fixture
def lumina_home(_isolated_lumina_env: Path) -> Path:
    """The LUMINA_HOME of this test (a fresh directory)."""
    return _isolated_lumina_env
