"""Per-request data: :class:`ChatRequest`, :class:`Message`, :class:`ChatResponse`, :class:`StreamChunk`, :class:`Usage`.

Slotted classes with no pydantic in sight: routing a request must cost microseconds, and this module is
one of the router's hot path (see ``mypyc.ini``).  :mod:`lumina_lab.providers.types` re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Literal

from ..errors import ValidationError
from ..events.ids import new_id

__all__ = ["CAPABILITIES", "ChatRequest", "ChatResponse", "Message", "StreamChunk", "Usage", "check_capability", "coerce_needs"]

#: Capability names a provider may declare, each with a level from 0 (none) to 1 (best).
CAPABILITIES = ("chat", "code", "vision", "tools", "json_mode", "reasoning")
Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class Message:
    role: Role
    content: str


@dataclass(slots=True, init=False)
class ChatRequest:
    """One chat request, before a provider is chosen.

    Args:
        messages: the conversation (a plain string is one user message).
        needs: capabilities required (names, or ``{name: minimum level}``).
        min_context: minimum context window in tokens.
        max_tokens: cap on output tokens (also used to predict cost).
        principal / project: who asks and for which project (budgets, policy).
        task: a category for learning strategies ("chat", "code", ...).
        model: a provider id or model name to pin the request to.
        input_tokens: the prompt's size in tokens when known (a tokenizer, a trace);
            otherwise it is estimated from the text.
    """

    messages: list[Message]  # a prompt string becomes one user message
    needs: Any = frozenset()
    min_context: int = 0
    language: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    principal: str | None = None
    project: str | None = None
    task: str | None = None
    model: str | None = None
    timeout_s: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    input_tokens: int | None = None

    def __init__(  # written out, not generated: a compiled build compiles it (dataclass-made ones stay interpreted)
        self,
        messages: list[Message] | str,
        needs: Any = frozenset(),
        min_context: int = 0,
        language: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        principal: str | None = None,
        project: str | None = None,
        task: str | None = None,
        model: str | None = None,
        timeout_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
        input_tokens: int | None = None,
    ) -> None:
        if isinstance(messages, str):
            if not messages.strip():
                raise ValidationError("the prompt is empty", input=messages, hint="pass the text to send")
            messages = [Message("user", messages)]
        elif not messages:
            raise ValidationError("a ChatRequest needs at least one message", hint="pass the prompt text")
        self.messages = messages
        self.needs = needs
        self.min_context = min_context
        self.language = language
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.principal = principal
        self.project = project
        self.task = task
        self.model = model
        self.timeout_s = timeout_s
        self.metadata = {} if metadata is None else metadata
        self.id = new_id() if id is None else id
        self.input_tokens = input_tokens
        if type(needs) is not frozenset:  # a replay passes frozensets: one check per request
            self.needs = coerce_needs(needs)

    @classmethod
    def of(cls, prompt: str | list[Message], **fields: Any) -> ChatRequest:
        """A request from a prompt and keyword fields, a misspelt or unknown field named in a
        :class:`~lumina_lab.errors.ValidationError` (what ``router.ainvoke("...", needs=...)`` and
        ``lab.ask("...", ...)`` build their requests with)."""
        if not isinstance(prompt, str | list):
            raise ValidationError(
                f"the prompt is a {type(prompt).__name__}, not text",
                input=prompt,
                hint="pass the prompt as a string, a list of Message, or a ChatRequest",
            )
        unknown = sorted(set(fields) - _REQUEST_FIELDS)
        if unknown:
            import difflib

            close = [m for u in unknown for m in difflib.get_close_matches(u, _REQUEST_FIELDS, 1)]
            raise ValidationError(
                f"unknown request field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""),
                input=unknown[0],
                hint=f"a request takes: {', '.join(sorted(_REQUEST_FIELDS))}",
            )
        for name in ("max_tokens", "input_tokens", "min_context"):
            v = fields.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, Integral) or v < (name == "max_tokens")):
                raise ValidationError(
                    f"{name}={v!r} is not a {'positive' if name == 'max_tokens' else 'non-negative'} int",
                    input=v,
                    hint=f"e.g. {name}=256, or leave it out",
                )
        for name in ("temperature", "timeout_s"):
            v = fields.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, Real) or v < 0):
                raise ValidationError(f"{name}={v!r} is not a non-negative number", input=v, hint=f"e.g. {name}=0.5")
        return cls(prompt, **fields)

    @property
    def prompt_text(self) -> str:
        return "\n".join(m.content for m in self.messages)


_REQUEST_FIELDS = frozenset(ChatRequest.__dataclass_fields__) - {"messages"}
_NEEDS_HINT = "e.g. needs='code', needs=['code', 'vision'] or needs={'code': 0.8}"


def coerce_needs(needs: Any) -> frozenset[str] | dict[str, float]:
    """A request's ``needs`` as the router reads them: a frozenset of capability names, or
    ``{name: minimum level}`` with levels in [0, 1].  One name is one capability (``"code"``,
    not its letters); an unknown name, a level out of range or another type raises a
    :class:`~lumina_lab.errors.ValidationError` naming it.

    >>> sorted(coerce_needs("code")), coerce_needs({"code": 0.8})
    (['code'], {'code': 0.8})
    """
    if isinstance(needs, str):
        needs = (needs,)
    if isinstance(needs, Mapping):
        levels: dict[str, float] = {}
        for name, level in needs.items():
            check_capability(name)
            if isinstance(level, bool) or not isinstance(level, Real) or not 0 <= float(level) <= 1:
                raise ValidationError(
                    f"needs[{name!r}]={level!r}: a minimum level is a number in [0, 1]",
                    input=level,
                    hint=f"e.g. needs={{{name!r}: 0.8}}",
                )
            levels[name] = float(level)
        return levels
    try:
        names = list(needs)
    except TypeError:
        raise ValidationError(
            f"needs={needs!r} is not a capability name, a list of names or {{name: minimum level}}",
            input=needs,
            hint=_NEEDS_HINT,
        ) from None
    for name in names:
        check_capability(name)
    return frozenset(names)


def check_capability(name: Any) -> None:
    """Raise a :class:`~lumina_lab.errors.ValidationError` unless ``name`` is one of :data:`CAPABILITIES`
    (with the closest name, when one is close)."""
    if name in CAPABILITIES:
        return
    import difflib

    close = difflib.get_close_matches(str(name), CAPABILITIES, 1)
    raise ValidationError(
        f"unknown capability {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        input=name,
        hint=f"use one of {', '.join(CAPABILITIES)}",
    )


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ChatResponse:
    """A finished answer, with who answered, tokens, cost and timing."""

    text: str
    provider: str
    model: str
    usage: Usage
    cost_usd: float = 0.0
    latency_s: float = 0.0
    ttft_s: float | None = None
    finish_reason: str = "stop"
    request_id: str = ""
    attempts: int = 1
    tried: list[str] = field(default_factory=list)
    hedged: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        import html

        return (
            f"<div><b>{html.escape(self.provider)}</b> ({html.escape(self.model)}) · "
            f"{self.usage.input_tokens}+{self.usage.output_tokens} tokens · ${self.cost_usd:.6f} · "
            f"{self.latency_s * 1000:.0f} ms<pre style='white-space:pre-wrap'>{html.escape(self.text)}</pre></div>"
        )


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed answer.

    ``done`` marks the final chunk (which carries ``usage``).  When the router
    fails over mid-stream, the first chunk from the new provider has
    ``failover_from`` set to the provider that broke.
    """

    text: str
    provider: str
    index: int = 0
    done: bool = False
    usage: Usage | None = None
    finish_reason: str | None = None
    failover_from: str | None = None
