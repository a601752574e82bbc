"""The ``lumina`` command: help, info, demo, and the events subcommands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lumina_lab.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("info", "events", "demo"):
        assert command in result.output


def test_version(runner: CliRunner) -> None:
    from lumina_lab import __version__

    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_info_json_reports_paths_libraries_and_services(runner: CliRunner, lumina_home: Path) -> None:
    result = runner.invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["home"] == str(lumina_home)
    assert data["events_dir"] == str(lumina_home / "events")
    assert data["event_store"] == "file"
    assert data["libraries"]["duckdb"]["version"]
    assert set(data["services"]) >= {"rabbitmq", "nats", "postgresql", "redis"}
    assert all(isinstance(s["reachable"], bool) for s in data["services"].values())


def test_info_table(runner: CliRunner) -> None:
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert "Libraries" in result.output and "Servers" in result.output


def test_bad_configuration_is_one_clear_message_and_exit_2(runner: CliRunner, monkeypatch) -> None:
    monkeypatch.setenv("LUMINA_EVENTS__STORE", "redis")
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 2
    assert "events.store" in result.output and "'redis'" in result.output
    assert "LUMINA_EVENTS__STORE" in result.output
    assert "Traceback" not in result.output


def test_demo_runs_and_summarises(runner: CliRunner, lumina_home: Path) -> None:
    result = runner.invoke(main, ["demo", "--requests", "3000", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3,000 simulated requests" in result.output
    assert "Calls by provider" in result.output
    assert "Spend by project" in result.output
    assert (lumina_home / "events" / "log").is_dir()


def test_demo_rejects_a_bad_request_count(runner: CliRunner) -> None:
    result = runner.invoke(main, ["demo", "--requests", "0"])
    assert result.exit_code == 2
    assert "--requests 0" in result.output


def test_events_query_after_demo(runner: CliRunner) -> None:
    assert runner.invoke(main, ["demo", "-n", "500", "--no-progress"]).exit_code == 0
    result = runner.invoke(
        main, ["events", "query", "type = 'provider.call.finished'", "--limit", "5", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 5 and all(r["type"] == "provider.call.finished" for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


def test_events_sql_and_csv(runner: CliRunner) -> None:
    assert runner.invoke(main, ["demo", "-n", "200", "--no-progress"]).exit_code == 0
    result = runner.invoke(
        main, ["events", "sql", "SELECT count(*) AS n FROM events WHERE type LIKE 'provider.call.%'", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "n" and int(result.output.splitlines()[1]) >= 200


def test_events_query_with_bad_sql_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["events", "query", "no_such_column = 1"])
    assert result.exit_code == 2
    assert "query failed" in result.output and "no_such_column" in result.output


def test_events_tail_prints_json_lines(runner: CliRunner) -> None:
    assert runner.invoke(main, ["demo", "-n", "100", "--no-progress"]).exit_code == 0
    result = runner.invoke(main, ["events", "tail", "--type", "provider.call.finished", "--max", "10"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 10 and rows[0]["payload"]["project"] in {"search", "agents", "eval"}


def test_events_tail_follow_sees_events_from_another_process(lumina_home: Path) -> None:
    """`lumina events tail -f` in one process prints what a second process stores."""
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lumina_lab",
            "events",
            "tail",
            "-f",
            "--poll",
            "0.1",
            "--max",
            "50",
            "--type",
            "provider.call.finished",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        subprocess.run(
            [sys.executable, "-m", "lumina_lab", "demo", "-n", "50", "--no-progress"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        out, _ = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0
    assert len(out.splitlines()) == 50


def test_dead_letters_and_compact_commands(runner: CliRunner) -> None:
    assert runner.invoke(main, ["demo", "-n", "2000", "--no-progress"]).exit_code == 0
    listed = runner.invoke(main, ["events", "dead-letters", "--all", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert all(json.loads(line)["subscriber"] == "demo-exporter" for line in listed.output.splitlines())
    compacted = runner.invoke(main, ["events", "compact"])
    assert compacted.exit_code == 0 and "merged" in compacted.output
