"""``run_demo``: a simulated team workload routed through the lab, summarised from the event store."""

from __future__ import annotations

import pytest

from lumina_lab import Lab
from lumina_lab.demo import run_demo
from lumina_lab.errors import ValidationError


@pytest.fixture(scope="module")
def report():
    with Lab(profile="test") as lab:
        yield run_demo(lab, requests=3_000, seed=3, budget_usd=0.2, progress=False), lab


@pytest.fixture(scope="module")
def tight():
    with Lab(profile="test") as lab:
        yield run_demo(lab, requests=2_000, seed=4, budget_usd=0.05, progress=False), lab


def test_every_request_is_accounted_for(report) -> None:
    r, _ = report
    assert r.answered + r.budget_stopped + r.failed == 3_000
    assert r.answered > 0


def test_summary_comes_from_the_events(report) -> None:
    r, _ = report
    assert r.by_provider["answered"].sum() == r.answered
    assert r.events_stored >= 3 * r.answered  # routed, started, finished at least


def test_budgets_stop_spending_at_the_limit(tight) -> None:
    r, lab = tight
    assert r.budget_stopped > 0
    assert r.answered + r.budget_stopped + r.failed == 2_000
    assert (r.by_project["cost_usd"] <= 0.05 + 1e-9).all()  # never overspent
    # soft warnings (80%) for projects whose spend got there; a worst-case reservation may refuse earlier
    assert set(r.budget_warnings["budget"]) <= {f"project={p}/day" for p in r.by_project["project"]}
    assert len(r.budget_warnings) >= 1
    status = lab.budgets.status()
    assert (status["held_usd"].abs() < 1e-12).all()  # nothing left reserved


def test_the_outage_opens_the_breaker_and_it_recovers(report) -> None:
    r, _ = report
    victim = r.outage.split()[0]
    moves = [(row.old, row.new) for row in r.breaker_changes.itertuples() if row.provider == victim]
    assert moves[0] == ("closed", "open")
    assert ("half_open", "closed") in moves


def test_dead_letters_are_replayed(report) -> None:
    r, lab = report
    assert r.dead_letters == r.replayed
    assert len(lab.store.dead_letters()) == 0


def test_same_seed_same_workload() -> None:
    from lumina_lab.demo import _workload

    a, b = _workload(200, 5), _workload(200, 5)
    assert [(x.prompt_text, x.project, x.max_tokens) for x in a] == [
        (y.prompt_text, y.project, y.max_tokens) for y in b
    ]


def test_bad_request_count() -> None:
    with pytest.raises(ValidationError, match="requests=0"):
        run_demo(Lab(profile="test"), requests=0)


def test_the_team_memory_answers_from_the_shipped_notes(report) -> None:
    memory = report[0].memory
    assert list(memory["mode"])[:2] == ["hybrid", "hybrid"]
    assert memory["top note"].str.startswith(("note-08", "note-16", "note-19", "note-06")).all()
    assert memory.iloc[0]["top note"].startswith("note-08")  # the budget incident
    assert memory.iloc[1]["top note"].startswith("note-16")  # two kernels and the vector store


def test_the_team_policy_keeps_eval_off_the_premium_model(report) -> None:
    policy = report[0].policy.set_index("person")
    assert policy.loc["barbara", "denied by policy"] == "sim-claude-3-7-sonnet"
    assert (policy.drop(index="barbara")["denied by policy"] == "").all()
    assert policy.loc["barbara", "candidates"] == policy.loc["ada", "candidates"] - 1


def test_policy_decisions_are_events_and_the_users_policies_are_untouched(report) -> None:
    _, lab = report
    decided = lab.sql("SELECT payload->>'$.decision' AS d, count(*) AS n FROM events WHERE type = 'policy.decided' GROUP BY d")
    counts = dict(zip(decided.d, decided.n, strict=True))
    assert counts.get("DENY", counts.get("deny")) == 1
    assert lab.policy.store.live is None  # the demo's policy lived in a throwaway store


def test_a_paced_run_takes_its_time() -> None:
    with Lab(profile="test") as lab:
        r = run_demo(lab, requests=300, seed=1, rate=600, progress=False)
    assert r.answered + r.budget_stopped + r.failed == 300
    assert r.seconds >= 299 / 600


def test_bad_rate() -> None:
    with pytest.raises(ValidationError, match="rate=0"):
        run_demo(Lab(profile="test"), requests=10, rate=0)


def test_lumina_demo_serve_shows_the_run_on_the_dashboard(tmp_path) -> None:
    """`lumina demo --serve`: the dashboard and /metrics are up while the workload runs, fed by its events."""
    import os
    import re
    import subprocess
    import sys
    import time

    import httpx

    env = {**os.environ, "LUMINA_HOME": str(tmp_path), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "lumina_lab", "demo", "-n", "600", "--rate", "300", "--serve", "--port", "0",
           "--serve-for", "45", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        url = match.group(0)
        assert httpx.get(url, timeout=30, follow_redirects=True).status_code == 200
        deadline, seen, denied, text = time.monotonic() + 90, 0.0, None, ""
        while time.monotonic() < deadline and not (seen >= 600 and denied):  # routing first, then the policy phase
            try:
                text = httpx.get(url + "metrics", timeout=10).text
            except httpx.ConnectError:  # the demo stopped serving: say what the last scrape showed
                break
            found = re.search(r'^lumina_requests_total\{strategy="\w+"\} ([\d.]+)', text, re.M)
            seen = float(found.group(1)) if found else 0.0
            denied = re.search(r'^lumina_policy_denials_total\{point="router"\} 1\.0', text, re.M)
            time.sleep(0.5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    last = "\n".join(x for x in text.splitlines() if x.startswith(("lumina_requests_total", "lumina_policy_denials")))
    assert seen == 600 and denied, f"last scrape:\n{last}\n--- demo output:\n{out[-3000:]}"
    assert "Team policy (Cedar)" in out
