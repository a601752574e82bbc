"""``lumina serve``: the click command (Panel is imported only when it runs)."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["serve"]


def _components(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


@click.command("serve")
@click.option(
    "--address", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)."
)
@click.option("--port", type=int, default=5006, show_default=True, help="Port (0: any free port).")
@click.option(
    "--allow-websocket-origin",
    "origins",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Origin allowed to open the websocket (repeatable; behind a proxy, its public name).",
)
@click.option(
    "--basic-auth",
    envvar="LUMINA_SERVE_BASIC_AUTH",
    metavar="PASSWORD|FILE",
    help='Require a login: one password, or a JSON file {"user": "password"} [env LUMINA_SERVE_BASIC_AUTH].',
)
@click.option(
    "--cookie-secret",
    envvar="LUMINA_SERVE_COOKIE_SECRET",
    help="Signs login cookies (default: random per start) [env LUMINA_SERVE_COOKIE_SECRET].",
)
@click.option("--oauth-provider", help="OAuth/OIDC login: github, google, azure, okta, auth0, generic, ...")
@click.option("--oauth-key", envvar="LUMINA_SERVE_OAUTH_KEY", help="OAuth client id [env LUMINA_SERVE_OAUTH_KEY].")
@click.option(
    "--oauth-secret", envvar="LUMINA_SERVE_OAUTH_SECRET", help="OAuth client secret [env LUMINA_SERVE_OAUTH_SECRET]."
)
@click.option("--oauth-redirect-uri", help="The public URL the provider redirects back to.")
@click.option("--oauth-extra-params", help='JSON object of provider options, e.g. \'{"tenant": "..."}\'.')
@click.option(
    "--oauth-encryption-key", envvar="LUMINA_SERVE_OAUTH_ENCRYPTION_KEY", help="Encrypts OAuth tokens in cookies."
)
@click.option("--num-procs", type=int, default=1, show_default=True, help="Server processes (0: one per CPU).")
@click.option("--components", help="Comma-separated: overview,providers,events,memory,policy,routing.")
@click.option("--layout", help="Start from a layout saved from the dashboard (LUMINA_HOME/dashboards/NAME.json).")
@click.option("--theme", type=click.Choice(["default", "dark"]), help="Light (default) or dark.")
@click.option("--since", default="5m", show_default=True, help="Show events from this long ago on.")
@click.option("--allow-unauthenticated", is_flag=True, help="Allow a non-loopback --address without a login.")
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Serve Prometheus metrics of every process on /metrics.",
)
@click.option(
    "--metrics-token",
    envvar="LUMINA_SERVE_METRICS_TOKEN",
    metavar="TOKEN",
    help="/metrics accepts 'Authorization: Bearer TOKEN' (Prometheus: authorization.credentials); logged-in "
    "users too [env LUMINA_SERVE_METRICS_TOKEN]. Without it, /metrics is as open as the dashboard.",
)
@click.option(
    "--metrics-public", is_flag=True, help="Serve /metrics without any login even when the dashboard has one."
)
@click.option("--show/--no-show", default=False, show_default=True, help="Open a browser tab.")
def serve(
    address: str,
    port: int,
    origins: tuple[str, ...],
    basic_auth: str | None,
    cookie_secret: str | None,
    oauth_provider: str | None,
    oauth_key: str | None,
    oauth_secret: str | None,
    oauth_redirect_uri: str | None,
    oauth_extra_params: str | None,
    oauth_encryption_key: str | None,
    num_procs: int,
    components: str | None,
    layout: str | None,
    theme: str | None,
    since: str,
    allow_unauthenticated: bool,
    metrics: bool,
    metrics_token: str | None,
    metrics_public: bool,
    show: bool,
) -> None:
    """Serve the live dashboards (what every process on this machine publishes) to a browser or a team."""
    from ..errors import ConfigError, LuminaError

    try:
        extra = None
        if oauth_extra_params:
            try:
                extra = json.loads(oauth_extra_params)
            except ValueError as exc:
                raise ConfigError(f"--oauth-extra-params is not JSON: {exc}", key="oauth_extra_params") from None
        from .server import serve as run

        run(
            components=_components(components),
            layout=layout,
            theme=theme,
            address=address,
            port=port,
            allow_websocket_origin=list(origins) or None,
            basic_auth=basic_auth,
            cookie_secret=cookie_secret,
            oauth_provider=oauth_provider,
            oauth_key=oauth_key,
            oauth_secret=oauth_secret,
            oauth_redirect_uri=oauth_redirect_uri,
            oauth_extra_params=extra,
            oauth_encryption_key=oauth_encryption_key,
            num_procs=num_procs,
            allow_unauthenticated=allow_unauthenticated,
            metrics=metrics,
            metrics_token=metrics_token,
            metrics_public=metrics_public,
            since=since,
            show=show,
        )
    except LuminaError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
