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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the compiled build (``PYTHONPATH=<lumina_lab.compiled.build()>``), a wrongly typed argument to a
    compiled function raises mypyc's ``TypeError`` (naming the expected type) before our check can name it:
    the tests of those messages are skipped there, and only there."""
    from lumina_lab.compiled import is_compiled

    if not is_compiled():
        return
    skip = pytest.mark.skip(reason="compiled build: mypyc's TypeError comes before our message for a wrong type")
    for item in items:
        if "wrong_type_message" in item.keywords:
            item.add_marker(skip)
