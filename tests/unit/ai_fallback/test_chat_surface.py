"""The Chat Completions surface in both API dialects, against recorded request/response shapes."""

from __future__ import annotations

import json
from typing import Any

from schemas.ai import CompletionRequested, Message
from tests.unit.ai_fallback import recorded
from workers.ai_fallback.anthropic_api import JSON_TOOL, anthropic_body, anthropic_reply
from workers.ai_fallback.openai_api import openai_body, openai_reply
from workers.ai_fallback.wire import ChatRequest


def _chat(request: CompletionRequested, model: str, **kw: Any) -> ChatRequest:
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    values: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "system": request.system,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": stop,
        "top_p": request.top_p,
        "response_format": request.response_format,
        "tools": tuple(request.tools or ()),
        "tool_choice": request.tool_choice,
        **kw,
    }
    return ChatRequest(**values)


def _request(**fields: Any) -> CompletionRequested:
    """A request as a producer would publish it (validated from JSON, strictly)."""
    return CompletionRequested.model_validate_json(json.dumps(fields))


def _subset(expected: dict[str, Any], body: dict[str, Any]) -> None:
    for key, value in expected.items():
        assert body[key] == value, key


def test_openai_tools_request_goes_out_as_recorded() -> None:
    """tools and tool_choice from the event reach OpenAI exactly in its published shape."""
    shape = recorded.OPENAI_TOOLS_REQUEST
    request = _request(
        messages=shape["messages"], tools=shape["tools"], tool_choice="auto", max_tokens=100
    )
    body = openai_body(_chat(request, "gpt-4o"))
    _subset(shape, body)
    assert body["max_tokens"] == 100


def test_openai_tool_call_answer_is_parsed() -> None:
    """A tool_calls answer (content null) becomes tool_calls with finish_reason tool_calls."""
    reply = openai_reply(
        recorded.OPENAI_TOOLS_RESPONSE, recorded.OPENAI_TOOLS_RESPONSE["usage"]
    )
    assert reply.content == ""
    assert [(c.id, c.function.name) for c in reply.tool_calls] == [
        ("call_abc123", "get_current_weather")
    ]
    assert json.loads(reply.tool_calls[0].function.arguments) == {"location": "Boston, MA"}
    assert (reply.finish_reason, reply.finish_reason_raw) == ("tool_calls", "tool_calls")
    assert (reply.input_tokens, reply.output_tokens) == (82, 17)


def test_openai_tool_result_turn_keeps_tool_call_id() -> None:
    """The assistant's tool calls and the tool result (with tool_call_id) go out as recorded."""
    request = _request(messages=recorded.OPENAI_TOOL_RESULT_MESSAGES, max_tokens=50)
    body = openai_body(_chat(request, "gpt-4o"))
    assert body["messages"] == recorded.OPENAI_TOOL_RESULT_MESSAGES


def test_openai_json_schema_and_sampling_knobs_go_out() -> None:
    """response_format json_schema, stop and top_p reach OpenAI in its published shape."""
    shape = recorded.OPENAI_JSON_SCHEMA_REQUEST
    request = _request(
        messages=shape["messages"],
        response_format=shape["response_format"],
        stop=["\n\n"],
        top_p=0.9,
    )
    body = openai_body(_chat(request, "gpt-4o-2024-08-06"))
    _subset(shape, body)
    assert (body["stop"], body["top_p"]) == (["\n\n"], 0.9)
    reply = openai_reply(recorded.OPENAI_JSON_RESPONSE, {})
    assert json.loads(reply.content)["final_answer"] == "x = -3.75"
    assert reply.finish_reason == "stop"


def test_json_object_mode_goes_out() -> None:
    """response_format json_object reaches OpenAI as {"type": "json_object"}."""
    request = _request(
        messages=[{"role": "user", "content": "list two colours as JSON"}],
        response_format={"type": "json_object"},
    )
    assert openai_body(_chat(request, "gpt-4o"))["response_format"] == {"type": "json_object"}


def test_reasoning_model_gets_max_completion_tokens() -> None:
    """A reasoning model gets max_completion_tokens and no sampling knobs it would refuse."""
    request = _request(messages=[{"role": "user", "content": "think"}], top_p=0.5)
    body = openai_body(_chat(request, "o3-mini", reasoning=True))
    assert body["max_completion_tokens"] == 512
    assert not {"max_tokens", "temperature", "top_p"} & body.keys()


def test_anthropic_tool_result_turn_translated_as_recorded() -> None:
    """OpenAI-shaped tool calls and results become Anthropic's tool_use/tool_result turns."""
    shape = recorded.ANTHROPIC_TOOL_RESULT_REQUEST
    use = recorded.ANTHROPIC_TOOL_USE_RESPONSE["content"]
    request = _request(
        messages=[
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {
                "role": "assistant",
                "content": use[0]["text"],
                "tool_calls": [
                    {
                        "id": use[1]["id"],
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": json.dumps(use[1]["input"]),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": use[1]["id"], "content": "15 degrees"},
        ],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": recorded.ANTHROPIC_WEATHER_TOOL["description"],
                    "parameters": recorded.WEATHER_PARAMETERS,
                },
            }
        ],
        max_tokens=1024,
    )
    body = anthropic_body(_chat(request, "claude-3-5-sonnet-20241022"))
    _subset(shape, body)


def test_anthropic_tool_use_answer_becomes_tool_calls() -> None:
    """A tool_use answer becomes tool_calls (input as JSON arguments), finish_reason tool_calls."""
    shape = recorded.ANTHROPIC_TOOL_USE_RESPONSE
    request = _request(messages=[{"role": "user", "content": "weather?"}])
    reply = anthropic_reply(shape, shape["usage"], _chat(request, "claude"))
    assert reply.content.startswith("<thinking>")
    assert [(c.id, c.function.name) for c in reply.tool_calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "get_weather")
    ]
    assert json.loads(reply.tool_calls[0].function.arguments)["unit"] == "celsius"
    assert (reply.finish_reason, reply.finish_reason_raw) == ("tool_calls", "tool_use")
    final = recorded.ANTHROPIC_FINAL_RESPONSE
    answer = anthropic_reply(final, final["usage"], _chat(request, "claude"))
    assert (answer.finish_reason, answer.finish_reason_raw) == ("stop", "end_turn")


def test_anthropic_stop_top_p_and_tool_choice_translated() -> None:
    """stop -> stop_sequences, top_p kept, tool_choice required/function -> any/tool."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    base = {"messages": [{"role": "user", "content": "x"}], "tools": [tool], "top_p": 0.8}
    required = anthropic_body(_chat(_request(**base, tool_choice="required", stop="END"), "c"))
    assert required["stop_sequences"] == ["END"]
    assert required["top_p"] == 0.8
    assert required["tool_choice"] == {"type": "any"}
    forced = {"type": "function", "function": {"name": "f"}}
    named = anthropic_body(_chat(_request(**base, tool_choice=forced), "c"))
    assert named["tool_choice"] == {"type": "tool", "name": "f"}
    assert named["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


def test_anthropic_json_schema_through_a_forced_tool() -> None:
    """JSON Schema output on Anthropic: a forced tool with the schema; its input is the answer."""
    shape = recorded.OPENAI_JSON_SCHEMA_REQUEST
    request = _request(messages=shape["messages"], response_format=shape["response_format"])
    chat = _chat(request, "claude")
    body = anthropic_body(chat)
    assert body["system"].startswith("You are a helpful math tutor")
    assert body["tools"][-1]["name"] == JSON_TOOL
    assert body["tools"][-1]["input_schema"] == recorded.MATH_SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    answer = {"steps": [], "final_answer": "x = -3.75"}
    data = {
        "content": [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": answer}],
        "stop_reason": "tool_use",
    }
    reply = anthropic_reply(data, {}, chat)
    assert json.loads(reply.content) == answer
    assert not reply.tool_calls
    assert (reply.finish_reason, reply.finish_reason_raw) == ("stop", "tool_use")


def test_old_requests_stay_valid() -> None:
    """A request of the first schema (role and content only) still validates unchanged."""
    old = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 0}
    request = CompletionRequested.model_validate_json(json.dumps(old))
    assert request.messages == [Message(role="user", content="hi")]
    assert request.tools is None
    assert request.response_format is None


def test_tool_choice_without_tools_stays_out() -> None:
    """tool_choice auto/none without tools is not sent (both APIs refuse it alone)."""
    request = _request(messages=[{"role": "user", "content": "x"}], tool_choice="none")
    assert "tool_choice" not in openai_body(_chat(request, "gpt-4o"))
    assert "tool_choice" not in anthropic_body(_chat(request, "claude"))
