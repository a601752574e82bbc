"""``lumina serve``: the dashboard served to a team with Panel's server (Bokeh/Tornado).

Every browser session gets its own :class:`~lumina_lab.ui.dashboard.Dashboard`; all sessions of a
process share one :class:`~lumina_lab.lab.Lab` and one :class:`~lumina_lab.ui.feed.StoreFeed`, which
follows the event log so the dashboard shows what every process on the machine publishes (notebook
kernels, ``lumina demo``, this server). Authentication is Panel's: a password (or a JSON file of
``{"user": "password"}``) with a login page and a signed cookie, or an OAuth/OIDC provider
(GitHub, Google, Azure, Okta, Auth0, generic OIDC...). Serving on an address other than loopback without
authentication is refused unless explicitly allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["ServeOptions", "check_options", "make_app", "serve"]

log = logging.getLogger(__name__)
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _is_loopback(address: str) -> bool:
    if address in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class ServeOptions(dict):  # type: ignore[type-arg]
    """The keyword arguments given to ``panel.serve`` (a dict, shown without secrets)."""

    def __repr__(self) -> str:
        hidden = {"basic_auth", "cookie_secret", "oauth_secret", "oauth_encryption_key"}
        return "ServeOptions(" + ", ".join(f"{k}={'***' if k in hidden and v else v!r}" for k, v in self.items()) + ")"


def check_options(
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    allow_websocket_origin: Sequence[str] | None = None,
    basic_auth: str | None = None,
    cookie_secret: str | None = None,
    oauth_provider: str | None = None,
    oauth_key: str | None = None,
    oauth_secret: str | None = None,
    oauth_redirect_uri: str | None = None,
    oauth_extra_params: dict[str, Any] | None = None,
    oauth_encryption_key: str | None = None,
    num_procs: int = 1,
    allow_unauthenticated: bool = False,
) -> ServeOptions:
    """Validate serving options and turn them into ``panel.serve`` arguments (one clear error per mistake)."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(
            f"port {port!r} is not a TCP port", key="port", value=port, hint="use 0-65535 (0: any free port)"
        )
    if not isinstance(num_procs, int) or num_procs < 0:
        raise ConfigError(f"num_procs {num_procs!r} must be >= 0 (0: one per CPU)", key="num_procs", value=num_procs)
    if basic_auth is not None and oauth_provider is not None:
        raise ConfigError(
            "choose one authentication: a password (basic auth) or an OAuth provider, not both",
            key="auth",
            hint="drop --basic-auth or --oauth-provider",
        )
    if basic_auth is not None and not basic_auth:
        raise ConfigError(
            "the basic-auth password is empty", key="basic_auth", hint="give a password or a JSON file of users"
        )
    if oauth_provider is not None:
        from panel.auth import AUTH_PROVIDERS

        if oauth_provider not in AUTH_PROVIDERS:
            raise ConfigError(
                f"unknown OAuth provider {oauth_provider!r}",
                key="oauth_provider",
                value=oauth_provider,
                allowed=", ".join(sorted(AUTH_PROVIDERS)),
                hint=f"use one of {sorted(AUTH_PROVIDERS)}",
            )
        if not oauth_key or not oauth_secret:
            raise ConfigError(
                f"OAuth provider {oauth_provider!r} needs a client id and secret",
                key="oauth_key",
                hint="--oauth-key ID and --oauth-secret SECRET (or LUMINA_SERVE_OAUTH_SECRET)",
            )
    authenticated = basic_auth is not None or oauth_provider is not None
    if not authenticated and not _is_loopback(address) and not allow_unauthenticated:
        raise ConfigError(
            f"serving on {address} without authentication would show the dashboards to anyone who can reach it",
            key="address",
            value=address,
            hint="add --basic-auth PASSWORD (or a users JSON file) or --oauth-provider ..., serve on 127.0.0.1, "
            "or pass --allow-unauthenticated",
        )
    opts = ServeOptions(address=address, port=port, num_procs=num_procs)
    origins = list(allow_websocket_origin or [])
    if not origins:
        host = "localhost" if address in ("127.0.0.1", "0.0.0.0", "::", "") else address
        origins = [f"{host}:{port}", f"127.0.0.1:{port}"] if port else []
    if origins:
        opts["websocket_origin"] = origins
    if authenticated:
        opts["cookie_secret"] = cookie_secret or secrets.token_urlsafe(32)
    if basic_auth is not None:
        opts["basic_auth"] = basic_auth
    if oauth_provider is not None:
        opts.update(oauth_provider=oauth_provider, oauth_key=oauth_key, oauth_secret=oauth_secret)
        if oauth_redirect_uri:
            opts["oauth_redirect_uri"] = oauth_redirect_uri
        if oauth_extra_params:
            opts["oauth_extra_params"] = dict(oauth_extra_params)
        if oauth_encryption_key:
            opts["oauth_encryption_key"] = oauth_encryption_key
    return opts


class _Shared:
    """The lab and feed of this process (made on first session: after a ``--num-procs`` fork)."""

    def __init__(self, lab: Any, feed: bool, since: str | None) -> None:
        self._lab = lab
        self._own = lab is None
        self.feed_enabled = feed
        self.since = since
        self._pid: int | None = None
        self._feed: Any = None
        self._lock = threading.Lock()

    def get(self) -> tuple[Any, Any]:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                if self._own:
                    from ..lab import Lab

                    self._lab = Lab()
                if self.feed_enabled:
                    from .feed import StoreFeed

                    self._feed = StoreFeed(self._lab.store, since=self.since).start()
            bus = self._feed.bus if self._feed is not None else self._lab.bus
            return self._lab, bus

    def close(self) -> None:
        if self._feed is not None:
            self._feed.stop()
        if self._own and self._lab is not None:
            self._lab.close()


def make_app(
    lab: Any = None,
    *,
    components: Sequence[str] | None = None,
    layout: str | None = None,
    theme: str | None = None,
    title: str = "Lumina Lab",
    feed: bool = True,
    since: str | None = "5m",
) -> Any:
    """A function that builds one session's page (what ``panel.serve`` calls for each browser session).

    Args:
        lab: the lab to show (default: a :class:`Lab` on the configured home, made in each server process).
        feed: follow the event log (every process) rather than only ``lab.bus`` (this process).
        since: with ``feed``, start from events this long ago.
    """
    from ._panel import require_panel

    require_panel()
    shared = _Shared(lab, feed, since)

    def app() -> Any:
        from .dashboard import Dashboard

        the_lab, bus = shared.get()
        return Dashboard(the_lab, bus=bus, components=components, layout=layout, theme=theme, title=title).template()

    app.shared = shared  # type: ignore[attr-defined]
    return app


def serve(
    lab: Any = None,
    *,
    components: Sequence[str] | None = None,
    layout: str | None = None,
    theme: str | None = None,
    title: str = "Lumina Lab",
    address: str = "127.0.0.1",
    port: int = 5006,
    allow_websocket_origin: Sequence[str] | None = None,
    basic_auth: str | None = None,
    cookie_secret: str | None = None,
    oauth_provider: str | None = None,
    oauth_key: str | None = None,
    oauth_secret: str | None = None,
    oauth_redirect_uri: str | None = None,
    oauth_extra_params: dict[str, Any] | None = None,
    oauth_encryption_key: str | None = None,
    num_procs: int = 1,
    allow_unauthenticated: bool = False,
    feed: bool = True,
    since: str | None = "5m",
    show: bool = False,
    threaded: bool = False,
    verbose: bool = True,
) -> Any:
    """Serve the dashboard (blocks unless ``threaded``; then returns the server thread, ``.stop()`` to end).

    Args:
        lab: what to show (default: a :class:`Lab` on the configured home, per server process).
        components / layout / theme: what each session starts with (see :class:`Dashboard`).
        address / port: where to listen (``port=0``: any free port).
        allow_websocket_origin: ``host:port`` origins allowed to open the websocket (behind a proxy: its name).
        basic_auth: a password, or the path of a JSON file ``{"user": "password"}`` (login page + signed cookie).
        cookie_secret: signs the login cookie (default: random per start; set it to keep logins across restarts
            and with ``num_procs > 1`` behind a load balancer).
        oauth_provider / oauth_key / oauth_secret / oauth_redirect_uri / oauth_extra_params / oauth_encryption_key:
            Panel's OAuth options (``github``, ``google``, ``azure``, ``okta``, ``auth0``, ``generic``...).
        num_procs: server processes (forked; each makes its own lab and feed).
        allow_unauthenticated: allow a non-loopback address without authentication.
        feed: follow the event log of every process (else only ``lab.bus``).
        show: open a browser.
    """
    from ._panel import require_panel

    pn = require_panel()
    opts = check_options(
        address=address,
        port=port,
        allow_websocket_origin=allow_websocket_origin,
        basic_auth=basic_auth,
        cookie_secret=cookie_secret,
        oauth_provider=oauth_provider,
        oauth_key=oauth_key,
        oauth_secret=oauth_secret,
        oauth_redirect_uri=oauth_redirect_uri,
        oauth_extra_params=oauth_extra_params,
        oauth_encryption_key=oauth_encryption_key,
        num_procs=num_procs,
        allow_unauthenticated=allow_unauthenticated,
    )
    from .dashboard import _check_components, read_layout

    if components is not None:
        _check_components(components)
    if layout is not None:  # a wrong name fails here, not in every browser session
        read_layout(layout, lab.settings.home if lab is not None else None)
    if theme is not None:
        from ._panel import check_theme

        check_theme(theme)
    app = make_app(lab, components=components, layout=layout, theme=theme, title=title, feed=feed, since=since)
    if threaded and opts.get("num_procs", 1) != 1:
        raise ConfigError(
            "a threaded server runs in one process", key="num_procs", hint="use num_procs=1 with threaded=True"
        )
    log.info("serving the dashboard with %r", opts)
    server = pn.serve(
        {"/": app},
        title=title,
        show=show,
        threaded=threaded,
        verbose=verbose,
        location=True,
        liveness=True,
        **opts,
    )
    if threaded:
        server.shared = app.shared  # type: ignore[attr-defined]
    return server
