"""The data that flows through the provider runtime.

Per-request objects (:class:`ChatRequest`, :class:`ChatResponse`,
:class:`StreamChunk`, :class:`Usage`) are slotted classes in :mod:`.messages`, re-exported
here: routing a request must cost microseconds.  Per-provider declarations
(:class:`Capabilities`, :class:`Pricing`, :class:`Limits`) are pydantic
models, validated once when a provider is declared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ValidationError

__all__ = [
    "CAPABILITIES",
    "Capabilities",
    "ChatRequest",
    "ChatResponse",
    "Limits",
    "Message",
    "Pricing",
    "StreamChunk",
    "Usage",
]

from .messages import (  # noqa: F401 - the per-request classes live there (no pydantic): re-exported here
    _REQUEST_FIELDS,
    CAPABILITIES,
    ChatRequest,
    ChatResponse,
    Message,
    Role,
    StreamChunk,
    Usage,
    check_capability,
    coerce_needs,
)


class Capabilities(BaseModel):
    """What a provider can do, with levels in [0, 1] (0: cannot; 1: best in class).

    >>> caps = Capabilities(chat=1, code=0.8, context_window=128_000, languages={"en", "de"})
    >>> caps.supports({"code"}, min_context=10_000)
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    chat: float = Field(1.0, ge=0, le=1)
    code: float = Field(0.0, ge=0, le=1)
    vision: float = Field(0.0, ge=0, le=1)
    tools: float = Field(0.0, ge=0, le=1)
    json_mode: float = Field(0.0, ge=0, le=1)
    reasoning: float = Field(0.0, ge=0, le=1)
    context_window: int = Field(8_192, ge=1)
    languages: frozenset[str] = frozenset({"en"})

    def level(self, name: str) -> float:
        return float(getattr(self, name))

    def supports(
        self,
        needs: Mapping[str, float] | Sequence[str] | set[str] | frozenset[str],
        *,
        min_context: int = 0,
        language: str | None = None,
    ) -> bool:
        """True if every needed capability is present (at the given minimum level, if a mapping)."""
        if min_context > self.context_window:
            return False
        if language is not None and language not in self.languages and "*" not in self.languages:
            return False
        if isinstance(needs, Mapping):
            return all(getattr(self, n) >= lvl and getattr(self, n) > 0 for n, lvl in needs.items())
        return all(getattr(self, n) > 0 for n in needs)


class Pricing(BaseModel):
    """USD per million input and output tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_m: float = Field(0.0, ge=0)
    output_per_m: float = Field(0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6

    @classmethod
    def for_model(cls, model: str) -> Pricing:
        """List prices of ``model`` from the shipped, dated snapshot (``datasets/pricing.json``)."""
        from ..data import pricing_snapshot

        snap = pricing_snapshot()
        try:
            p = snap["models"][model]
        except KeyError:
            raise ValidationError(
                f"no list price for model {model!r} in the pricing snapshot of {snap['as_of']}",
                input=model,
                hint="pass pricing=Pricing(input_per_m=..., output_per_m=...) explicitly",
            ) from None
        return cls(input_per_m=p["input"], output_per_m=p["output"])


class Limits(BaseModel):
    """Provider limits: requests and tokens per minute, and concurrent calls (``None``: unlimited)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
