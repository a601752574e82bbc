"""Provider declarations and per-request data: Capabilities.supports, Pricing, ChatRequest."""

from __future__ import annotations

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import Capabilities, ChatRequest, Message, Pricing
from lumina_lab.providers.types import CAPABILITIES


@pytest.fixture
def caps() -> Capabilities:
    return Capabilities(chat=1, code=0.6, context_window=32_000, languages={"en", "de"})


# ---------------------------------------------------------------- Capabilities.supports


def test_supports_needed_names_that_are_present(caps: Capabilities) -> None:
    assert caps.supports({"chat", "code"})


def test_does_not_support_a_capability_at_level_zero(caps: Capabilities) -> None:
    assert not caps.supports({"vision"})
    assert not caps.supports(["code", "vision"])


def test_supports_no_needs_at_all(caps: Capabilities) -> None:
    assert caps.supports(frozenset())


def test_minimum_levels_given_as_a_dict(caps: Capabilities) -> None:
    assert caps.supports({"code": 0.5})
    assert caps.supports({"code": 0.6})
    assert not caps.supports({"code": 0.7})


def test_a_minimum_level_of_zero_still_requires_the_capability(caps: Capabilities) -> None:
    assert not caps.supports({"vision": 0.0})


def test_context_window_must_cover_min_context(caps: Capabilities) -> None:
    assert caps.supports({"chat"}, min_context=32_000)
    assert not caps.supports({"chat"}, min_context=32_001)


def test_language_must_be_declared(caps: Capabilities) -> None:
    assert caps.supports({"chat"}, language="de")
    assert not caps.supports({"chat"}, language="fr")


def test_star_language_supports_every_language() -> None:
    assert Capabilities(languages={"*"}).supports({"chat"}, language="ja")


def test_default_capabilities_are_chat_only_english_8k() -> None:
    caps = Capabilities()
    assert [c for c in CAPABILITIES if caps.level(c) > 0] == ["chat"]
    assert caps.context_window == 8_192
    assert caps.languages == frozenset({"en"})


def test_capability_levels_outside_zero_one_are_rejected() -> None:
    with pytest.raises(ValueError):
        Capabilities(code=1.5)


def test_unknown_capability_fields_are_rejected() -> None:
    with pytest.raises(ValueError):
        Capabilities(telepathy=1)


# ---------------------------------------------------------------- Pricing


def test_pricing_cost_is_usd_per_million_tokens() -> None:
    p = Pricing(input_per_m=2.0, output_per_m=8.0)
    assert p.cost(1_000_000, 0) == pytest.approx(2.0)
    assert p.cost(0, 1_000_000) == pytest.approx(8.0)
    assert p.cost(1_000, 500) == pytest.approx((1_000 * 2 + 500 * 8) / 1e6)


def test_pricing_for_model_reads_the_shipped_snapshot() -> None:
    from lumina_lab.data import pricing_snapshot

    snap = pricing_snapshot()["models"]["gpt-4.1-mini"]
    p = Pricing.for_model("gpt-4.1-mini")
    assert (p.input_per_m, p.output_per_m) == (snap["input"], snap["output"])


def test_pricing_for_unknown_model_raises_validation_error_with_hint() -> None:
    with pytest.raises(ValidationError) as info:
        Pricing.for_model("no-such-model-xyz")
    assert "no-such-model-xyz" in info.value.message
    assert info.value.hint is not None and "Pricing(" in info.value.hint
    assert info.value.input == "no-such-model-xyz"


def test_negative_prices_are_rejected() -> None:
    with pytest.raises(ValueError):
        Pricing(input_per_m=-1)


# ---------------------------------------------------------------- ChatRequest


def test_chat_request_from_a_string_is_one_user_message() -> None:
    req = ChatRequest("hello there")
    assert req.messages == [Message("user", "hello there")]
    assert req.prompt_text == "hello there"


def test_chat_request_keeps_a_message_list() -> None:
    msgs = [Message("system", "be brief"), Message("user", "hi")]
    req = ChatRequest(msgs)
    assert req.messages == msgs
    assert req.prompt_text == "be brief\nhi"


def test_chat_request_with_no_messages_is_rejected() -> None:
    with pytest.raises(ValidationError, match="at least one message"):
        ChatRequest([])


def test_an_empty_prompt_is_rejected() -> None:
    for prompt in ("", "  \n"):
        with pytest.raises(ValidationError, match="the prompt is empty"):
            ChatRequest(prompt)


@pytest.mark.parametrize(
    ("needs", "expected"),
    [
        ("code", frozenset({"code"})),  # one name is one capability, not its letters
        (["code", "vision"], frozenset({"code", "vision"})),
        ({"vision", "code"}, frozenset({"code", "vision"})),
        (("tools",), frozenset({"tools"})),
        ({"code": 0.8}, {"code": 0.8}),
        ({"code": 1}, {"code": 1.0}),
        ([], frozenset()),
    ],
)
def test_needs_become_a_frozenset_of_names_or_minimum_levels(needs: object, expected: object) -> None:
    assert ChatRequest("hi", needs=needs).needs == expected
    assert ChatRequest.of("hi", needs=needs).needs == expected


@pytest.mark.parametrize(
    ("needs", "message"),
    [
        ("cod", r"unknown capability 'cod' \(did you mean 'code'\?\)"),
        (["code", "telepathy"], r"unknown capability 'telepathy'"),
        ({"visoin": 0.5}, r"unknown capability 'visoin' \(did you mean 'vision'\?\)"),
        ({"code": 2}, r"needs\['code'\]=2: a minimum level is a number in \[0, 1\]"),
        ({"code": "high"}, r"needs\['code'\]='high': a minimum level is a number in \[0, 1\]"),
        ({"code": True}, r"needs\['code'\]=True"),
        (5, r"needs=5 is not a capability name, a list of names or \{name: minimum level\}"),
    ],
)
def test_bad_needs_are_named_with_the_fix(needs: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        ChatRequest("hi", needs=needs)
    assert info.value.hint


def test_needs_are_checked_where_a_user_routes() -> None:
    from lumina_lab import Lab

    with Lab(profile="test") as lab:
        assert lab.route("hi", needs="code").chosen is not None
        with pytest.raises(ValidationError, match="did you mean 'code'"):
            lab.route("hi", needs="cod")


def test_each_chat_request_gets_a_unique_id() -> None:
    assert ChatRequest("a").id != ChatRequest("a").id


def test_a_request_from_keywords_names_an_unknown_field_and_the_close_one() -> None:
    req = ChatRequest.of("hi", needs={"code"}, max_tokens=5)
    assert req.needs == {"code"} and req.max_tokens == 5 and req.prompt_text == "hi"
    with pytest.raises(ValidationError, match=r"unknown request field 'need' \(did you mean 'needs'\?\)") as info:
        ChatRequest.of("hi", need={"code"})
    assert "max_tokens" in info.value.hint
    with pytest.raises(ValidationError, match=r"unknown request fields 'route_only', 'zzz'"):
        ChatRequest.of("hi", route_only=True, zzz=1)


def test_router_and_lab_build_requests_through_the_checked_constructor() -> None:
    import asyncio

    from lumina_lab.providers import ProviderRegistry, Router, SimulatedProvider

    router = Router(ProviderRegistry([SimulatedProvider("m", id="p")]))
    with pytest.raises(ValidationError, match=r"'max_token'.*did you mean 'max_tokens'"):
        asyncio.run(router.ainvoke("hi", max_token=3))
    assert asyncio.run(router.ainvoke("hi", max_tokens=3)).provider == "p"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_tokens", "a lot", "max_tokens='a lot' is not a positive int"),
        ("max_tokens", 0, "max_tokens=0 is not a positive int"),
        ("input_tokens", -1, "input_tokens=-1 is not a non-negative int"),
        ("min_context", 1.5, "min_context=1.5 is not a non-negative int"),
        ("temperature", "hot", "temperature='hot' is not a non-negative number"),
        ("timeout_s", -2, "timeout_s=-2 is not a non-negative number"),
    ],
)
def test_a_request_from_keywords_checks_its_numbers(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ChatRequest.of("hi", **{field: value})


@pytest.mark.wrong_type_message
def test_a_prompt_that_is_not_text_is_named() -> None:
    with pytest.raises(ValidationError, match="the prompt is a int, not text"):
        ChatRequest.of(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"error_rate": 2}, r"error_rate=2 must be a share in \[0, 1\]"),
        ({"quality": -0.1}, r"quality=-0.1 must be a share"),
        ({"error_rate": 0.6, "timeout_rate": 0.6}, r"error_rate \+ timeout_rate = 1.2 > 1"),
        ({"ttft_s": -1}, r"ttft_s=-1 must be a number >= 0"),
        ({"capabilities": {"code": "high"}}, r"capabilities code='high': Input should be a valid number"),
    ],
)
def test_a_simulated_provider_names_a_bad_profile_value(options: dict, message: str) -> None:
    from lumina_lab.providers import SimulatedProvider

    with pytest.raises(ValidationError, match=message):
        SimulatedProvider("m", **options)


def test_a_simulated_provider_takes_numpy_numbers() -> None:
    import numpy as np

    from lumina_lab.providers import SimulatedProvider

    p = SimulatedProvider("m", error_rate=np.float32(0.25), ttft_s=np.int64(1))
    assert p.error_rate == pytest.approx(0.25) and p.ttft_s == 1


def test_a_near_miss_of_a_priced_model_warns_that_it_would_be_free() -> None:
    import warnings

    from lumina_lab.providers import SimulatedProvider

    with pytest.warns(UserWarning, match=r"no list price for model 'gpt-4o-mni' \(did you mean 'gpt-4o-mini'\?\)"):
        typo = SimulatedProvider("gpt-4o-mni")
    assert typo.pricing.input_per_m == 0 and typo.pricing.output_per_m == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a name near no priced model (a self-hosted one) is free without a word
        assert SimulatedProvider("llama3:8b-instruct").pricing.input_per_m == 0
        SimulatedProvider("gpt-4o-mni", pricing={"input_per_m": 1.0, "output_per_m": 2.0})  # priced: no warning
