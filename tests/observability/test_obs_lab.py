"""``Lab`` integration: settings, ``lab.run``/``lab.traces``/``lab.trace``, many processes, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from lumina_lab import Lab
from lumina_lab.cli import main
from lumina_lab.config import load_settings
from lumina_lab.errors import ConfigError


def test_settings_and_profiles() -> None:
    assert load_settings(profile="dev").observability.tracing is True
    assert load_settings(profile="test").observability.tracing is False
    s = load_settings(observability={"exporter": "otlp_grpc", "endpoint": "collector:4317", "metrics_port": 9464})
    assert (s.observability.exporter, s.observability.metrics_port) == ("otlp_grpc", 9464)
    with pytest.raises(ConfigError, match=r"observability\.exporter"):
        load_settings(observability={"exporter": "zipkin"})


def test_a_bad_traces_limit_is_named(lumina_home: Path) -> None:
    from lumina_lab.errors import ValidationError

    with Lab() as lab, pytest.raises(ValidationError, match=r"limit='ten' must be a whole number >= 0"):
        lab.traces(limit="ten")  # was a bare ValueError from int()


def test_lab_traces_roll_up_a_run_and_show_a_waterfall(lumina_home: Path) -> None:
    with Lab(observability={"alerts": [{"name": "errors", "expr": "error_rate > 0.5 for 30s"}]}) as lab:
        assert lab.observability is not None and [r.name for r in lab.observability.alerts.rules] == ["errors"]
        with lab.run("compare", session="exp-7", strategy="cheapest") as run:
            answers = [lab.ask(f"question {i}", max_tokens=20) for i in range(3)]
        lab.ask("outside the run", max_tokens=20)
        traces = lab.traces(since="5m")
        mine = lab.traces(session="exp-7")
        trace = lab.trace(run.trace_id)
        html = trace._repr_html_()
        by_model = lab.observability.stats(by="model", session="exp-7")
        assert lab.observability.snapshot()["requests_total"] == 4
    assert len(traces) == 2 and set(traces["root"]) == {"compare", "route cheapest"}
    row = mine.iloc[0]
    assert (row["trace_id"], row["requests"], row["calls"], row["status"]) == (run.trace_id, 3, 3, "ok")
    assert row["cost_usd"] == pytest.approx(sum(a.cost_usd for a in answers))
    assert row["output_tokens"] == sum(a.usage.output_tokens for a in answers)
    root = trace.root
    assert root["name"] == "compare" and root["total_cost_usd"] == pytest.approx(row["cost_usd"])
    assert root["descendants"] == 6 and trace.cost_usd == pytest.approx(row["cost_usd"])
    assert set(trace.spans["depth"]) == {0, 1, 2}
    assert "compare" in html and "route cheapest" in html and "chat " in html and "first_token" in html
    assert trace.tree().splitlines()[0].startswith("compare (run, ok")
    assert by_model["calls"].sum() == 3 and by_model["cost_usd"].sum() == pytest.approx(row["cost_usd"])


def test_the_test_profile_derives_traces_without_a_hub(lumina_home: Path) -> None:
    with Lab(profile="test") as lab:
        assert lab.observability is None
        answer = lab.ask("hello", max_tokens=10)
        traces = lab.traces()
    assert len(traces) == 1 and traces["trace_id"].iloc[0] == answer.request_id.replace("-", "")


def test_spans_of_other_processes_are_visible(lumina_home: Path) -> None:
    code = (
        "from lumina_lab import Lab\n"
        "with Lab(source='worker-1') as lab:\n"
        "    with lab.run('batch job', session='nightly'):\n"
        "        for i in range(2): lab.ask(f'job {i}', max_tokens=10)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy(), timeout=120)
    with Lab() as lab:
        traces = lab.traces(session="nightly")
        sessions = lab.observability.sessions()
    assert list(traces["root"]) == ["batch job"] and traces["source"].iloc[0] == "worker-1"
    assert traces["requests"].iloc[0] == 2
    assert sessions.set_index("session").loc["nightly", "requests"] == 2


def test_lumina_traces_commands(lumina_home: Path) -> None:
    with Lab() as lab:
        with lab.run("from the shell") as run:
            lab.ask("hi", max_tokens=10)
        lab.sync()
    runner = CliRunner()
    listed = runner.invoke(main, ["traces", "list", "--since", "1h", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["trace_id"] for r in rows] == [run.trace_id] and rows[0]["calls"] == 1
    shown = runner.invoke(main, ["traces", "show", run.trace_id])
    assert shown.exit_code == 0 and "from the shell (run, ok" in shown.output and "  route cheapest" in shown.output
    missing = runner.invoke(main, ["traces", "show", "0" * 32])
    assert missing.exit_code == 2 and "no trace" in missing.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_lumina_metrics_serve_follows_every_process(lumina_home: Path) -> None:
    port = _free_port()
    result: dict = {}

    def serve() -> None:
        result["out"] = CliRunner().invoke(
            main, ["metrics", "serve", "--port", str(port), "--poll", "0.1", "--duration", "4"]
        )

    server = threading.Thread(target=serve)
    server.start()
    try:
        with httpx.Client(timeout=2) as client:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    client.get(f"http://127.0.0.1:{port}/metrics")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            with Lab(observability={"metrics": False, "tracing": False}) as lab:  # another writer of the event log
                for i in range(2):
                    lab.ask(f"counted {i}", max_tokens=10)
            text = ""
            while time.monotonic() < deadline:
                text = client.get(f"http://127.0.0.1:{port}/metrics").text
                if 'lumina_requests_total{strategy="cheapest"} 2.0' in text:
                    break
                time.sleep(0.2)
    finally:
        server.join(20)
    assert 'lumina_requests_total{strategy="cheapest"} 2.0' in text
    assert result["out"].exit_code == 0, result["out"].output
