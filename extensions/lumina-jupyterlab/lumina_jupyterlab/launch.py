"""``lumina lab``: JupyterLab on the project's notebooks, with the Lumina extension active.

The server and every kernel it starts get the same ``LUMINA_HOME`` and ``lumina.toml`` (``LUMINA_CONFIG`` is
pinned to the file that applies where the command runs: kernels run in the notebooks' folder, where
``./lumina.toml`` could differ), so the sidebar reads exactly what the notebooks write.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

__all__ = ["default_notebook_dir", "extension_enabled", "lab", "lab_command"]


def default_notebook_dir() -> Path:
    """The project's ``notebooks/`` folder when ``lumina_lab`` runs from a checkout, else the current folder."""
    try:
        from lumina_lab.data import checkout

        candidate = checkout() / "notebooks"
        if candidate.is_dir():
            return candidate
    except ImportError:  # pragma: no cover - lumina-lab is a dependency
        pass
    return Path.cwd()


def extension_enabled() -> bool:
    """Whether a Jupyter config file enables the ``lumina_jupyterlab`` server extension (pip installs one)."""
    import json

    from jupyter_core.paths import jupyter_config_path

    for folder in jupyter_config_path():
        path = Path(folder) / "jupyter_server_config.d" / "lumina_jupyterlab.json"
        if path.is_file():
            try:
                enabled = json.loads(path.read_text())["ServerApp"]["jpserver_extensions"]["lumina_jupyterlab"]
            except (ValueError, KeyError, TypeError):
                continue
            return bool(enabled)
    return False


def lab_command(
    notebook_dir: Path, *, port: int | None, no_browser: bool, extra: tuple[str, ...] = ()
) -> list[str]:
    """The JupyterLab command line ``lumina lab`` runs."""
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebook_dir}"]
    if port is not None:
        argv.append(f"--ServerApp.port={port}")
    if no_browser:
        argv.append("--no-browser")
    return argv + list(extra)


@click.command(
    "lab",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]},
)
@click.option(
    "--notebooks",
    "notebook_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder JupyterLab opens (default: the project's notebooks/ in a checkout, else the current folder).",
)
@click.option("--home", type=click.Path(file_okay=False), help="LUMINA_HOME for the server and its kernels.")
@click.option("--port", type=int, help="Port of the Jupyter server (default: JupyterLab's, 8888 or the next free).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--dry-run", is_flag=True, help="Print the command and environment instead of starting JupyterLab.")
@click.argument("jupyter_args", nargs=-1, type=click.UNPROCESSED)
def lab(
    notebook_dir: Path | None,
    home: str | None,
    port: int | None,
    no_browser: bool,
    dry_run: bool,
    jupyter_args: tuple[str, ...],
) -> None:
    """JupyterLab on the project's notebooks, with the Lumina sidebar.

    Arguments after the options go to JupyterLab, e.g. `lumina lab -- --ServerApp.token=secret`.
    """
    from lumina_lab.config import config_file
    from lumina_lab.errors import LuminaError

    folder = (notebook_dir or default_notebook_dir()).expanduser().resolve()
    if not folder.is_dir():
        raise click.UsageError(f"--notebooks {str(folder)!r} is not a folder")
    if home:
        os.environ["LUMINA_HOME"] = str(Path(home).expanduser().resolve())  # also where lumina.toml is looked up
    env = dict(os.environ)
    try:
        toml = config_file()
    except LuminaError as exc:
        raise click.UsageError(str(exc)) from None
    if toml is not None:
        env["LUMINA_CONFIG"] = str(toml.resolve())
    argv = lab_command(folder, port=port, no_browser=no_browser, extra=jupyter_args)
    if not extension_enabled():
        click.secho(
            "warning: the lumina_jupyterlab server extension is not enabled in any Jupyter config folder;\n"
            "  fix: pip install -e extensions/lumina-jupyterlab  (or: jupyter server extension enable lumina_jupyterlab)",
            fg="yellow",
            err=True,
        )
    if dry_run:
        shown = {k: env[k] for k in ("LUMINA_HOME", "LUMINA_CONFIG") if k in env}
        click.echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items()) + (" " if shown else "")
                   + shlex.join(argv))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, argv, env)  # JupyterLab takes over this process (signals, exit status)
    import subprocess  # pragma: no cover - Windows

    sys.exit(subprocess.call(argv, env=env))  # pragma: no cover


def main() -> None:  # pragma: no cover - `python -m lumina_jupyterlab.launch`
    lab(prog_name="lumina lab")


if __name__ == "__main__":  # pragma: no cover
    main()
