"""AI events: completion requests and their answers; operators switching a model off and on."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
)

from schemas.envelope import Name, Payload, ShortText

__all__ = [
    "EVENTS",
    "FINISH_REASONS",
    "Attempt",
    "CompletionFailed",
    "CompletionRequested",
    "CompletionSucceeded",
    "FinishReason",
    "FunctionCall",
    "FunctionChoice",
    "FunctionSpec",
    "JsonSchemaFormat",
    "Message",
    "ModelDisableRequested",
    "ModelDisabled",
    "ModelEnableRequested",
    "ModelEnabled",
    "ResponseFormat",
    "Tool",
    "ToolCall",
    "ToolChoice",
]

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=400_000)]
# Tool and schema names as OpenAI and Anthropic both accept them.
ToolName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w-]+$")]
CallId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_MAX_SCHEMA_BYTES = 64 * 1024


def _bounded_schema(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    if len(json.dumps(value, separators=(",", ":"))) > _MAX_SCHEMA_BYTES:
        raise ValueError(f"a JSON Schema may take at most {_MAX_SCHEMA_BYTES} bytes")
    return value


JsonSchema = Annotated[dict[str, JsonValue], AfterValidator(_bounded_schema)]


def _null_is_empty(value: object) -> object:
    return "" if value is None else value


# A message's text; null (an assistant turn that only calls tools, as OpenAI writes it) is "".
MessageText = Annotated[
    Text,
    BeforeValidator(_null_is_empty),
    WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 400_000}, {"type": "null"}]}),
]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "tool_calls", "content_filter")


class FunctionCall(Payload):
    """A function the model asked for: its name and its arguments as JSON text."""

    name: ToolName
    arguments: Text = "{}"


class ToolCall(Payload):
    """One tool call of an assistant message, in the Chat Completions shape."""

    id: CallId
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Payload):
    """One chat message.

    An ``assistant`` message may carry the ``tool_calls`` the model made (its ``content`` may
    then be empty); a ``tool`` message answers one of them and must name it in
    ``tool_call_id``.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: MessageText = ""
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] | None = None
    tool_call_id: CallId | None = None


class FunctionSpec(Payload):
    """A function the model may call; ``parameters`` is its arguments' JSON Schema."""

    name: ToolName
    description: Annotated[str, StringConstraints(max_length=4_000)] | None = None
    parameters: JsonSchema = {"type": "object", "properties": {}}
    strict: bool | None = None


class Tool(Payload):
    """A tool offered to the model (functions only)."""

    type: Literal["function"] = "function"
    function: FunctionSpec


class FunctionChoice(Payload):
    """Names the function a forced ``tool_choice`` calls."""

    name: ToolName


class ToolChoice(Payload):
    """``tool_choice`` forcing one function: ``{"type": "function", "function": {"name"}}``."""

    type: Literal["function"] = "function"
    function: FunctionChoice


class JsonSchemaFormat(Payload):
    """The JSON Schema an answer must follow (``response_format`` ``json_schema``)."""

    # ``schema`` on the wire; ``schema_`` in Python (BaseModel has a ``schema`` method).
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    name: ToolName
    description: Annotated[str, StringConstraints(max_length=4_000)] | None = None
    schema_: JsonSchema = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(Payload):
    """``text`` (the default), ``json_object`` (any JSON object) or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


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
    # The rest of the Chat Completions surface (all optional: older requests stay valid).
    stop: (
        Annotated[str, StringConstraints(min_length=1, max_length=200)]
        | Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=200)]],
            Field(max_length=4),
        ]
        | None
    ) = None
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoice | None = None


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
    the model that first answered and ``cost_usd`` is 0. ``finish_reason`` is one vocabulary
    for every provider (``stop``, ``length``, ``tool_calls``, ``content_filter``);
    ``finish_reason_raw`` is what the provider said (``end_turn``, ``max_tokens``...).
    ``tool_calls`` holds the calls the model asked for (``finish_reason`` ``tool_calls``).
    """

    request_id: Name
    model: ModelName
    content: Text
    finish_reason: FinishReason | None = None
    finish_reason_raw: Annotated[str, StringConstraints(max_length=64)] | None = None
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] = []
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


class ModelDisableRequested(Payload):
    """An operator takes a configured model out of every chain until it is enabled again
    (requests naming it skip it as ``skipped_disabled``)."""

    model: ModelName
    note: ShortText = ""


class ModelEnableRequested(Payload):
    """An operator puts a model back: its operator disable, authentication disable and
    cool-down are lifted (what ``POST /admin/ai/models/{model}/enable`` does)."""

    model: ModelName
    note: ShortText = ""


class ModelDisabled(Payload):
    """The answer to ``ai.model.disable.requested``: the model is disabled (``changed`` false:
    it already was); every ai_fallback replica honours it."""

    model: ModelName
    disabled_by: Name
    note: ShortText = ""
    changed: bool


class ModelEnabled(Payload):
    """The answer to ``ai.model.enable.requested``: nothing keeps the model out any more
    (``lifted`` false: nothing did)."""

    model: ModelName
    enabled_by: Name
    note: ShortText = ""
    lifted: bool


EVENTS: dict[str, type[Payload]] = {
    "ai.completion.requested": CompletionRequested,
    "ai.completion.succeeded": CompletionSucceeded,
    "ai.completion.failed": CompletionFailed,
    "ai.model.disable.requested": ModelDisableRequested,
    "ai.model.enable.requested": ModelEnableRequested,
    "ai.model.disabled": ModelDisabled,
    "ai.model.enabled": ModelEnabled,
}
