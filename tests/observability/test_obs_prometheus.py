"""The Prometheus endpoint: exposition of live values, and a real Prometheus server scraping it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from obs_helpers import Harness, Scripted
from prometheus_client.parser import text_string_to_metric_families

from lumina_lab import Lab
from lumina_lab.memory.events import MemorySearched
from lumina_lab.policy.events import PolicyDecided, PolicyDeniedEvent
from lumina_lab.providers import ChatRequest, RetryPolicy


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_the_endpoint_exposes_what_the_events_say() -> None:
    h = Harness(
        [Scripted("model-a", id="a", script=["fail"], price=1), Scripted("model-b", id="b", price=2)],
        retry=RetryPolicy(attempts=2, base_s=0.001, jitter=False),
    )
    server = h.obs.serve_metrics(0)
    try:
        h.obs.watch(registry=h.router.registry)
        for _ in range(3):
            await h.router.ainvoke(ChatRequest("count me", max_tokens=10))
        await h.bus.publish(MemorySearched(collection="docs", mode="vector", k=3, hits=3, ms=4.0, backend="duckdb"))
        await h.bus.publish(PolicyDecided(principal="u", action="call", resource="t", decision="deny", point="tool"))
        await h.bus.publish(
            PolicyDeniedEvent(principal="u", action="call", resource="t", explanation="no", point="tool")
        )
        await h.settle()
        async with httpx.AsyncClient() as client:
            text = (await client.get(server.url)).text
    finally:
        server.close()
        h.close()
    s = _samples(text)
    assert s[("lumina_requests_total", (("strategy", "cheapest"),))] == 3
    assert s[("lumina_provider_calls_total", (("model", "model-a"), ("outcome", "error"), ("provider", "a")))] == 1
    assert s[("lumina_provider_calls_total", (("model", "model-a"), ("outcome", "ok"), ("provider", "a")))] == 3
    assert (
        s[
            (
                "lumina_provider_errors_total",
                (("error_type", "ProviderUnavailable"), ("model", "model-a"), ("provider", "a")),
            )
        ]
        == 1
    )
    assert s[("lumina_retries_total", (("provider", "a"),))] == 1
    assert s[("lumina_provider_call_duration_seconds_count", (("model", "model-a"), ("provider", "a")))] == 3
    assert s[("lumina_provider_ttft_seconds_count", (("model", "model-a"), ("provider", "a")))] == 3
    assert s[("lumina_tokens_total", (("model", "model-a"), ("provider", "a"), ("type", "output")))] == 30
    assert s[("lumina_cost_usd_total", (("model", "model-a"), ("provider", "a")))] == pytest.approx(3 * 45e-6)
    assert s[("lumina_breaker_state", (("provider", "b"),))] == 0  # from the live registry
    assert s[("lumina_memory_operation_duration_seconds_count", (("backend", "duckdb"), ("op", "search_vector")))] == 1
    assert s[("lumina_policy_decisions_total", (("decision", "deny"), ("point", "tool")))] == 1
    assert s[("lumina_policy_denials_total", (("point", "tool"),))] == 1
    assert s[("lumina_error_rate", ())] == pytest.approx(0.25)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query(client: httpx.Client, base: str, promql: str) -> float | None:
    data = client.get(f"{base}/api/v1/query", params={"query": promql}).json()
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _wait_for(client: httpx.Client, base: str, promql: str, value: float, timeout: float = 30.0) -> float | None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = _query(client, base, promql)
        except (httpx.HTTPError, KeyError, ValueError):
            got = None
        if got == value:
            return got
        time.sleep(0.25)
    return got


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="the prometheus binary is not installed (Debian/Ubuntu: apt-get install -y prometheus)",
)
def test_a_real_prometheus_server_scrapes_live_values(tmp_path: Path) -> None:
    lab = Lab(profile="test", observability={"metrics": True})
    server = lab.serve_metrics(0)
    web = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: lumina\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    proc = subprocess.Popen(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{web}"
    try:
        for _ in range(3):
            lab.ask("first batch", max_tokens=8)
        lab.sync()
        with httpx.Client(timeout=5) as client:
            assert _wait_for(client, base, "sum(lumina_requests_total)", 3.0) == 3.0, "no scrape with 3 requests"
            up = _query(client, base, 'up{job="lumina"}')
            for _ in range(4):
                lab.ask("second batch", max_tokens=8)
            lab.sync()
            assert _wait_for(client, base, "sum(lumina_requests_total)", 7.0) == 7.0, "the live value did not move"
            calls = _query(client, base, 'sum(lumina_provider_calls_total{outcome="ok"})')
            tokens = _query(client, base, 'sum(lumina_tokens_total{type="output"})')
        assert up == 1.0 and calls == 7.0 and tokens is not None and tokens > 0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        lab.close()
    assert proc.returncode is not None


async def test_the_jupyter_server_handler_serves_the_same_text() -> None:
    pytest.importorskip("tornado")
    from tornado.httpserver import HTTPServer
    from tornado.web import Application

    from lumina_lab.observability import Metrics, jupyter_handler, metrics_app
    from lumina_lab.providers import events as pev

    metrics = Metrics()
    metrics.apply(pev.RequestRouted(request_id="r", strategy="cheapest", chosen="a", candidates=["a"]))
    server = HTTPServer(Application([(r"/lumina/metrics", jupyter_handler(metrics))]))
    sock_port = _free_port()
    server.listen(sock_port, address="127.0.0.1")
    try:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://127.0.0.1:{sock_port}/lumina/metrics")
    finally:
        server.stop()
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert 'lumina_requests_total{strategy="cheapest"} 1.0' in reply.text
    # the WSGI app for `lumina serve` answers the same
    seen: dict = {}
    body = b"".join(
        metrics_app(metrics)(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}, lambda s, h: seen.update(status=s)
        )
    )
    assert seen["status"].startswith("200") and b'lumina_requests_total{strategy="cheapest"} 1.0' in body


def _requests(text: str) -> float:
    return sum(v for (name, _), v in _samples(text).items() if name == "lumina_requests_total")


@pytest.mark.parametrize("store", ["memory", "file"])
def test_store_metrics_fold_the_event_log_when_scraped(store: str) -> None:
    """What `lumina serve` and the Jupyter extension expose: every process's events, read from the log at scrape
    time, counted from the endpoint's start (``since``)."""
    from lumina_lab.observability.server import StoreMetrics

    with Lab(profile="test", events={"store": store}) as lab:
        lab.ask("before the endpoint", max_tokens=8)
        lab.sync()
        endpoint = StoreMetrics(lambda: lab.store)  # opened on first scrape, counting from now
        everything = StoreMetrics(lab.store, since=None)
        assert _requests(endpoint.exposition()) == 0
        for _ in range(2):
            lab.ask("after", max_tokens=8)
        lab.sync()
        assert _requests(endpoint.exposition()) == 2
        assert _requests(endpoint.exposition()) == 2  # nothing folded twice
        assert _requests(everything.exposition()) == 3
        snap = endpoint.snapshot()
        assert snap["requests_total"] == 2 and snap["calls_total"] >= 2 and endpoint.folded >= 6


async def test_jupyter_handler_with_a_base_class_is_authenticated() -> None:
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    from lumina_lab.observability import Metrics, jupyter_handler

    class TokenHandler(RequestHandler):
        def get_current_user(self) -> str | None:
            return "ann" if self.request.headers.get("Authorization") == "token t0k" else None

        def get_login_url(self) -> str:
            return "/login"

    app = Application([(r"/lumina/metrics", jupyter_handler(Metrics(), base=TokenHandler))])
    server = HTTPServer(app)
    port = _free_port()
    server.listen(port, address="127.0.0.1")
    try:
        async with httpx.AsyncClient(follow_redirects=False) as client:
            refused = await client.get(f"http://127.0.0.1:{port}/lumina/metrics")
            served = await client.get(f"http://127.0.0.1:{port}/lumina/metrics", headers={"Authorization": "token t0k"})
    finally:
        server.stop()
    assert refused.status_code in (302, 403) and served.status_code == 200
    assert "lumina_events_observed_total 0.0" in served.text


def test_observability_imports_nothing_heavy() -> None:
    import json
    import subprocess
    import sys

    code = "import sys, json, lumina_lab.observability, lumina_lab.observability.cli; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    )
    assert not loaded & {"duckdb", "pyarrow", "pandas", "prometheus_client", "opentelemetry", "opentelemetry.sdk"}
