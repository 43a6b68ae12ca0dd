"""Provider clients over aiohttp: OpenAI-compatible Chat Completions and Anthropic Messages.

No SDK, no client-side retries: the worker owns retries and failover. Every failure becomes a
:class:`ProviderError` whose ``kind`` says what the chain does next, and whose class says whether
it counts toward the model's breaker (:class:`ModelFailureError`: 5xx, timeouts, broken
connections, malformed, empty or truncated responses) or not (:class:`ProviderRefusedError`: rate
limits, authentication, context length, content policy, other 4xx).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import aiohttp

from common.errors import ExternalCallError
from schemas.ai import Message

__all__ = [
    "AnthropicClient",
    "ChatRequest",
    "ErrorKind",
    "ModelFailureError",
    "OpenAIClient",
    "ProviderClient",
    "ProviderError",
    "ProviderRefusedError",
    "ProviderReply",
    "client_for",
    "parse_retry_after",
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
_MAX_BODY = 8 * 1024 * 1024
_ANTHROPIC_VERSION = "2023-06-01"


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
    """What one provider call sends."""

    model: str
    messages: Sequence[Message]
    system: str | None
    max_tokens: int
    temperature: float
    seed: int | None = None


@dataclass(frozen=True)
class ProviderReply:
    """A provider's answer; token counts are ``None`` when the provider did not report them."""

    content: str
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None


class ProviderClient(Protocol):
    """One API dialect."""

    async def complete(
        self, session: aiohttp.ClientSession, endpoint: str, key: str | None, request: ChatRequest
    ) -> ProviderReply:
        """Send ``request``; raise :class:`ProviderError` on any failure."""
        ...


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or seconds < 0:  # in the past, or nonsense
        return 0.0
    return min(seconds, 86_400.0)


async def _post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    try:
        async with session.post(url, json=body, headers=headers) as response:
            raw = await response.content.read(_MAX_BODY + 1)
            if len(raw) > _MAX_BODY:
                raise ModelFailureError("malformed", "response body too large")
            if response.status >= 400:
                _raise_for_status(response.status, response.headers.get("Retry-After"), raw)
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as error:
                raise ModelFailureError("malformed", f"invalid JSON: {error}") from None
    except aiohttp.ClientPayloadError as error:
        raise ModelFailureError("malformed", f"truncated response: {error}") from None
    except aiohttp.ClientError as error:
        raise ModelFailureError("connection", repr(error)) from None
    if not isinstance(data, dict):
        raise ModelFailureError("malformed", "response is not a JSON object")
    return data


def _error_text(raw: bytes) -> tuple[str, str]:
    """(code or type, message) from an OpenAI- or Anthropic-style error body."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "", raw[:200].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", str(data)[:200]
    code = str(error.get("code") or error.get("type") or "")
    return code, str(error.get("message", ""))[:300]


def _raise_for_status(status: int, retry_after: str | None, raw: bytes) -> None:
    code, message = _error_text(raw)
    detail = f"HTTP {status} {code} {message}".strip()
    lowered = f"{code} {message}".lower()
    if status in {429, 529}:
        raise ProviderRefusedError(
            "rate_limited", detail, status=status, retry_after=parse_retry_after(retry_after)
        )
    if status in {401, 403}:
        raise ProviderRefusedError("auth", detail, status=status)
    if status in {400, 413, 422}:
        if "context_length" in lowered or "too long" in lowered or "maximum context" in lowered:
            raise ProviderRefusedError("context_length", detail, status=status)
        if "content_policy" in lowered or "content_filter" in lowered or "safety" in lowered:
            raise ProviderRefusedError("content_policy", detail, status=status)
    if status >= 500 or status in {408, 409}:
        raise ModelFailureError("server", detail, status=status)
    raise ProviderRefusedError("bad_request", detail, status=status)


def _usage(data: dict[str, Any]) -> dict[str, Any]:
    usage = data.get("usage")
    return usage if isinstance(usage, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


class OpenAIClient:
    """The OpenAI-compatible Chat Completions API (OpenAI, vLLM, Ollama, llama.cpp, gateways)."""

    async def complete(
        self, session: aiohttp.ClientSession, endpoint: str, key: str | None, request: ChatRequest
    ) -> ProviderReply:
        """POST ``{endpoint}/chat/completions``."""
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": False,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        data = await _post(session, endpoint.rstrip("/") + "/chat/completions", headers, body)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ModelFailureError("malformed", "empty choice list")
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish == "content_filter":
            raise ProviderRefusedError("content_policy", "finish_reason content_filter")
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ModelFailureError("malformed", "choice without text content")
        usage = _usage(data)
        return ProviderReply(
            content=content,
            finish_reason=str(finish) if finish is not None else None,
            input_tokens=_int_or_none(usage.get("prompt_tokens")),
            output_tokens=_int_or_none(usage.get("completion_tokens")),
        )


class AnthropicClient:
    """The Anthropic Messages API."""

    async def complete(
        self, session: aiohttp.ClientSession, endpoint: str, key: str | None, request: ChatRequest
    ) -> ProviderReply:
        """POST ``{endpoint}/messages``; system messages join the top-level system prompt."""
        systems = [request.system] if request.system else []
        systems += [m.content for m in request.messages if m.role == "system"]
        turns = [
            {"role": "assistant" if m.role == "assistant" else "user", "content": m.content}
            for m in request.messages
            if m.role != "system"
        ]
        body: dict[str, Any] = {
            "model": request.model,
            "messages": turns,
            "max_tokens": request.max_tokens,
            "temperature": min(request.temperature, 1.0),
        }
        if systems:
            body["system"] = "\n\n".join(systems)
        headers = {"anthropic-version": _ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        data = await _post(session, endpoint.rstrip("/") + "/messages", headers, body)
        stop = data.get("stop_reason")
        if stop == "refusal":
            raise ProviderRefusedError("content_policy", "stop_reason refusal")
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise ModelFailureError("malformed", "no content list")
        texts = [
            str(b.get("text", ""))
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text"
        ]
        if not texts:
            raise ModelFailureError("malformed", "empty content list")
        usage = _usage(data)
        return ProviderReply(
            content="".join(texts),
            finish_reason=str(stop) if stop is not None else None,
            input_tokens=_int_or_none(usage.get("input_tokens")),
            output_tokens=_int_or_none(usage.get("output_tokens")),
        )


_CLIENTS: dict[str, ProviderClient] = {"openai": OpenAIClient(), "anthropic": AnthropicClient()}


def client_for(provider: str) -> ProviderClient:
    """The client for ``provider`` (``openai`` or ``anthropic``)."""
    return _CLIENTS[provider]
