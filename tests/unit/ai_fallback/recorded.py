"""Request and response bodies of both APIs as their references publish them.

OpenAI: the Chat Completions reference and guides (function calling, structured outputs, a tool
result turn). Anthropic: the Messages reference and tool-use guide (a tool_use answer, the
tool_result turn that follows, the final answer). Ids, names and figures are the published
ones; only whitespace differs.
"""

from __future__ import annotations

from typing import Any

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}

# -- OpenAI ---------------------------------------------------------------------------------

OPENAI_TOOLS_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": WEATHER_PARAMETERS,
            },
        }
    ],
    "tool_choice": "auto",
}

OPENAI_TOOLS_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": '{\n"location": "Boston, MA"\n}',
                        },
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}

OPENAI_TOOL_RESULT_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "What's the weather like in Boston today?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": OPENAI_TOOLS_RESPONSE["choices"][0]["message"]["tool_calls"],
    },
    {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temperature": 22}'},
]

MATH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "explanation": {"type": "string"},
                    "output": {"type": "string"},
                },
                "required": ["explanation", "output"],
                "additionalProperties": False,
            },
        },
        "final_answer": {"type": "string"},
    },
    "required": ["steps", "final_answer"],
    "additionalProperties": False,
}

OPENAI_JSON_SCHEMA_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-2024-08-06",
    "messages": [
        {
            "role": "system",
            "content": "You are a helpful math tutor. Guide the user through the solution "
            "step by step.",
        },
        {"role": "user", "content": "how can I solve 8x + 7 = -23"},
    ],
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "math_reasoning", "schema": MATH_SCHEMA, "strict": True},
    },
}

OPENAI_JSON_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-9nYAG9LPNonX8DAyrkwYfemr3C8HC",  # pragma: allowlist secret (published id)
    "object": "chat.completion",
    "created": 1721596428,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": '{"steps":[{"explanation":"Subtract 7 from both sides.","output":'
                '"8x = -30"},{"explanation":"Divide by 8.","output":"x = -3.75"}],'
                '"final_answer":"x = -3.75"}',
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 81, "completion_tokens": 46, "total_tokens": 127},
}

# -- Anthropic ------------------------------------------------------------------------------

ANTHROPIC_WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": WEATHER_PARAMETERS,
}

ANTHROPIC_TOOL_USE_RESPONSE: dict[str, Any] = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "model": "claude-3-5-sonnet-20241022",
    "stop_reason": "tool_use",
    "role": "assistant",
    "content": [
        {
            "type": "text",
            "text": "<thinking>I need to use get_weather, and the user wants SF, which is "
            "likely San Francisco, CA.</thinking>",
        },
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
    ],
    "usage": {"input_tokens": 472, "output_tokens": 91},
}

ANTHROPIC_TOOL_RESULT_REQUEST: dict[str, Any] = {
    "model": "claude-3-5-sonnet-20241022",
    "max_tokens": 1024,
    "tools": [ANTHROPIC_WEATHER_TOOL],
    "messages": [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {"role": "assistant", "content": ANTHROPIC_TOOL_USE_RESPONSE["content"]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees",
                }
            ],
        },
    ],
}

ANTHROPIC_FINAL_RESPONSE: dict[str, Any] = {
    "id": "msg_01Bq9w938a90dw8q",
    "type": "message",
    "model": "claude-3-5-sonnet-20241022",
    "stop_reason": "end_turn",
    "role": "assistant",
    "content": [
        {
            "type": "text",
            "text": "The current weather in San Francisco is 15 degrees Celsius (59 degrees "
            "Fahrenheit). It's a cool day in the city by the bay!",
        }
    ],
    "usage": {"input_tokens": 512, "output_tokens": 33},
}
