"""Fixtures for the JupyterLab extension's tests: a Jupyter server (pytest-jupyter) with lumina_jupyterlab.

The extension is its own package (``extensions/lumina-jupyterlab``); install it with
``pip install -e extensions/lumina-jupyterlab`` and the test tools with
``pip install 'pytest-jupyter[server]' playwright``.  Without them these tests are left out locally, with a
warning; under CI (``CI`` set) they fail instead, so a missing install step cannot pass unnoticed.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import pytest

_NEEDED = {
    "lumina_jupyterlab": "pip install -e extensions/lumina-jupyterlab",
    "pytest_jupyter": "pip install 'pytest-jupyter[server]'",
    "jupyterlab": "pip install jupyterlab",
}
MISSING = [f"{mod} ({fix})" for mod, fix in _NEEDED.items() if importlib.util.find_spec(mod) is None]

collect_ignore_glob: list[str] = []
if MISSING:
    if os.environ.get("CI"):
        raise ImportError(f"the JupyterLab extension tests need: {'; '.join(MISSING)}")
    warnings.warn(f"JupyterLab extension tests left out, missing: {'; '.join(MISSING)}", stacklevel=1)
    collect_ignore_glob = ["test_jlab_*.py"]
else:
    # pytest-jupyter registers no plugin entry point; its fixtures are imported here (this folder only)
    from pytest_jupyter.jupyter_server import *  # noqa: F403

    @pytest.fixture
    def jp_server_config():  # type: ignore[no-redef]
        return {
            "ServerApp": {
                "jpserver_extensions": {"lumina_jupyterlab": True},
                # test against a server that requires authentication on every endpoint
                "allow_unauthenticated_access": False,
            },
            "LuminaExtension": {"poll_interval": 0.1},
        }

    @pytest.fixture
    def run(jp_asyncio_loop):
        """Run a coroutine on the test server's loop (tests stay synchronous: no clash with pytest-asyncio)."""
        return jp_asyncio_loop.run_until_complete
