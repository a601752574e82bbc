"""`lumina serve`: options checked up front, the page served, logins required when asked for."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("panel")
httpx = pytest.importorskip("httpx")

from click.testing import CliRunner  # noqa: E402

from lumina_lab.cli import main  # noqa: E402
from lumina_lab.errors import ConfigError  # noqa: E402
from lumina_lab.ui.server import check_options  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"lumina serve exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/liveness", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"lumina serve did not listen on {port} within {timeout}s")


TOTP_SECRETS: dict[str, str] = {}
HOMES: dict[str, str] = {}


class OIDCProvider:
    """A small OpenID Connect provider on 127.0.0.1 (authorization-code flow), as an identity provider
    answers Panel's generic OAuth handler: ``/authorize`` signs in :attr:`user` (or, with :attr:`deny`,
    answers ``access_denied``) and sends the browser back with a one-time code; ``/token`` exchanges
    that code, for this client only, for an access token and an id_token naming the user's e-mail."""

    CLIENT, SECRET = "lumina-client", "oidc-secret"

    def __init__(self) -> None:
        import base64
        import secrets
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlencode, urlparse

        self.user, self.deny = "ada@example.org", False
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (user, redirect_uri)
        self.exchanged: list[str] = []
        idp = self

        def b64(obj: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path != "/authorize" or q.get("client_id") != idp.CLIENT or "redirect_uri" not in q:
                    return self._json(400, {"error": "invalid_request"})
                if idp.deny:
                    back = {"error": "access_denied", "state": q.get("state", "")}
                else:
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = (idp.user, q["redirect_uri"])
                    back = {"code": code, "state": q.get("state", "")}
                self.send_response(302)
                self.send_header("Location", q["redirect_uri"] + "?" + urlencode(back))
                self.end_headers()

            def do_POST(self) -> None:
                form = {
                    k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()
                }
                if self.path != "/token":
                    return self._json(404, {"error": "not_found"})
                if (form.get("client_id"), form.get("client_secret")) != (idp.CLIENT, idp.SECRET):
                    return self._json(401, {"error": "invalid_client"})
                user, redirect_uri = idp.codes.pop(form.get("code", ""), (None, None))  # a code works once
                if user is None or form.get("redirect_uri") != redirect_uri:
                    return self._json(400, {"error": "invalid_grant"})
                idp.exchanged.append(user)
                id_token = ".".join([b64({"alg": "none"}), b64({"sub": user.split("@")[0], "email": user}), ""])
                self._json(
                    200,
                    {
                        "access_token": secrets.token_urlsafe(24),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "id_token": id_token,
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


IDP: list[OIDCProvider] = []


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, subprocess.Popen[str]]]]:
    """Two `lumina serve` processes started at once (for the module): one with a password, one with GitHub OAuth."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMINA_")}
    env.update(
        LUMINA_HOME=str(tmp_path_factory.mktemp("serve-home")),
        LUMINA_PROFILE="test",
        LUMINA_SERVE_BASIC_AUTH="s3cret",
        LUMINA_SERVE_OAUTH_SECRET="oauth-secret",
    )
    started: dict[str, tuple[int, subprocess.Popen[str]]] = {}
    HOMES["password"] = env["LUMINA_HOME"]
    cmd = [sys.executable, "-m", "lumina_lab", "serve", "--no-show"]
    pw, oa, hashed = free_port(), free_port(), free_port()
    started["password"] = (pw, subprocess.Popen([*cmd, "--port", str(pw)], env=env, stderr=subprocess.PIPE, text=True))
    users = Path(env["LUMINA_HOME"]) / "users.json"
    from lumina_lab.security.passwords import add_user

    add_user(users, "ann", "s3cret")  # what `lumina users add ann` writes: an argon2id hash only
    add_user(users, "bob", "hunter2")
    TOTP_SECRETS["carol"] = add_user(users, "carol", "c4rol", totp=True)  # type: ignore[assignment]
    # the dev profile: a file event log, so the login audit events can be read back
    env_hashed = {k: v for k, v in env.items() if k not in ("LUMINA_SERVE_BASIC_AUTH", "LUMINA_PROFILE")}
    env_hashed["LUMINA_HOME"] = HOMES["hashed"] = str(tmp_path_factory.mktemp("serve-hashed-home"))
    started["hashed"] = (
        hashed,
        subprocess.Popen(
            [*cmd, "--port", str(hashed), "--basic-auth", str(users)], env=env_hashed, stderr=subprocess.PIPE, text=True
        ),
    )
    env_oauth = {k: v for k, v in env.items() if k != "LUMINA_SERVE_BASIC_AUTH"}
    started["oauth"] = (
        oa,
        subprocess.Popen(
            [
                *cmd,
                "--port",
                str(oa),
                "--oauth-provider",
                "github",
                "--oauth-key",
                "client-id",
                "--oauth-redirect-uri",
                f"http://127.0.0.1:{oa}/login",
            ],
            env=env_oauth,
            stderr=subprocess.PIPE,
            text=True,
        ),
    )
    # generic OpenID Connect against the provider above, with the dev profile's file event log (the audit)
    idp = OIDCProvider()
    IDP.append(idp)
    oidc = free_port()
    env_oidc = {k: v for k, v in env_oauth.items() if k not in ("LUMINA_PROFILE", "LUMINA_SERVE_OAUTH_SECRET")}
    env_oidc["LUMINA_HOME"] = HOMES["oidc"] = str(tmp_path_factory.mktemp("serve-oidc-home"))
    env_oidc["LUMINA_SERVE_OAUTH_SECRET"] = idp.SECRET
    urls = {"AUTHORIZE_URL": f"{idp.url}/authorize", "TOKEN_URL": f"{idp.url}/token"}
    started["oidc"] = (
        oidc,
        subprocess.Popen(
            [
                *cmd,
                "--port",
                str(oidc),
                "--oauth-provider",
                "generic",
                "--oauth-key",
                idp.CLIENT,
                "--oauth-redirect-uri",
                f"http://127.0.0.1:{oidc}/login",
                "--oauth-extra-params",
                json.dumps(urls),
            ],
            env=env_oidc,
            stderr=subprocess.PIPE,
            text=True,
        ),
    )
    try:
        for port, proc in started.values():
            wait_for(port, proc)
        yield started
    finally:
        idp.close()
        for _, proc in started.values():
            proc.terminate()
        for _, proc in started.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _login(c: httpx.Client, user: str, password: str, code: str | None = None) -> bool:
    """Post the login form; whether it logged in (a redirect without an error, and the user cookie set)."""
    data = {"username": user, "password": password} | ({"code": code} if code is not None else {})
    r = c.post("/login", data=data)
    assert r.status_code == 302
    return "error" not in r.headers["location"] and "user" in c.cookies


def _dashboard_shown(c: httpx.Client) -> bool:
    r = c.get("/")
    return r.status_code == 200 and "<title>Lumina Lab</title>" in r.text


@pytest.mark.slow
def test_serve_requires_the_password_then_serves_the_dashboard(
    servers: dict[str, tuple[int, subprocess.Popen[str]]],
) -> None:
    port, _ = servers["password"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=60) as c:
        r = c.get("/")
        assert r.status_code == 302 and "login" in r.headers["location"]  # no page without a login
        assert c.get("/metrics").status_code == 401  # nor metrics (no token configured: only logged-in users)
        assert not _login(c, "ann", "wrong")
        assert _login(c, "ann", "s3cret") and _dashboard_shown(c)
        r = c.get("/metrics")
        assert r.status_code == 200 and "lumina_requests_total" in r.text


@pytest.mark.slow
def test_serve_checks_logins_against_the_argon2_hashes_of_a_users_file(
    servers: dict[str, tuple[int, subprocess.Popen[str]]],
) -> None:
    port, _ = servers["hashed"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=60) as c:
        assert c.get("/").status_code == 302
        for user, password in [("ann", "hunter2"), ("carl", "s3cret"), ("ann", "$argon2id$"), ("ann", "")]:
            assert not _login(c, user, password), user
        assert _login(c, "ann", "s3cret") and _dashboard_shown(c)


@pytest.mark.slow
def test_serve_asks_a_user_with_a_second_factor_for_the_current_code_and_audits_every_attempt(
    servers: dict[str, tuple[int, subprocess.Popen[str]]],
) -> None:
    import pyotp

    port, _ = servers["hashed"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=60) as c:
        assert 'name="code"' in c.get("/login").text  # the login page has a code field
        assert not _login(c, "carol", "c4rol")  # no code
        assert _login(c, "carol", "c4rol", pyotp.TOTP(TOTP_SECRETS["carol"]).now()) and _dashboard_shown(c)
    rows = _logins(HOMES["hashed"], until=("carol", True, "", "password"))
    assert ("carol", False, "code", "password") in rows and ("carol", True, "", "password") in rows


@pytest.mark.slow
def test_prometheus_reads_metrics_with_an_api_token_until_it_is_revoked(
    servers: dict[str, tuple[int, subprocess.Popen[str]]],
) -> None:
    from lumina_lab.security.tokens import TokenFile

    port, _ = servers["password"]
    tokens = TokenFile(Path(HOMES["password"]) / "tokens.json")  # `lumina tokens create` on the server's machine
    secret = tokens.create("prometheus")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        r = c.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200 and "lumina_requests_total" in r.text
        assert c.get("/metrics", headers={"Authorization": "Bearer lmt_wrong"}).status_code == 401
        tokens.revoke("prometheus")  # the running server stops accepting it
        r = c.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401 and "lumina tokens create" in r.text


@pytest.mark.slow
def test_serve_with_oauth_sends_the_browser_to_the_provider(
    servers: dict[str, tuple[int, subprocess.Popen[str]]],
) -> None:
    port, _ = servers["oauth"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=60) as c:
        r = c.get("/")
        assert r.status_code == 302 and "login" in r.headers["location"]
        r = c.get("/login")
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith("https://github.com/login/oauth/authorize") and "client_id=client-id" in location


def _audited(home: str, type_: str, fields: tuple[str, ...], until: tuple[object, ...]) -> list[tuple[object, ...]]:
    """``fields`` of the ``type_`` events in ``home``'s event log, read until ``until`` is among them
    (or 10 s passed: the server writes its log in batches)."""
    from lumina_lab.events.store import open_store

    deadline = time.monotonic() + 10
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        store = open_store(home=home)
        try:
            frame = store.query(type=type_)
        finally:
            store.close()
        payloads = [json.loads(p) if isinstance(p, str) else p for p in frame["payload"]] if len(frame) else []
        rows = [tuple(p.get(f) for f in fields) for p in payloads]
        if until in rows:
            break
        time.sleep(0.3)
    return rows


def _logins(home: str, until: tuple[str, bool, str, str]) -> list[tuple[object, ...]]:
    """``(user, ok, reason, method)`` of the ``security.login`` events in ``home``'s event log."""
    return _audited(home, "security.login", ("user", "ok", "reason", "method"), until)


@pytest.mark.slow
def test_refused_metrics_requests_are_audit_events(servers: dict[str, tuple[int, subprocess.Popen[str]]]) -> None:
    port, _ = servers["hashed"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer lmt_not-a-token"}).status_code == 401
    fields = ("resource", "reason", "remote")
    rows = _audited(HOMES["hashed"], "security.access.refused", fields, ("/metrics", "unknown token", "127.0.0.1"))
    assert ("/metrics", "not logged in", "127.0.0.1") in rows and ("/metrics", "unknown token", "127.0.0.1") in rows
    assert not any("lmt_" in str(row) for row in rows)  # the token itself is never in the event


@pytest.mark.slow
def test_serve_logs_in_through_an_openid_connect_provider_and_audits_each_attempt(
    servers: dict[str, tuple[int, subprocess.Popen[str]]],
) -> None:
    """The whole authorization-code round trip: dashboard -> login -> provider -> back with a code ->
    Panel exchanges it (server to server) -> the dashboard, as the provider's user; a refusal at the
    provider is a 401, and both attempts are security.login events with the method."""
    port, _ = servers["oidc"]
    idp = IDP[-1]
    idp.deny = False
    app = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=app, follow_redirects=False, timeout=60) as c:  # the provider's URLs are absolute
        r = c.get("/")
        assert r.status_code == 302 and "login" in r.headers["location"]
        r = c.get("/login")
        assert r.status_code == 302 and r.headers["location"].startswith(f"{idp.url}/authorize?")
        r = c.get(r.headers["location"])  # the provider signs the user in and sends the browser back
        assert r.status_code == 302 and r.headers["location"].startswith(f"{app}/login?code=")
        r = c.get(r.headers["location"])  # Panel trades the code for tokens at /token
        assert r.status_code == 302 and "user" in c.cookies, r.text[:500]
        assert idp.exchanged == ["ada@example.org"] and not idp.codes  # the code was used, once
        assert _dashboard_shown(c)
    idp.deny = True
    with httpx.Client(base_url=app, follow_redirects=False, timeout=60) as c:
        r = c.get(c.get("/login").headers["location"])
        assert "error=access_denied" in r.headers["location"]
        assert c.get(r.headers["location"]).status_code == 401 and "user" not in c.cookies
    rows = _logins(HOMES["oidc"], until=("", False, "access_denied", "oauth:generic"))
    assert ("ada@example.org", True, "", "oauth:generic") in rows
    assert ("", False, "access_denied", "oauth:generic") in rows


TOKEN = "prometheus-scrape-token-0123456789"


def run_prometheus(binary: str, tmp_path: Path, target: str, token: str) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus scraping ``target``'s /metrics every second with a bearer token; its API's URL."""
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: lumina\n    scrape_interval: 1s\n    metrics_path: /metrics\n"
        f"    authorization:\n      credentials: {token}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{web}"


def wait_for_value(client: httpx.Client, api: str, promql: str, value: float, timeout: float = 30.0) -> float | None:
    """Query Prometheus until ``promql`` gives ``value`` (or the timeout); the last value seen."""
    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = client.get(f"{api}/api/v1/query", params={"query": promql}).json()["data"]["result"]
            got = float(result[0]["value"][1]) if result else None
        except (httpx.HTTPError, KeyError, ValueError):
            got = None
        if got == value:
            return got
        time.sleep(0.25)
    return got


def _requests_total(text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "lumina_requests_total"
    )


@pytest.mark.slow
def test_serve_exposes_metrics_of_every_process_and_per_view_pages(tmp_path: Path, lumina_home: Path) -> None:
    """`lumina serve --metrics-token`: /metrics counts what a Lab in another process routes (read from the shared
    event log), refuses scrapers without the token, and a real Prometheus scrapes it; ?components= pages."""
    import shutil

    from lumina_lab import Lab

    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMINA_")}
    env.update(LUMINA_HOME=str(lumina_home), LUMINA_SERVE_METRICS_TOKEN=TOKEN)  # dev profile: the file store
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lumina_lab", "serve", "--no-show", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    prom = None
    try:
        wait_for(port, proc)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.get("/metrics").status_code == 401
            assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            r = c.get("/metrics", headers=auth)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            assert _requests_total(r.text) == 0

            # one view per page, as the JupyterLab sidebar opens them (the views themselves: test_ui_browser)
            page = c.get("/", params={"components": "memory"})
            assert page.status_code == 200 and "<title>Lumina Lab · Memory explorer</title>" in page.text
            page = c.get("/", params={"components": "overview,providers"})
            assert page.status_code == 200 and "<title>Lumina Lab</title>" in page.text

            with Lab() as lab:  # another process, like a notebook kernel
                for _ in range(3):
                    lab.ask("count me", max_tokens=8)
                lab.sync()
                assert _requests_total(c.get("/metrics", headers=auth).text) == 3

                binary = shutil.which("prometheus")
                if binary is None:
                    return
                prom, api = run_prometheus(binary, tmp_path, f"127.0.0.1:{port}", token=TOKEN)
                with httpx.Client(timeout=5) as q:
                    assert wait_for_value(q, api, "sum(lumina_requests_total)", 3.0) == 3.0
                    for _ in range(2):
                        lab.ask("count me too", max_tokens=8)
                    lab.sync()
                    assert wait_for_value(q, api, "sum(lumina_requests_total)", 5.0) == 5.0, "no live value"
                    assert wait_for_value(q, api, 'up{job="lumina"}', 1.0) == 1.0
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_metrics_access_is_never_wider_than_the_dashboard_unless_asked() -> None:
    from lumina_lab.ui.server import metrics_access

    assert metrics_access(authenticated=False) == "open"  # loopback without login: like the dashboard
    assert metrics_access(authenticated=True) == "login"
    assert metrics_access(authenticated=True, metrics_token=TOKEN) == "token"
    assert metrics_access(authenticated=False, metrics_token=TOKEN) == "token"
    assert metrics_access(authenticated=True, metrics_public=True) == "open"
    assert metrics_access(authenticated=True, metrics=False) == "off"
    with pytest.raises(ConfigError, match="contradict"):
        metrics_access(authenticated=True, metrics_token=TOKEN, metrics_public=True)
    with pytest.raises(ConfigError, match="shorter than 16"):
        metrics_access(authenticated=False, metrics_token="short")
    opts = check_options(basic_auth="pw", metrics_token=TOKEN)
    assert opts.metrics == "token" and TOKEN not in repr(opts)


def test_unauthenticated_non_loopback_is_refused() -> None:
    result = CliRunner().invoke(main, ["serve", "--address", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert "without authentication" in result.output and "--basic-auth" in result.output


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 70000}, "not a TCP port"),
        ({"basic_auth": "x", "oauth_provider": "github", "oauth_key": "k", "oauth_secret": "s"}, "choose one"),
        ({"oauth_provider": "myspace", "oauth_key": "k", "oauth_secret": "s"}, "unknown OAuth provider"),
        ({"oauth_provider": "github"}, "needs a client id and secret"),
        ({"basic_auth": ""}, "password is empty"),
        ({"num_procs": -1}, "num_procs"),
    ],
)
def test_bad_options_are_one_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_options(**kwargs)  # type: ignore[arg-type]


def test_options_passed_to_panel() -> None:
    opts = check_options(address="0.0.0.0", port=8080, basic_auth="pw", allow_websocket_origin=["lumina.example:443"])
    assert opts["websocket_origin"] == ["lumina.example:443"] and opts["basic_auth"] == "pw"
    assert len(opts["cookie_secret"]) >= 32 and "pw" not in repr(opts)  # secrets stay out of logs
    local = check_options(port=5006)
    assert local["websocket_origin"] == ["localhost:5006", "127.0.0.1:5006"] and "cookie_secret" not in local
    assert check_options(address="0.0.0.0", allow_unauthenticated=True)["address"] == "0.0.0.0"


def test_bad_layout_or_component_fails_before_serving(lumina_home: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--layout", "nope", "--port", "0"])
    assert result.exit_code == 2 and "no saved dashboard layout 'nope'" in result.output
    result = CliRunner().invoke(main, ["serve", "--components", "overview,nope", "--port", "0"])
    assert result.exit_code == 2 and "unknown dashboard component" in result.output
