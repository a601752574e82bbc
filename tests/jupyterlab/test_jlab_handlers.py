"""The server extension's REST handlers and live WebSocket, on a real Jupyter server (pytest-jupyter).

Every handler requires authentication: requests without the server's token are refused with 403.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lumina_jupyterlab
import pytest
from lumina_jupyterlab import templates
from tornado.httpclient import HTTPClientError

from lumina_lab import Lab
from lumina_lab.events import Event, event
from lumina_lab.providers.events import BreakerChanged, CallFinished

GET_ROUTES = ["status", "providers", "budgets", "events", "memory", "policy", "snapshot", "templates", "metrics"]


@event("test.jlab.ping")
class Ping(Event):
    n: int
    note: str = ""


def _publish_from_other_process(n: int, note: str = "") -> None:
    """Publish one event from a separate Python process with the same LUMINA_HOME (like a notebook kernel)."""
    code = (
        "import sys\n"
        "from lumina_lab import Lab\n"
        "from lumina_lab.events import Event, event\n"
        "@event('test.jlab.ping')\n"
        "class Ping(Event):\n    n: int\n    note: str = ''\n"
        "with Lab() as lab:\n"
        "    lab.publish(Ping(n=int(sys.argv[1]), note=sys.argv[2]))\n"
        "    lab.sync()\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(n), note], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _get(run: Any, jp_fetch: Any, *parts: str, **params: str) -> Any:
    response = run(jp_fetch("lumina", *parts, params=params))
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


def _error(run: Any, jp_fetch: Any, *parts: str, method: str = "GET", body: str | None = None, **params: str) -> Any:
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("lumina", *parts, params=params, method=method, body=body))
    return info.value


def test_status(run, jp_fetch, lumina_home: Path) -> None:
    status = _get(run, jp_fetch, "status")
    assert status["home"] == str(lumina_home) and status["store"]["shared"] is True
    assert status["store"]["kind"] == "file" and status["bus"]["kind"] == "in-process"
    assert status["server"]["poll_interval_s"] == 0.1
    assert status["providers"] == 4 and status["events"]["total"] == 0


@pytest.mark.parametrize("route", GET_ROUTES)
def test_unauthenticated_requests_are_refused(run, jp_fetch, route: str) -> None:
    for auth in ("", "token wrong-token"):
        with pytest.raises(HTTPClientError) as info:
            run(jp_fetch("lumina", route, headers={"Authorization": auth}))
        assert info.value.code == 403, (route, auth, info.value)


def test_unauthenticated_post_and_websocket_are_refused(run, jp_fetch, jp_ws_fetch, jp_root_dir: Path) -> None:
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("lumina", "templates", "quickstart", method="POST", body="{}", headers={"Authorization": ""}))
    assert info.value.code == 403
    assert not list(jp_root_dir.glob("*.ipynb"))
    with pytest.raises(HTTPClientError) as info:
        run(jp_ws_fetch("lumina", "events", "ws", headers={"Authorization": ""}))
    assert info.value.code == 403
    with pytest.raises(HTTPClientError) as info:
        run(jp_ws_fetch("lumina", "events", "ws", headers={"Authorization": "token nope"}))
    assert info.value.code == 403


def test_websocket_keeps_jupyters_origin_check() -> None:
    """A page on another site cannot open the feed with the user's cookie: the WebSocket uses Jupyter Server's
    own origin check (host must match, or the server's allow_origin settings), not a looser one."""
    from jupyter_server.base.websocket import WebSocketMixin
    from lumina_jupyterlab.handlers import EventSocketHandler

    assert EventSocketHandler.check_origin is WebSocketMixin.check_origin


def test_every_handler_declares_authentication() -> None:
    """What the extension template's check_auth.py checks: a server that allows no unauthenticated access
    warns about any handler without an authentication decorator; ours has none to warn about."""
    code = (
        "import warnings\n"
        "from jupyter_server.serverapp import ServerApp\n"
        "from jupyter_server.utils import JupyterServerAuthWarning\n"
        "app = ServerApp(allow_unauthenticated_access=False, jpserver_extensions={'lumina_jupyterlab': True},\n"
        "                reraise_server_extension_failures=True)\n"
        "with warnings.catch_warnings(record=True) as records:\n"
        "    warnings.simplefilter('always')\n"
        "    app.initialize(argv=[], find_extensions=False, new_httpserver=False)\n"
        "bad = [str(r.message) for r in records if issubclass(r.category, JupyterServerAuthWarning)]\n"
        "print(repr(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_providers_budgets_and_events_from_the_shared_store(run, jp_fetch, lumina_home: Path) -> None:
    lumina_home.mkdir(parents=True, exist_ok=True)
    (lumina_home / "lumina.toml").write_text('[[budgets]]\nlimit_usd = 0.002\nscope = "project"\nperiod = "day"\n')
    with Lab() as lab:
        lab.publish(
            *[
                CallFinished(request_id=f"r{i}", provider="sim-gpt-4.1", model="gpt-4.1", attempt=1, input_tokens=10,
                             output_tokens=20, cost_usd=0.0006, latency_s=0.2, project="search")
                for i in range(3)
            ],
            BreakerChanged(provider="sim-gpt-4.1-mini", old="closed", new="open", failure_rate=0.9),
            Ping(n=1, note="<img src=x onerror=alert(1)>"),
        )
        lab.sync()
    providers = {p["id"]: p for p in _get(run, jp_fetch, "providers", window="1h")["providers"]}
    assert providers["sim-gpt-4.1"]["calls"] == 3 and providers["sim-gpt-4.1"]["health"] == "healthy"
    assert providers["sim-gpt-4.1-mini"]["breaker"] == "open" and providers["sim-gpt-4.1-mini"]["health"] == "down"
    budgets = _get(run, jp_fetch, "budgets")
    (row,) = budgets["budgets"]
    assert row["key"] == "search" and row["spent_usd"] == pytest.approx(0.0018) and row["state"] == "warning"
    events = _get(run, jp_fetch, "events", type="test.jlab.*")
    assert [e["payload"]["note"] for e in events] == ["<img src=x onerror=alert(1)>"]  # stored as data
    assert len(_get(run, jp_fetch, "events", type="provider.*", limit="2")) == 2
    oldest = _get(run, jp_fetch, "events", type="provider.*", order="asc")
    assert oldest[0]["type"] == "provider.call.finished" and len(oldest) == 4
    assert _get(run, jp_fetch, "events", contains="onerror")[0]["type"] == "test.jlab.ping"
    snap = _get(run, jp_fetch, "snapshot", events="3")
    assert set(snap) >= {"status", "providers", "budgets", "memory", "policy", "events"}
    assert len(snap["events"]) == 3 and snap["status"]["server"]["clients"] == 0


def test_prometheus_metrics_count_requests_routed_by_any_lab(run, jp_fetch) -> None:
    """``/lumina/metrics``: what a Lab (here: this process, like a kernel) routes, scraped with the server's token."""
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = run(jp_fetch("lumina", "metrics"))
        assert response.code == 200 and response.headers["Content-Type"].startswith("text/plain; version=")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(response.body.decode())
            for s in fam.samples
        }

    assert sum(v for (name, _), v in scrape().items() if name == "lumina_requests_total") == 0
    with Lab() as lab:
        answers = [lab.ask("count me", max_tokens=8) for _ in range(3)]
        lab.sync()
    samples = scrape()
    assert sum(v for (name, _), v in samples.items() if name == "lumina_requests_total") == 3
    provider = answers[0].provider
    ok = [v for (name, labels), v in samples.items()
          if name == "lumina_provider_calls_total" and ("outcome", "ok") in labels and ("provider", provider) in labels]
    assert ok and ok[0] >= 1
    assert samples[("lumina_events_observed_total", ())] >= 6  # routed + started + finished per request


def test_user_mistakes_answer_400_with_the_fix(run, jp_fetch) -> None:
    err = _error(run, jp_fetch, "events", limit="0")
    assert err.code == 400
    body = json.loads(err.response.body)
    assert body["error"] == "ValidationError" and "limit=0" in body["message"] and body["hint"]
    err = _error(run, jp_fetch, "events", since="last tuesday")
    assert err.code == 400 and "not a time" in json.loads(err.response.body)["message"]
    err = _error(run, jp_fetch, "events", order="sideways")
    assert err.code == 400
    err = _error(run, jp_fetch, "providers", window="forever")
    assert err.code == 400


def test_bad_configuration_is_reported_not_crashing(run, jp_fetch, lumina_home: Path) -> None:
    lumina_home.mkdir(parents=True, exist_ok=True)
    (lumina_home / "lumina.toml").write_text('[events]\nstore = "redis"\n')
    err = _error(run, jp_fetch, "status")
    body = json.loads(err.response.body)
    assert err.code == 400 and body["error"] == "ConfigError" and "events.store" in body["message"]
    (lumina_home / "lumina.toml").write_text('[events]\nstore = "file"\n')
    assert _get(run, jp_fetch, "status")["store"]["kind"] == "file"  # fixed without restarting the server


def test_memory_and_policy(run, jp_fetch, lumina_home: Path) -> None:
    assert _get(run, jp_fetch, "memory")["collections"] == []
    assert _get(run, jp_fetch, "policy")["versions"] == []
    with Lab() as lab:
        lab.memory.collection("notes").add(["one note", "another note"])
        lab.policy.publish("permit(principal, action, resource);", message="open")
        lab.sync()
    mem = _get(run, jp_fetch, "memory")
    assert [c["name"] for c in mem["collections"]] == ["notes"] and mem["collections"][0]["items_written"] == 2
    policy = _get(run, jp_fetch, "policy")
    assert policy["live"] == 1 and policy["versions"][0]["message"] == "open"


def test_templates_create_notebooks(run, jp_fetch, jp_root_dir: Path) -> None:
    listing = _get(run, jp_fetch, "templates")["templates"]
    assert [t["name"] for t in listing] == templates.names()
    assert {"quickstart", "routing_lab", "memory_explorer", "policy_simulator"} <= set(templates.names())
    (jp_root_dir / "work").mkdir()
    created = []
    for _ in range(2):
        response = run(jp_fetch("lumina", "templates", "routing_lab", method="POST", body=json.dumps({"directory": "work"})))
        assert response.code == 201
        created.append(json.loads(response.body)["path"])
    assert created == ["work/Lumina routing lab.ipynb", "work/Lumina routing lab-1.ipynb"]
    nb = json.loads((jp_root_dir / created[0]).read_text())
    assert nb["metadata"]["lumina"]["template"] == "routing_lab"
    assert any("RoutingLab" in "".join(c["source"]) for c in nb["cells"])
    err = _error(run, jp_fetch, "templates", "nope", method="POST", body="{}")
    assert err.code == 404 and "routing_lab" in json.loads(err.response.body)["hint"]
    err = _error(run, jp_fetch, "templates", "quickstart", method="POST", body=json.dumps({"directory": "missing"}))
    assert err.code == 400
    err = _error(run, jp_fetch, "templates", "quickstart", method="POST", body="[1]")
    assert err.code == 400


def _next_message(run: Any, ws: Any, timeout: float = 20.0) -> dict[str, Any]:
    import asyncio

    message = run(asyncio.wait_for(ws.read_message(), timeout))
    assert message is not None, "the WebSocket closed"
    return json.loads(message)


def _wait_for_events(run: Any, ws: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = _next_message(run, ws, timeout=max(0.1, deadline - time.monotonic()))
        if msg["kind"] == "events" and not msg.get("backlog"):
            return msg["events"]
    raise AssertionError("no live events arrived")


def test_an_event_stored_while_the_backlog_is_read_comes_after_it(run, jp_ws_fetch, jp_serverapp) -> None:
    """Nothing falls between the backlog and the live feed: the socket joins the feed first and holds what
    comes while the backlog is read."""
    import asyncio

    with Lab() as lab:
        lab.publish(Ping(n=1, note="before"))
        lab.sync()
    service = jp_serverapp.web_app.settings["lumina"]
    real_call = service.call

    async def slow_backlog(method: str, **kwargs: Any) -> Any:
        result = await real_call(method, **kwargs)
        if method == "events":  # read; now another process stores one, and the feed polls it
            await asyncio.to_thread(_publish_from_other_process, 7, "during the backlog")
            await asyncio.sleep(1.0)
        return result

    service.call = slow_backlog
    ws = run(jp_ws_fetch("lumina", "events", "ws", params={"type": "test.jlab.*", "backlog": "5"}))
    try:
        assert _next_message(run, ws)["kind"] == "hello"
        backlog = _next_message(run, ws)
        assert backlog["backlog"] is True and [e["payload"]["n"] for e in backlog["events"]] == [1]
        assert [e["payload"]["n"] for e in _wait_for_events(run, ws)] == [7]
    finally:
        service.call = real_call
        ws.close()


def test_websocket_pushes_events_from_other_processes(run, jp_fetch, jp_ws_fetch) -> None:
    with Lab() as lab:
        lab.publish(Ping(n=0, note="before"), Ping(n=1, note="before"))
        lab.sync()
    ws = run(jp_ws_fetch("lumina", "events", "ws", params={"type": "test.jlab.*", "backlog": "1"}))
    try:
        hello = _next_message(run, ws)
        assert hello["kind"] == "hello" and hello["shared"] is True and hello["type"] == "test.jlab.*"
        backlog = _next_message(run, ws)
        assert backlog["kind"] == "events" and backlog["backlog"] is True
        assert [e["payload"]["n"] for e in backlog["events"]] == [1]  # the newest one stored
        assert _get(run, jp_fetch, "status")["server"]["clients"] == 1  # it joined the feed before the backlog

        _publish_from_other_process(42, "from another process")
        live = _wait_for_events(run, ws)
        assert [(e["type"], e["payload"]["n"]) for e in live] == [("test.jlab.ping", 42)]
        assert live[0]["summary"] and live[0]["source"]

        # events outside the filter are not sent; changing the filter takes effect at once
        with Lab() as lab:
            lab.publish(BreakerChanged(provider="p", old="closed", new="open", failure_rate=1.0))
            lab.sync()
        _publish_from_other_process(43)
        assert [e["payload"]["n"] for e in _wait_for_events(run, ws)] == [43]
        ws.write_message(json.dumps({"type": "provider.*"}))
        assert _next_message(run, ws) == {"kind": "filter", "type": "provider.*"}
        with Lab() as lab:
            lab.publish(BreakerChanged(provider="p", old="open", new="half_open", failure_rate=0.5))
            lab.sync()
        assert [e["payload"]["new"] for e in _wait_for_events(run, ws)] == ["half_open"]
    finally:
        ws.close()


def test_two_clients_each_get_their_events(run, jp_ws_fetch) -> None:
    a = run(jp_ws_fetch("lumina", "events", "ws", params={"type": "test.jlab.*"}))
    b = run(jp_ws_fetch("lumina", "events", "ws"))
    try:
        assert _next_message(run, a)["kind"] == "hello" and _next_message(run, b)["kind"] == "hello"
        _publish_from_other_process(7)
        assert [e["payload"]["n"] for e in _wait_for_events(run, a)] == [7]
        assert [e["payload"]["n"] for e in _wait_for_events(run, b)] == [7]
    finally:
        a.close()
        b.close()


def test_extension_paths() -> None:
    assert lumina_jupyterlab._jupyter_labextension_paths() == [{"src": "labextension", "dest": "lumina-jupyterlab"}]
    (point,) = lumina_jupyterlab._jupyter_server_extension_points()
    assert point["module"] == "lumina_jupyterlab" and point["app"].name == "lumina_jupyterlab"
    built = Path(lumina_jupyterlab.__file__).parent / "labextension"
    assert (built / "package.json").is_file() and (built / "static" / "style.js").is_file()
    assert json.loads((built / "package.json").read_text())["name"] == "lumina-jupyterlab"
