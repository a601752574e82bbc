"""``lumina lab``: the command line it runs, the environment it pins, and its mistakes."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from click.testing import CliRunner
from lumina_jupyterlab.launch import default_notebook_dir, extension_enabled, lab_command

from lumina_lab.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_prints_jupyterlab_on_the_notebooks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "lumina.toml").write_text('[routing]\nstrategy = "fastest"\n')
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    result = CliRunner().invoke(
        main, ["lab", "--notebooks", str(notebooks), "--home", str(home), "--port", "8899", "--no-browser",
               "--dry-run", "--", "--ServerApp.token=x"]
    )
    assert result.exit_code == 0, result.output
    words = shlex.split(result.output.strip().splitlines()[-1])
    assert words[0] == f"LUMINA_HOME={home}" and words[1] == f"LUMINA_CONFIG={home / 'lumina.toml'}"
    assert words[2:] == lab_command(notebooks, port=8899, no_browser=True, extra=("--ServerApp.token=x",))
    assert words[2:5] == [sys.executable, "-m", "jupyterlab"] and f"--ServerApp.root_dir={notebooks}" in words


def test_defaults_to_the_projects_notebooks() -> None:
    assert default_notebook_dir() == ROOT / "notebooks"
    result = CliRunner().invoke(main, ["lab", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"--ServerApp.root_dir={ROOT / 'notebooks'}" in result.output


def test_help_and_mistakes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["lab", "--help"])
    assert result.exit_code == 0 and "--notebooks" in result.output and "JupyterLab" in result.output
    result = CliRunner().invoke(main, ["lab", "--notebooks", str(tmp_path / "missing"), "--dry-run"])
    assert result.exit_code == 2 and "is not a folder" in result.output
    assert "lab" in CliRunner().invoke(main, ["--help"]).output


def test_the_installed_config_enables_the_server_extension() -> None:
    assert extension_enabled()  # pip installs etc/jupyter/jupyter_server_config.d/lumina_jupyterlab.json
