"""The ``lumina`` command.

User mistakes (bad configuration, a malformed query) print one message with
the fix and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ._version import __version__
from .policy.cli import policy as policy_group

F = TypeVar("F", bound=Callable[..., Any])

#: Optional libraries and what Lumina Lab uses them for (distribution name -> role).
OPTIONAL = {
    "duckdb": "event store queries",
    "pyarrow": "event segments",
    "pandas": "DataFrames",
    "panel": "dashboards",
    "holoviews": "plots",
    "hvplot": "plots",
    "cedarpy": "policies",
    "langchain-core": "chat models and embeddings",
    "httpx": "OpenAI-compatible HTTP",
    "opentelemetry-sdk": "tracing",
    "pymilvus": "Milvus vector store",
    "weaviate-client": "Weaviate vector store",
    "aio-pika": "RabbitMQ bus",
    "nats-py": "NATS bus",
    "distributed": "Dask sweeps",
    "papermill": "notebook runs",
}

#: Servers Lumina Lab can use, probed with a TCP connect (name -> (env var with URL, default host, port)).
SERVICES = {
    "rabbitmq": ("LUMINA_RABBITMQ_URL", "127.0.0.1", 5672),
    "nats": ("LUMINA_NATS_URL", "127.0.0.1", 4222),
    "postgresql": ("LUMINA_POSTGRES_URL", "127.0.0.1", 5432),
    "redis": ("LUMINA_REDIS_URL", "127.0.0.1", 6379),
    "milvus": ("MILVUS_URI", "127.0.0.1", 19530),
    "weaviate": ("WEAVIATE_URL", "127.0.0.1", 8080),
}


def _friendly_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import LuminaError

        try:
            return fn(*args, **kwargs)
        except LuminaError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lumina")
def main() -> None:
    """Lumina Lab: build, simulate and operate LLM agent infrastructure.

    Configuration comes from arguments, LUMINA_* environment variables and
    lumina.toml; see `lumina info`.
    """


# ---------------------------------------------------------------------------------------- info
def _probe(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host_port(url: str | None, host: str, port: int) -> tuple[str, int]:
    if not url:
        return host, port
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    return parts.hostname or host, parts.port or port


def _info() -> dict[str, Any]:
    from .config import config_file, load_settings

    settings = load_settings()
    libs = {}
    for dist, role in OPTIONAL.items():
        try:
            libs[dist] = {"version": importlib.metadata.version(dist), "for": role}
        except importlib.metadata.PackageNotFoundError:
            libs[dist] = {"version": None, "for": role}
    services = {}
    for name, (env, host, port) in SERVICES.items():
        h, p = _host_port(os.environ.get(env), host, port)
        services[name] = {"address": f"{h}:{p}", "reachable": _probe(h, p)}
    events_dir = settings.events_dir
    segments = len(list((events_dir / "log").glob("*.parquet"))) if (events_dir / "log").is_dir() else 0
    return {
        "lumina_lab": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "profile": settings.profile,
        "home": str(settings.home),
        "config_file": str(config_file()) if config_file() else None,
        "event_store": settings.events.store,
        "events_dir": str(events_dir),
        "event_segments": segments,
        "libraries": libs,
        "services": services,
        "security": _security_info(settings),
    }


def _security_info(settings: Any) -> dict[str, Any]:
    """What protects this home: memory encryption and its key ring, dashboard users, API tokens (read only)."""
    from .errors import ValidationError
    from .security import ENV_KEY, keys, passwords, tokens

    ring_file = keys.default_path(settings.home)
    ring = str(ring_file) if ring_file.exists() else None
    out: dict[str, Any] = {
        "memory_encrypt": settings.memory.encrypt,
        "key_ring": f"${ENV_KEY}" if os.environ.get(ENV_KEY) else ring,
    }
    try:
        users = passwords.read_users(passwords.default_path(settings.home))
        out["dashboard_users"] = len(users)
        out["users_with_totp"] = sum(passwords.entry_parts(e)[1] is not None for e in users.values())
        out["api_tokens"] = len(tokens.TokenFile(tokens.default_path(settings.home)).names())
    except ValidationError as exc:  # a damaged file is reported, not fatal to `lumina info`
        out["error"] = exc.message
    return out


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@_friendly_errors
def info(as_json: bool) -> None:
    """Versions, paths, configuration, optional libraries and reachable servers."""
    data = _info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]lumina_lab {data['lumina_lab']}[/] on Python {data['python']} ({data['platform']})")
    for key in ("profile", "home", "config_file", "event_store", "events_dir", "event_segments"):
        console.print(f"  {key:<15} {data[key]}")
    libs = Table(title="Libraries", title_justify="left")
    for col in ("package", "version", "used for"):
        libs.add_column(col)
    for dist, row in data["libraries"].items():
        libs.add_row(dist, row["version"] or "[dim]not installed[/]", row["for"])
    console.print(libs)
    svc = Table(title="Servers", title_justify="left")
    for col in ("service", "address", "reachable"):
        svc.add_column(col)
    for name, row in data["services"].items():
        svc.add_row(name, row["address"], "[green]yes[/]" if row["reachable"] else "[dim]no[/]")
    console.print(svc)
    sec = data["security"]
    console.print("[bold]Security[/]")
    for key, value in sec.items():
        console.print(f"  {key:<17} {value}")


# ---------------------------------------------------------------------------------------- events
@main.group()
def events() -> None:
    """Query and follow the event store."""


def _print_frame(frame: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(frame.to_json(orient="records", lines=True, date_format="iso"), nl=False)
    elif fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for col in frame.columns:
            table.add_column(str(col), overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)


def _open_store() -> Any:
    from .events.store import open_store

    return open_store()


def _import_plugins(modules: tuple[str, ...]) -> None:
    from .errors import ValidationError

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ValidationError(
                f"cannot import --types module {mod!r}: {exc}", hint="check the module name"
            ) from None


@events.command("query")
@click.argument("where", required=False)
@click.option("--type", "type_", help="Glob over event types, e.g. 'provider.*'.")
@click.option("--since", help="Start: ISO time or an age such as 15m, 2h, 1d.")
@click.option("--until", help="End: ISO time or an age.")
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="At most this many (newest).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_friendly_errors
def events_query(
    where: str | None, type_: str | None, since: str | None, until: str | None, limit: int, fmt: str
) -> None:
    """Print stored events matching WHERE (SQL over id, type, ts, source, trace_id, payload ...).

    Example: lumina events query "type LIKE 'provider.%'" --since 1h
    """
    store = _open_store()
    try:
        frame = store.query(where, type=type_, since=since, until=until, limit=limit, newest_first=True)
        _print_frame(frame.iloc[::-1], fmt)
    finally:
        store.close()


@events.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_friendly_errors
def events_sql(query: str, fmt: str) -> None:
    """Run a SQL QUERY over the tables events, dead_letters and dead_marks."""
    store = _open_store()
    try:
        _print_frame(store.sql(query), fmt)
    finally:
        store.close()


@events.command("tail")
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are stored.")
@click.option("--type", "type_", help="Glob over event types.")
@click.option("--since", default="10m", show_default=True, help="Start: ISO time or an age.")
@click.option("--poll", type=float, default=0.5, show_default=True, help="Seconds between looks with --follow.")
@click.option("--max", "max_events", type=int, default=None, help="Stop after this many events.")
@_friendly_errors
def events_tail(follow: bool, type_: str | None, since: str, poll: float, max_events: int | None) -> None:
    """Print stored events, one JSON line each, oldest first (from every process on this machine)."""
    store = _open_store()
    seen = 0
    try:
        for row in store.tail(follow=follow, poll_s=poll, type=type_, since=since):
            row = dict(row)
            row["ts"] = row["ts"].isoformat()
            row["payload"] = json.loads(row["payload"])
            click.echo(json.dumps(row, default=str))
            seen += 1
            if max_events is not None and seen >= max_events:
                break
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


@events.command("dead-letters")
@click.option("--all", "include_replayed", is_flag=True, help="Include letters already replayed.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_friendly_errors
def events_dead_letters(include_replayed: bool, fmt: str) -> None:
    """Print events that subscribers failed to handle."""
    store = _open_store()
    try:
        frame = store.dead_letters(include_replayed=include_replayed)
        _print_frame(frame[["id", "ts", "subscriber", "event_type", "error_type", "error", "attempts"]], fmt)
    finally:
        store.close()


@events.command("compact")
@_friendly_errors
def events_compact() -> None:
    """Merge event segments left by processes that have exited."""
    store = _open_store()
    try:
        if not hasattr(store, "compact"):
            click.echo(f"the {store.kind} store has nothing to compact")
            return
        removed = store.compact()
        click.echo(f"merged segments of exited processes: {removed} file(s) merged away")
    finally:
        store.close()


# ---------------------------------------------------------------------------------------- keys
@main.group()
def keys() -> None:
    """The key ring that seals sensitive memory fields (memory.encrypt): show, rotate, rewrap, retire."""


def _needs_file(ring: Any) -> None:
    from .errors import ConfigError
    from .security import ENV_KEY

    if ring.path is None:
        raise ConfigError(
            f"the key ring comes from ${ENV_KEY}: a change here would be lost",
            key=ENV_KEY,
            hint=f"unset {ENV_KEY} to use the key ring file under LUMINA_HOME/keys (or change the variable itself)",
        )


@keys.command("show")
@_friendly_errors
def keys_show() -> None:
    """Print the key ids (never the keys) and which one is active."""
    from .security import ENV_KEY, KeyRing

    ring = KeyRing.configured()
    where = ring.path if ring.path is not None else f"${ENV_KEY}"
    click.echo(f"key ring: {where}")
    for kid in ring.ids:
        click.echo(f"  {kid}{'  (active)' if kid == ring.active else ''}")


@keys.command("rotate")
@_friendly_errors
def keys_rotate() -> None:
    """Add a key and make it active (values sealed before still open; `lumina keys rewrap` moves them)."""
    from .lab import Lab

    with Lab() as lab:
        ring = lab.keys
        _needs_file(ring)
        previous = ring.active
        kid = ring.rotate()
        click.echo(f"active key: {kid} (was {previous})")


@keys.command("rewrap")
@_friendly_errors
def keys_rewrap() -> None:
    """Wrap every sealed value of the memory store again with the active key (payloads untouched)."""
    from .errors import ConfigError
    from .lab import Lab

    with Lab() as lab:
        if not lab.settings.memory.encrypt:
            raise ConfigError("memory.encrypt is off: nothing is sealed", key="memory.encrypt")
        store = lab.memory.store
        shards = getattr(store, "shards", [store])
        n = sum(s.rewrap() for s in shards)
        click.echo(f"rewrapped {n} value(s) with key {lab.keys.active}")


@keys.command("retire")
@click.argument("key_id")
@_friendly_errors
def keys_retire(key_id: str) -> None:
    """Remove an old key (after `lumina keys rewrap`): values still sealed with it will not open."""
    from .lab import Lab

    with Lab() as lab:
        _needs_file(lab.keys)
        lab.keys.retire(key_id)
        click.echo(f"retired {key_id}; keys: {', '.join(lab.keys.ids)}")


# ---------------------------------------------------------------------------------------- users
@main.group()
def users() -> None:
    """Dashboard logins: a users file of argon2 hashes for `lumina serve --basic-auth FILE`."""


def _users_file(path: str | None) -> Path:
    from .security.passwords import default_path

    return Path(path) if path else default_path()


@users.command("add")
@click.argument("name")
@click.option("--file", "path", default=None, help="The users file [default: $LUMINA_HOME/users.json].")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@click.option("--totp", is_flag=True, help="Also require a one-time code from an authenticator app.")
@_friendly_errors
def users_add(name: str, path: str | None, password_stdin: bool, totp: bool) -> None:
    """Add NAME (or change their password): only an argon2id hash is written."""
    from .security.passwords import add_user, totp_uri

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    target = _users_file(path)
    secret = add_user(target, name, password, totp=totp)
    if secret is not None:
        click.echo(f"add this to {name}'s authenticator app (or as a QR code): {totp_uri(name, secret)}")
    click.echo(f"{name} can log in; serve with: lumina serve --basic-auth {target}")


@users.command("list")
@click.option("--file", "path", default=None, help="The users file [default: $LUMINA_HOME/users.json].")
@_friendly_errors
def users_list(path: str | None) -> None:
    """Print the user names (and whether each password is hashed)."""
    from .security.passwords import entry_parts, is_hash, read_users

    for name, entry in read_users(_users_file(path)).items():
        stored, totp = entry_parts(entry)
        kind = "argon2" if is_hash(stored) else "PLAIN TEXT: run lumina users add " + name
        click.echo(f"{name}\t{kind}{' + totp' if totp is not None else ''}")


# ---------------------------------------------------------------------------------------- tokens
@main.group()
def tokens() -> None:
    """API tokens for machine clients (Prometheus on `lumina serve`'s /metrics): create, list, revoke."""


@tokens.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, default=("metrics",), show_default=True, help="What it may read.")
@_friendly_errors
def tokens_create(name: str, scopes: tuple[str, ...]) -> None:
    """Make the token NAME and print it (only now: the tokens file keeps its digest)."""
    from .security.tokens import TokenFile

    secret = TokenFile().create(name, scopes)
    click.echo(secret)
    click.echo(f"(shown once) Prometheus: authorization: {{credentials: {secret}}}", err=True)


@tokens.command("list")
@_friendly_errors
def tokens_list() -> None:
    """Print the tokens' names, scopes and creation times (never the tokens)."""
    from .security.tokens import TokenFile

    for name, info in TokenFile().names().items():
        click.echo(f"{name}\t{','.join(info['scopes'])}\t{info['created']}")


@tokens.command("revoke")
@click.argument("name")
@_friendly_errors
def tokens_revoke(name: str) -> None:
    """Revoke the token NAME (a running `lumina serve` stops accepting it at once)."""
    from .security.tokens import TokenFile

    TokenFile().revoke(name)
    click.echo(f"revoked {name}")


# ---------------------------------------------------------------------------------------- providers
@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_friendly_errors
def providers(fmt: str) -> None:
    """List the configured providers with capabilities, prices and health."""
    from .lab import Lab

    with Lab() as lab:
        _print_frame(lab.providers.table(), fmt)


@main.command()
@click.argument("prompt")
@click.option("--needs", multiple=True, help="Required capability (repeatable): code, vision, tools, ...")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@click.option("--project", help="Project charged (budgets).")
@click.option("--route-only", is_flag=True, help="Show where it would go; do not call.")
@_friendly_errors
def ask(prompt: str, needs: tuple[str, ...], max_tokens: int, project: str | None, route_only: bool) -> None:
    """Route PROMPT to a provider and print the answer (or, with --route-only, the routing decision)."""
    from .lab import Lab

    with Lab() as lab:
        if route_only:
            decision = lab.route(prompt, needs=frozenset(needs), max_tokens=max_tokens, project=project)
            click.echo(f"strategy: {decision.strategy}")
            for i, pid in enumerate(decision.ranked, 1):
                click.echo(f"{i}. {pid}  predicted ${decision.predicted_cost_usd[pid]:.6f}")
            for pid, why in decision.excluded.items():
                click.echo(f"-  {pid}: {why}")
            return
        r = lab.ask(prompt, needs=frozenset(needs), max_tokens=max_tokens, project=project)
        click.echo(r.text)
        click.secho(
            f"[{r.provider} · {r.usage.input_tokens}+{r.usage.output_tokens} tokens · ${r.cost_usd:.6f} · "
            f"{r.latency_s * 1000:.0f} ms · tried {', '.join(r.tried)}]",
            fg="cyan",
            err=True,
        )


# ---------------------------------------------------------------------------------------- demo
@main.command()
@click.option("--requests", "-n", type=int, default=20_000, show_default=True, help="Simulated requests.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--budget", type=float, default=0.6, show_default=True, help="Daily budget per project (USD).")
@click.option("--concurrency", type=int, default=256, show_default=True, help="Requests in flight at once.")
@click.option("--home", type=click.Path(file_okay=False), help="LUMINA_HOME for this run.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--serve", "serve_", is_flag=True, help="Show the run on the live dashboard (served from this process).")
@click.option("--port", type=int, default=5006, show_default=True, help="With --serve: the dashboard's port (0: any free).")
@click.option("--rate", type=float, default=None,
              help="Requests started per second (default: as fast as they go; with --serve: 200, to watch).")
@click.option("--serve-for", type=float, default=None,
              help="With --serve: seconds to keep serving after the run (default: until Ctrl-C).")
@_friendly_errors
def demo(
    requests: int,
    seed: int,
    budget: float,
    concurrency: int,
    home: str | None,
    no_progress: bool,
    serve_: bool,
    port: int,
    rate: float | None,
    serve_for: float | None,
) -> None:
    """Route a simulated team workload through Lumina Lab and print a summary (--serve: watch it live)."""
    import importlib.util
    import socket
    import time

    from rich.console import Console

    from .demo import run_demo
    from .errors import ValidationError
    from .lab import Lab

    if requests < 1:
        raise ValidationError(f"--requests {requests} must be at least 1", input=requests)
    if concurrency < 1:
        raise ValidationError(f"--concurrency {concurrency} must be at least 1", input=concurrency)
    if rate is not None and rate <= 0:
        raise ValidationError(f"--rate {rate} must be positive", input=rate, hint="requests per second, e.g. --rate 200")
    if not serve_ and (serve_for is not None or port != 5006):
        raise ValidationError("--port and --serve-for go with --serve", hint="lumina demo --serve --port 5007")
    console = Console()
    with Lab(**({"home": home} if home else {})) as lab:
        server = None
        if serve_:
            from .ui.server import serve

            if port == 0:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
            # the dashboard follows this lab's bus: what the demo routes shows up as it happens
            metrics = importlib.util.find_spec("prometheus_client") is not None  # the observability extra
            server = serve(lab, feed=False, port=port, threaded=True, verbose=False, metrics=metrics)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # listening before the workload starts
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            extra = "  (Prometheus: /metrics)" if metrics else ""
            console.print(f"[bold]dashboard:[/] http://127.0.0.1:{port}/{extra}", highlight=False)
            rate = rate or 200.0
        try:
            report = run_demo(
                lab,
                requests=requests,
                seed=seed,
                budget_usd=budget,
                concurrency=concurrency,
                progress=not no_progress,
                rate=rate,
            )
            console.print(report)
            if server is not None:
                if serve_for is None:
                    console.print(f"still serving http://127.0.0.1:{port}/ — Ctrl-C to stop", highlight=False)
                    try:
                        while True:
                            time.sleep(3600)
                    except KeyboardInterrupt:
                        pass
                else:
                    time.sleep(serve_for)
        finally:
            if server is not None:
                server.stop()


# ---------------------------------------------------------------------------------------- policy
main.add_command(policy_group, "policy")


# ---------------------------------------------------------------------------------------- lab
@main.command(
    "lab", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False
)
@click.pass_context
def lab(ctx: click.Context) -> None:
    """JupyterLab on the project's notebooks with the Lumina sidebar (see `lumina lab --help`)."""
    try:  # the Jupyter wiring lives in the extension's package, extensions/lumina-jupyterlab
        from lumina_jupyterlab.launch import lab as lab_command
    except ImportError:
        click.secho("error: `lumina lab` needs the JupyterLab extension\n  fix: pip install -e extensions/lumina-jupyterlab",
                    fg="red", err=True)
        sys.exit(2)
    lab_command.main(ctx.args, prog_name="lumina lab")


# ---------------------------------------------------------------------------------------- observability
from .observability.cli import metrics as metrics_group  # noqa: E402 - registered after main exists
from .observability.cli import traces as traces_group  # noqa: E402

main.add_command(metrics_group, "metrics")
main.add_command(traces_group, "traces")


# ---------------------------------------------------------------------------------------- serve
from .ui.cli import serve as serve_command  # noqa: E402 - Panel loads only when the command runs

main.add_command(serve_command, "serve")


if __name__ == "__main__":  # pragma: no cover
    main()
