"""``lumina serve``: the dashboard served to a team with Panel's server (Bokeh/Tornado).

Every browser session gets its own :class:`~lumina_lab.ui.dashboard.Dashboard`; all sessions of a
process share one :class:`~lumina_lab.lab.Lab` and one :class:`~lumina_lab.ui.feed.StoreFeed`, which
follows the event log so the dashboard shows what every process on the machine publishes (notebook
kernels, ``lumina demo``, this server). Authentication is Panel's: a password (or a JSON file of
``{"user": "password"}``) with a login page and a signed cookie, or an OAuth/OIDC provider
(GitHub, Google, Azure, Okta, Auth0, generic OIDC...); password logins are checked against argon2 hashes
(and TOTP codes), and every login attempt, password or OAuth, is a ``security.login`` audit event
(:mod:`lumina_lab.ui.login`). Serving on an address other than loopback without authentication is
refused unless explicitly allowed.

Pages: ``/`` is the dashboard; ``/?components=memory`` (comma-separated names) shows only those views, which
is how the JupyterLab sidebar opens one view in a Lab tab; ``?theme=dark`` picks the theme.

``/metrics`` is the Prometheus endpoint: the metrics of every process on the machine, folded from the shared
event log (:class:`~lumina_lab.observability.server.StoreMetrics`). Who may read it (:func:`metrics_access`):

* ``--metrics-token TOKEN``: a scraper sending ``Authorization: Bearer TOKEN`` (Prometheus:
  ``authorization: {credentials: TOKEN}``), or a user logged in to the dashboard;
* otherwise, when the dashboard has a login: only logged-in users (Prometheus cannot log in: give it a token);
* otherwise (loopback, or ``--allow-unauthenticated``): anyone who can open the dashboard;
* ``--metrics-public``: anyone, even when the dashboard has a login; ``--no-metrics``: no endpoint.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError, LuminaError

__all__ = ["METRICS_ACCESS", "ServeOptions", "check_options", "make_app", "metrics_access", "serve"]

log = logging.getLogger(__name__)
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
#: who may read ``/metrics``: anyone, logged-in users, a bearer token (or logged-in users), nobody (not mounted)
METRICS_ACCESS = ("open", "login", "token", "off")


def _is_loopback(address: str) -> bool:
    if address in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class ServeOptions(dict):  # type: ignore[type-arg]
    """The keyword arguments given to ``panel.serve`` (a dict, shown without secrets), and who may read
    ``/metrics`` (:attr:`metrics`, one of :data:`METRICS_ACCESS`, and :attr:`metrics_token`)."""

    metrics: str = "open"
    metrics_token: str | None = None

    def __repr__(self) -> str:
        hidden = {"basic_auth", "cookie_secret", "oauth_secret", "oauth_encryption_key"}
        items = ", ".join(f"{k}={'***' if k in hidden and v else v!r}" for k, v in self.items())
        return f"ServeOptions({items}, metrics={self.metrics!r})"


def metrics_access(
    *, authenticated: bool, metrics: bool = True, metrics_token: str | None = None, metrics_public: bool = False
) -> str:
    """Who may read ``/metrics`` (one of :data:`METRICS_ACCESS`), from the serving options.

    Safe by default: the endpoint is never more open than the dashboard unless ``metrics_public`` says so.
    """
    if not metrics:
        return "off"
    if metrics_token is not None and metrics_public:
        raise ConfigError(
            "--metrics-token and --metrics-public contradict each other",
            key="metrics_token",
            hint="a token protects /metrics; --metrics-public opens it to anyone: choose one",
        )
    if metrics_token is not None:
        if len(metrics_token) < 16:
            raise ConfigError(
                "the metrics token is shorter than 16 characters",
                key="metrics_token",
                hint="use a long random token, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        return "token"
    if metrics_public:
        return "open"
    return "login" if authenticated else "open"


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
    metrics: bool = True,
    metrics_token: str | None = None,
    metrics_public: bool = False,
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
    if basic_auth and basic_auth.endswith(".json"):
        from ..security.passwords import read_users

        try:
            users = read_users(basic_auth)
        except LuminaError as exc:
            raise ConfigError(f"--basic-auth: {exc.message}", key="basic_auth", hint=exc.hint) from None
        if not users:
            raise ConfigError(
                f"the users file {basic_auth} does not exist or holds no users",
                key="basic_auth",
                hint=f"lumina users add NAME --file {basic_auth}",
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
    opts.metrics = metrics_access(
        authenticated=authenticated, metrics=metrics, metrics_token=metrics_token, metrics_public=metrics_public
    )
    opts.metrics_token = metrics_token
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

    #: seconds between looks at the event log for other processes' events (the feed; see StoreFeed)
    feed_poll_s = 0.05

    def __init__(self, lab: Any, feed: bool, since: str | None, bus: Any = None) -> None:
        from datetime import UTC, datetime

        self._lab = lab
        self._bus = bus
        self._own = lab is None
        self.feed_enabled = feed
        self.since = since
        self.started = datetime.now(UTC)  # metrics count from the server's start (before a --num-procs fork)
        self._pid: int | None = None
        self._feed: Any = None
        self._metrics: Any = None
        self._lock = threading.RLock()

    def _this_process(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._feed = self._metrics = None
            if self._own:
                from ..lab import Lab

                self._lab = Lab()

    def get(self) -> tuple[Any, Any]:
        with self._lock:
            self._this_process()
            if self._bus is not None:
                return self._lab, self._bus
            if self._feed is None and self.feed_enabled:
                from .feed import open_feed

                self._feed = open_feed(self._lab, since=self.since, poll_s=self.feed_poll_s)
            bus = self._feed.bus if self._feed is not None else self._lab.bus
            return self._lab, bus

    def lab(self) -> Any:
        """The lab of this process."""
        with self._lock:
            self._this_process()
            return self._lab

    def metrics(self) -> Any:
        """What ``/metrics`` shows: every process's events from the event log (a given lab without the feed:
        that lab's own metrics when it has them)."""
        with self._lock:
            self._this_process()
            if self._metrics is None:
                obs = getattr(self._lab, "observability", None)
                if not self.feed_enabled and obs is not None and obs.metrics is not None:
                    self._metrics = obs.metrics
                else:
                    from ..observability.server import StoreMetrics

                    self._metrics = StoreMetrics(self._lab.store, since=self.started)
            return self._metrics

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
    bus: Any = None,
) -> Any:
    """A function that builds one session's page (what ``panel.serve`` calls for each browser session).

    Args:
        lab: the lab to show (default: a :class:`Lab` on the configured home, made in each server process).
        feed: follow the event log (every process) rather than only ``lab.bus`` (this process).
        since: with ``feed``, start from events this long ago.
        bus: show what is published on this bus (instead of the feed or ``lab.bus``; one process).
    """
    from ._panel import require_panel

    require_panel()
    shared = _Shared(lab, feed and bus is None, since, bus)

    def app() -> Any:
        from .dashboard import Dashboard

        the_lab, bus = shared.get()
        return Dashboard.for_page(
            the_lab, bus=bus, components=components, layout=layout, theme=theme, title=title
        ).template()

    app.shared = shared  # type: ignore[attr-defined]
    return app


def metrics_handler(
    source: Any,
    access: str = "open",
    token: str | None = None,
    tokens: Any = None,
    audit_bus: Callable[[], Any] | None = None,
) -> Any:
    """The tornado handler of ``/metrics`` in the Panel server (``source``: a function returning what
    :func:`~lumina_lab.observability.server.as_registry` accepts; ``access``: see :func:`metrics_access`;
    ``tokens``: a :class:`~lumina_lab.security.tokens.TokenFile` whose ``metrics`` tokens are accepted as
    bearers beside ``token``; ``audit_bus``: returns the bus on which each refusal is a
    ``security.access.refused`` event)."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from tornado import web
    from tornado.ioloop import IOLoop

    from ..observability.metrics import need_prometheus_client
    from ..observability.server import exposition

    need_prometheus_client()
    if access not in METRICS_ACCESS:
        raise ConfigError(f"metrics access {access!r}", key="metrics", allowed=", ".join(METRICS_ACCESS))
    expected = token.encode() if token else None

    class LuminaMetricsHandler(web.RequestHandler):
        async def _refusal(self) -> str | None:
            """Why this request may not read the metrics (``None``: it may)."""
            if access == "open":
                return None
            scheme, _, credentials = self.request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and (expected is not None or tokens is not None):
                given = credentials.strip()
                if expected is not None and hmac.compare_digest(given.encode(), expected):
                    return None
                try:
                    ok = tokens is not None and tokens.verify(given, "metrics") is not None
                except LuminaError as exc:  # a damaged tokens file refuses, and says why in the log
                    log.warning("/metrics: %s", exc)
                    return "tokens file unreadable"
                return None if ok else "unknown token"
            provider = getattr(self.application, "auth_provider", None)  # a user logged in to the dashboard
            if provider is None:
                return "no credentials"
            if getattr(provider, "get_user", None) is not None:
                user = provider.get_user(self)
            elif getattr(provider, "get_user_async", None) is not None:
                user = await provider.get_user_async(self)
            else:
                user = None
            return None if user else "not logged in"

        async def get(self) -> None:
            refusal = await self._refusal()
            if refusal is not None:
                from ..security.events import AccessRefused, audit

                audit(audit_bus, AccessRefused, resource="/metrics", reason=refusal, remote=self.request.remote_ip)
                self.set_status(401)
                self.set_header("WWW-Authenticate", 'Bearer realm="lumina metrics"')
                hint = (
                    "send Authorization: Bearer TOKEN (lumina tokens create NAME, or lumina serve --metrics-token)"
                    if expected is not None or tokens is not None
                    else "log in first"
                )
                self.finish(f"401: /metrics needs authentication: {hint}\n")
                return
            text = await IOLoop.current().run_in_executor(None, lambda: exposition(source()))
            self.set_header("Content-Type", CONTENT_TYPE_LATEST)
            self.set_header("Cache-Control", "no-store")
            self.finish(text)

    return LuminaMetricsHandler


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
    metrics: bool = True,
    metrics_token: str | None = None,
    metrics_public: bool = False,
    feed: bool = True,
    since: str | None = "5m",
    bus: Any = None,
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
        metrics / metrics_token / metrics_public: the Prometheus endpoint ``/metrics`` and who may read it
            (see :func:`metrics_access`: by default no more than who may see the dashboard).
        feed: follow the event log of every process (else only ``lab.bus``).
        bus: show what is published on this bus instead (one process; a benchmark's or a test's).
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
        metrics=metrics,
        metrics_token=metrics_token,
        metrics_public=metrics_public,
    )
    from .dashboard import _check_components, read_layout

    if components is not None:
        _check_components(components)
    if layout is not None:  # a wrong name fails here, not in every browser session
        read_layout(layout, lab.settings.home if lab is not None else None)
    if theme is not None:
        from ._panel import check_theme

        check_theme(theme)
    app = make_app(lab, components=components, layout=layout, theme=theme, title=title, feed=feed, since=since, bus=bus)
    if threaded and opts.get("num_procs", 1) != 1:
        raise ConfigError(
            "a threaded server runs in one process", key="num_procs", hint="use num_procs=1 with threaded=True"
        )
    extra = []
    audit_to = lambda: app.shared.lab().bus  # noqa: E731 - the bus of the audit events (logins, refusals)
    if opts.metrics != "off":
        from ..security.tokens import TokenFile, default_path

        tokens = TokenFile(default_path(lab.settings.home if lab is not None else None))
        handler = metrics_handler(app.shared.metrics, opts.metrics, opts.metrics_token, tokens, audit_to)
        extra.append((r"/metrics", handler))
        if opts.metrics == "login":
            log.warning("/metrics needs a dashboard login; give Prometheus a token: lumina tokens create prometheus")
    log.info("serving the dashboard with %r", opts)
    if "basic_auth" in opts or "oauth_provider" in opts:
        from . import login

        if "basic_auth" in opts:
            login.install_password_check()
        else:
            login.install_oauth_audit(opts["oauth_provider"])
        login.audit_bus = audit_to  # every login attempt is a security.login event
    server = pn.serve(
        {"/": app},
        extra_patterns=extra,
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
