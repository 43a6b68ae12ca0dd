"""Walk one request down its chain of models until one answers.

For each model, in order: skip it when quarantined, disabled, cooling down, its breaker is
open, its window cannot hold the prompt plus the output allowance with headroom, or its worst
case costs more than the request may spend; otherwise call it under its guard with what is left
of the request's deadline. Every model considered becomes an :class:`~schemas.ai.Attempt`.
``fallback_used`` is true only when a model in this request actually failed before the one that
answered. No lock or concurrency slot is held across the walk: each call takes and frees its
own model's slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from common.config import AiFallbackSettings
from common.logging import get_logger
from common.metrics import AiFallbackMetrics
from common.quarantine_view import QuarantineView
from common.reliability.errors import BulkheadFull, CircuitOpen
from schemas.ai import Attempt, CompletionRequested
from workers.ai_fallback.calls import ModelCalls
from workers.ai_fallback.chain import Model
from workers.ai_fallback.health import HealthBook
from workers.ai_fallback.providers import (
    ChatRequest,
    ModelFailureError,
    ProviderError,
    ProviderReply,
    client_for,
)
from workers.ai_fallback.tokens import TokenCounter
from workers.ai_fallback.usage import reconcile

__all__ = ["PromptSizes", "Walk", "Walker"]

# Tokens of the request's prompt per encoding ("cl100k" always, "o200k" when a model needs it).
PromptSizes = Mapping[str, int]

_log = get_logger("eventguard.ai_fallback")
AuthAlert = Callable[[Model, str], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Walk:
    """What walking the chain produced."""

    attempts: list[Attempt] = field(default_factory=list)
    reply: ProviderReply | None = None
    model: Model | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    fallback_used: bool = False
    failure: str = "all_models_failed"
    detail: str = ""


@dataclass
class _State:
    walk: Walk
    min_window: int = 0  # a context-length error here: only larger windows may follow
    failed: tuple[str, str] | None = None  # (model, reason) of the last real failure
    failed_models: set[str] = field(default_factory=set)


class Walker:
    """Walks chains; shared by every request of one worker."""

    def __init__(
        self,
        *,
        models: dict[str, Model],
        settings: AiFallbackSettings,
        health: HealthBook,
        calls: ModelCalls,
        counter: TokenCounter,
        quarantine: QuarantineView,
        metrics: AiFallbackMetrics,
        session: Callable[[], aiohttp.ClientSession],
        on_auth_failure: AuthAlert,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.models = models
        self._s = settings
        self.health = health
        self.calls = calls
        self.counter = counter
        self.quarantine = quarantine
        self._m = metrics
        self._session = session
        self._on_auth = on_auth_failure
        self._monotonic = monotonic
        self._sleep = sleep

    # -- planning (no I/O) -------------------------------------------------------------------

    def output_allowance(self, model: Model, max_tokens: int) -> int:
        """The output tokens asked of ``model``: the request's, capped by its max output."""
        return min(max_tokens, model.spec.max_output)

    def prompt_tokens(self, model: Model, sizes: PromptSizes) -> int:
        """The prompt size to plan with for ``model``: exact in its encoding, else estimated."""
        if model.encoding is not None:
            return sizes[model.encoding]
        return self.counter.for_model(model.name, sizes["cl100k"], exact=False)

    def fits(self, model: Model, sizes: PromptSizes, max_tokens: int) -> bool:
        """True when the prompt and the output allowance fit the window with headroom."""
        need = self.prompt_tokens(model, sizes) + self.output_allowance(model, max_tokens)
        return need + self._s.context_headroom_tokens <= model.spec.context_window

    def worst_cost(self, model: Model, sizes: PromptSizes, max_tokens: int) -> float:
        """What a call to ``model`` may cost at most."""
        return model.cost(
            self.prompt_tokens(model, sizes), self.output_allowance(model, max_tokens)
        )

    def state_of(self, model: Model) -> int:
        """The model-state gauge value now."""
        return int(
            self.health.state(
                model.name,
                breaker_open=self.calls.is_open(model),
                quarantined=self.quarantine.is_quarantined("ai_model", model.name),
            )
        )

    def publish_state(self, model: Model) -> None:
        """Bind the model-state gauge to the model's state, read at every scrape.

        The state changes without traffic (a cool-down or an open breaker ends on its own), so
        the gauge is computed when Prometheus reads it, never left at a value set earlier.
        """
        self._m.model_state.labels(model.name).set_function(lambda: float(self.state_of(model)))

    # -- the walk ----------------------------------------------------------------------------

    async def run(
        self,
        request: CompletionRequested,
        chain: list[Model],
        sizes: PromptSizes,
        deadline: float,
        max_cost_usd: float | None,
    ) -> Walk:
        """Try ``chain`` in order until a model answers or the deadline passes."""
        state = _State(Walk())
        for model in chain:
            skip = self._skip_reason(model, request, sizes, state, max_cost_usd)
            if skip is not None:
                self._record(state.walk, model, skip, 0.0, "")
                continue
            if deadline - self._monotonic() <= 0:
                self._record(state.walk, model, "skipped_deadline", 0.0, "deadline passed")
                state.walk.failure = "deadline_exceeded"
                break
            done = await self._try(model, request, sizes, deadline, state)
            if done:
                break
        return state.walk

    def _skip_reason(
        self,
        model: Model,
        request: CompletionRequested,
        sizes: PromptSizes,
        state: _State,
        max_cost_usd: float | None,
    ) -> str | None:
        if self.quarantine.is_quarantined("ai_model", model.name):
            return "skipped_quarantined"
        if self.health.health[model.name].out:
            return "skipped_disabled"
        if self.health.cooling(model.name) > 0:
            return "skipped_cooldown"
        if model.spec.context_window <= state.min_window:
            return "skipped_window"
        if not self.fits(model, sizes, request.max_tokens):
            return "skipped_window"
        if max_cost_usd is not None and self.worst_cost(model, sizes, request.max_tokens) > (
            max_cost_usd
        ):
            return "skipped_budget"
        if self.calls.is_open(model):
            return "skipped_breaker_open"
        return None

    async def _try(
        self,
        model: Model,
        request: CompletionRequested,
        sizes: PromptSizes,
        deadline: float,
        state: _State,
    ) -> bool:
        """Call ``model`` (again after a short Retry-After); True when the walk must stop."""
        walk = state.walk
        waited = False
        if state.failed is not None and state.failed[0] != model.name:
            self._m.fallbacks.labels(state.failed[0], model.name, state.failed[1]).inc()
        while True:
            started = self._monotonic()
            try:
                reply = await self._call(model, request, deadline - started)
            except (CircuitOpen, BulkheadFull) as refused:
                # The guard refused without calling: a skip, not a failure of this request.
                outcome = (
                    "skipped_breaker_open" if isinstance(refused, CircuitOpen) else "skipped_busy"
                )
                self._record(walk, model, outcome, self._monotonic() - started, str(refused))
                return False
            except ProviderError as error:
                error.detail = _scrub(error.detail, model.key)
                latency = self._monotonic() - started
                outcome = error.kind
                self._record(walk, model, outcome, latency, error.detail)
                retry_in = await self._after_error(model, error, deadline, waited, state)
                if retry_in is None:
                    return outcome == "content_policy" and self._s.on_content_policy == "fail"
                waited = True
                await self._sleep(retry_in)
                continue
            latency = self._monotonic() - started
            self._answered(
                model=model,
                sizes=sizes,
                allowance=self.output_allowance(model, request.max_tokens),
                reply=reply,
                latency=latency,
                walk=walk,
                state=state,
            )
            return True

    async def _call(
        self, model: Model, request: CompletionRequested, remaining: float
    ) -> ProviderReply:
        if remaining <= 0:
            raise ModelFailureError("timeout", "deadline passed")
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
        chat = ChatRequest(
            model=model.provider_model,
            messages=request.messages,
            system=request.system,
            max_tokens=self.output_allowance(model, request.max_tokens),
            temperature=request.temperature,
            seed=request.seed,
            stop=stop,
            top_p=request.top_p,
            response_format=request.response_format,
            tools=tuple(request.tools or ()),
            tool_choice=request.tool_choice,
            reasoning=model.reasoning,
        )
        client, session = client_for(model.spec.provider), self._session()
        timeout = min(remaining, model.spec.timeout_s)
        try:
            return await self.calls.run(
                model,
                lambda: client.complete(session, model.spec.endpoint, model.key, chat),
                timeout,
            )
        except TimeoutError:
            raise ModelFailureError("timeout", f"no answer within {timeout:.3f}s") from None

    async def _after_error(
        self, model: Model, error: ProviderError, deadline: float, waited: bool, state: _State
    ) -> float | None:
        """Handle a failed call; seconds to wait before calling this model again, or None."""
        walk, name = state.walk, model.name
        kind = error.kind
        walk.detail = f"{name}: {error.detail}"
        if kind == "rate_limited":
            delay = error.retry_after
            cooldown = delay if delay is not None else self._s.default_cooldown_s
            await self.health.cool_down(name, cooldown, f"rate limited (HTTP {error.status})")
            remaining = deadline - self._monotonic()
            if (
                not waited
                and delay is not None
                and delay <= self._s.retry_after_cap_s
                and delay < remaining
            ):
                return delay
        elif kind == "auth":
            await self.health.disable(name)
            await self._on_auth(model, error.detail)
        elif kind == "context_length":
            state.min_window = max(state.min_window, model.spec.context_window)
        elif kind == "content_policy" and self._s.on_content_policy == "fail":
            walk.failure = "content_policy"
        model_fault = isinstance(error, ModelFailureError)
        self.health.observe(name, ok=not model_fault, latency_s=None)
        self.publish_state(model)
        state.failed = (name, kind)
        state.failed_models.add(name)
        if kind == "timeout" and deadline - self._monotonic() <= 0:
            walk.failure = "deadline_exceeded"
        _log.info("ai.attempt_failed", model=name, kind=kind, status=error.status)
        return None

    def _answered(
        self,
        *,
        model: Model,
        sizes: PromptSizes,
        allowance: int,
        reply: ProviderReply,
        latency: float,
        walk: Walk,
        state: _State,
    ) -> None:
        planned_in = self.prompt_tokens(model, sizes)
        written = reply.content + "".join(
            c.function.name + c.function.arguments for c in reply.tool_calls
        )
        usage = reconcile(
            reply,
            planned_input=planned_in,
            allowance=allowance,
            counted_output=self.counter.count_text(written, model.encoding or "cl100k"),
        )
        for flag in usage.impossible:
            self._m.usage_impossible.labels(model.name, flag.field).inc()
            _log.warning(
                "ai.usage_impossible",
                model=model.name,
                field=flag.field,
                reported=flag.reported,
                limit=flag.limit,
                billed=flag.billed,
            )
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        trusted_input = not any(f.field == "input" for f in usage.impossible)
        if reply.input_tokens is not None and not model.exact_tokens and trusted_input:
            self.counter.observe(model.name, sizes["cl100k"], reply.input_tokens)
        walk.reply, walk.model = reply, model
        walk.input_tokens, walk.output_tokens = input_tokens, output_tokens
        walk.cost_usd = model.cost(input_tokens, output_tokens)
        walk.fallback_used = bool(state.failed_models - {model.name})
        self.health.observe(model.name, ok=True, latency_s=latency)
        self.publish_state(model)
        self._record(walk, model, "ok", latency, "")
        m = self._m
        m.tokens.labels(model.name, "input").inc(input_tokens)
        m.tokens.labels(model.name, "output").inc(output_tokens)
        m.cost.labels(model.name).inc(walk.cost_usd)

    def _record(
        self, walk: Walk, model: Model, outcome: str, latency_s: float, detail: str
    ) -> None:
        walk.attempts.append(
            Attempt(
                model=model.name,
                outcome=outcome,
                latency_ms=round(latency_s * 1000, 3),
                detail=detail[:500],
            )
        )
        self._m.attempts.labels(model.name, outcome).inc()
        if not outcome.startswith("skipped"):
            self._m.attempt_latency.labels(model.name, outcome).observe(latency_s)


def _scrub(text: str, key: str | None) -> str:
    """``text`` without the model's key (providers sometimes echo part of it back)."""
    if not key:
        return text
    text = text.replace(key, "[redacted]")
    return text.replace(key[-8:], "[redacted]") if len(key) >= 16 else text
