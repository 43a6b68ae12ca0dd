"""What makes a completion request unanswerable before any model is called (``bad_request``).

The schema stays loose so that such a request is answered with ``ai.completion.failed`` and
this reason, never dead-lettered: empty messages, ``max_tokens`` below 1, a ``tool`` message
without the ``tool_call_id`` of an earlier assistant tool call (OpenAI refuses it), tool call
arguments that are not a JSON object, ``tool_choice`` naming a function the request does not
offer, ``tool_calls`` on a message that is not the assistant's, and a ``response_format`` whose
``json_schema`` is missing or set for another type.
"""

from __future__ import annotations

import json

from schemas.ai import CompletionRequested, Message

__all__ = ["request_problem"]


def _arguments_problem(message: Message) -> str | None:
    for call in message.tool_calls or ():
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            return f"tool call {call.id!r}: arguments are not JSON"
        if not isinstance(arguments, dict):
            return f"tool call {call.id!r}: arguments must be a JSON object"
    return None


def _messages_problem(request: CompletionRequested) -> str | None:
    called: set[str] = set()
    for index, message in enumerate(request.messages):
        if message.tool_calls and message.role != "assistant":
            return f"messages[{index}]: only assistant messages carry tool_calls"
        problem = _arguments_problem(message)
        if problem is not None:
            return f"messages[{index}]: {problem}"
        called |= {call.id for call in message.tool_calls or ()}
        if message.role == "tool":
            if message.tool_call_id is None:
                return f"messages[{index}]: a tool message needs tool_call_id"
            if message.tool_call_id not in called:
                return (
                    f"messages[{index}]: tool_call_id {message.tool_call_id!r} answers no "
                    "earlier assistant tool call"
                )
    return None


def request_problem(request: CompletionRequested) -> str | None:
    """Why ``request`` cannot be answered as sent, or None."""
    if not request.messages:
        return "messages must not be empty"
    if request.max_tokens < 1:
        return f"max_tokens must be at least 1, got {request.max_tokens}"
    problem = _messages_problem(request)
    if problem is not None:
        return problem
    offered = {tool.function.name for tool in request.tools or ()}
    choice = request.tool_choice
    if choice is not None and not isinstance(choice, str) and choice.function.name not in offered:
        return f"tool_choice names {choice.function.name!r}, which tools do not offer"
    if choice == "required" and not offered:
        return "tool_choice 'required' needs tools"
    fmt = request.response_format
    if fmt is not None and (fmt.type == "json_schema") != (fmt.json_schema is not None):
        return "response_format: json_schema goes with, and only with, type 'json_schema'"
    return None
