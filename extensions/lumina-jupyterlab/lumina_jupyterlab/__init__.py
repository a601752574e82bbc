"""Lumina Lab in JupyterLab: the Jupyter wiring around :mod:`lumina_lab`.

* a server extension (:class:`~lumina_jupyterlab.app.LuminaExtension`) with authenticated REST handlers under
  ``/lumina/`` and a WebSocket feed of live events (``/lumina/events/ws``), answering from
  :class:`lumina_lab.status.StatusReader` — the same settings and event store as the notebooks, so events of
  every kernel on the machine show up;
* the prebuilt JupyterLab frontend (``labextension/``): the Lumina sidebar, palette commands, a launcher card;
* ``lumina lab`` (:mod:`lumina_jupyterlab.launch`): JupyterLab on the project's notebooks.

Importing this package is cheap: Jupyter Server and the handlers load when the server loads the extension.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "lumina-jupyterlab"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import LuminaExtension

    return [{"module": "lumina_jupyterlab", "app": LuminaExtension}]
