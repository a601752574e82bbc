"""Record provider interactions once, replay them offline byte for byte.

>>> cassette = Cassette("notebooks/cassettes/intro.json")     # doctest: +SKIP
>>> provider = RecordingProvider(real_provider, cassette)      # doctest: +SKIP

The first run (``mode="once"`` and no file yet) calls ``real_provider`` and
writes every interaction to the cassette; later runs find the file and replay
the recorded answers without touching the network.

Modes:
    ``"once"`` (default): replay if the cassette file exists, else record.
    ``"record"``: always call the provider and record; the file is rewritten
        from scratch at the first recorded interaction of the session.
    ``"replay"``: never call the provider; a request with no recorded answer
        raises :class:`~lumina_lab.errors.ProviderError` (``retryable=False``).
    ``"none"``: pass-through; the provider is called and nothing is read or written.

Matching: each request gets a key, the sha256 of the canonical JSON of
(provider id, model, messages, max_tokens, temperature), and an occurrence
number, so the same request asked twice replays the two recorded answers in
order.  Whole answers (``ainvoke``) and streams (``astream``) are kept apart.
:meth:`Cassette.rewind` starts the occurrence numbers again (to re-run a notebook
cell in the same kernel).

The file is one pretty-printed JSON document with sorted keys (diffable), and
is rewritten atomically (temporary file, fsync, ``os.replace``) after every
recorded interaction, so a dying kernel loses at most the call in flight.
Recorded provider errors are raised again on replay with the same class,
message, hint, status and ``retry_after``; a stream that failed midway replays
its chunks and then the error.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ... import errors as _errors
from ...errors import ProviderError, StoreError, StreamBroken, ValidationError
from ..types import ChatRequest, ChatResponse, StreamChunk, Usage

__all__ = ["Cassette", "RecordingProvider", "request_key"]

FORMAT = "lumina-cassette"
VERSION = 1
MODES = ("once", "record", "replay", "none")


def request_key(provider_id: str, model: str, request: ChatRequest) -> str:
    """The sha256 hex digest that identifies ``request`` sent to ``provider_id``/``model`` in a cassette."""
    return hashlib.sha256(
        _canonical(_request_doc(provider_id, model, request)).encode("utf-8", "surrogatepass")
    ).hexdigest()


class Cassette:
    """A file of recorded provider interactions.

    Args:
        path: the cassette file (a JSON document; parent folders are created).
        mode: ``"once"``, ``"record"``, ``"replay"`` or ``"none"`` (see the module docs).

    Attributes:
        path: the cassette file.
        mode: the mode asked for.
        recording / replaying: what this session does (``"once"`` resolves to one of them).
        recorded / replayed: interactions recorded and replayed in this session.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "once") -> None:
        if mode not in MODES:
            raise ValidationError(
                f"cassette mode={mode!r} is not one of {', '.join(MODES)}",
                input=mode,
                hint='use mode="once" to record the first time and replay afterwards',
            )
        self.path = Path(path)
        self.mode = mode
        exists = self.path.exists()
        effective = ("replay" if exists else "record") if mode == "once" else mode
        self.recording = effective == "record"
        self.replaying = effective == "replay"
        self._entries: list[dict[str, Any]] = []
        if self.replaying:
            if not exists:
                raise StoreError(
                    f"cassette {self.path} does not exist, so there is nothing to replay",
                    input=str(self.path),
                    hint='record it first with mode="once" or mode="record"',
                )
            self._entries = self._load()
        self._index: dict[tuple[str, str, int], dict[str, Any]] = {}
        for entry in self._entries:
            self._index[(entry["key"], entry["kind"], entry["occurrence"])] = entry
        self._next: dict[tuple[str, str], int] = {}  # replay: next occurrence per (key, kind)
        self.recorded = 0
        self.replayed = 0

    # -- inspection ----------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The recorded interactions, in recording order (a copy of the list; do not edit the dicts)."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def wrap(self, provider: Any) -> RecordingProvider:
        """``RecordingProvider(provider, self)``."""
        return RecordingProvider(provider, self)

    def rewind(self) -> None:
        """Replay from the first recorded answer of every request again."""
        self._next.clear()

    @property
    def _effective(self) -> str:
        return "record" if self.recording else "replay" if self.replaying else "none"

    def __repr__(self) -> str:
        return (
            f"Cassette({str(self.path)!r}, mode={self.mode!r}: {self._effective}, "
            f"{len(self._entries)} entries, {self.recorded} recorded, {self.replayed} replayed)"
        )

    def _repr_html_(self) -> str:
        rows = []
        for e in self._entries[-50:]:
            if e.get("error"):
                outcome = f"{e['error']['type']}: {e['error']['message']}"
            elif e["kind"] == "stream":
                outcome = "".join(c["text"] for c in e.get("chunks", []))
                if not e.get("complete", True):
                    outcome += " …(cut off)"
            else:
                outcome = (e.get("response") or {}).get("text", "")
            msgs = e.get("request", {}).get("messages", [])
            prompt = msgs[-1]["content"] if msgs else ""
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (e["provider"], e["model"], e["kind"], e["occurrence"], _short(prompt), _short(outcome))
                )
                + "</tr>"
            )
        more = f"<p>… {len(self._entries) - 50} earlier entries not shown</p>" if len(self._entries) > 50 else ""
        return (
            f"<div><b>Cassette</b> <code>{html.escape(str(self.path))}</code> · mode {html.escape(self.mode)}"
            f" ({self._effective}) · {len(self._entries)} entries · {self.recorded} recorded ·"
            f" {self.replayed} replayed{more}<table><tr><th>provider</th><th>model</th><th>kind</th><th>#</th>"
            f"<th>prompt</th><th>outcome</th></tr>{''.join(rows)}</table></div>"
        )

    # -- replay ----------------------------------------------------------------

    def _lookup(self, key: str, kind: str, provider_id: str, model: str) -> dict[str, Any]:
        n = self._next.get((key, kind), 0)
        entry = self._index.get((key, kind, n))
        if entry is None:
            recorded = sum(1 for k in self._index if k[0] == key and k[1] == kind)
            what = "ainvoke" if kind == "invoke" else "astream"
            if recorded:
                detail = f"only {recorded} answer(s) were recorded for this request and this is repeat #{n + 1}"
                hint = (
                    "call cassette.rewind() to replay from the start, or re-record with "
                    f'Cassette({str(self.path)!r}, mode="record")'
                )
            else:
                detail = "no answer was recorded for this request (the prompt, parameters or provider changed?)"
                hint = f're-record the cassette: Cassette({str(self.path)!r}, mode="record"), with network access'
            raise ProviderError(
                f"cassette {self.path} has no recorded {what} of {provider_id} ({model}) for request key "
                f"{key[:16]}…: {detail}",
                provider=provider_id,
                retryable=False,
                hint=hint,
            )
        self._next[(key, kind)] = n + 1
        self.replayed += 1
        return entry

    # -- record ----------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        occurrence = sum(1 for e in self._entries if e["key"] == entry["key"] and e["kind"] == entry["kind"])
        entry["occurrence"] = occurrence
        self._entries.append(entry)
        self._index[(entry["key"], entry["kind"], occurrence)] = entry
        self.recorded += 1
        self._flush()

    def _flush(self) -> None:
        doc = {"format": FORMAT, "version": VERSION, "entries": self._entries}
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n"
        data = text.encode("utf-8", "surrogatepass")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise StoreError(
                f"cannot write cassette {self.path}: {exc}", input=str(self.path), hint="check the folder is writable"
            ) from exc
        if hasattr(os, "O_DIRECTORY"):
            try:
                fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass

    def _load(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_bytes().decode("utf-8", "surrogatepass")
            doc = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"cannot read cassette {self.path}: {exc}",
                input=str(self.path),
                hint='delete it and record again with mode="record"',
            ) from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
            raise StoreError(
                f"{self.path} is not a Lumina cassette (expected a JSON object with format={FORMAT!r} and entries)",
                input=str(self.path),
                hint='point Cassette at another file, or delete it and record again with mode="record"',
            )
        if doc.get("version") != VERSION:
            raise StoreError(
                f"cassette {self.path} has version {doc.get('version')!r}; this Lumina Lab reads version {VERSION}",
                input=str(self.path),
                hint='record it again with mode="record"',
            )
        return doc["entries"]


class RecordingProvider:
    """A provider that records its inner provider's answers to a :class:`Cassette`, or replays them.

    ``id``, ``model``, ``capabilities``, ``pricing`` and ``limits`` are the inner
    provider's.  When replaying, the inner provider is never called.
    """

    def __init__(self, inner: Any, cassette: Cassette) -> None:
        if not isinstance(cassette, Cassette):
            raise ValidationError(f"cassette={cassette!r} is not a Cassette", input=cassette)
        self.inner = inner
        self.cassette = cassette

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    @property
    def pricing(self) -> Any:
        return self.inner.pricing

    @property
    def limits(self) -> Any:
        return self.inner.limits

    def __repr__(self) -> str:
        return f"RecordingProvider({self.inner!r}, {self.cassette!r})"

    def _entry(self, kind: str, key: str, request: ChatRequest) -> dict[str, Any]:
        return {
            "key": key,
            "kind": kind,
            "provider": self.id,
            "model": self.model,
            "request": _request_doc(self.id, self.model, request),
            "error": None,
        }

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        cassette = self.cassette
        if not (cassette.recording or cassette.replaying):
            return await self.inner.ainvoke(request)
        key = request_key(self.id, self.model, request)
        if cassette.replaying:
            entry = cassette._lookup(key, "invoke", self.id, self.model)
            if entry.get("error"):
                raise _error_from(entry["error"])
            return _response_from(entry["response"], request)
        entry = self._entry("invoke", key, request)
        try:
            response = await self.inner.ainvoke(request)
        except ProviderError as exc:
            entry["error"] = _error_doc(exc)
            cassette._record(entry)
            raise
        entry["response"] = _response_doc(response)
        cassette._record(entry)
        return response

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        cassette = self.cassette
        if not (cassette.recording or cassette.replaying):
            inner = self.inner.astream(request)
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                await _aclose(inner)
            return
        key = request_key(self.id, self.model, request)
        if cassette.replaying:
            entry = cassette._lookup(key, "stream", self.id, self.model)
            for doc in entry.get("chunks", []):
                yield _chunk_from(doc)
            if entry.get("error"):
                raise _error_from(entry["error"])
            if not entry.get("complete", True):
                raise StreamBroken(
                    f"cassette {cassette.path} holds only the first {len(entry.get('chunks', []))} chunk(s) of this "
                    f"stream from {self.id}: the consumer stopped reading when it was recorded",
                    provider=self.id,
                    retryable=False,
                    hint=f'read no further, or re-record: Cassette({str(cassette.path)!r}, mode="record")',
                )
            return
        entry = self._entry("stream", key, request)
        chunks: list[dict[str, Any]] = []
        entry["chunks"] = chunks
        entry["complete"] = False
        inner = self.inner.astream(request)
        try:
            async for chunk in inner:
                chunks.append(_chunk_doc(chunk))
                if chunk.done:
                    entry["complete"] = True
                yield chunk
            entry["complete"] = True
        except ProviderError as exc:
            entry["error"] = _error_doc(exc)
            raise
        finally:
            # Also on an early stop of the consumer (aclose or cancellation): the
            # chunks it saw are kept, so occurrence numbers stay aligned on replay.
            cassette._record(entry)
            await _aclose(inner)


# -- (de)serialisation ----------------------------------------------------------


def _request_doc(provider_id: str, model: str, request: ChatRequest) -> dict[str, Any]:
    return {
        "provider": provider_id,
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[union-attr]
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return repr(obj)


def _plain(obj: Any) -> Any:
    """A deep copy made of JSON values only (what the file will hold)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _usage_doc(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


def _usage_from(doc: dict[str, Any] | None) -> Usage | None:
    if doc is None:
        return None
    return Usage(doc["input_tokens"], doc["output_tokens"])


def _response_doc(r: ChatResponse) -> dict[str, Any]:
    return {
        "text": r.text,
        "provider": r.provider,
        "model": r.model,
        "usage": _usage_doc(r.usage),
        "cost_usd": r.cost_usd,
        "latency_s": r.latency_s,
        "ttft_s": r.ttft_s,
        "finish_reason": r.finish_reason,
        "attempts": r.attempts,
        "tried": list(r.tried),
        "hedged": r.hedged,
        "metadata": _plain(r.metadata or {}),
    }


def _response_from(doc: dict[str, Any], request: ChatRequest) -> ChatResponse:
    return ChatResponse(
        text=doc["text"],
        provider=doc["provider"],
        model=doc["model"],
        usage=_usage_from(doc["usage"]) or Usage(),
        cost_usd=doc.get("cost_usd", 0.0),
        latency_s=doc.get("latency_s", 0.0),
        ttft_s=doc.get("ttft_s"),
        finish_reason=doc.get("finish_reason", "stop"),
        request_id=request.id,
        attempts=doc.get("attempts", 1),
        tried=list(doc.get("tried", [])),
        hedged=doc.get("hedged", False),
        metadata=_plain(doc.get("metadata") or {}),
    )


def _chunk_doc(c: StreamChunk) -> dict[str, Any]:
    return {
        "text": c.text,
        "provider": c.provider,
        "index": c.index,
        "done": c.done,
        "usage": _usage_doc(c.usage),
        "finish_reason": c.finish_reason,
        "failover_from": c.failover_from,
    }


def _chunk_from(doc: dict[str, Any]) -> StreamChunk:
    return StreamChunk(
        text=doc["text"],
        provider=doc["provider"],
        index=doc.get("index", 0),
        done=doc.get("done", False),
        usage=_usage_from(doc.get("usage")),
        finish_reason=doc.get("finish_reason"),
        failover_from=doc.get("failover_from"),
    )


def _error_doc(exc: ProviderError) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": exc.message,
        "hint": exc.hint,
        "provider": exc.provider,
        "status": exc.status,
        "retryable": exc.retryable,
        "retry_after": getattr(exc, "retry_after", None),
    }


def _error_from(doc: dict[str, Any]) -> ProviderError:
    cls = getattr(_errors, doc.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, ProviderError)):
        cls = ProviderError
    kw: dict[str, Any] = {
        "provider": doc.get("provider"),
        "status": doc.get("status"),
        "hint": doc.get("hint"),
        "retryable": doc.get("retryable"),
    }
    if issubclass(cls, _errors.RateLimited):
        kw["retry_after"] = doc.get("retry_after")
    exc = cls(doc.get("message", ""), **kw)
    if not hasattr(exc, "retry_after") and doc.get("retry_after") is not None:
        exc.retry_after = doc["retry_after"]  # type: ignore[attr-defined]
    return exc


def _short(text: str, n: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
