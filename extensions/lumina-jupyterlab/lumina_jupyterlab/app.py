"""The server extension: settings, handlers, and clean shutdown of the event feed and stores."""

from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode

from ._version import __version__
from .handlers import routes
from .service import LuminaService


class LuminaExtension(ExtensionApp):
    """Lumina Lab's server extension: REST under ``/lumina/`` and the live event WebSocket.

    Configure in ``jupyter_server_config.py`` (``c.LuminaExtension.poll_interval = 0.25``) or on the command
    line (``--LuminaExtension.lumina_home=/data/lumina``).
    """

    name = "lumina_jupyterlab"
    description = "Lumina Lab status REST API and live event feed"
    version = __version__
    load_other_extensions = True

    poll_interval = Float(
        0.5,
        config=True,
        help="Seconds between looks at the event store for events from other processes (the WebSocket feed).",
    )
    lumina_home = Unicode(
        None,
        allow_none=True,
        config=True,
        help="LUMINA_HOME for this server and the kernels it starts (default: $LUMINA_HOME, else ~/.lumina).",
    )

    def initialize_settings(self) -> None:
        if self.lumina_home:
            # kernels inherit the server's environment: they then write where the server reads
            os.environ["LUMINA_HOME"] = os.path.expanduser(self.lumina_home)
        self.service = LuminaService(poll_interval=self.poll_interval, log=self.log)
        self.settings["lumina"] = self.service
        self.log.info("Lumina: reading events from %s", self.service.describe())

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            await service.close()
