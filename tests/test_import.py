"""``import lumina_lab`` stays light: heavy libraries load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["duckdb", "pyarrow", "pandas", "pydantic", "panel", "holoviews", "cedarpy", "pymilvus", "tenacity"]


def _modules_after(stmt: str) -> set[str]:
    code = f"import sys, json; {stmt}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_import_loads_no_heavy_library() -> None:
    loaded = _modules_after("import lumina_lab")
    assert not loaded & set(HEAVY)


def test_public_names_resolve_lazily() -> None:
    import lumina_lab

    for name in lumina_lab.__all__:
        assert getattr(lumina_lab, name) is not None
    assert "Lab" in dir(lumina_lab)


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    import lumina_lab

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lumina_lab.nope  # noqa: B018


def test_event_spine_does_not_load_the_store_libraries() -> None:
    loaded = _modules_after("import lumina_lab.events")
    assert not loaded & {"duckdb", "pyarrow", "pandas"}
