"""The Anthropic Messages wire format, translated from and to the Chat Completions vocabulary.

* System messages (and the request's ``system``) join the top-level ``system`` prompt.
* An assistant turn's ``tool_calls`` become ``tool_use`` blocks (arguments parsed to ``input``);
  a ``tool`` message becomes a ``tool_result`` block in a user turn; consecutive turns of one
  role are merged, as the API wants the results of one assistant turn in one user turn.
* ``stop`` becomes ``stop_sequences``; ``tools`` become ``{name, description, input_schema}``;
  ``tool_choice`` ``auto``/``required``/``none``/a function becomes ``auto``/``any``/``none``/
  ``tool``. ``temperature`` is capped at 1, the API's maximum.
* JSON output (``response_format`` ``json_object`` or ``json_schema``) has no Anthropic switch:
  the model is given one more tool, :data:`JSON_TOOL`, whose input schema is the requested
  schema (any object for ``json_object``), and is made to call it when the request offers no
  tools of its own; the call's input comes back as the answer's content, a JSON text, with
  ``finish_reason`` ``stop``.
* The reply's text blocks join into ``content``; ``tool_use`` blocks become ``tool_calls``;
  ``stop_reason`` is normalised (``end_turn``/``stop_sequence`` -> ``stop``, ``max_tokens`` ->
  ``length``, ``tool_use`` -> ``tool_calls``, ``refusal`` -> ``content_filter``).
"""

from __future__ import annotations

import json
from typing import Any

from schemas.ai import FinishReason, FunctionCall, Message, ToolCall
from workers.ai_fallback.wire import (
    ChatRequest,
    ModelFailureError,
    ProviderRefusedError,
    ProviderReply,
    normalise_finish,
    token_count,
)

__all__ = ["FINISH", "JSON_TOOL", "anthropic_body", "anthropic_reply"]

JSON_TOOL = "eventguard_json_answer"
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.function.arguments or "{}")
    except ValueError:
        return {}  # the worker refuses such a request before any call; never reached


def _blocks(message: Message) -> list[dict[str, Any]] | str:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
        ]
    if not message.tool_calls:
        return message.content
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.function.name, "input": _arguments(c)}
        for c in message.tool_calls
    ]
    return blocks


def _as_blocks(content: list[dict[str, Any]] | str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        content = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _as_blocks(turns[-1]["content"]) + _as_blocks(content)
        else:
            turns.append({"role": role, "content": content})
    return turns


def _json_schema(request: ChatRequest) -> dict[str, Any]:
    fmt = request.response_format
    if fmt is not None and fmt.json_schema is not None:
        return dict(fmt.json_schema.schema_)
    return {"type": "object"}


def anthropic_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of ``POST {endpoint}/messages``."""
    systems = [request.system] if request.system else []
    systems += [m.content for m in request.messages if m.role == "system"]
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _turns([m for m in request.messages if m.role != "system"]),
        "max_tokens": request.max_tokens,
        "temperature": min(request.temperature, 1.0),
    }
    if systems:
        body["system"] = "\n\n".join(systems)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    tools = [
        {
            "name": t.function.name,
            **({"description": t.function.description} if t.function.description else {}),
            "input_schema": t.function.parameters,
        }
        for t in request.tools
    ]
    choice: dict[str, Any] | None = None
    if isinstance(request.tool_choice, str):
        choice = dict(_CHOICE[request.tool_choice])
    elif request.tool_choice is not None:
        choice = {"type": "tool", "name": request.tool_choice.function.name}
    if request.json_mode:
        description = "Give the answer as this tool's input, a JSON value of its schema."
        tools.append(
            {"name": JSON_TOOL, "description": description, "input_schema": _json_schema(request)}
        )
        if not request.tools:
            choice = {"type": "tool", "name": JSON_TOOL}
    if tools:  # tool_choice without tools is refused by the API: it goes with them
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
    return body


def anthropic_reply(
    data: dict[str, Any], usage: dict[str, Any], request: ChatRequest
) -> ProviderReply:
    """The reply in ``data`` (a Messages response); raise on refusals and junk."""
    stop = data.get("stop_reason")
    if stop == "refusal":
        raise ProviderRefusedError("content_policy", "stop_reason refusal")
    blocks = data.get("content")
    if not isinstance(blocks, list):
        raise ModelFailureError("malformed", "no content list")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            name, arguments = str(block.get("name", "")), block.get("input", {})
            if request.json_mode and name == JSON_TOOL:
                texts = [json.dumps(arguments, ensure_ascii=False)]
                stop = "json_answer" if stop == "tool_use" else stop
                continue
            try:
                calls.append(
                    ToolCall(
                        id=str(block.get("id", "")),
                        function=FunctionCall(
                            name=name, arguments=json.dumps(arguments, ensure_ascii=False)
                        ),
                    )
                )
            except ValueError as error:
                raise ModelFailureError("malformed", f"bad tool_use block: {error}") from None
    if not texts and not calls:
        raise ModelFailureError("malformed", "empty content list")
    raw = data.get("stop_reason")
    normal, _ = normalise_finish(stop, {**FINISH, "json_answer": "stop"}, tool_calls=bool(calls))
    return ProviderReply(
        content="".join(texts),
        finish_reason=normal,
        finish_reason_raw=str(raw)[:64] if raw is not None else None,
        tool_calls=tuple(calls),
        input_tokens=token_count(usage.get("input_tokens")),
        output_tokens=token_count(usage.get("output_tokens")),
    )
