"""The :class:`Provider` protocol (from :mod:`.protocol`) and :class:`BaseProvider`, the base of the built-in adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator

from mypy_extensions import mypyc_attr

from ..errors import ValidationError
from .messages import ChatRequest, ChatResponse, StreamChunk
from .protocol import Provider
from .types import Capabilities, Limits, Pricing

__all__ = ["BaseProvider", "Provider"]


@mypyc_attr(allow_interpreted_subclasses=True)  # adapters (and yours) subclass it
class BaseProvider:
    """Declaration shared by the adapters: id, model, capabilities, pricing and limits.

    Args:
        id: unique provider id in a registry (default: the model name).
        model: model name sent to the endpoint.
        capabilities: what it can do (default: chat only, 8k context).
        pricing: USD per million tokens; default: the shipped list-price snapshot
            for ``model`` if it has one, else free.
        limits: RPM, TPM and concurrency limits.
    """

    def __init__(
        self,
        model: str,
        *,
        id: str | None = None,
        capabilities: Capabilities | dict | None = None,
        pricing: Pricing | dict | None = None,
        limits: Limits | dict | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValidationError(f"model={model!r} must be a non-empty string", input=model)
        self.model = model
        self.id = id or model
        self.capabilities = _coerce(Capabilities, capabilities)
        self.limits = _coerce(Limits, limits)
        if pricing is None:
            try:
                pricing = Pricing.for_model(model)
            except ValidationError:
                pricing = Pricing()
                _warn_if_misspelt(model)
        self.pricing = _coerce(Pricing, pricing)

    async def ainvoke(self, request: ChatRequest) -> ChatResponse:  # pragma: no cover - abstract
        raise NotImplementedError

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, model={self.model!r})"


def _warn_if_misspelt(model: str) -> None:
    """A model without a list price is free, as a self-hosted one is; one whose name is a near miss of
    a priced model is probably a typo that would make it the cheapest: say so (once per name)."""
    import difflib
    import warnings

    from ..data import pricing_snapshot

    close = difflib.get_close_matches(model, list(pricing_snapshot()["models"]), 1, cutoff=0.9)
    if close:
        warnings.warn(
            f"no list price for model {model!r} (did you mean {close[0]!r}?): its calls count as free; "
            "fix the name or pass pricing=Pricing(input_per_m=..., output_per_m=...)",
            UserWarning,
            stacklevel=4,
        )


def _coerce(cls, value):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        import pydantic

        try:
            return cls(**value)
        except pydantic.ValidationError as exc:  # one line naming the field, not pydantic's report
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or cls.__name__
            raise ValidationError(
                f"{cls.__name__.lower()} {where}={err.get('input')!r}: {err['msg']}",
                input=value,
                hint=f"see {cls.__name__}'s fields: {', '.join(cls.model_fields)}",
            ) from None
    raise ValidationError(f"expected {cls.__name__} or a dict, got {value!r}", input=value)
