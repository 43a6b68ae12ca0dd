"""AI completion events: requests and their answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload

__all__ = [
    "EVENTS",
    "Attempt",
    "CompletionFailed",
    "CompletionRequested",
    "CompletionSucceeded",
    "Message",
]

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=400_000)]


class Message(Payload):
    """One chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: Text


class CompletionRequested(Payload):
    """Answer these messages with the first model of the chain that can."""

    # Bad requests (empty list, unknown model, negative max_tokens) are answered with
    # ai.completion.failed by the worker, so the bounds here stay loose on purpose.
    messages: Annotated[list[Message], Field(max_length=1_000)]
    system: Text | None = None
    models: Annotated[list[ModelName], Field(max_length=20)] | None = None
    max_tokens: Annotated[int, Field(le=1_000_000)] = 512
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.0
    seed: int | None = None
    tenant: Annotated[str, StringConstraints(max_length=128)] | None = None
    cache: bool | None = None
    deadline_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    max_cost_usd: Annotated[float, Field(ge=0, le=10_000)] | None = None


class Attempt(Payload):
    """One model considered while answering a request.

    ``outcome``: ``ok``; a failure kind (``server``, ``timeout``, ``connection``, ``malformed``,
    ``rate_limited``, ``auth``, ``context_length``, ``content_policy``, ``bad_request``); a skip
    (``skipped_quarantined``, ``skipped_disabled``, ``skipped_cooldown``,
    ``skipped_breaker_open``, ``skipped_busy``, ``skipped_window``, ``skipped_budget``,
    ``skipped_deadline``); or ``cache_hit``.
    """

    model: ModelName
    outcome: Annotated[str, StringConstraints(max_length=64)]
    latency_ms: Annotated[float, Field(ge=0)]
    detail: Annotated[str, StringConstraints(max_length=500)] = ""


class CompletionSucceeded(Payload):
    """The answer, which model gave it, and every attempt on the way.

    ``fallback_used`` is true only when another model failed earlier in this request (a model
    skipped without a call is not a failure). On a cache hit ``cached`` is true, ``model`` names
    the model that first answered and ``cost_usd`` is 0.
    """

    request_id: Name
    model: ModelName
    content: Text
    finish_reason: Annotated[str, StringConstraints(max_length=64)] | None = None
    input_tokens: Annotated[int, Field(ge=0)]
    output_tokens: Annotated[int, Field(ge=0)]
    cost_usd: Annotated[float, Field(ge=0)]
    cached: bool = False
    fallback_used: bool = False
    attempts: Annotated[list[Attempt], Field(max_length=50)] = []


class CompletionFailed(Payload):
    """No model could answer; ``reason`` says why, ``detail`` says it for people.

    ``reason``: ``bad_request`` (empty messages, max_tokens below 1), ``unknown_model``,
    ``no_models``, ``prompt_too_large`` (fits no model's window), ``over_budget`` (per request,
    per actor or global), ``content_policy``, ``deadline_exceeded``, ``all_models_failed``.
    """

    request_id: Name
    reason: Annotated[str, StringConstraints(max_length=64)]
    detail: Annotated[str, StringConstraints(max_length=2_000)] = ""
    attempts: Annotated[list[Attempt], Field(max_length=50)] = []


EVENTS: dict[str, type[Payload]] = {
    "ai.completion.requested": CompletionRequested,
    "ai.completion.succeeded": CompletionSucceeded,
    "ai.completion.failed": CompletionFailed,
}
