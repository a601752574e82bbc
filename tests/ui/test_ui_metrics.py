"""LiveMetrics: the projection behind the overview and the provider table (no Panel needed)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import Budget
from lumina_lab.providers.events import BreakerChanged, BudgetExceededEvent, CallFailed, CallFinished, RequestRouted
from lumina_lab.ui.metrics import LiveMetrics

T0 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)


def finished(
    t: float, latency: float, *, provider: str = "a", cost: float = 0.01, project: str = "search"
) -> CallFinished:
    return CallFinished(
        ts=T0 + timedelta(seconds=t),
        request_id=f"r{t}",
        provider=provider,
        model="m",
        attempt=1,
        input_tokens=10,
        output_tokens=20,
        cost_usd=cost,
        latency_s=latency,
        ttft_s=latency / 4,
        project=project,
    )


def failed(t: float, provider: str = "a") -> CallFailed:
    return CallFailed(
        ts=T0 + timedelta(seconds=t),
        request_id=f"f{t}",
        provider=provider,
        model="m",
        attempt=1,
        error_type="ProviderUnavailable",
        error="down",
        retryable=True,
        latency_s=0.1,
    )


def routed(t: float) -> RequestRouted:
    return RequestRouted(
        ts=T0 + timedelta(seconds=t), request_id=f"q{t}", strategy="cheapest", chosen="a", candidates=["a"]
    )


def test_rates_percentiles_and_errors_over_the_window() -> None:
    m = LiveMetrics(window_s=10)
    for i in range(100):  # 10 requests per second for 10 seconds, latency 0.1 .. 1.0 s
        t = i / 10
        m.apply(routed(t))
        m.apply(finished(t, latency=(i % 10 + 1) / 10))
    for i in range(25):
        m.apply(failed(5 + i / 10))
    s = m.snapshot()
    assert s["requests"] == 100 and s["answered"] == 100 and s["failed"] == 25
    assert s["requests_per_s"] == pytest.approx(10.0)
    assert s["error_rate"] == pytest.approx(25 / 125)
    assert s["p50_ms"] == pytest.approx(550, abs=1)
    assert s["p95_ms"] == pytest.approx(1000, abs=1)
    assert s["ttft_p50_ms"] == pytest.approx(137.5, abs=1)
    assert s["cost_usd"] == pytest.approx(1.0)
    assert s["cost_per_min_usd"] == pytest.approx(6.0)


def test_window_ends_at_now_when_given() -> None:
    m = LiveMetrics(window_s=10)
    for i in range(50):
        m.apply(finished(i / 10, 0.2))
    later = (T0 + timedelta(seconds=100)).timestamp()
    s = m.snapshot(now=later)
    assert s["answered_per_s"] == 0 and s["answered"] == 50  # totals stay; the window is empty


def test_series_is_bounded_and_fills_gaps() -> None:
    m = LiveMetrics(history_s=30)
    for t in range(0, 100, 2):  # every other second
        m.apply(finished(t, 0.1))
    rows = m.series(include_current=True)
    assert len(rows) == 30  # the deque bound
    assert [r["answered"] for r in rows[-4:]] == [0, 1, 0, 1]
    assert {r["answered"] for r in rows} == {0, 1}
    since = rows[-3]["t"]
    assert [r["t"] for r in m.series(since=since, include_current=True)] == [since + 1, since + 2]


def test_late_events_land_in_their_second() -> None:
    m = LiveMetrics()
    m.apply(finished(10, 0.1))
    m.apply(finished(12, 0.1))
    m.apply(finished(11, 0.1))  # out of order
    assert [r["answered"] for r in m.series(include_current=True)] == [1, 1, 1]


def test_breakers_seeded_then_followed() -> None:
    m = LiveMetrics(breakers={"a": "closed", "b": "open"})
    m.apply(BreakerChanged(provider="a", old="closed", new="open", failure_rate=0.6))
    m.apply(BreakerChanged(provider="b", old="open", new="half_open", failure_rate=0.0))
    assert m.snapshot()["breakers"] == {"a": "open", "b": "half_open"}
    assert len(m.breaker_changes) == 2


def test_budget_burn_per_bucket() -> None:
    budgets = [Budget(1.0, scope="project", period="day"), Budget(5.0, scope="global", period="total")]
    m = LiveMetrics(budgets=budgets)
    for i in range(10):
        m.apply(finished(i, 0.1, cost=0.05, project="search"))
    for i in range(4):
        m.apply(finished(i, 0.1, cost=0.1, project="agents"))
    m.apply(BudgetExceededEvent(ts=T0, request_id="x", error="over", project="agents"))
    rows = {(b["budget"], b["bucket"].split("|")[1]): b for b in m.snapshot()["budgets"]}
    assert rows[("project=*/day", "search")]["spent_usd"] == pytest.approx(0.5)
    assert rows[("project=*/day", "agents")]["spent_usd"] == pytest.approx(0.4)
    assert rows[("project=*/day", "agents")]["refused"] == 1
    assert rows[("all/total", "*")]["spent_usd"] == pytest.approx(0.9)
    assert rows[("all/total", "*")]["ratio"] == pytest.approx(0.18)


def test_provider_rows() -> None:
    m = LiveMetrics()
    m.apply_many([finished(0, 0.2, provider="a"), finished(1, 0.4, provider="a"), failed(2, "a"), failed(3, "b")])
    rows = {r["id"]: r for r in m.provider_rows()}
    assert rows["a"]["calls"] == 3 and rows["a"]["success_rate"] == pytest.approx(2 / 3)
    assert rows["a"]["p50_ms"] == pytest.approx(300)
    assert rows["b"]["last_error"] == "ProviderUnavailable: down"


def test_apply_from_a_thread_while_reading() -> None:
    m = LiveMetrics(samples_per_s=50)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set() and i < 20_000:
            m.apply_many([finished(i / 1000, 0.1), failed(i / 1000)])
            i += 1

    t = threading.Thread(target=feed)
    t.start()
    try:
        for _ in range(50):
            m.snapshot()
            m.series()
    finally:
        stop.set()
        t.join()
    s = m.snapshot()
    assert s["answered"] == s["failed"] > 0
    assert all(len(sec.latencies) <= 50 for sec in m._seconds)  # bounded per second


def test_seconds_past_every_window_keep_only_their_figures() -> None:
    """Memory stays flat under a steady rate: samples are dropped once no window reaches them; the time
    series still shows their percentiles, and change listeners hear every batch."""
    m = LiveMetrics(window_s=10)
    heard: list[int] = []
    remove = m.on_change(lambda: heard.append(m.version))
    m.apply_many([finished(t + j / 10, 0.1 + (t % 3) / 10) for t in range(30) for j in range(10)])
    full = LiveMetrics(window_s=1000)  # nothing compacted there
    full.apply_many([finished(t + j / 10, 0.1 + (t % 3) / 10) for t in range(30) for j in range(10)])
    before = {r["t"]: r for r in full.series()}
    after = {r["t"]: r for r in m.series()}
    assert after == before
    old = [s for s in m._seconds if s.summary is not None]
    assert old and all(len(s.latencies) == 0 for s in old) and max(s.t for s in old) < m._seconds[-1].t - 10
    assert heard == [300]
    remove()
    m.apply(finished(31, 0.1))
    assert heard == [300]


def test_subscribes_to_a_bus() -> None:
    from lumina_lab.events.bus import InProcessBus

    bus = InProcessBus()
    m = LiveMetrics()
    subs = m.subscribe(bus)
    assert {s.pattern for s in subs} == {"provider.*", "budget.*"} and all(s.overflow == "drop_oldest" for s in subs)
    bus.publish_many_sync([finished(0, 0.1), failed(1)])
    bus.drain_sync()
    assert m.snapshot()["calls"] == 2
    bus.close_sync()


def test_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="must be positive"):
        LiveMetrics(window_s=0)


def test_tick_moves_idle_time_into_the_series() -> None:
    m = LiveMetrics()
    m.apply(finished(0, 0.1))
    m.tick((T0 + timedelta(seconds=5.5)).timestamp())
    rows = m.series()  # the current second (5) is still filling
    assert [r["answered"] for r in rows] == [1, 0, 0, 0, 0]
    later = (T0 + timedelta(seconds=5.5)).timestamp()
    assert m.snapshot(now=later)["answered_per_s"] == pytest.approx(1 / 5.5)


def test_store_feed_republishes_what_lands_in_the_event_log(lumina_home: object) -> None:
    import time

    from lumina_lab import Lab
    from lumina_lab.ui.feed import StoreFeed

    with Lab() as writer:  # the file store: what every process on the machine writes
        feed = StoreFeed(writer.store, since="1m", poll_s=0.05).start()
        m = LiveMetrics()
        m.subscribe(feed.bus)
        now = datetime.now(UTC)
        writer.publish(finished(0, 0.1).model_copy(update={"ts": now}), failed(1).model_copy(update={"ts": now}))
        writer.sync()
        deadline = time.monotonic() + 10
        while m.snapshot()["calls"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        feed.stop()
        assert m.snapshot()["calls"] == 2 and feed.published == 2
        assert "published=2" in repr(feed)
        feed.bus.close_sync()
