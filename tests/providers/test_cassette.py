"""Cassette record/replay: offline notebooks replay real provider answers byte for byte."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lumina_lab.errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StoreError,
    StreamBroken,
    ValidationError,
)
from lumina_lab.providers.adapters import cassette as cassette_mod
from lumina_lab.providers.adapters.cassette import Cassette, RecordingProvider, request_key
from lumina_lab.providers.base import Provider
from lumina_lab.providers.types import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Limits,
    Message,
    Pricing,
    StreamChunk,
    Usage,
)

WEIRD = 'héllo 🌍\r\n\ttabs\x00nul \u2028 line-sep \ud800 lone surrogate, "quotes" \\ backslash'


class ScriptedProvider:
    """A provider that answers from a script and counts its calls.

    Each script item is a string (the answer) or a ProviderError (raised).
    Streams split the answer on spaces and end with a done chunk.
    """

    def __init__(self, script: list[Any], *, id: str = "scripted", model: str = "scripted-1") -> None:
        self.id = id
        self.model = model
        self.capabilities = Capabilities(code=0.5)
        self.pricing = Pricing(input_per_m=1.0, output_per_m=2.0)
        self.limits = Limits(rpm=60)
        self.script = list(script)
        self.calls = 0
        self.fail_stream_after: int | None = None

    def _next(self) -> Any:
        item = self.script[self.calls % len(self.script)]
        self.calls += 1
        if isinstance(item, BaseException):
            raise item
        return item

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        text = self._next()
        usage = Usage(len(request.prompt_text), len(text))
        return ChatResponse(
            text=text,
            provider=self.id,
            model=self.model,
            usage=usage,
            cost_usd=self.pricing.cost(usage.input_tokens, usage.output_tokens),
            latency_s=0.125,
            finish_reason="stop",
            request_id=request.id,
            metadata={"call": self.calls, "tags": ["a", "b"]},
        )

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        text = self._next()
        parts = text.split(" ")
        for i, part in enumerate(parts):
            if self.fail_stream_after is not None and i == self.fail_stream_after:
                raise ProviderUnavailable("stream died", provider=self.id, status=503)
            await asyncio.sleep(0)
            yield StreamChunk(text=part if i == 0 else " " + part, provider=self.id, index=i)
        yield StreamChunk(
            text="", provider=self.id, index=len(parts), done=True, usage=Usage(3, len(parts)), finish_reason="stop"
        )


class MustNotBeCalled(ScriptedProvider):
    """Same declaration as ScriptedProvider, but fails the test if it is called."""

    def __init__(self, **kw: Any) -> None:
        super().__init__([""], **kw)

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError("the inner provider was called during replay")

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        raise AssertionError("the inner provider was called during replay")
        yield  # pragma: no cover


async def collect(provider: Any, request: ChatRequest) -> list[StreamChunk]:
    return [c async for c in provider.astream(request)]


def load(path: Path) -> dict[str, Any]:
    return json.loads(raw(path).decode("utf-8", "surrogatepass"))


def raw(path: Path) -> bytes:
    return path.read_bytes()


def exists(path: Path) -> bool:
    return path.exists()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cassettes" / "session.json"


# -- record then replay ---------------------------------------------------------------------


async def test_replay_returns_exactly_what_was_recorded(path: Path) -> None:
    inner = ScriptedProvider([WEIRD, "second answer"])
    recorder = RecordingProvider(inner, Cassette(path, mode="record"))
    request = ChatRequest([Message("system", "sys"), Message("user", "hi")], max_tokens=10, temperature=0.5)
    recorded = await recorder.ainvoke(request)
    recorded_chunks = await collect(recorder, ChatRequest("stream please"))
    assert inner.calls == 2

    replayer = RecordingProvider(MustNotBeCalled(), Cassette(path, mode="replay"))
    again = ChatRequest([Message("system", "sys"), Message("user", "hi")], max_tokens=10, temperature=0.5)
    replayed = await replayer.ainvoke(again)
    assert replayed.text == WEIRD
    assert replayed.text.encode("utf-8", "surrogatepass") == WEIRD.encode("utf-8", "surrogatepass")
    assert replayed == dataclasses.replace(recorded, request_id=again.id)
    assert replayed.usage == recorded.usage
    assert replayed.metadata == {"call": 1, "tags": ["a", "b"]}

    chunks = await collect(replayer, ChatRequest("stream please"))
    assert chunks == recorded_chunks
    assert [c.text for c in chunks] == ["second", " answer", ""]
    assert chunks[-1].done and chunks[-1].usage == Usage(3, 2)
    assert replayer.cassette.replayed == 2


async def test_recording_provider_delegates_the_declaration(path: Path) -> None:
    inner = ScriptedProvider(["x"], id="p1", model="m1")
    rp = Cassette(path, mode="record").wrap(inner)
    assert isinstance(rp, Provider)
    assert (rp.id, rp.model) == ("p1", "m1")
    assert rp.capabilities is inner.capabilities
    assert rp.pricing is inner.pricing
    assert rp.limits is inner.limits
    assert "RecordingProvider" in repr(rp)


async def test_repeated_identical_requests_replay_in_order(path: Path) -> None:
    recorder = RecordingProvider(ScriptedProvider(["one", "two", "three"]), Cassette(path, mode="record"))
    answers = [(await recorder.ainvoke(ChatRequest("same"))).text for _ in range(3)]
    assert answers == ["one", "two", "three"]
    assert [e["occurrence"] for e in recorder.cassette.entries] == [0, 1, 2]

    cassette = Cassette(path, mode="replay")
    replayer = RecordingProvider(MustNotBeCalled(), cassette)
    assert [(await replayer.ainvoke(ChatRequest("same"))).text for _ in range(3)] == ["one", "two", "three"]
    with pytest.raises(ProviderError, match="only 3 answer") as info:
        await replayer.ainvoke(ChatRequest("same"))
    assert "rewind" in info.value.hint
    cassette.rewind()
    assert (await replayer.ainvoke(ChatRequest("same"))).text == "one"


async def test_unknown_request_in_replay_mode_names_the_cassette_and_key(path: Path) -> None:
    recorder = RecordingProvider(ScriptedProvider(["a"]), Cassette(path, mode="record"))
    await recorder.ainvoke(ChatRequest("known"))
    replayer = RecordingProvider(MustNotBeCalled(), Cassette(path, mode="replay"))
    unknown = ChatRequest("never recorded")
    with pytest.raises(ProviderError) as info:
        await replayer.ainvoke(unknown)
    err = info.value
    assert type(err) is ProviderError
    assert err.retryable is False
    assert str(path) in str(err)
    assert request_key("scripted", "scripted-1", unknown)[:16] in str(err)
    assert 'mode="record"' in err.hint

    # Parameters are part of the key: the same prompt at another temperature is a different request.
    with pytest.raises(ProviderError, match="no recorded"):
        await replayer.ainvoke(ChatRequest("known", temperature=0.9))
    # Whole answers and streams are recorded separately.
    with pytest.raises(ProviderError, match="no recorded astream"):
        await collect(replayer, ChatRequest("known"))


def test_key_is_stable_and_covers_provider_model_messages_and_parameters() -> None:
    base = request_key("p", "m", ChatRequest("hi", max_tokens=5, temperature=0.1))
    assert base == request_key("p", "m", ChatRequest([Message("user", "hi")], max_tokens=5, temperature=0.1))
    assert base == request_key("p", "m", ChatRequest("hi", max_tokens=5, temperature=0.1, timeout_s=3, task="x"))
    others = {
        request_key("q", "m", ChatRequest("hi", max_tokens=5, temperature=0.1)),
        request_key("p", "n", ChatRequest("hi", max_tokens=5, temperature=0.1)),
        request_key("p", "m", ChatRequest("hi!", max_tokens=5, temperature=0.1)),
        request_key("p", "m", ChatRequest([Message("system", "hi")], max_tokens=5, temperature=0.1)),
        request_key("p", "m", ChatRequest("hi", max_tokens=6, temperature=0.1)),
        request_key("p", "m", ChatRequest("hi", max_tokens=5, temperature=None)),
    }
    assert base not in others and len(others) == 6
    assert len(base) == 64 and int(base, 16) >= 0


# -- modes -----------------------------------------------------------------------------------


async def test_once_records_when_the_file_is_missing_then_replays(path: Path) -> None:
    first = Cassette(path)  # mode="once"
    assert first.recording and not first.replaying
    inner = ScriptedProvider(["fresh"])
    assert (await RecordingProvider(inner, first).ainvoke(ChatRequest("q"))).text == "fresh"
    assert inner.calls == 1 and exists(path)

    second = Cassette(path, mode="once")
    assert second.replaying and not second.recording
    assert (await RecordingProvider(MustNotBeCalled(), second).ainvoke(ChatRequest("q"))).text == "fresh"
    with pytest.raises(ProviderError, match="no recorded"):
        await RecordingProvider(MustNotBeCalled(), second).ainvoke(ChatRequest("new question"))


async def test_record_mode_replaces_an_existing_cassette(path: Path) -> None:
    await RecordingProvider(ScriptedProvider(["old"]), Cassette(path, mode="record")).ainvoke(ChatRequest("q"))
    cassette = Cassette(path, mode="record")
    assert cassette.entries == []
    assert load(path)["entries"][0]["response"]["text"] == "old"  # untouched until something is recorded
    await RecordingProvider(ScriptedProvider(["new"]), cassette).ainvoke(ChatRequest("q"))
    assert [e["response"]["text"] for e in load(path)["entries"]] == ["new"]


async def test_none_mode_passes_through_and_writes_nothing(path: Path) -> None:
    inner = ScriptedProvider(["live one", "live two"])
    rp = RecordingProvider(inner, Cassette(path, mode="none"))
    assert (await rp.ainvoke(ChatRequest("q"))).text == "live one"
    assert [c.text for c in await collect(rp, ChatRequest("q"))] == ["live", " two", ""]
    assert inner.calls == 2
    assert not exists(path)


def test_replay_of_a_missing_cassette_and_bad_modes_fail_early(path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist") as info:
        Cassette(path, mode="replay")
    assert str(path) in str(info.value)
    with pytest.raises(ValidationError, match="mode='forever'"):
        Cassette(path, mode="forever")


def test_a_file_that_is_not_a_cassette_is_a_store_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(StoreError, match="cannot read cassette"):
        Cassette(path)
    path.write_text('{"some": "other json"}')
    with pytest.raises(StoreError, match="not a Lumina cassette"):
        Cassette(path, mode="replay")
    path.write_text('{"format": "lumina-cassette", "version": 99, "entries": []}')
    with pytest.raises(StoreError, match="version 99"):
        Cassette(path, mode="replay")


# -- errors ---------------------------------------------------------------------------------


async def test_recorded_errors_are_raised_again_with_type_and_retry_after(path: Path) -> None:
    script = [
        RateLimited("slow down", retry_after=7.5, provider="scripted", status=429, hint="wait"),
        ProviderTimeout("too slow", provider="scripted"),
        ProviderUnavailable("gone", provider="scripted", status=503, retryable=False),
        "finally",
    ]
    recorder = RecordingProvider(ScriptedProvider(script), Cassette(path, mode="record"))
    originals = []
    for _ in range(3):
        with pytest.raises(ProviderError) as info:
            await recorder.ainvoke(ChatRequest("q"))
        originals.append(info.value)
    assert (await recorder.ainvoke(ChatRequest("q"))).text == "finally"

    replayer = RecordingProvider(MustNotBeCalled(), Cassette(path, mode="replay"))
    for original in originals:
        with pytest.raises(ProviderError) as info:
            await replayer.ainvoke(ChatRequest("q"))
        replayed = info.value
        assert type(replayed) is type(original)
        assert str(replayed) == str(original)
        assert (replayed.provider, replayed.status, replayed.retryable, replayed.hint) == (
            original.provider,
            original.status,
            original.retryable,
            original.hint,
        )
    assert (await replayer.ainvoke(ChatRequest("q"))).text == "finally"
    first = load(path)["entries"][0]["error"]
    assert first["type"] == "RateLimited" and first["retry_after"] == 7.5


async def test_rate_limit_retry_after_survives_replay(path: Path) -> None:
    recorder = RecordingProvider(ScriptedProvider([RateLimited("429", retry_after=3.25)]), Cassette(path))
    with pytest.raises(RateLimited):
        await collect(recorder, ChatRequest("q"))
    with pytest.raises(RateLimited) as info:
        await collect(RecordingProvider(MustNotBeCalled(), Cassette(path)), ChatRequest("q"))
    assert info.value.retry_after == 3.25


async def test_a_stream_that_broke_replays_its_chunks_then_the_error(path: Path) -> None:
    inner = ScriptedProvider(["a b c d"])
    inner.fail_stream_after = 2
    recorder = RecordingProvider(inner, Cassette(path, mode="record"))
    seen: list[str] = []
    with pytest.raises(ProviderUnavailable, match="stream died"):
        async for chunk in recorder.astream(ChatRequest("q")):
            seen.append(chunk.text)
    assert seen == ["a", " b"]

    replayed: list[str] = []
    with pytest.raises(ProviderUnavailable, match="stream died") as info:
        async for chunk in RecordingProvider(MustNotBeCalled(), Cassette(path)).astream(ChatRequest("q")):
            replayed.append(chunk.text)
    assert replayed == seen
    assert info.value.status == 503


async def test_a_stream_the_consumer_left_early_is_kept_and_marked_incomplete(path: Path) -> None:
    recorder = RecordingProvider(ScriptedProvider(["one two three four"]), Cassette(path, mode="record"))
    stream = recorder.astream(ChatRequest("q"))
    got = []
    async for chunk in stream:
        got.append(chunk.text)
        if len(got) == 2:
            break
    await stream.aclose()
    (entry,) = load(path)["entries"]
    assert entry["complete"] is False and [c["text"] for c in entry["chunks"]] == ["one", " two"]

    replayer = RecordingProvider(MustNotBeCalled(), Cassette(path))
    stream = replayer.astream(ChatRequest("q"))
    assert [(await stream.__anext__()).text for _ in range(2)] == ["one", " two"]
    with pytest.raises(StreamBroken, match="only the first 2 chunk"):
        await stream.__anext__()


# -- durability and file format ------------------------------------------------------------


async def test_each_interaction_is_on_disk_as_soon_as_it_ends(path: Path) -> None:
    recorder = RecordingProvider(ScriptedProvider(["a", "b c", "d"]), Cassette(path, mode="record"))
    assert not exists(path)
    await recorder.ainvoke(ChatRequest("1"))
    assert len(load(path)["entries"]) == 1
    await collect(recorder, ChatRequest("2"))
    assert [e["kind"] for e in load(path)["entries"]] == ["invoke", "stream"]
    await recorder.ainvoke(ChatRequest("3"))
    assert len(load(path)["entries"]) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["session.json"]  # no temporary files left


async def test_a_failed_write_leaves_the_previous_file_intact(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingProvider(ScriptedProvider(["a", "b"]), Cassette(path, mode="record"))
    await recorder.ainvoke(ChatRequest("1"))
    before = raw(path)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cassette_mod.os, "replace", broken_replace)
    with pytest.raises(StoreError, match="disk full"):
        await recorder.ainvoke(ChatRequest("2"))
    assert raw(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["session.json"]


async def test_cancelled_call_is_not_recorded(path: Path) -> None:
    class Hanging(ScriptedProvider):
        async def ainvoke(self, request: ChatRequest) -> ChatResponse:
            if request.prompt_text == "hang":
                await asyncio.sleep(3600)
            return await super().ainvoke(request)

    recorder = RecordingProvider(Hanging(["ok"]), Cassette(path, mode="record"))
    await recorder.ainvoke(ChatRequest("fine"))
    task = asyncio.create_task(recorder.ainvoke(ChatRequest("hang")))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(load(path)["entries"]) == 1


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_file_survives_a_kernel_killed_mid_recording(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from lumina_lab.providers.adapters.cassette import Cassette, RecordingProvider
        from lumina_lab.providers.types import ChatRequest, ChatResponse, Usage

        class Dies:
            id, model = "p", "m"
            capabilities = pricing = limits = None
            n = 0
            async def ainvoke(self, request):
                self.n += 1
                if self.n == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                return ChatResponse(text=f"answer {{self.n}}", provider="p", model="m", usage=Usage(1, 2))

        async def main():
            rp = RecordingProvider(Dies(), Cassette({str(path)!r}, mode="record"))
            for i in range(5):
                await rp.ainvoke(ChatRequest(f"q{{i}}"))

        asyncio.run(main())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    entries = load(path)["entries"]
    assert [e["response"]["text"] for e in entries] == ["answer 1", "answer 2"]
    cassette = Cassette(path)
    assert cassette.replaying and len(cassette) == 2


async def test_the_file_is_stable_diffable_json(tmp_path: Path) -> None:
    async def record(p: Path) -> bytes:
        rp = RecordingProvider(ScriptedProvider(["héllo wörld 🌍", "x y"]), Cassette(p, mode="record"))
        await rp.ainvoke(ChatRequest([Message("system", "s"), Message("user", "u")], temperature=0.0))
        await collect(rp, ChatRequest("stream"))
        return raw(p)

    first = await record(tmp_path / "a.json")
    second = await record(tmp_path / "b.json")
    assert first == second  # same interactions, same bytes
    text = first.decode("utf-8")
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert "héllo wörld 🌍" in text  # readable, not \\u-escaped
    assert doc["format"] == "lumina-cassette" and doc["version"] == 1
    invoke, stream = doc["entries"]
    assert invoke["request"] == {
        "provider": "scripted",
        "model": "scripted-1",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "max_tokens": None,
        "temperature": 0.0,
    }
    assert invoke["response"]["usage"] == {"input_tokens": 3, "output_tokens": len("héllo wörld 🌍")}
    assert invoke["response"]["latency_s"] == 0.125
    assert stream["complete"] is True and stream["chunks"][-1]["done"] is True


async def test_entries_and_reprs(path: Path) -> None:
    cassette = Cassette(path, mode="record")
    rp = RecordingProvider(ScriptedProvider(["<b>bold</b> answer", RateLimited("nope")]), cassette)
    await rp.ainvoke(ChatRequest("<script>x</script>"))
    with pytest.raises(RateLimited):
        await collect(rp, ChatRequest("q"))
    entries = cassette.entries
    assert [e["kind"] for e in entries] == ["invoke", "stream"]
    entries.clear()
    assert len(cassette) == 2  # entries is a copy
    assert repr(cassette) == f"Cassette({str(path)!r}, mode='record': record, 2 entries, 2 recorded, 0 replayed)"
    page = cassette._repr_html_()
    assert "&lt;script&gt;" in page and "&lt;b&gt;bold" in page and "<script>" not in page
    assert "RateLimited: nope" in page


async def test_replayed_responses_are_independent_copies(path: Path) -> None:
    rp = RecordingProvider(ScriptedProvider(["a"]), Cassette(path, mode="record"))
    recorded = await rp.ainvoke(ChatRequest("q"))
    recorded.metadata["tags"].append("mutated later")
    assert load(path)["entries"][0]["response"]["metadata"]["tags"] == ["a", "b"]
    replayer = RecordingProvider(MustNotBeCalled(), Cassette(path))
    first = await replayer.ainvoke(ChatRequest("q"))
    first.metadata["tags"].append("x")
    replayer.cassette.rewind()
    assert (await replayer.ainvoke(ChatRequest("q"))).metadata["tags"] == ["a", "b"]
