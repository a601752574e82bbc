"""``StatusReader``: the machine-wide picture (every process's events) the JupyterLab sidebar shows."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import lumina_lab.status
from lumina_lab import Lab
from lumina_lab.errors import ValidationError
from lumina_lab.events import Event, event
from lumina_lab.providers.events import BreakerChanged, CallFailed, CallFinished
from lumina_lab.status import EventFeed, StatusReader, classify_health, event_record, summarize_event


@event("test.status.ping")
class Ping(Event):
    n: int
    note: str = ""


def _finished(provider: str, cost: float = 0.001, project: str | None = "search", **kw: object) -> CallFinished:
    fields = dict(request_id="r", provider=provider, model="m", attempt=1, input_tokens=10, output_tokens=20,
                  cost_usd=cost, latency_s=0.05, ttft_s=0.01, project=project)
    fields.update(kw)
    return CallFinished(**fields)  # type: ignore[arg-type]


def _failed(provider: str) -> CallFailed:
    return CallFailed(request_id="r", provider=provider, model="m", attempt=1, error_type="ProviderTimeout",
                      error="slow", retryable=True, latency_s=1.0)


def _write_toml(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "lumina.toml").write_text(text)


def test_module_doctests() -> None:
    result = doctest.testmod(lumina_lab.status, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 5


def test_events_from_another_process_show_up(lumina_home: Path) -> None:
    """A separate process (a notebook kernel, say) routes requests; the reader sees calls, spend and the process."""
    _write_toml(lumina_home, '[[budgets]]\nlimit_usd = 5\nscope = "project"\nkey = "search"\nperiod = "day"\n')
    code = (
        "from lumina_lab import Lab\n"
        "with Lab() as lab:\n"
        "    for _ in range(3):\n"
        "        lab.ask('hello there', max_tokens=20, project='search')\n"
        "    lab.sync()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with StatusReader() as reader:
        status = reader.status()
        assert status["store"]["shared"] is True and status["events"]["total"] >= 9
        assert len(status["sources"]) == 1 and status["sources"][0]["events"] >= 9
        providers = {p["id"]: p for p in reader.providers()["providers"]}
        assert set(providers) == {"sim-gpt-4.1-mini", "sim-gemini-2.5-flash", "sim-gpt-4.1", "sim-claude-3-7-sonnet"}
        used = [p for p in providers.values() if p["calls"]]
        assert len(used) == 1 and used[0]["calls"] == 3 and used[0]["health"] == "healthy"
        assert used[0]["p95_latency_ms"] > 0 and used[0]["cost_usd"] > 0
        assert {p["health"] for p in providers.values() if not p["calls"]} == {"idle"}
        budgets = reader.budgets()
        (row,) = budgets["budgets"]
        assert row["budget"] == "project=search/day" and row["key"] == "search"
        assert row["spent_usd"] == pytest.approx(used[0]["cost_usd"]) and row["state"] == "ok"
        assert budgets["spend"]["today_usd"] == pytest.approx(used[0]["cost_usd"])
        assert budgets["spend"]["by_project_today"][0]["project"] == "search"
        json.dumps(reader.snapshot())  # everything is JSON-ready


def test_breaker_state_is_the_worst_among_active_processes() -> None:
    with Lab() as lab:
        lab.publish(
            BreakerChanged(provider="p1", old="closed", new="open", failure_rate=0.8, source="kernel-a"),
            BreakerChanged(provider="p1", old="closed", new="half_open", failure_rate=0.5, source="kernel-b"),
            BreakerChanged(provider="p2", old="closed", new="open", failure_rate=0.9, source="kernel-a"),
            BreakerChanged(provider="p2", old="open", new="closed", failure_rate=0.0, source="kernel-a"),
            # a process silent for an hour: its open breaker is not today's picture
            BreakerChanged(provider="p3", old="closed", new="open", failure_rate=1.0, source="gone",
                           ts=datetime.now(UTC) - timedelta(hours=1)),
            _finished("p3"),
        )
        lab.sync()
        with StatusReader(lab=lab) as reader:
            providers = {p["id"]: p for p in reader.providers()["providers"]}
    assert providers["p1"]["breaker"] == "open" and providers["p1"]["health"] == "down"
    assert {b["source"]: b["state"] for b in providers["p1"]["breakers"]} == {"kernel-a": "open", "kernel-b": "half_open"}
    assert providers["p2"]["breaker"] == "closed"
    assert providers["p3"]["breaker"] == "closed" and providers["p3"]["health"] == "healthy"
    assert providers["p1"]["configured"] is False  # seen in events only


def test_health_from_error_rate() -> None:
    with Lab() as lab:
        lab.publish(*[_finished("flaky") for _ in range(3)], *[_failed("flaky") for _ in range(3)])
        lab.sync()
        with StatusReader(lab=lab) as reader:
            (flaky,) = [p for p in reader.providers()["providers"] if p["id"] == "flaky"]
    assert flaky["health"] == "degraded" and flaky["error_rate"] == 0.5
    assert classify_health(breaker="closed", attempts=3, failures=3) == "healthy"  # too few attempts to judge


def test_budgets_per_scope_and_period(lumina_home: Path) -> None:
    _write_toml(
        lumina_home,
        "[[budgets]]\nlimit_usd = 0.01\nscope = \"project\"\nperiod = \"day\"\n"
        "[[budgets]]\nlimit_usd = 1\nperiod = \"month\"\nname = \"org\"\n"
        "[[budgets]]\nlimit_usd = 2\nscope = \"principal\"\nkey = \"ada\"\n",
    )
    with Lab() as lab:
        lab.publish(
            _finished("p", 0.009, project="search"),
            _finished("p", 0.002, project="search"),
            _finished("p", 0.004, project="agents"),
            _finished("p", 0.5, project="search", ts=datetime.now(UTC) - timedelta(days=40)),  # another month
        )
        lab.sync()
        with StatusReader() as reader:
            budgets = reader.budgets()
    rows = {(r["budget"], r["key"]): r for r in budgets["budgets"]}
    assert rows[("project=*/day", "search")]["state"] == "exceeded"
    assert rows[("project=*/day", "search")]["spent_usd"] == pytest.approx(0.011)
    assert rows[("project=*/day", "agents")]["state"] == "ok"
    assert rows[("org", "*")]["spent_usd"] == pytest.approx(0.015)
    assert rows[("principal=ada/total", "ada")]["spent_usd"] == 0  # nothing charged to ada yet
    assert budgets["spend"]["today_usd"] == pytest.approx(0.015)


def test_event_filters() -> None:
    with Lab() as lab:
        lab.publish(Ping(n=1, note="alpha"), Ping(n=2, note="beta", source="worker-1"), _finished("p"))
        lab.sync()
        with StatusReader(lab=lab) as reader:
            assert [e["payload"]["n"] for e in reader.events(type="test.status.*")] == [2, 1]  # newest first
            assert [e["payload"]["n"] for e in reader.events(type="test.*", newest_first=False)] == [1, 2]
            assert [e["source"] for e in reader.events(source="worker-*")] == ["worker-1"]
            assert [e["payload"]["note"] for e in reader.events(contains="ALPHA")] == ["alpha"]
            assert len(reader.events(limit=1)) == 1
            assert reader.events(since="1h", until=(datetime.now(UTC) - timedelta(hours=2)).isoformat()) == []
            with pytest.raises(ValidationError, match="limit=0"):
                reader.events(limit=0)
            with pytest.raises(ValidationError, match="not a time"):
                reader.events(since="yesterday-ish")
            rec = reader.events(type="provider.*")[0]
    assert rec["summary"].startswith("p · 20 tok") and isinstance(rec["ts"], str) and rec["payload"]["provider"] == "p"


def test_feed_sees_only_new_events_from_other_processes(lumina_home: Path) -> None:
    with Lab() as lab:
        lab.publish(Ping(n=0))
        lab.sync()
        with StatusReader() as reader:
            feed = reader.feed()
            typed = reader.feed(type="provider.*")
            assert feed.poll() == []
            code = (
                "from lumina_lab import Lab\n"
                "from lumina_lab.events import Event, event\n"
                "@event('test.status.ping')\n"
                "class Ping(Event):\n    n: int\n    note: str = ''\n"
                "with Lab() as lab:\n    lab.publish(Ping(n=7, note='<b>x</b>'))\n    lab.sync()\n"
            )
            subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
            got = feed.poll()
            assert [(e["type"], e["payload"]["n"]) for e in got] == [("test.status.ping", 7)]
            assert got[0]["payload"]["note"] == "<b>x</b>"  # data, not markup: the UI shows it as text
            assert typed.poll() == [] and feed.poll() == []
            lab.publish(_finished("p"))
            lab.sync()
            assert [e["type"] for e in typed.poll()] == ["provider.call.finished"]
            assert typed.matches("provider.call.failed") and not typed.matches("memory.written")


def test_feed_batches_large_bursts() -> None:
    with Lab() as lab:
        feed = EventFeed(lab.store, max_batch=10)
        lab.publish(*[Ping(n=i) for i in range(25)])
        lab.sync()
        sizes = [len(feed.poll()) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


def test_memory_collections(lumina_home: Path) -> None:
    with StatusReader() as reader:
        empty = reader.memory()
        assert empty["collections"] == [] and empty["note"] == "nothing stored yet"
        assert not (lumina_home / "memory").exists()  # looking creates nothing
    with Lab() as lab:
        docs = lab.memory.collection("docs")
        docs.add(["Cedar decides who may call a provider.", "DuckDB keeps vectors."])
        docs.search("cedar")
        lab.sync()
    with StatusReader() as reader:
        mem = reader.memory()
    (docs_info,) = mem["collections"]
    assert docs_info["name"] == "docs" and docs_info["dim"] > 0 and docs_info["metric"] == "cosine"
    assert docs_info["writes"] == 1 and docs_info["items_written"] == 2 and docs_info["searches"] == 1


def test_memory_backend_in_process(lumina_home: Path) -> None:
    _write_toml(lumina_home, '[memory]\nbackend = "memory"\n')
    with StatusReader() as reader:
        mem = reader.memory()
    assert mem["backend"] == "memory" and "inside each process" in mem["note"]


def test_policy_versions(lumina_home: Path) -> None:
    from lumina_lab.policy import PolicyStore

    with StatusReader() as reader:
        assert reader.policy()["versions"] == []
        store = PolicyStore(lumina_home / "policies")
        store.publish("permit(principal, action, resource);", message="open")
        first = reader.policy()
        assert [v["version"] for v in first["versions"]] == [1] and first["live"] == 1
        time.sleep(0.01)
        store.publish("forbid(principal, action, resource);", message="closed")
        second = reader.policy()
    assert [(v["version"], v["message"], v["live"]) for v in second["versions"]] == [
        (2, "closed", True),
        (1, "open", False),
    ]


def test_memory_event_store_is_not_shared() -> None:
    with StatusReader(lab=Lab(profile="test")) as reader:
        status = reader.status()
        reader.lab.close()
    assert status["store"]["shared"] is False and "events.store" in status["store"]["hint"]


def test_event_record_and_summaries() -> None:
    rec = event_record({"id": "1", "type": "x.y", "ts": datetime(2026, 1, 1), "payload": '{"a": 1, "b": [1]}'})
    assert rec["ts"] == "2026-01-01T00:00:00+00:00" and rec["payload"] == {"a": 1, "b": [1]} and rec["summary"] == "a=1"
    assert event_record({"type": "x", "payload": "not json"})["payload"] == {"raw": "not json"}
    assert summarize_event("provider.call.failed", {"provider": "p", "error_type": "RateLimited", "error": "429"}) == (
        "p · RateLimited: 429"
    )
    assert summarize_event("provider.call.finished", {}) == ""  # missing fields fall back, never raise
    assert summarize_event("policy.decided", {"principal": "User::\"ann\"", "action": "read", "resource": "d",
                                              "decision": "ALLOW"}) == 'ALLOW User::"ann" read d'
