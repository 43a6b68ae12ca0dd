"""What a provider call sends and gets back, whatever the API: the request, the reply, the errors.

The request speaks the Chat Completions vocabulary of ``ai.completion.requested``; each API
module (:mod:`~workers.ai_fallback.openai_api`, :mod:`~workers.ai_fallback.anthropic_api`)
translates it into its own body and its answer back into a :class:`ProviderReply`, whose
``finish_reason`` is one vocabulary for every provider (:func:`normalise_finish`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from common.errors import ExternalCallError
from schemas.ai import FinishReason, Message, ResponseFormat, Tool, ToolCall, ToolChoice

__all__ = [
    "ChatRequest",
    "ErrorKind",
    "ModelFailureError",
    "ProviderError",
    "ProviderRefusedError",
    "ProviderReply",
    "normalise_finish",
    "token_count",
]

ErrorKind = Literal[
    "server",
    "timeout",
    "connection",
    "malformed",
    "rate_limited",
    "auth",
    "context_length",
    "content_policy",
    "bad_request",
]


class ProviderError(ExternalCallError):
    """A provider call failed; ``kind`` decides what the chain does next."""

    kind: ErrorKind = "server"

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail[:400]
        self.status = status
        self.retry_after = retry_after


class ModelFailureError(ProviderError):
    """A failure of the model itself; counts toward its breaker."""


class ProviderRefusedError(ProviderError):
    """The provider answered but would not serve this call; does not count toward the breaker."""


@dataclass(frozen=True)
class ChatRequest:
    """What one provider call sends.

    ``reasoning`` marks a reasoning model (OpenAI o-series, gpt-5): its output cap goes as
    ``max_completion_tokens`` and sampling knobs it refuses (``temperature``, ``top_p``) stay out.
    """

    model: str
    messages: Sequence[Message]
    system: str | None
    max_tokens: int
    temperature: float
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    response_format: ResponseFormat | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str | ToolChoice | None = None
    reasoning: bool = False

    @property
    def json_mode(self) -> bool:
        """True when the answer must be JSON (``json_object`` or ``json_schema``)."""
        return self.response_format is not None and self.response_format.type != "text"


@dataclass(frozen=True)
class ProviderReply:
    """A provider's answer; token counts are ``None`` when the provider did not report them.

    ``finish_reason`` is normalised; ``finish_reason_raw`` is the provider's own word.
    """

    content: str
    finish_reason: FinishReason | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reason_raw: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


def normalise_finish(
    raw: object, table: Mapping[str, FinishReason], *, tool_calls: bool
) -> tuple[FinishReason | None, str | None]:
    """(normalised, raw) finish reason: the table's word, ``tool_calls`` when the reply holds
    calls, else ``stop`` for a word the table does not know; (None, None) when absent."""
    if raw is None:
        return ("tool_calls" if tool_calls else None), None
    text = str(raw)[:64]
    if tool_calls and text not in table:
        return "tool_calls", text
    return table.get(text, "stop"), text


def token_count(value: object) -> int | None:
    """A usage figure as reported: a non-negative integer, or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
