"""A real browser on the served dashboard: live figures change, memory search, a policy simulation.

Runs Debian's Chromium (``apt-get install chromium``; ``CHROMIUM`` names another binary) through Playwright;
skipped when either is missing. Screenshots go to ``$TEST_ARTIFACTS`` (or the test's tmp dir).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("panel")
sync_api = pytest.importorskip("playwright.sync_api")

from lumina_lab import Lab  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)>"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DEEP_TEXT = """e => {
  const walk = n => (n.shadowRoot ? walk(n.shadowRoot) : "") +
    Array.from(n.childNodes).map(c => c.nodeType === 3 ? c.textContent : walk(c)).join(" ");
  return walk(e).split(/\\s+/).filter(Boolean).join(" ");
}"""


def deep_text(locator: object) -> str:
    """Text of an element including its shadow roots (Panel renders inside them)."""
    return str(locator.evaluate(DEEP_TEXT))  # type: ignore[attr-defined]


def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not seen within {timeout}s: {what}")


@pytest.fixture
def served(lumina_home: Path) -> Iterator[tuple[Lab, int]]:
    from lumina_lab.policy import DictEntities
    from lumina_lab.ui import serve

    lab = Lab(profile="test", memory={"backend": "memory"})
    lab.memory.collection("notes").add(
        ["Provider outage opened the breaker for flash.", XSS], metadata=[{"team": "infra"}, {"team": "red"}]
    )
    lab.policy.entities.add(DictEntities("User", {"ann": {"team": "search"}, "bob": {"team": "agents"}}))
    lab.policy.entities.add(DictEntities("Provider", {"gpt": {"tier": "premium"}, "mini": {"tier": "standard"}}))
    lab.policy.publish(
        '@id("standard") permit(principal, action == Action::"call", resource) when { resource.tier == "standard" };'
    )
    port = free_port()
    server = serve(
        lab, components=["overview", "memory", "policy"], port=port, threaded=True, feed=False, verbose=False
    )
    try:
        yield lab, port
    finally:
        server.stop()
        lab.close()


def test_dashboard_in_a_real_browser(served: tuple[Lab, int], tmp_path: Path) -> None:
    from lumina_lab.providers.events import CallFinished

    lab, port = served
    shots = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    dialogs: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            page.get_by_text("Live overview").wait_for(timeout=60_000)
            calls = page.locator(".lumina-number").filter(has_text="Calls")
            eventually(lambda: deep_text(calls).endswith("Calls 0"), what="Calls 0")

            # live figures: events published on the bus reach the page without a reload
            now = datetime.now(UTC)
            lab.publish(
                *[
                    CallFinished(
                        ts=now,
                        request_id=f"r{i}",
                        provider="sim-gpt-4.1-mini",
                        model="gpt-4.1-mini",
                        attempt=1,
                        input_tokens=10,
                        output_tokens=20,
                        cost_usd=0.001,
                        latency_s=0.2,
                        ttft_s=0.05,
                    )
                    for i in range(7)
                ]
            )
            eventually(lambda: deep_text(calls).endswith("Calls 7"), what="Calls 7 after publishing 7 calls")
            page.screenshot(path=str(shots / "dashboard-overview.png"))

            # memory search: stored markup is shown as text, never run
            box = page.get_by_placeholder("what are you looking for?")
            box.fill("onerror img")
            box.press("Enter")
            page.get_by_text(XSS).first.wait_for(timeout=15_000)
            assert page.locator('img[src="x"]').count() == 0
            page.get_by_text("Memory explorer").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "dashboard-memory.png"))

            # policy simulation: run the grid, read the numbers
            page.get_by_role("button", name="Run grid").click()
            status = page.get_by_text("4 requests")
            status.wait_for(timeout=15_000)
            text = deep_text(status.locator(".."))
            assert "2 allow" in text and "2 deny" in text, text
            page.get_by_text("Policy simulator").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "dashboard-policy.png"))

            # one view per page (?components=, what the JupyterLab sidebar opens); a wrong name is explained
            page.goto(f"http://127.0.0.1:{port}/?components=memory", timeout=60_000)
            page.get_by_placeholder("what are you looking for?").wait_for(timeout=60_000)
            assert page.title() == "Lumina Lab · Memory explorer"
            assert page.get_by_text("Live overview").count() == 0 and page.get_by_text("Policy simulator").count() == 0
            page.screenshot(path=str(shots / "dashboard-memory-view.png"))
            page.goto(f"http://127.0.0.1:{port}/?components=policy,nope", timeout=60_000)
            page.get_by_text("Live overview").wait_for(timeout=60_000)  # the served default components
            assert "unknown dashboard component" in deep_text(page.locator("body"))
        finally:
            browser.close()
    assert not dialogs, f"a script ran: {dialogs}"
    assert not problems, problems
