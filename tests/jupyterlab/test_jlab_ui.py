"""The extension in a real JupyterLab, driven in Debian's Chromium with Playwright (Python).

``lumina lab`` starts JupyterLab; the browser opens the Lumina sidebar, runs a palette command that creates a
notebook from a template (its kernel starts), and the sidebar shows — live, over the WebSocket — events that
this running kernel publishes, including a provider whose breaker opened.  Then ``lumina:insert-snippet``
puts a ``%lumina`` snippet into a notebook cell.  The screenshot of the sidebar goes to the test's folder, and
to ``docs/img/sidebar.png`` when ``UPDATE_SCREENSHOTS=1``.

Needs Debian's Chromium (``apt-get install -y chromium``; Playwright's own browser download does not work
here) — without it the test is skipped locally and fails under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LUMINA_CHROMIUM", "/usr/bin/chromium")
TOKEN = "lumina-ui-test-token"

pytestmark = pytest.mark.slow


def _need_browser() -> None:
    problems = []
    if not Path(CHROMIUM).exists():
        problems.append(f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("playwright is missing: pip install playwright")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, method: str = "GET", body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


LUMINA_TOML = """
[routing]
strategy = "round_robin"
retries = 1

[[providers]]
kind = "simulated"
id = "sim-gpt-4.1-mini"
model = "gpt-4.1-mini"
ttft_s = 0.01
tokens_per_s = 4000
[[providers]]
kind = "simulated"
id = "sim-gemini-2.5-flash"
model = "gemini-2.5-flash"
ttft_s = 0.01
tokens_per_s = 4000
[[providers]]
kind = "simulated"
id = "sim-claude-3-7-sonnet"
model = "claude-3-7-sonnet-20250219"
ttft_s = 0.02
tokens_per_s = 3000
[[providers]]
kind = "simulated"
id = "sim-flaky-4.1"
model = "gpt-4.1"
ttft_s = 0.01
error_rate = 1.0

[[budgets]]
limit_usd = 0.004
scope = "project"
period = "day"
[[budgets]]
limit_usd = 0.05
period = "month"
name = "team/month"
"""

KERNEL_CODE = textwrap.dedent(
    """
    from lumina_lab import Lab
    from lumina_lab.events import Event, event

    @event("ui.demo.hello")
    class Hello(Event):
        text: str

    lab = Lab()
    for i in range(24):
        try:
            lab.ask(f"question {i}", max_tokens=40, project=("search", "agents")[i % 2])
        except Exception as exc:  # a budget may stop a call: that is part of the picture
            print(type(exc).__name__)
    docs = lab.memory.collection("docs")
    docs.add(["Cedar decides who may call a provider.", "DuckDB keeps every vector in one file."])
    docs.search("which database keeps vectors?", k=1)
    lab.policy.publish("permit(principal, action, resource);", message="open")
    lab.publish(Hello(text="hello from a running kernel"))
    lab.sync()
    print("published")
    """
)


@pytest.fixture
def jupyterlab(tmp_path: Path):
    """``lumina lab`` on a fresh notebook folder, isolated Jupyter settings, ``~/.lumina`` in a fresh home."""
    user_home = tmp_path / "home"
    lumina_home = user_home / ".lumina"
    lumina_home.mkdir(parents=True)
    (lumina_home / "lumina.toml").write_text(LUMINA_TOML)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    runtime = tmp_path / "runtime"
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "HOME": str(user_home),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        }
    )
    # no "get notified about Jupyter news?" toast over the page (and no request for news)
    notification = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = (tmp_path / "jupyterlab.log").open("w")
    cmd = [
        sys.executable, "-m", "lumina_lab", "lab", "--notebooks", str(notebooks), "--home", str(lumina_home),
        "--port", str(port), "--no-browser", "--",
        f"--IdentityProvider.token={TOKEN}", "--ServerApp.ip=127.0.0.1", "--ServerApp.allow_root=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.expose_app_in_browser=True",
        "--LuminaExtension.poll_interval=0.2",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                _api(base, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    log_text = (tmp_path / "jupyterlab.log").read_text()[-3000:]
                    raise AssertionError(f"JupyterLab did not start: {log_text}") from None
                time.sleep(0.25)
        yield {"base": base, "notebooks": notebooks, "runtime": runtime, "log": tmp_path / "jupyterlab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _kernel_of(base: str, path: str, runtime: Path, timeout: float = 30) -> Path:
    """The connection file of the kernel the notebook at ``path`` runs on, once it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for session in _api(base, "/api/sessions"):  # type: ignore[union-attr]
            if session["path"] == path and session.get("kernel"):
                conn = runtime / f"kernel-{session['kernel']['id']}.json"
                if conn.is_file():
                    return conn
        time.sleep(0.25)
    raise AssertionError(f"no kernel started for {path}")


def test_sidebar_shows_live_events_from_a_running_kernel(jupyterlab, tmp_path: Path) -> None:
    _need_browser()
    from jupyter_client import BlockingKernelClient
    from playwright.sync_api import expect, sync_playwright

    t0 = time.monotonic()
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "umina" in m.text else None)
            page.goto(f"{jupyterlab['base']}/lab?token={TOKEN}")
            page.wait_for_selector("#jp-main-dock-panel", timeout=30_000)
            marks = {"lab loaded": time.monotonic() - t0}

            # the sidebar: open it from its tab on the left; the feed connects and the snapshot renders
            page.locator('.lm-TabBar-tab[data-id="lumina-sidebar"]').click()
            sidebar = page.locator("#lumina-sidebar")
            expect(sidebar).to_be_visible()
            expect(sidebar.locator('.jp-Lumina-conn[data-state="live"]')).to_be_visible(timeout=15_000)
            expect(sidebar.locator(".jp-Lumina-provider")).to_have_count(4, timeout=15_000)
            expect(sidebar).to_contain_text("Waiting for events")
            expect(sidebar.locator(".jp-Lumina-kv").first).to_contain_text("~/.lumina")

            # a command from the palette: a new notebook from the quickstart template (its kernel starts)
            page.keyboard.press("Control+Shift+C")
            page.keyboard.type("Template: Lumina quickstart")
            page.locator(".lm-CommandPalette-item", has_text="Lumina quickstart").first.click()
            expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=15_000)
            assert (jupyterlab["notebooks"] / "Lumina quickstart.ipynb").is_file()
            marks["notebook open"] = time.monotonic() - t0

            # that notebook's running kernel publishes events; the sidebar shows them live
            client = BlockingKernelClient(connection_file=str(_kernel_of(
                jupyterlab["base"], "Lumina quickstart.ipynb", jupyterlab["runtime"])))
            client.load_connection_file()
            client.start_channels()
            try:
                msg_id = client.kernel_info()  # ready once it answers (the heartbeat may not beat yet)
                while client.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
                    pass
                reply = client.execute_interactive(KERNEL_CODE, timeout=60, output_hook=lambda msg: None)
                assert reply["content"]["status"] == "ok", reply["content"]
            finally:
                client.stop_channels()
            marks["kernel ran"] = time.monotonic() - t0
            hello = sidebar.locator('.jp-Lumina-event[data-type="ui.demo.hello"]')
            expect(hello).to_have_count(1, timeout=15_000)
            expect(hello).to_contain_text("text=hello from a running kernel")
            # the flaky provider's breaker opened in that kernel: the sidebar says so (refreshed at once)
            flaky = sidebar.locator('.jp-Lumina-provider[data-provider="sim-flaky-4.1"]')
            expect(flaky).to_have_attribute("data-health", "down", timeout=15_000)
            expect(flaky.locator(".jp-Lumina-badge")).to_have_text("open")
            expect(sidebar.locator('.jp-Lumina-budget[data-state="exceeded"], .jp-Lumina-budget[data-state="warning"]')
                   .first).to_be_visible(timeout=15_000)
            assert sidebar.locator(".jp-Lumina-event").count() >= 20
            expect(sidebar.locator(".jp-Lumina-status")).to_contain_text("1 collection (duckdb)", timeout=15_000)
            expect(sidebar.locator(".jp-Lumina-status")).to_contain_text("v1 live")
            marks["events shown"] = time.monotonic() - t0

            # another command, through the app: a %lumina snippet into a new code cell of the notebook
            source = page.evaluate(
                """async () => {
                    const app = window.jupyterapp;
                    await app.commands.execute('notebook:insert-cell-below');
                    await app.commands.execute('notebook:change-cell-to-code');
                    await app.commands.execute('lumina:insert-snippet', {label: 'status'});
                    return app.shell.currentWidget.content.activeCell.model.sharedModel.getSource();
                }"""
            )
            assert source == "%load_ext lumina_lab\n%lumina status"
            marks["snippet"] = time.monotonic() - t0

            # a wider left area for the picture (drag the split handle, as a person would)
            handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
            box = handle.bounding_box()
            if box is not None:
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 300)
                page.mouse.down()
                page.mouse.move(box["x"] + 70, box["y"] + 300, steps=5)
                page.mouse.up()
            page.wait_for_timeout(1300)  # the flash of new events is over
            shot = tmp_path / "sidebar.png"
            page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1280, "height": 820})
            marks["screenshot"] = time.monotonic() - t0
            if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                target = ROOT / "docs" / "img" / "sidebar.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, target)
            # the live dashboard command opens the configured URL (`lumina serve`'s) in a Lab tab
            page.evaluate("() => { void window.jupyterapp.commands.execute('lumina:open-dashboard'); }")
            expect(page.locator('.jp-Lumina-frame iframe[src="http://localhost:5006/"]')).to_have_count(1)
            expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Lumina Dashboard")).to_be_visible()
            marks["dashboard"] = time.monotonic() - t0
        finally:
            browser.close()
    marks["browser closed"] = time.monotonic() - t0
    print("timings (s):", {k: round(v, 1) for k, v in marks.items()})
    assert not problems, problems
    elapsed = time.monotonic() - t0
    assert elapsed < 60, f"the UI test took {elapsed:.0f} s"
