"""A simulated provider's draws: time to first token and output speed, each a distribution."""

from __future__ import annotations

import math
import statistics

import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import ChatRequest, SimulatedProvider

REQUEST = ChatRequest("hello", max_tokens=10_000)


def speeds(p: SimulatedProvider, n: int) -> list[float]:
    """Each answer's output speed: tokens over generation time (its duration less its first token)."""
    out = []
    for _ in range(n):
        s = p.sample(REQUEST)
        out.append(s.output_tokens / (s.duration_s - s.ttft_s))
    return out


def test_without_a_spread_every_call_runs_at_the_profiles_speed() -> None:
    assert set(map(round, speeds(SimulatedProvider("m", ttft_s=0.3, tokens_per_s=80), 500))) == {80}


def test_with_a_spread_speeds_are_lognormal_around_the_median() -> None:
    got = speeds(SimulatedProvider("m", ttft_s=0.3, tokens_per_s=80, tokens_per_s_sigma=0.4, seed=5), 4_000)
    assert statistics.median(got) == pytest.approx(80, rel=0.05)
    assert statistics.stdev(math.log(v) for v in got) == pytest.approx(0.4, rel=0.08)


def test_a_spread_of_speed_leaves_first_tokens_and_lengths_as_they_were() -> None:
    """The speed is one more draw after the others, so a profile without it draws what it always drew."""
    plain, spread = (
        SimulatedProvider("m", ttft_s=0.3, tokens_per_s=80, tokens_per_s_sigma=s, seed=9) for s in (0, 0.5)
    )
    first = plain.sample(REQUEST), spread.sample(REQUEST)
    assert first[0].ttft_s == first[1].ttft_s and first[0].output_tokens == first[1].output_tokens
    assert first[0].duration_s != first[1].duration_s


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_whole_answers_and_streams_draw_the_same_call(sigma: float) -> None:
    """``sample`` (whole answers, with its inlined fast path) and ``stream_sample`` make the same draws
    (the stream's last, whether it breaks, is where the whole answer draws its quality)."""
    whole, streamed = (
        SimulatedProvider("m", ttft_s=0.3, tokens_per_s=80, tokens_per_s_sigma=sigma, seed=2) for _ in range(2)
    )
    for _ in range(200):
        a, b = whole.sample(REQUEST), streamed.stream_sample(REQUEST)
        assert a.ttft_s == b.ttft_s and a.output_tokens == b.output_tokens
        assert a.duration_s == pytest.approx(b.ttft_s + b.per_token_s * b.output_tokens)


@pytest.mark.parametrize(
    "bad",
    [
        -0.1,
        float("nan"),
        float("inf"),
        pytest.param(True, marks=pytest.mark.wrong_type_message),
        pytest.param("wide", marks=pytest.mark.wrong_type_message),
    ],
)
def test_a_bad_spread_is_named(bad) -> None:
    with pytest.raises(ValidationError, match=r"tokens_per_s_sigma=.* must be a number >= 0"):
        SimulatedProvider("m", tokens_per_s=80, tokens_per_s_sigma=bad)


def test_a_clone_keeps_the_spread() -> None:
    p = SimulatedProvider("m", tokens_per_s=80, tokens_per_s_sigma=0.2)
    assert p.clone(p.clock).tokens_per_s_sigma == 0.2
