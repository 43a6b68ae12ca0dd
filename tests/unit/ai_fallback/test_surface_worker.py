"""The worker end to end with the wider surface: tool calls, finish reasons, usage, exports."""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs

from schemas.ai import CompletionRequested
from schemas.export import asyncapi_document, event_schemas
from tests.unit.ai_fallback import recorded
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model
from workers.ai_fallback.simulator import ProviderSimulator, Step
from workers.registry import consumed_types


def _request(**fields: Any) -> CompletionRequested:
    return CompletionRequested.model_validate_json(json.dumps(fields))


async def test_tool_call_answer_through_the_worker(sim: ProviderSimulator) -> None:
    """An OpenAI tool-call answer comes back as tool_calls with finish_reason tool_calls."""
    sim.script("a", Step("recorded", body=recorded.OPENAI_TOOLS_RESPONSE))
    shape = recorded.OPENAI_TOOLS_REQUEST
    request = _request(messages=shape["messages"], tools=shape["tools"], tool_choice="auto")
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        out = await answer(h, request)
    assert out.type == "ai.completion.succeeded", out.data
    assert out.data.finish_reason == "tool_calls"
    assert out.data.finish_reason_raw == "tool_calls"
    assert [c.id for c in out.data.tool_calls] == ["call_abc123"]
    assert sim.requests[0]["tools"] == shape["tools"]
    assert sim.requests[0]["tool_choice"] == "auto"


async def test_anthropic_finish_reason_is_normalised(sim: ProviderSimulator) -> None:
    """Anthropic's end_turn is reported as stop, with end_turn kept beside it."""
    async with fleet(ai_settings([model(sim, "c", provider="anthropic")])) as (h, _):
        out = await answer(h, ask("hello"))
    assert out.type == "ai.completion.succeeded", out.data
    assert (out.data.finish_reason, out.data.finish_reason_raw) == ("stop", "end_turn")


async def test_tool_message_without_call_id_is_a_bad_request(sim: ProviderSimulator) -> None:
    """A tool result that names no earlier tool call is refused before any provider call."""
    request = _request(
        messages=[{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]
    )
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        out = await answer(h, request)
    assert out.type == "ai.completion.failed"
    assert out.data.reason == "bad_request"
    assert "tool_call_id" in out.data.detail
    assert sim.calls["a"] == 0


async def test_impossible_usage_is_flagged_and_not_billed(sim: ProviderSimulator) -> None:
    """503 output tokens reported for max_tokens 64: flagged (metric, log), billed as counted."""
    reply = {
        "choices": [{"message": {"content": "two words"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 503},
    }
    sim.script("a", Step("recorded", body=reply))
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        with capture_logs() as logs:
            out = await answer(h, ask("hello", max_tokens=64))
        flagged = h.metrics.registry.get_sample_value(
            "eventguard_ai_usage_impossible_total", {"model": "a", "field": "output"}
        )
    assert out.data.output_tokens == 2  # our count of "two words", not 503
    assert out.data.input_tokens == 12  # possible: billed as reported
    assert out.data.cost_usd == (12 * 1.0 + 2 * 2.0) / 1_000_000
    assert flagged == 1
    [line] = [entry for entry in logs if entry["event"] == "ai.usage_impossible"]
    assert (line["reported"], line["limit"]) == (503, 64)


async def test_cache_key_covers_the_new_parameters(sim: ProviderSimulator) -> None:
    """The same messages with other tools or another response format are not a cache hit."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    base: dict[str, Any] = {"messages": [{"role": "user", "content": "same"}], "temperature": 0}
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        first = await answer(h, _request(**base))
        tools = await answer(h, _request(**base, tools=[tool]))
        json_mode = await answer(h, _request(**base, response_format={"type": "json_object"}))
        again = await answer(h, _request(**base))
    assert not first.data.cached
    assert not tools.data.cached
    assert not json_mode.data.cached
    assert again.data.cached
    assert sim.calls["a"] == 3


def test_exports_carry_the_new_fields() -> None:
    """The JSON Schema and AsyncAPI exports describe tools, tool results and finish reasons."""
    schemas = event_schemas()
    requested = json.dumps(schemas["ai.completion.requested"])
    for name in ("tools", "tool_choice", "tool_call_id", "response_format", "stop", "top_p"):
        assert f'"{name}"' in requested, name
    succeeded = schemas["ai.completion.succeeded"]["$defs"]["CompletionSucceeded"]
    assert succeeded["properties"]["finish_reason"]["anyOf"][0]["enum"] == [
        "stop",
        "length",
        "tool_calls",
        "content_filter",
    ]
    assert "finish_reason_raw" in succeeded["properties"]
    document = json.dumps(asyncapi_document(consumed_types(), version="test"))
    assert "tool_call_id" in document


async def test_unreported_usage_is_counted_in_the_models_encoding(sim: ProviderSimulator) -> None:
    """A gpt-4o model that reports no usage is billed our o200k chat-formula count (19 here)."""
    reply = {"choices": [{"message": {"content": "Hi there"}, "finish_reason": "stop"}]}
    sim.script("gpt-4o", Step("recorded", body=reply))  # scripts go by the provider's name
    request = _request(
        system="You are a helpful assistant.", messages=[{"role": "user", "content": "Hello!"}]
    )
    async with fleet(ai_settings([model(sim, "a", model_id="gpt-4o")])) as (h, service):
        out = await answer(h, request)
    assert service.models["a"].encoding == "o200k"
    assert (out.data.input_tokens, out.data.output_tokens) == (19, 2)
