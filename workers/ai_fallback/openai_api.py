"""The OpenAI Chat Completions wire format: a :class:`ChatRequest` as a body, a body as a reply.

The event already speaks this vocabulary, so the request passes through nearly as is: the
system prompt as the first message, ``tool_calls`` on assistant turns and ``tool_call_id`` on
tool results, ``stop``, ``top_p``, ``response_format`` and ``tools``/``tool_choice`` when set.
A reasoning model gets ``max_completion_tokens`` (it refuses ``max_tokens``) and no sampling
knobs; every other model gets ``max_tokens``, which every OpenAI-compatible server knows.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.ai import FinishReason, Message, ToolCall
from workers.ai_fallback.wire import (
    ChatRequest,
    ModelFailureError,
    ProviderRefusedError,
    ProviderReply,
    normalise_finish,
    token_count,
)

__all__ = ["FINISH", "openai_body", "openai_reply"]

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the pre-tools name of the same thing
    "content_filter": "content_filter",
}


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [call.model_dump(mode="json") for call in message.tool_calls]
        if not message.content:
            out["content"] = None  # an assistant turn that only called tools
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    return out


def openai_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of ``POST {endpoint}/chat/completions``."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [_message(m) for m in request.messages]
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": False}
    if request.reasoning:
        body["max_completion_tokens"] = request.max_tokens
    else:
        body["max_tokens"] = request.max_tokens
        body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.response_format is not None:
        body["response_format"] = request.response_format.model_dump(
            mode="json", exclude_none=True
        )
    if request.tools:  # tool_choice without tools is refused by the API: it goes with them
        body["tools"] = [tool.model_dump(mode="json", exclude_none=True) for tool in request.tools]
        if isinstance(request.tool_choice, str):
            body["tool_choice"] = request.tool_choice
        elif request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice.model_dump(mode="json")
    return body


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    raw = message.get("tool_calls")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ModelFailureError("malformed", "tool_calls is not a list")
    try:
        return tuple(ToolCall.model_validate(call) for call in raw)
    except ValidationError as error:
        raise ModelFailureError("malformed", f"bad tool call: {error.errors()[0]['msg']}") from None


def openai_reply(data: dict[str, Any], usage: dict[str, Any]) -> ProviderReply:
    """The reply in ``data`` (a Chat Completions response); raise on refusals and junk."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelFailureError("malformed", "empty choice list")
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        raise ProviderRefusedError("content_policy", "finish_reason content_filter")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ModelFailureError("malformed", "choice without a message")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        raise ProviderRefusedError("content_policy", f"refusal: {refusal[:200]}")
    calls = _tool_calls(message)
    content = message.get("content")
    if content is None and calls:
        content = ""
    if not isinstance(content, str):
        raise ModelFailureError("malformed", "choice without text content")
    normal, raw = normalise_finish(finish, FINISH, tool_calls=bool(calls))
    return ProviderReply(
        content=content,
        finish_reason=normal,
        finish_reason_raw=raw,
        tool_calls=calls,
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
    )
