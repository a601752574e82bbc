"""Every notebook in notebooks/ runs top to bottom under papermill (they are documentation and tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(notebook: Path, tmp_path: Path) -> None:
    import papermill as pm

    out = tmp_path / notebook.name
    pm.execute_notebook(
        str(notebook),
        str(out),
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
        parameters={"home": str(tmp_path / "home")},
    )
    assert out.exists()
