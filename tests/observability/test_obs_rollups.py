"""Roll-ups of cost and tokens (per span, trace, session); filters that apply to traces and statistics alike;
OpenTelemetry SDK spans recorded beside ours."""

from __future__ import annotations

import pytest
from obs_helpers import Harness, Scripted

from lumina_lab import Lab
from lumina_lab.errors import ValidationError
from lumina_lab.observability import SpanStoreProcessor
from lumina_lab.providers import ChatRequest, RetryPolicy

A_COST = (5 * 1 + 10 * 4) / 1e6  # model-a: 5 input + 10 output tokens at $1/$4 per million
B_COST = (5 * 2 + 10 * 8) / 1e6


async def _workload(h: Harness) -> dict[str, str]:
    runs = {}
    for name, session, pinned in (("one", "s1", None), ("two", "s1", "b"), ("three", "s2", None)):
        with h.obs.span(name, session=session) as run:
            await h.router.ainvoke(ChatRequest(f"{name} first", max_tokens=10, model=pinned))
            await h.router.ainvoke(ChatRequest(f"{name} second", max_tokens=10, model=pinned))
        runs[name] = run.trace_id
    await h.settle()
    return runs


@pytest.fixture
async def loaded():
    # model-a fails its first call (retried, then answers): run "one" pays only for successes
    h = Harness(
        [Scripted("model-a", id="a", script=["fail"], price=1), Scripted("model-b", id="b", price=2)],
        retry=RetryPolicy(attempts=2, base_s=0.001, jitter=False),
    )
    runs = await _workload(h)
    yield h, runs
    h.close()


async def test_cost_and_tokens_roll_up_to_every_ancestor(loaded) -> None:
    h, runs = loaded
    trace = h.store.trace(runs["one"])
    spans = trace.spans.set_index("name")
    root = trace.root
    assert root["name"] == "one" and root["depth"] == 0 and root["descendants"] == 5  # 2 routes, 3 calls
    assert root["total_cost_usd"] == pytest.approx(2 * A_COST)
    assert root["total_output_tokens"] == 20 and root["total_input_tokens"] == 10
    routes = trace.spans[trace.spans["kind"] == "route"]
    assert sorted(routes["descendants"]) == [1, 2] and routes["total_cost_usd"].tolist() == pytest.approx([A_COST] * 2)
    assert spans.loc["chat model-a", "depth"].tolist() == [2, 2, 2]
    assert trace.cost_usd == pytest.approx(2 * A_COST) and trace.output_tokens == 20


async def test_traces_and_sessions(loaded) -> None:
    h, runs = loaded
    traces = h.store.traces(order="cost_usd DESC")
    assert traces["trace_id"].iloc[0] == runs["two"] and set(traces["trace_id"].iloc[1:]) == {
        runs["one"],
        runs["three"],
    }
    t = traces.set_index("root")
    assert t.loc["two", "cost_usd"] == pytest.approx(2 * B_COST)
    assert (t.loc["one", "calls"], t.loc["one", "failed_calls"], t.loc["three", "calls"]) == (3, 1, 2)
    assert list(t.loc["two", "models"]) == ["model-b"] and t.loc["one", "session"] == "s1"
    sessions = h.store.sessions().set_index("session")
    assert sessions.loc["s1", "cost_usd"] == pytest.approx(2 * A_COST + 2 * B_COST)
    assert sessions.loc["s1", "traces"] == 2 and sessions.loc["s2", "requests"] == 2
    assert sessions.loc["s1", "output_tokens"] == 40


async def test_filters_apply_to_traces_and_statistics_alike(loaded) -> None:
    h, runs = loaded
    only_b = h.store.traces(model="model-b")
    assert list(only_b["trace_id"]) == [runs["two"]]
    stats = h.store.stats(by="model", model="model-b")
    row = stats.to_dict("records")[0]
    assert (row["model"], row["calls"], row["errors"], row["error_rate"]) == ("model-b", 2, 0, 0.0)
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (10, 20, pytest.approx(2 * B_COST))
    assert row["p50_ms"] <= row["p95_ms"] and row["ttft_ms"] == pytest.approx(1.0)
    by_session = h.store.stats(by=["session", "attempt_kind"], session="s1").to_dict("records")
    assert {(r["attempt_kind"], r["calls"], r["errors"]) for r in by_session} == {("first", 4, 1), ("retry", 1, 0)}
    assert list(h.store.traces(min_cost=1.5 * B_COST)["root"]) == ["two"]
    assert list(h.store.traces(name="t*", order="start_ts ASC")["root"]) == ["two", "three"]
    assert h.store.traces(in_progress=True).empty and len(h.store.traces(status="ok")) == 3
    assert len(h.store.traces(where="t.failed_calls > 0")) == 1
    frame = h.store.sql(
        "WITH m AS (SELECT model, sum(cost_usd) AS usd FROM spans GROUP BY model) SELECT * FROM m ORDER BY model"
    )
    assert frame.dropna()["model"].tolist() == ["model-a", "model-b"]
    with pytest.raises(ValidationError, match="order"):
        h.store.traces(order="cost_usd; DROP TABLE x")
    with pytest.raises(ValidationError, match="not a span column"):
        h.store.stats(by="nope")


def test_opentelemetry_sdk_spans_land_in_the_store(lumina_home) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider()
    with Lab(profile="test") as lab:
        provider.add_span_processor(SpanStoreProcessor(lab.bus))
        tracer = provider.get_tracer("my-agent")
        llm_attributes = {
            "gen_ai.request.model": "gpt-4.1",
            "gen_ai.usage.input_tokens": 7,
            "gen_ai.usage.output_tokens": 3,
            "lumina.cost_usd": 0.002,
        }
        with lab.run("agent step") as run, tracer.start_as_current_span("tool call") as tool:
            tool.set_attribute("tool.name", "search")
            lab.sync()
            during = lab.traces()
            with tracer.start_as_current_span("llm", attributes=llm_attributes) as llm:
                llm.set_status(Status(StatusCode.ERROR, "rate limited"))
        trace = lab.trace(run.trace_id)
    assert list(during["status"]) == ["in_progress"] and during["spans"].iloc[0] == 2
    spans = trace.spans.set_index("name")
    assert spans.loc["tool call", "parent_id"] == run.span_id  # the OTel span is a child of lab.run's span
    assert spans.loc["llm", "parent_id"] == spans.loc["tool call", "span_id"]
    assert (spans.loc["llm", "kind"], spans.loc["llm", "model"], spans.loc["llm", "output_tokens"]) == (
        "llm",
        "gpt-4.1",
        3,
    )
    assert spans.loc["llm", "status"] == "error" and "rate limited" in spans.loc["llm", "error"]
    assert trace.root["total_cost_usd"] == pytest.approx(0.002) and not trace.in_progress
