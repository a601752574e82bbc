"""Every notebook template the sidebar creates runs top to bottom in a real kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from lumina_jupyterlab import templates

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", templates.names())
def test_template_runs(name: str, tmp_path: Path, lumina_home: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.from_dict(templates.notebook(name))
    nbformat.validate(nb)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert outputs  # each template shows something
    if name != "routing_lab":  # the routing lab replays in simulated time, off the bus
        assert (lumina_home / "events").is_dir()  # the kernel wrote to the shared store of this LUMINA_HOME
