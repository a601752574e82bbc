"""Span trees derived from the router's events: retries, fallbacks, hedges, stream failover, failures, in-progress."""

from __future__ import annotations

import asyncio
import json

import pytest
from obs_helpers import Harness, Scripted, tree

from lumina_lab.errors import NoProviderAvailable
from lumina_lab.events import trace_scope
from lumina_lab.memory.events import MemorySearched, MemoryWritten
from lumina_lab.observability.spans import attempt_span_id, route_span_id
from lumina_lab.policy.events import PolicyDecided
from lumina_lab.providers import ChatRequest, RetryPolicy


def _by_kind(spans: list[dict], kind: str) -> list[dict]:
    return sorted((s for s in spans if s["kind"] == kind), key=lambda s: (s["start_ts"], s["span_id"]))


async def test_retries_then_fallback_make_children_of_the_route_span() -> None:
    h = Harness(
        [Scripted("model-a", id="a", script=["fail", "fail"], price=1), Scripted("model-b", id="b", price=2)],
        retry=RetryPolicy(attempts=2, base_s=0.001, jitter=False),
    )
    try:
        request = ChatRequest("hello", max_tokens=10)
        answer = await h.router.ainvoke(request)
        await h.settle()
        spans = h.spans()
    finally:
        h.close()
    assert answer.provider == "b"
    assert tree(spans) == [
        (0, "route cheapest", "route", None, "ok"),
        (1, "chat model-a", "attempt", "first", "error"),
        (1, "chat model-a", "attempt", "retry", "error"),
        (1, "chat model-b", "attempt", "fallback", "ok"),
    ]
    route = _by_kind(spans, "route")[0]
    first, retry, fallback = _by_kind(spans, "attempt")
    # ids: the trace is the request's UUIDv7; span ids are derived the same way in SQL and in Python
    assert route["trace_id"] == request.id.replace("-", "")
    assert route["span_id"] == route_span_id(request.id) and route["parent_id"] is None
    assert [first["span_id"], retry["span_id"], fallback["span_id"]] == [
        attempt_span_id(request.id, n) for n in (1, 2, 3)
    ]
    assert {s["parent_id"] for s in (first, retry, fallback)} == {route["span_id"]}
    assert (first["attempt"], retry["attempt"], fallback["attempt"]) == (1, 2, 1)
    assert first["error_type"] == "ProviderUnavailable" and "a is down" in first["error"]
    assert fallback["input_tokens"] == 5 and fallback["output_tokens"] == 10
    assert fallback["cost_usd"] == pytest.approx((5 * 2 + 10 * 8) / 1e6)
    assert fallback["breaker_state"] == "closed" and fallback["provider"] == "b" and fallback["model"] == "model-b"
    assert [e["name"] for e in json.loads(route["events"])] == ["retry", "fallback"]
    assert json.loads(route["attributes"])["lumina.candidates"] == ["a", "b"]
    assert route["start_ts"] <= first["start_ts"] and route["end_ts"] >= fallback["end_ts"]
    assert not any(s["in_progress"] for s in spans)


async def test_hedge_wins_and_the_slow_primary_is_closed_as_cancelled() -> None:
    h = Harness(
        [Scripted("model-a", id="a", script=[("slow", 0.5)], price=1), Scripted("model-b", id="b", price=2)],
        hedge_after_s=0.02,
    )
    try:
        answer = await h.router.ainvoke(ChatRequest("hedge me", max_tokens=10))
        await h.settle()
        spans = h.spans()
    finally:
        h.close()
    assert answer.provider == "b" and answer.hedged
    assert tree(spans) == [
        (0, "route cheapest", "route", None, "ok"),
        (1, "chat model-a", "attempt", "first", "unset"),
        (1, "chat model-b", "attempt", "hedge", "ok"),
    ]
    primary, hedge = _by_kind(spans, "attempt")
    assert json.loads(primary["attributes"]) == {"lumina.outcome": "cancelled"}
    assert primary["end_ts"] == hedge["end_ts"]  # closed when the hedge answered
    assert primary["cost_usd"] is None  # nothing billed
    assert [e["name"] for e in json.loads(_by_kind(spans, "route")[0]["events"])] == ["hedge"]


async def test_stream_failover_records_time_to_first_token() -> None:
    h = Harness([Scripted("model-a", id="a", script=[("break", 1)], price=1), Scripted("model-b", id="b", price=2)])
    try:
        text = [c.text async for c in h.router.astream(ChatRequest("tell me", max_tokens=10))]
        await h.settle()
        spans = h.spans()
    finally:
        h.close()
    assert "".join(text).startswith("part0 ")
    assert tree(spans) == [
        (0, "route stream", "route", None, "ok"),
        (1, "chat model-a", "attempt", "first", "error"),
        (1, "chat model-b", "attempt", "failover", "ok"),
    ]
    broken, resumed = _by_kind(spans, "attempt")
    assert broken["error_type"] == "StreamBroken" and broken["stream"] and resumed["stream"]
    assert 0 < resumed["ttft_s"] < resumed["latency_s"]
    assert [e["name"] for e in json.loads(_by_kind(spans, "route")[0]["events"])] == ["stream_failover"]


async def test_a_request_every_provider_refuses_is_an_error_trace() -> None:
    h = Harness([Scripted("model-a", id="a", script=["fatal"]), Scripted("model-b", id="b", script=["fatal"])])
    try:
        with pytest.raises(NoProviderAvailable):
            await h.router.ainvoke(ChatRequest("no luck", max_tokens=10))
        await h.settle()
        spans = h.spans()
        traces = h.store.traces()
    finally:
        h.close()
    route = _by_kind(spans, "route")[0]
    assert (route["status"], route["error_type"]) == ("error", "ProviderUnavailable")
    assert route["error"] == "b: b refused"
    assert [a["attempt_kind"] for a in _by_kind(spans, "attempt")] == ["first", "fallback"]
    assert json.loads(_by_kind(spans, "attempt")[0]["attributes"]) == {"lumina.retryable": False}
    assert list(traces["status"]) == ["error"] and traces["failed_calls"].iloc[0] == 2


async def test_spans_in_progress_are_visible_before_they_end() -> None:
    h = Harness(
        [Scripted("model-a", id="a", script=["fail", ("slow", 0.6)])],
        retry=RetryPolicy(attempts=2, base_s=0.4, jitter=False),
    )
    try:
        task = asyncio.ensure_future(h.router.ainvoke(ChatRequest("slowly", max_tokens=10)))
        await asyncio.sleep(0.1)  # first call failed; the retry waits 0.4 s: the request is still on
        await h.settle()
        waiting = h.store.traces()
        await asyncio.sleep(0.5)  # the retry runs (0.6 s)
        await h.settle()
        running = h.spans()
        await task
        await h.settle()
        done = h.store.traces()
    finally:
        h.close()
    assert list(waiting["status"]) == ["in_progress"] and waiting["end_ts"].isna().all()
    assert tree(running) == [
        (0, "route cheapest", "route", None, "unset"),
        (1, "chat model-a", "attempt", "first", "error"),
        (1, "chat model-a", "attempt", "retry", "unset"),
    ]
    assert [s["in_progress"] for s in running] == [True, False, True]
    assert list(done["status"]) == ["ok"] and not done["in_progress"].any()


async def test_events_and_spans_share_trace_ids_under_a_run() -> None:
    h = Harness([Scripted("model-a", id="a")])
    try:
        with h.obs.span("notebook cell", session="exp-1", cell=3) as run:
            await h.router.ainvoke(ChatRequest("inside a run", max_tokens=10))
            await h.bus.publish(MemoryWritten(collection="docs", op="upsert", count=2, ms=1.5, backend="memory"))
            await h.bus.publish(MemorySearched(collection="docs", mode="hybrid", k=5, hits=2, ms=2.0, backend="memory"))
            await h.bus.publish(
                PolicyDecided(
                    principal='User::"ann"', action='Action::"call"', resource='Tool::"search"', decision="allow"
                )
            )
        await h.settle()
        spans = h.spans()
        events = h.events.query(type="provider.*")
    finally:
        h.close()
    shape = tree(spans)  # siblings sort by start, and a memory span starts its `ms` before its event
    assert shape[0] == (0, "notebook cell", "run", None, "ok")
    assert sorted(shape[1:]) == [
        (1, "memory.search docs", "memory", None, "ok"),
        (1, "memory.upsert docs", "memory", None, "ok"),
        (1, 'policy Action::"call"', "policy", None, "ok"),
        (1, "route cheapest", "route", None, "ok"),
        (2, "chat model-a", "attempt", "first", "ok"),
    ]
    assert (
        shape.index((2, "chat model-a", "attempt", "first", "ok"))
        == shape.index((1, "route cheapest", "route", None, "ok")) + 1
    )
    assert {s["trace_id"] for s in spans} == {run.trace_id} == set(events["trace_id"])
    assert {s["session"] for s in spans} == {"exp-1"}
    root = _by_kind(spans, "run")[0]
    assert root["span_id"] == run.span_id and json.loads(root["attributes"]) == {"cell": 3}
    search = next(s for s in spans if s["name"] == "memory.search docs")
    assert search["latency_s"] == pytest.approx(0.002) and search["duration_ms"] == pytest.approx(2.0)
    assert json.loads(search["attributes"])["mode"] == "hybrid"


async def test_a_trace_scope_outside_any_run_is_the_routes_parent() -> None:
    h = Harness([Scripted("model-a", id="a")])
    try:
        with trace_scope("ab" * 16, "cd" * 8):
            await h.router.ainvoke(ChatRequest("scoped", max_tokens=10))
        await h.settle()
        spans = h.spans()
    finally:
        h.close()
    route = _by_kind(spans, "route")[0]
    assert (route["trace_id"], route["parent_id"]) == ("ab" * 16, "cd" * 8)


def _scenarios() -> dict[str, tuple[list, dict, str]]:
    from lumina_lab.providers import Budget, BudgetManager, Cascade

    def two(a_script=(), b_script=()):
        return [
            Scripted("model-a", id="a", script=list(a_script), price=1),
            Scripted("model-b", id="b", script=list(b_script), price=2),
        ]

    return {
        "retry+fallback": (
            two(["fail", "fail"]),
            {"retry": RetryPolicy(attempts=2, base_s=0.001, jitter=False)},
            "ask",
        ),
        "hedge": (two([("slow", 0.3)]), {"hedge_after_s": 0.02}, "ask"),
        "stream failover": (two([("break", 1)]), {}, "stream"),
        "all refuse": (two(["fatal"], ["fatal"]), {}, "ask"),
        "budget": (two(), {"budgets": BudgetManager([Budget(1e-9, name="tiny")])}, "ask"),
        "cascade": (two(), {"strategy": Cascade(lambda r: r.provider == "b")}, "ask"),
    }


@pytest.mark.parametrize("scenario", list(_scenarios()))
async def test_live_export_and_the_store_derive_the_same_spans(scenario: str) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    providers, options, how = _scenarios()[scenario]
    exporter = InMemorySpanExporter()
    strategy = options.pop("strategy", "cheapest")
    h = Harness(providers, strategy, obs={"exporter": exporter}, **options)
    try:
        try:
            if how == "stream":
                async for _ in h.router.astream(ChatRequest("go", max_tokens=10)):
                    pass
            else:
                await h.router.ainvoke(ChatRequest("go", max_tokens=10))
        except Exception:
            pass  # failing scenarios fail: their spans are what we compare
        await h.settle()
        stored = h.spans()
    finally:
        h.close()
    exported = exporter.get_finished_spans()
    status = {0: "unset", 1: "ok", 2: "error"}

    def kind(attrs: dict) -> str | None:
        return attrs.get("lumina.attempt.kind")

    live = sorted(
        (
            f"{s.context.span_id:016x}",
            f"{s.parent.span_id:016x}" if s.parent else None,
            s.name,
            kind(dict(s.attributes)),
            status[s.status.status_code.value],
        )
        for s in exported
    )
    sql = sorted((s["span_id"], s["parent_id"], s["name"], s["attempt_kind"], s["status"]) for s in stored)
    assert live == sql
    assert {f"{s.context.trace_id:032x}" for s in exported} == {s["trace_id"] for s in stored}
    if scenario == "budget":
        route = next(s for s in stored if s["kind"] == "route")
        assert (route["status"], route["error_type"]) == ("error", "BudgetExceeded") and len(stored) == 1
    if scenario == "cascade":
        assert [s["attempt_kind"] for s in _by_kind(stored, "attempt")] == ["first", "cascade"]
