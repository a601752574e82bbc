"""Every notebook in notebooks/ runs top to bottom under papermill (they are documentation and tests).

* Each runs once with small parameters (:data:`SMALL`, injected by papermill); a failing cell fails the test
  with the cell shown.
* A notebook whose ``parameters`` cell has ``results_path`` writes the figures it records there as JSON, and
  :data:`CHECKS` asserts on them.
* A notebook with ``# NBVAL_CHECK_OUTPUT`` cells is executed by nbval in lax mode (after papermill injected
  the parameters): those cells' outputs must equal the outputs stored in the notebook, every other cell must
  only run. Its stored outputs are those of its default parameters, so its defaults are small.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _check_live_dashboard(results: dict[str, Any], params: dict[str, Any]) -> None:
    assert results["requests"] == results["answered"] == params.get("n_requests", results["n_requests"])
    assert results["failed calls"] > 0
    assert results["breakers"][results["victim"]] == "open"
    assert [p for p, state in results["breakers"].items() if state != "closed"] == [results["victim"]]
    assert results["victim"] in results["providers that answered"]  # before the outage
    assert len(results["providers that answered"]) >= 2  # someone took over during it
    assert results["spent_usd"] > 0
    assert results["layout"] == {"components": ["overview", "providers"], "theme": "dark"}


#: notebook stem -> parameters that keep its run short (a notebook checked by nbval keeps its defaults small instead)
SMALL: dict[str, dict[str, Any]] = {}
#: notebook stem -> check of the JSON it records (called with the results and the parameters given)
CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "06_live_dashboard": _check_live_dashboard,
}


def _source(notebook: Path) -> dict[str, Any]:
    return json.loads(notebook.read_text())


def _parameters_cell(notebook: Path) -> str:
    for cell in _source(notebook)["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return "".join(cell["source"])
    return ""


def _nbval_checked(notebook: Path) -> bool:
    return any(
        "NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in _source(notebook)["cells"] if c["cell_type"] == "code"
    )


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


def test_every_notebook_has_a_parameters_cell() -> None:
    missing = [nb.name for nb in NOTEBOOKS if not _parameters_cell(nb)]
    assert not missing, f"no cell tagged 'parameters' in {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(notebook: Path, tmp_path: Path) -> None:
    params: dict[str, Any] = {"home": str(tmp_path / "home"), **SMALL.get(notebook.stem, {})}
    results = tmp_path / "results.json"
    records = "results_path" in _parameters_cell(notebook)
    if records:
        params["results_path"] = str(results)
    if _nbval_checked(notebook):
        _run_nbval(notebook, params, tmp_path)
    else:
        _run_papermill(notebook, params, tmp_path)
    check = CHECKS.get(notebook.stem)
    if records or check is not None:
        assert results.is_file(), f"{notebook.name} recorded no results at results_path"
        if check is not None:
            check(json.loads(results.read_text()), params)


def _run_papermill(notebook: Path, params: dict[str, Any], tmp_path: Path) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / notebook.name
    try:
        pm.execute_notebook(
            str(notebook), str(out), kernel_name="python3", cwd=str(tmp_path), progress_bar=False, parameters=params
        )
    except PapermillExecutionError as exc:
        trace = _ANSI.sub("", "\n".join(exc.traceback))
        pytest.fail(f"{notebook.name}, cell [{exc.exec_count}] failed:\n{exc.source}\n\n{trace}", pytrace=False)
    assert out.exists()


def _run_nbval(notebook: Path, params: dict[str, Any], tmp_path: Path) -> None:
    """nbval, lax mode, on a copy with the parameters injected (the stored outputs of checked cells kept)."""
    pytest.importorskip("nbval")
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    copy = tmp_path / notebook.name
    nbformat.write(parameterize_notebook(load_notebook_node(str(notebook)), params), copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMINA_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            str(copy),
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
            "-o",
            "addopts=",
            "--color=no",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{notebook.name} under nbval:\n" + _ANSI.sub(
        "", result.stdout[-6000:] + result.stderr[-2000:]
    )


def store_checked_outputs(notebook: Path) -> None:
    """Run ``notebook`` with its defaults and keep, in the file, only the outputs of ``# NBVAL_CHECK_OUTPUT`` cells.

    After a change that moves a checked figure on purpose: ``python tests/test_notebooks.py notebooks/NAME.ipynb``.
    """
    import tempfile

    import nbformat
    import papermill as pm

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / notebook.name
        pm.execute_notebook(
            str(notebook),
            str(out),
            kernel_name="python3",
            cwd=tmp,
            progress_bar=False,
            parameters={"home": str(Path(tmp) / "home")},
        )
        done = nbformat.read(out, as_version=4)
    nb = nbformat.read(notebook, as_version=4)
    ran = [c for c in done.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    for cell, result in zip([c for c in nb.cells if c.cell_type == "code"], ran, strict=True):
        keep = "NBVAL_CHECK_OUTPUT" in cell.source
        cell.outputs = result.outputs if keep else []
        cell.execution_count = result.execution_count if keep else None
    nbformat.write(nb, notebook)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        store_checked_outputs(Path(arg))
