"""``SimulatedProvider``: a provider with latency, throughput, error, rate-limit and quality profiles.

Deterministic under a seed, and clock-agnostic: on a :class:`~lumina_lab.clock.ManualClock`
it answers in simulated time; with zero latency it answers without sleeping
at all (used to measure router overhead).
"""

from __future__ import annotations

import asyncio
import copy
import math
import random
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from numbers import Real
from typing import Any, Final

from mypy_extensions import mypyc_attr

from ..clock import WALL, Clock
from ..errors import ProviderError, ProviderTimeout, ProviderUnavailable, RateLimited, ValidationError, shown
from .base import BaseProvider
from .cost import estimate_tokens
from .messages import ChatRequest, ChatResponse, StreamChunk, Usage

__all__ = ["Sample", "SimulatedProvider", "StreamSample"]

# Final: a compiled build reads these as C constants, and calls math.* as C functions (not through a name)
_TWOPI: Final = 2.0 * math.pi  # as random.TWOPI
_RANDOM: Final = random.Random

_WORDS = ("the", "model", "answers", "with", "a", "plausible", "simulated", "sentence", "about", "your", "request")


@dataclass(slots=True, init=False)
class Sample:
    """One drawn call: an error (raised after ``fail_after_s``) or an answer taking ``duration_s``."""

    error: ProviderError | None
    fail_after_s: float
    ttft_s: float
    duration_s: float
    input_tokens: int
    output_tokens: int
    quality_ok: bool

    def __init__(  # written out: a compiled build compiles it (dataclass-made ones stay interpreted)
        self,
        error: ProviderError | None,
        fail_after_s: float,
        ttft_s: float = 0.0,
        duration_s: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        quality_ok: bool = True,
    ) -> None:
        self.error = error
        self.fail_after_s = fail_after_s
        self.ttft_s = ttft_s
        self.duration_s = duration_s
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.quality_ok = quality_ok


@dataclass(slots=True)
class StreamSample:
    """One drawn streamed call: an error before the first chunk (after ``fail_after_s``), or an answer.

    The answer's first chunk comes ``ttft_s`` after the call starts and each further one
    ``per_token_s`` later; the final chunk (with the usage) follows the last word at once.
    If ``breaks_at`` is set the stream raises ``StreamBroken`` when chunk ``breaks_at`` is
    asked for, right after chunk ``breaks_at - 1`` (so ``breaks_at`` words were received).
    """

    error: ProviderError | None
    fail_after_s: float
    ttft_s: float = 0.0
    per_token_s: float = 0.0
    output_tokens: int = 0
    breaks_at: int | None = None
    words_from: int = 0  # the provider's call count when drawn: where the answer's words start


def check_degradation(latency_factor: Any, error_rate: Any, timeout_rate: float = 0.0, *, owner: str = "") -> None:
    """Raise a :class:`~lumina_lab.errors.ValidationError` unless ``latency_factor`` is a finite number > 0
    and ``error_rate`` None or a share in [0, 1] that leaves room for ``timeout_rate``."""
    if (
        isinstance(latency_factor, bool)
        or not isinstance(latency_factor, Real)
        or not math.isfinite(float(latency_factor))
        or float(latency_factor) <= 0
    ):
        raise ValidationError(
            f"{owner}latency_factor={shown(latency_factor)} must be a number > 0 (3 is three times slower)",
            input=latency_factor,
            hint="e.g. latency_factor=3",
        )
    if error_rate is None:
        return
    if isinstance(error_rate, bool) or not isinstance(error_rate, Real) or not 0 <= float(error_rate) <= 1:
        raise ValidationError(
            f"{owner}error_rate={shown(error_rate)} must be a share in [0, 1] (or None to keep the profile's)",
            input=error_rate,
            hint="e.g. error_rate=0.3",
        )
    if float(error_rate) + timeout_rate > 1:
        raise ValidationError(
            f"{owner}error_rate {error_rate:g} + the profile's timeout_rate {timeout_rate:g} > 1",
            input=error_rate,
            hint="the two are shares of the same calls: together at most 1",
        )


@mypyc_attr(allow_interpreted_subclasses=True)  # profiles with hooks subclass it
class SimulatedProvider(BaseProvider):
    """A provider whose behaviour is drawn from distributions.

    Args:
        model: model name (list prices are looked up in the shipped snapshot).
        ttft_s: median time to first token (lognormal with spread ``ttft_sigma``).
        tokens_per_s: output speed (the median, lognormal with spread ``tokens_per_s_sigma``).
        tokens_per_s_sigma: spread of each call's output speed (0: every call at ``tokens_per_s``).
        output_tokens: median answer length (lognormal, capped by ``max_tokens``).
        error_rate: probability of a 5xx-like failure (``ProviderUnavailable``).
        timeout_rate: probability the call hangs until the caller's timeout
            (raises ``ProviderTimeout`` after ``hang_s``).
        break_rate: probability a stream stops mid-answer (``StreamBroken``).
        rpm: requests per minute before ``RateLimited`` (with ``retry_after``).
        quality: probability an answer is "good" (reported in ``metadata["quality_ok"]``).
        down: when True every call fails (toggle at run time to simulate outages; :meth:`degrade`
            slows it down or makes it fail more instead).
        seed: makes every draw reproducible.
        clock: time source (wall clock by default).
    """

    def __init__(
        self,
        model: str = "simulated",
        *,
        id: str | None = None,
        ttft_s: float = 0.0,
        ttft_sigma: float = 0.3,
        tokens_per_s: float = 0.0,
        tokens_per_s_sigma: float = 0.0,
        output_tokens: int = 64,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        break_rate: float = 0.0,
        hang_s: float = 30.0,
        rpm: int | None = None,
        quality: float = 1.0,
        down: bool = False,
        seed: int | None = 0,
        clock: Clock = WALL,
        **declaration: Any,
    ) -> None:
        unknown = sorted(set(declaration) - {"capabilities", "pricing", "limits"})
        if unknown:
            raise TypeError(f"SimulatedProvider() got unexpected keyword argument(s) {unknown}")
        super().__init__(  # the declaration spelt out: a compiled build mishandles ** into keyword-only arguments
            model,
            id=id,
            capabilities=declaration.get("capabilities"),
            pricing=declaration.get("pricing"),
            limits=declaration.get("limits"),
        )
        for name, rate in (
            ("error_rate", error_rate),
            ("timeout_rate", timeout_rate),
            ("break_rate", break_rate),
            ("quality", quality),
        ):
            if isinstance(rate, bool) or not isinstance(rate, Real) or not 0 <= rate <= 1:
                raise ValidationError(
                    f"{name}={shown(rate)} must be a share in [0, 1]", input=rate, hint=f"e.g. {name}=0.02"
                )
        if error_rate + timeout_rate > 1:
            raise ValidationError(
                f"error_rate + timeout_rate = {error_rate + timeout_rate:g} > 1",
                input=(error_rate, timeout_rate),
                hint="the two are shares of the same calls: together at most 1",
            )
        for name, value in (
            ("ttft_s", ttft_s),
            ("tokens_per_s", tokens_per_s),
            ("tokens_per_s_sigma", tokens_per_s_sigma),
            ("hang_s", hang_s),
        ):
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= float(value) < math.inf:
                raise ValidationError(f"{name}={shown(value)} must be a number >= 0", input=value)
        self.ttft_s = ttft_s
        self.ttft_sigma = ttft_sigma
        self.tokens_per_s = tokens_per_s
        self.tokens_per_s_sigma = tokens_per_s_sigma
        self.output_tokens = output_tokens
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.break_rate = break_rate
        self.hang_s = hang_s
        self.rpm = rpm
        self.quality = quality
        self.down = down
        self.clock = clock
        self.rng = random.Random(seed)
        self.calls = 0
        self.inflight = 0
        self.cancelled = 0
        self._recent: deque[float] = deque()
        self._answers: dict[int, str] = {}
        self._profile: tuple[float, float, float] | None = None  # (ttft_s, tokens_per_s, error_rate) while degraded

    # ------------------------------------------------------------------ degradation
    def degrade(self, latency_factor: float = 1.0, error_rate: float | None = None) -> None:
        """Run ``latency_factor`` times slower (time to first token x factor, tokens/s / factor) and fail
        with ``error_rate`` in place of the profile's (None keeps it), until :meth:`restore`.

        Always relative to the profile this provider was made with: degrading again replaces the
        degradation, it does not stack.  The routing lab schedules it with
        :class:`~lumina_lab.sim.engine.Degradation`.

        >>> p = SimulatedProvider("gpt-4.1-mini", ttft_s=0.4, tokens_per_s=100)
        >>> p.degrade(3.0, error_rate=0.2); (p.ttft_s, p.tokens_per_s, p.error_rate)
        (1.2000000000000002, 33.333333333333336, 0.2)
        >>> p.restore(); (p.ttft_s, p.tokens_per_s, p.error_rate)
        (0.4, 100, 0.0)
        """
        check_degradation(latency_factor, error_rate, self.timeout_rate, owner=f"{self.id}: ")
        profile = self._profile
        if profile is None:
            profile = self._profile = (self.ttft_s, self.tokens_per_s, self.error_rate)
        self.ttft_s = profile[0] * latency_factor
        self.tokens_per_s = profile[1] / latency_factor
        self.error_rate = profile[2] if error_rate is None else error_rate

    def restore(self) -> None:
        """End a :meth:`degrade`: the profile's latency and error rate again (nothing if not degraded)."""
        profile = self._profile
        if profile is not None:
            self.ttft_s, self.tokens_per_s, self.error_rate = profile
            self._profile = None

    @property
    def degraded(self) -> bool:
        """Whether :meth:`degrade` is in effect."""
        return self._profile is not None

    def clone(self, clock: Clock) -> SimulatedProvider:
        """A copy of this profile on ``clock`` with state of its own (random draws, counters, outage flag,
        RPM window): what :meth:`RoutingLab.build <lumina_lab.sim.engine.RoutingLab.build>` replays."""
        if type(self) is not SimulatedProvider:  # a subclass may hold more: copy everything it has
            q = copy.copy(self)
            q.__dict__.update({k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "clock"})
            q.clock = clock
            return q
        q = SimulatedProvider(
            self.model,
            id=self.id,
            ttft_s=self.ttft_s,
            ttft_sigma=self.ttft_sigma,
            tokens_per_s=self.tokens_per_s,
            tokens_per_s_sigma=self.tokens_per_s_sigma,
            output_tokens=self.output_tokens,
            error_rate=self.error_rate,
            timeout_rate=self.timeout_rate,
            break_rate=self.break_rate,
            hang_s=self.hang_s,
            rpm=self.rpm,
            quality=self.quality,
            down=self.down,
            clock=clock,
            capabilities=self.capabilities,
            pricing=self.pricing,
            limits=self.limits,
        )
        q.rng.setstate(self.rng.getstate())
        q.calls, q.inflight, q.cancelled = self.calls, self.inflight, self.cancelled
        q._recent = deque(self._recent)
        q._answers = dict(self._answers)
        q._profile = self._profile  # a degraded profile's copy is degraded too, and restores to the profile
        return q

    # ------------------------------------------------------------------ draws
    def _draw(self, request: ChatRequest) -> tuple[float, int, float]:
        rng = self.rng
        ttft_s = self.ttft_s
        if type(rng) is _RANDOM:  # rng.gauss() inlined (same draws, same arithmetic): twice per call
            z: float | None = rng.gauss_next  # type: ignore[attr-defined]
            z2: float | None  # None is a real value here: a compiled build must not take these for floats
            if ttft_s > 0:
                if z is None:  # one pair of uniforms gives both normals
                    x2pi = rng.random() * _TWOPI
                    g2rad = math.sqrt(-2.0 * math.log(1.0 - rng.random()))
                    z = math.cos(x2pi) * g2rad
                    z2 = math.sin(x2pi) * g2rad
                else:
                    x2pi = rng.random() * _TWOPI
                    g2rad = math.sqrt(-2.0 * math.log(1.0 - rng.random()))
                    z2 = math.cos(x2pi) * g2rad
                    rng.gauss_next = math.sin(x2pi) * g2rad  # type: ignore[attr-defined]
                ttft = ttft_s * math.exp(0 + z * self.ttft_sigma)
            else:
                ttft = 0.0
                z2 = z
                if z2 is None:
                    x2pi = rng.random() * _TWOPI
                    g2rad = math.sqrt(-2.0 * math.log(1.0 - rng.random()))
                    z2 = math.cos(x2pi) * g2rad
                    rng.gauss_next = math.sin(x2pi) * g2rad  # type: ignore[attr-defined]
                else:
                    rng.gauss_next = None  # type: ignore[attr-defined]
            n_out = int(self.output_tokens * math.exp(0 + z2 * 0.3))
            if n_out < 1:  # max(1, n_out) without the call
                n_out = 1
        else:
            gauss = rng.gauss
            ttft = ttft_s * math.exp(gauss(0, self.ttft_sigma)) if ttft_s > 0 else 0.0
            n_out = max(1, int(self.output_tokens * math.exp(gauss(0, 0.3))))
        max_tokens = request.max_tokens
        if max_tokens and max_tokens < n_out:  # min(n_out, max_tokens) without the call
            n_out = max_tokens
        tps = self.tokens_per_s
        if tps > 0 and self.tokens_per_s_sigma > 0:  # this call's speed: one more draw, only with a spread
            tps *= math.exp(rng.gauss(0, self.tokens_per_s_sigma))
        gen = n_out / tps if tps > 0 else 0.0
        return ttft, n_out, gen

    def _admit(self) -> None:
        self.calls += 1
        if self.down:
            raise ProviderUnavailable(f"{self.id} is down (simulated outage)", provider=self.id, status=503)
        if self.rpm is not None:
            now = self.clock.now()
            while self._recent and now - self._recent[0] >= 60.0:
                self._recent.popleft()
            if len(self._recent) >= self.rpm:
                retry_after = 60.0 - (now - self._recent[0])
                raise RateLimited(
                    f"{self.id}: rate limit of {self.rpm} requests/min reached (simulated)",
                    provider=self.id,
                    status=429,
                    retry_after=retry_after,
                )
            self._recent.append(now)

    def _stream_draws(self, request: ChatRequest) -> StreamSample:
        """A streamed call's draws, after admission (the order the live stream makes them in)."""
        rng = self.rng
        r = rng.random()
        if r < self.error_rate:
            return StreamSample(
                ProviderUnavailable(f"{self.id}: simulated server error", provider=self.id, status=500), 0.0
            )
        if r < self.error_rate + self.timeout_rate:
            return StreamSample(
                ProviderTimeout(f"{self.id}: no answer within {self.hang_s}s (simulated)", provider=self.id),
                self.hang_s,
            )
        ttft, n_out, gen = self._draw(request)
        breaks_at = rng.randrange(1, n_out) if n_out > 1 and rng.random() < self.break_rate else None
        return StreamSample(None, 0.0, ttft, gen / n_out if n_out else 0.0, n_out, breaks_at, self.calls)

    def stream_words(self, s: StreamSample, n: int | None = None) -> list[str]:
        """The first ``n`` words (chunk texts) of a streamed answer (all of them by default)."""
        k = s.words_from
        return [_WORDS[(i * 7 + k) % len(_WORDS)] + " " for i in range(s.output_tokens if n is None else n)]

    def _answer(self, n: int) -> str:
        text = self._answers.get(n)
        if text is None:
            text = self._answers[n] = " ".join(_WORDS[(i * 7) % len(_WORDS)] for i in range(n))
        return text

    # ------------------------------------------------------------------ sampling
    def sample(self, request: ChatRequest) -> Sample:
        """Draw what this call will do, without waiting: the live path sleeps it out, the routing lab schedules it.

        Counts the call (``calls``) and applies the outage and RPM state at the clock's current time.
        """
        if self.down or self.rpm is not None:
            try:
                self._admit()
            except ProviderError as exc:
                return Sample(exc, 0.0)
        else:
            self.calls += 1  # all that _admit() does without an outage or an RPM window (saves a call)
        rng = self.rng
        r = rng.random()
        if r < self.error_rate:
            return Sample(ProviderUnavailable(f"{self.id}: simulated server error", provider=self.id, status=500), 0.0)
        if r < self.error_rate + self.timeout_rate:
            return Sample(
                ProviderTimeout(f"{self.id}: no answer within {self.hang_s}s (simulated)", provider=self.id),
                self.hang_s,
            )
        ttft_s = self.ttft_s
        if ttft_s > 0 and type(rng) is _RANDOM and rng.gauss_next is None:  # type: ignore[attr-defined]
            # _draw() written out for its usual case (the same draws and arithmetic): once per call
            x2pi = rng.random() * _TWOPI
            g2rad = math.sqrt(-2.0 * math.log(1.0 - rng.random()))
            ttft = ttft_s * math.exp(0 + math.cos(x2pi) * g2rad * self.ttft_sigma)
            n_out = int(self.output_tokens * math.exp(0 + math.sin(x2pi) * g2rad * 0.3))
            if n_out < 1:
                n_out = 1
            max_tokens = request.max_tokens
            if max_tokens and max_tokens < n_out:
                n_out = max_tokens
            tps = self.tokens_per_s
            if tps > 0 and self.tokens_per_s_sigma > 0:  # as in _draw()
                tps *= math.exp(rng.gauss(0, self.tokens_per_s_sigma))
            gen = n_out / tps if tps > 0 else 0.0
        else:
            ttft, n_out, gen = self._draw(request)
        ok = rng.random() < self.quality
        n_in = request.input_tokens
        return Sample(None, 0.0, ttft, ttft + gen, estimate_tokens(request) if n_in is None else n_in, n_out, ok)

    def response(self, request: ChatRequest, s: Sample, latency_s: float) -> ChatResponse:
        """The answer of a successful sample."""
        return ChatResponse(
            text=self._answer(s.output_tokens),
            provider=self.id,
            model=self.model,
            usage=Usage(s.input_tokens, s.output_tokens),
            cost_usd=self.pricing.cost(s.input_tokens, s.output_tokens),
            latency_s=latency_s,
            ttft_s=s.ttft_s,
            request_id=request.id,
            metadata={"quality_ok": s.quality_ok},
        )

    def stream_sample(self, request: ChatRequest) -> StreamSample:
        """Draw what a streamed call will do, without waiting (as :meth:`sample` does for whole answers).

        The live :meth:`astream` makes the same draws in the same order and sleeps them out.
        """
        try:
            self._admit()
        except ProviderError as exc:
            return StreamSample(exc, 0.0)
        return self._stream_draws(request)

    # ------------------------------------------------------------------ protocol
    async def ainvoke(self, request: ChatRequest) -> ChatResponse:
        s = self.sample(request)
        self.inflight += 1
        start = self.clock.now()
        try:
            if s.error is not None:
                if s.fail_after_s > 0:
                    await self.clock.sleep(s.fail_after_s)
                raise s.error
            if s.duration_s > 0:
                await self.clock.sleep(s.duration_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1
        return self.response(request, s, self.clock.now() - start)

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Stream the answer word by word on this provider's clock (nothing runs until the first chunk is
        asked for; see :func:`~lumina_lab.providers.streaming.simulated_stream`)."""
        from .streaming import simulated_stream

        return simulated_stream(self, request)

