"""Delay from publishing an event to the live overview showing it in a real browser, under a steady event rate.

A server process runs the dashboard (``lumina_lab.ui.serve``, the server behind ``lumina serve``) showing only
the live overview, subscribed to a bus on which a publisher thread of the same process publishes provider
events at ``--rate`` events/s (half ``provider.request.routed``, half ``provider.call.finished``) for
``--duration`` seconds. Debian's Chromium, headless through Playwright, shows the page; a ``MutationObserver``
on the overview's *Calls* figure records, for every value it shows, the wall-clock time of the next animation
frame (``performance.timeOrigin + performance.now()``: the browser's view of the system clock, the one
Python's ``time.time()`` reads; the offset between the two is measured and removed).

The delay of a published batch is the time from its publication until the figure first shows a count that
includes it: every batch counts, also those whose value the page never showed on its own (a later, larger
value covered them).

Prints one JSON line: ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` (delay), ``server_cpu_pct`` and
``browser_cpu_pct`` (percent of one core over the measured run; the publisher thread's share of the server
process is ``publisher_cpu_pct``), ``server_rss_mb`` and ``browser_rss_mb`` at the start and end of the measured
run, the browser's JavaScript heap, ``updates`` (figures shown), ``events`` and the achieved rate. Target: p95
<= 250 ms with no growth in memory.

What is measured is the dashboard's own path: bus -> ``LiveMetrics`` -> re-render -> Bokeh websocket ->
browser. ``lumina serve`` following *other* processes reads their events from the shared event log, which
adds the store's flush interval (``events.flush_interval_s``, 0.2 s) and the feed's poll (0.2 s) before the
bus. ``DASHBOARD_LATENCY_TRACEMALLOC=1`` writes the server's top allocation growth to its log (diagnosis).

    python benchmarks/dashboard_latency.py                      # 60 s at 2,000 events/s
    python benchmarks/dashboard_latency.py --duration 10 --rate 500 --push-ms 0   # periodic refresh only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from bisect import bisect_left
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

# installs the observer on the Calls figure (an element whose text is "Calls 12,345", inside shadow roots)
OBSERVE = """el => {
  const text = n => (n.shadowRoot ? text(n.shadowRoot) : "") +
    Array.from(n.childNodes).map(c => c.nodeType === 3 ? c.textContent : text(c)).join(" ");
  const read = () => { const m = text(el).match(/([0-9][0-9,]*)\\s*$/); return m ? parseInt(m[1].replace(/,/g, ""), 10) : null; };
  const state = window.__lumina = {samples: [], last: read(), mutations: 0};
  const record = () => {
    state.mutations += 1;
    const v = read();
    if (v === null || v === state.last) return;
    state.last = v;
    const seen = performance.timeOrigin + performance.now();
    requestAnimationFrame(() => state.samples.push([v, seen, performance.timeOrigin + performance.now()]));
  };
  const obs = new MutationObserver(muts => {
    for (const m of muts) for (const n of m.addedNodes) if (n.nodeType === 1) watchAll(n);
    record();
  });
  const watch = root => obs.observe(root, {subtree: true, childList: true, characterData: true});
  const watchAll = n => {  // an element, its shadow root, and the shadow roots below (observers stop at them)
    if (n.shadowRoot) { watch(n.shadowRoot); watchAll(n.shadowRoot); }
    n.querySelectorAll("*").forEach(c => { if (c.shadowRoot) { watch(c.shadowRoot); watchAll(c.shadowRoot); } });
  };
  watch(el);
  watchAll(el);
  return state.last;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- server process
def serve_child(port: int, push_ms: int, refresh_ms: int, via_log: bool = False) -> None:
    """The server process: dashboard + publisher thread; commands on stdin, answers on stdout (JSON lines)."""
    os.environ.setdefault("LUMINA_HOME", tempfile.mkdtemp(prefix="lumina-bench-"))
    import psutil

    from lumina_lab import Lab
    from lumina_lab.events.bus import InProcessBus
    from lumina_lab.providers.events import CallFinished, RequestRouted
    from lumina_lab.ui import serve
    from lumina_lab.ui.base import LiveView
    from lumina_lab.ui.overview import Overview

    renders: list[tuple[float, float, bool]] = []  # (start, ms, new time-series point) of each re-render
    refresh = Overview.refresh

    def timed(self: Any) -> None:
        t0, last = time.perf_counter(), self._last_t
        refresh(self)
        renders.append((time.time(), (time.perf_counter() - t0) * 1000, self._last_t != last))

    Overview.refresh = timed  # type: ignore[method-assign]
    LiveView.param.refresh_ms.default = refresh_ms
    if "push_ms" in LiveView.param:
        LiveView.param.push_ms.default = push_ms
    if via_log:  # as `lumina serve` shows other processes: publisher -> event log (file) -> feed -> dashboard
        if os.environ.get("DASHBOARD_LATENCY_FEED_POLL_S"):
            from lumina_lab.ui.server import _Shared

            _Shared.feed_poll_s = float(os.environ["DASHBOARD_LATENCY_FEED_POLL_S"])
        lab = Lab(profile="test", events={"store": "file"})
        writer = Lab(profile="test", events={"store": "file"})
        bus = writer.bus
        server = serve(lab, components=["overview"], port=port, threaded=True, verbose=False, metrics=False, since=None)
    else:
        lab = Lab(profile="test")
        bus = InProcessBus(queue_size=20_000, overflow="drop_oldest", retries=0)  # what `lumina serve`'s feed uses
        server = serve(lab, bus=bus, components=["overview"], port=port, threaded=True, verbose=False, metrics=False)
    pub_times, pub_counts = array("d"), array("q")  # the publication log, 16 bytes a batch (kept out of the RSS)
    publisher: dict[str, Any] = {}

    def publish(duration: float, rate: float) -> None:
        publisher["tid"] = threading.get_native_id()
        tick = 0.01
        per_tick = max(2, round(rate * tick))
        routed_n = per_tick // 2
        finished = 0
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < duration:
            n += 1
            batch: list[Any] = []
            now = datetime.now(UTC)
            for i in range(per_tick):
                rid = f"b{n}-{i}"
                if i < routed_n:
                    batch.append(
                        RequestRouted(ts=now, request_id=rid, strategy="cheapest", chosen="sim-a", candidates=["sim-a"])
                    )
                else:
                    batch.append(
                        CallFinished(
                            ts=now,
                            request_id=rid,
                            provider="sim-a",
                            model="m",
                            attempt=1,
                            input_tokens=10,
                            output_tokens=20,
                            cost_usd=1e-5,
                            latency_s=0.2 + (i % 7) * 0.01,
                            ttft_s=0.05,
                        )
                    )
            t_pub = time.time()
            bus.publish_many_sync(batch)
            finished += per_tick - routed_n
            pub_times.append(t_pub)
            pub_counts.append(finished)
            delay = start + n * tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        publisher["done"] = True

    me = psutil.Process()
    traced: list[Any] = []
    if os.environ.get("DASHBOARD_LATENCY_TRACEMALLOC"):  # diagnosis: where the server's memory goes
        import tracemalloc

        tracemalloc.start(8)
    print(json.dumps({"ready": port}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["do"] == "start":
            threading.Thread(target=publish, args=(cmd["duration"], cmd["rate"]), daemon=True).start()
            print(json.dumps({"started": True}), flush=True)
        elif cmd["do"] == "usage":
            if os.environ.get("DASHBOARD_LATENCY_TRACEMALLOC"):
                import tracemalloc

                snap = tracemalloc.take_snapshot()
                if traced:
                    for stat in snap.compare_to(traced[0], "traceback")[:8]:
                        print(stat, "\n   ", "\n    ".join(stat.traceback.format()[-8:]), file=sys.stderr)
                    print("-----", file=sys.stderr, flush=True)
                else:
                    traced.append(snap)
            cpu = me.cpu_times()
            tid = publisher.get("tid")
            pub = sum(t.user_time + t.system_time for t in me.threads() if t.id == tid)
            print(
                json.dumps({"cpu": cpu.user + cpu.system, "publisher_cpu": pub, "rss": me.memory_info().rss}),
                flush=True,
            )
        elif cmd["do"] == "timeline":
            while not publisher.get("done"):
                time.sleep(0.05)
            timeline = list(zip(pub_times, pub_counts, strict=True))
            print(json.dumps({"timeline": timeline, "renders": renders}), flush=True)
        elif cmd["do"] == "stop":
            break
    server.stop()
    if via_log:
        server.shared.close()
        writer.close()
    else:
        bus.close_sync()
    lab.close()


# ---------------------------------------------------------------------------------------------- measuring side
class Child:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        cmd = [sys.executable, __file__, "--child", str(port), "--push-ms", str(args.push_ms)]
        cmd += ["--refresh-ms", str(args.refresh_ms)] + (["--via-log"] if args.via_log else [])
        self.log = tempfile.NamedTemporaryFile(prefix="dashboard-latency-server-", suffix=".log", delete=False)  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1
        )
        self.read()  # {"ready": port}

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                tail = Path(self.log.name).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the server process ended ({self.proc.poll()}):\n{tail}")
            if line.startswith("{"):
                return dict(json.loads(line))

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"do": "stop"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(20)
        except Exception:
            self.proc.kill()


def browser_usage(root: Any) -> tuple[float, int]:
    """CPU seconds and RSS of every Chromium process under ``root`` (Playwright's driver's children)."""
    import psutil

    cpu, rss = 0.0, 0
    for p in root.children(recursive=True):
        try:
            if "chrom" in p.name().lower() or "headless_shell" in p.name().lower():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil
    from playwright.sync_api import sync_playwright

    port = free_port()
    child = Child(args, port)
    me = psutil.Process()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--enable-precise-memory-info"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            calls = page.locator(".lumina-number").filter(has_text="Calls")
            calls.wait_for(timeout=120_000)
            calls.element_handle().evaluate(OBSERVE)
            # clock check: the page's wall clock against this process's (bracketed by two readings)
            offsets = []
            for _ in range(10):
                before = time.time()
                t_page = page.evaluate("performance.timeOrigin + performance.now()") / 1000.0
                after = time.time()
                offsets.append((t_page - (before + after) / 2, after - before))
            offset_s = min(offsets, key=lambda o: o[1])[0]

            child.ask(do="start", duration=args.duration, rate=args.rate)
            page.wait_for_timeout(args.warmup * 1000)
            u0, b0, w0 = child.ask(do="usage"), browser_usage(me), time.monotonic()
            heap0 = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
            rss_trend = [u0["rss"]]
            end = time.monotonic() + args.duration - args.warmup - 1.0
            while time.monotonic() < end:
                page.wait_for_timeout(min(5000, max(1, (end - time.monotonic()) * 1000)))
                rss_trend.append(child.ask(do="usage")["rss"])
            u1, b1, w1 = child.ask(do="usage"), browser_usage(me), time.monotonic()
            heap1 = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
            answer = child.ask(do="timeline")
            timeline, renders = answer["timeline"], answer["renders"]
            page.wait_for_timeout(1500)  # the last batches reach the page
            state = page.evaluate("window.__lumina")
            browser.close()
    finally:
        child.close()

    shown = sorted((v, t_frame / 1000.0 - offset_s) for v, _t_mut, t_frame in state["samples"])
    values = [v for v, _ in shown]
    # the first time the figure showed a count >= n (values only grow; keep the running minimum of times)
    first_at: list[float] = []
    best = float("inf")
    for _, t in reversed(shown):
        best = min(best, t)
        first_at.append(best)
    first_at.reverse()
    t_start = timeline[0][0] + args.warmup  # batches published during the warm-up are not counted
    delays = []
    for t_pub, count in timeline:
        if t_pub < t_start:
            continue
        i = bisect_left(values, count)
        if i < len(values):
            delays.append((first_at[i] - t_pub) * 1000.0)
    measured = [(ms, point) for t, ms, point in renders if t >= t_start]
    plain = [ms for ms, point in measured if not point]
    with_point = [ms for ms, point in measured if point]
    wall = w1 - w0
    ncpu = psutil.cpu_count() or 1
    events = timeline[-1][1] * 2 if timeline else 0
    return {
        "benchmark": "dashboard_latency",
        "duration_s": args.duration,
        "rate": args.rate,
        "events": events,
        "achieved_rate": round(events / args.duration, 1),
        "path": "event log" if args.via_log else "bus",
        "push_ms": args.push_ms,
        "refresh_ms": args.refresh_ms,
        "batches": len(delays),
        "updates": len(shown),
        "p50_ms": round(percentile(delays, 50), 1),
        "p95_ms": round(percentile(delays, 95), 1),
        "p99_ms": round(percentile(delays, 99), 1),
        "max_ms": round(max(delays), 1) if delays else None,
        "target_p95_ms": 250,
        "renders_per_s": round(len(measured) / max(1e-9, args.duration - args.warmup), 1),
        "render_ms_p50": round(percentile(plain, 50), 1),
        "render_ms_p95": round(percentile(plain, 95), 1),
        "render_with_plot_point_ms_p50": round(percentile(with_point, 50), 1),
        "server_cpu_pct": round((u1["cpu"] - u0["cpu"]) / wall * 100, 1),
        "publisher_cpu_pct": round((u1["publisher_cpu"] - u0["publisher_cpu"]) / wall * 100, 1),
        "browser_cpu_pct": round((b1[0] - b0[0]) / wall * 100, 1),
        "cpus": ncpu,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "server_rss_mb": [round(u0["rss"] / 2**20, 1), round(u1["rss"] / 2**20, 1)],
        "server_rss_trend_mb": [round(r / 2**20, 1) for r in rss_trend],
        "browser_rss_mb": [round(b0[1] / 2**20, 1), round(b1[1] / 2**20, 1)],
        "browser_js_heap_mb": [round(h / 2**20, 1) if h is not None else None for h in (heap0, heap1)],
        "clock_offset_ms": round(offset_s * 1000, 2),
        "page_errors": len(errors),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of publishing (default 60)")
    ap.add_argument("--rate", type=float, default=2000.0, help="events per second (default 2000)")
    ap.add_argument("--warmup", type=float, default=5.0, help="first seconds not measured (default 5)")
    ap.add_argument("--push-ms", type=int, default=100, help="LiveView.push_ms (0: periodic refresh only)")
    ap.add_argument("--refresh-ms", type=int, default=500, help="LiveView.refresh_ms (the periodic refresh)")
    ap.add_argument(
        "--via-log",
        action="store_true",
        help="publish through the shared event log and let the served dashboard follow it (as lumina serve does)",
    )
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        serve_child(args.child, args.push_ms, args.refresh_ms, args.via_log)
        return
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
