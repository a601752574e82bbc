"""REST handlers under ``/lumina/`` and the live event WebSocket, all authenticated like every Jupyter handler.

=================================  ==================================================================
``GET /lumina/status``             version, home, event store and bus settings, active processes
``GET /lumina/providers``          providers: breaker state, health, window statistics (``?window=15m``)
``GET /lumina/budgets``            spend of every process against each budget; spend today / month
``GET /lumina/events``             stored events: ``type``, ``since``, ``until``, ``source``, ``trace_id``,
                                   ``contains``, ``limit``, ``order=asc|desc``
``GET /lumina/memory``             vector-store collections and their recent activity
``GET /lumina/policy``             policy versions (live one marked) and recent decisions
``GET /lumina/snapshot``           all of the above at once (what the sidebar refreshes)
``GET /lumina/metrics``            Prometheus metrics of every process (events since the server started);
                                   Prometheus scrapes it with the server's token (``authorization:
                                   {credentials: TOKEN}``, a bearer token)
``GET /lumina/templates``          notebook templates
``POST /lumina/templates/NAME``    create a notebook from a template (``{"directory": "..."}``)
``WS  /lumina/events/ws``          live events from every process: ``?type=glob&backlog=N``
=================================  ==================================================================

Errors a user can cause (a bad filter, a bad ``lumina.toml``) answer ``400`` with ``{"message", "hint"}``.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import ensure_async
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from . import templates
from .service import LuminaService

__all__ = ["EventSocketHandler", "routes"]

_MAX_BACKLOG = 500


def _json_default(value: Any) -> Any:
    return str(value)


class LuminaHandler(APIHandler):
    """Base of the REST handlers: JSON answers; ``LuminaError`` becomes a 400 with the message and the fix."""

    @property
    def lumina(self) -> LuminaService:
        return self.settings["lumina"]

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=_json_default, allow_nan=False))

    async def answer(self, method: str, **kwargs: Any) -> None:
        from lumina_lab.errors import LuminaError

        try:
            result = await self.lumina.call(method, **kwargs)
        except LuminaError as exc:
            self.write_json({"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}, 400)
            return
        self.write_json(result)

    def arg(self, name: str, default: str | None = None) -> str | None:
        value = self.get_query_argument(name, default)
        return value if value not in ("", None) else default


class StatusHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        from lumina_lab.errors import LuminaError

        try:
            result = await self.lumina.call("status", window=self.arg("window"))
        except LuminaError as exc:
            self.write_json({"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}, 400)
            return
        result["server"] = self.lumina.server_info()
        self.write_json(result)


class ProvidersHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer("providers", window=self.arg("window"))


class BudgetsHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer("budgets")


class EventsHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        order = (self.arg("order", "desc") or "desc").lower()
        if order not in ("asc", "desc"):
            self.write_json({"error": "ValidationError", "message": f"order={order!r}", "hint": "use asc or desc"}, 400)
            return
        await self.answer(
            "events",
            type=self.arg("type"),
            since=self.arg("since"),
            until=self.arg("until"),
            source=self.arg("source"),
            trace_id=self.arg("trace_id"),
            contains=self.arg("contains"),
            limit=self.arg("limit", "100"),
            newest_first=order == "desc",
        )


class MemoryHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer("memory", window=self.arg("window"))


class PolicyHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer("policy")


class SnapshotHandler(LuminaHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            events = int(self.arg("events", "50") or 50)
        except ValueError:
            self.write_json({"error": "ValidationError", "message": "events must be a number", "hint": "e.g. 50"}, 400)
            return
        from lumina_lab.errors import LuminaError

        try:
            result = await self.lumina.call("snapshot", window=self.arg("window"), events=max(0, min(events, 500)))
        except LuminaError as exc:
            self.write_json({"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}, 400)
            return
        result["status"]["server"] = self.lumina.server_info()
        self.write_json(result)


class MetricsHandler(LuminaHandler):
    """Prometheus text format (authenticated like every handler: Prometheus sends the server's token)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        from lumina_lab.errors import LuminaError

        try:
            text = await self.lumina.metrics()
        except LuminaError as exc:
            self.write_json({"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}, 400)
            return
        from prometheus_client import CONTENT_TYPE_LATEST

        self.set_header("Cache-Control", "no-store")
        self.finish(text, set_content_type=CONTENT_TYPE_LATEST)


class TemplatesHandler(LuminaHandler):
    auth_resource = "contents"

    @tornado.web.authenticated
    async def get(self) -> None:
        self.write_json({"templates": templates.listing()})


class TemplateHandler(LuminaHandler):
    """Create a notebook from a template in a folder of the server (through the contents manager)."""

    auth_resource = "contents"

    @tornado.web.authenticated
    @authorized("write")
    async def post(self, name: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.write_json({"error": "ValidationError", "message": "the body must be a JSON object",
                             "hint": '{"directory": "path/in/the/server"}'}, 400)
            return
        try:
            notebook = templates.notebook(name)
        except KeyError:
            self.write_json({"error": "ValidationError", "message": f"no template {name!r}",
                             "hint": f"templates: {', '.join(templates.names())}"}, 404)
            return
        directory = str(body.get("directory") or "").strip("/")
        cm = self.contents_manager
        if directory and not await ensure_async(cm.dir_exists(directory)):
            self.write_json({"error": "ValidationError", "message": f"no folder {directory!r} on the server",
                             "hint": "pass an existing folder relative to the server root"}, 400)
            return
        filename = await ensure_async(cm.increment_filename(templates.filename(name), directory, insert="-"))
        path = f"{directory}/{filename}" if directory else filename
        model = await ensure_async(cm.new({"type": "notebook", "format": "json", "content": notebook}, path))
        self.write_json({"path": model["path"], "name": model["name"], "template": name}, 201)


class EventSocketHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Live events from every process, as ``{"kind": "events", "events": [...]}`` messages.

    Query: ``type`` (glob, default all) and ``backlog`` (the newest N stored events first, default 0).
    The client may send ``{"type": "memory.*"}`` to change its filter.  Refused (403) without authentication.
    """

    type_glob: str | None = None
    _subscribed = False
    _held: list[dict[str, Any]] | None = None  # live events that came while the backlog was read

    @property
    def lumina(self) -> LuminaService:
        return self.settings["lumina"]

    def set_default_headers(self) -> None:
        """No API headers on a WebSocket upgrade (as the kernel WebSocket does)."""

    def get_compression_options(self) -> dict[str, Any] | None:
        return self.settings.get("websocket_compression_options", None)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.type_glob = self.get_query_argument("type", None) or None
        try:
            self.backlog = max(0, min(int(self.get_query_argument("backlog", "0") or 0), _MAX_BACKLOG))
        except ValueError:
            raise tornado.web.HTTPError(400, "backlog must be a number") from None
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        from lumina_lab.errors import LuminaError

        try:
            reader = await self.lumina.reader()
            hello = {
                "kind": "hello",
                "type": self.type_glob,
                "home": str(reader.settings.home),
                "shared": reader.shared,
                "poll_interval_s": self.lumina.poll_interval,
            }
            self._send(hello)
            # join the live feed before reading the backlog, so that nothing published in between is missed;
            # live events that come meanwhile are held and sent after the backlog, without those it holds
            if self.backlog:
                self._held = []
            await self.lumina.subscribe(self)
            self._subscribed = True
            if self.backlog:
                recent = list(reversed(await self.lumina.call("events", type=self.type_glob, limit=self.backlog)))
                self._send({"kind": "events", "backlog": True, "events": recent})
                held, self._held = self._held or [], None
                sent = {e.get("id") for e in recent}
                self.send_events([e for e in held if e.get("id") not in sent])
        except WebSocketClosedError:  # the client left while the backlog was read
            self.lumina.unsubscribe(self)
        except LuminaError as exc:
            self._send({"kind": "error", "message": exc.message, "hint": exc.hint})
            self.close(1011, "lumina error")

    def on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            self._send({"kind": "error", "message": "messages are JSON objects", "hint": '{"type": "provider.*"}'})
            return
        if isinstance(data, dict) and "type" in data:
            self.type_glob = data["type"] or None
            self._send({"kind": "filter", "type": self.type_glob})

    def send_events(self, events: list[dict[str, Any]]) -> None:
        """Called by the service's pump with every new event; sends the ones matching this client's filter."""
        if self._held is not None:  # the backlog is being read: these go after it
            self._held.extend(events)
            return
        glob = self.type_glob
        mine = events if glob is None else [e for e in events if fnmatchcase(str(e.get("type")), glob)]
        if mine:
            self._send({"kind": "events", "events": mine})

    def close_feed(self) -> None:
        self.close(1001, "server shutting down")

    def _send(self, data: dict[str, Any]) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            raise WebSocketClosedError()
        self.write_message(json.dumps(data, default=_json_default))

    def on_close(self) -> None:
        super().on_close()
        if self._subscribed:
            self.lumina.unsubscribe(self)


def routes() -> list[tuple[str, type]]:
    """URL patterns (relative to the server's base URL) and their handlers."""
    return [
        (r"/lumina/status", StatusHandler),
        (r"/lumina/providers", ProvidersHandler),
        (r"/lumina/budgets", BudgetsHandler),
        (r"/lumina/events", EventsHandler),
        (r"/lumina/events/ws", EventSocketHandler),
        (r"/lumina/memory", MemoryHandler),
        (r"/lumina/policy", PolicyHandler),
        (r"/lumina/snapshot", SnapshotHandler),
        (r"/lumina/metrics", MetricsHandler),
        (r"/lumina/templates", TemplatesHandler),
        (r"/lumina/templates/([A-Za-z0-9_-]+)", TemplateHandler),
    ]
