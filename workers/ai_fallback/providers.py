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
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp

from workers.ai_fallback.anthropic_api import anthropic_body, anthropic_reply
from workers.ai_fallback.openai_api import openai_body, openai_reply
from workers.ai_fallback.wire import (
    ChatRequest,
    ErrorKind,
    ModelFailureError,
    ProviderError,
    ProviderRefusedError,
    ProviderReply,
)

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

_MAX_BODY = 8 * 1024 * 1024
_ANTHROPIC_VERSION = "2023-06-01"


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


class OpenAIClient:
    """The OpenAI-compatible Chat Completions API (OpenAI, vLLM, Ollama, llama.cpp, gateways)."""

    async def complete(
        self, session: aiohttp.ClientSession, endpoint: str, key: str | None, request: ChatRequest
    ) -> ProviderReply:
        """POST ``{endpoint}/chat/completions`` (see :mod:`workers.ai_fallback.openai_api`)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = endpoint.rstrip("/") + "/chat/completions"
        data = await _post(session, url, headers, openai_body(request))
        return openai_reply(data, _usage(data))


class AnthropicClient:
    """The Anthropic Messages API (see :mod:`workers.ai_fallback.anthropic_api`)."""

    async def complete(
        self, session: aiohttp.ClientSession, endpoint: str, key: str | None, request: ChatRequest
    ) -> ProviderReply:
        """POST ``{endpoint}/messages``; ``endpoint`` ends in ``/v1``."""
        headers = {"anthropic-version": _ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        url = endpoint.rstrip("/") + "/messages"
        data = await _post(session, url, headers, anthropic_body(request))
        return anthropic_reply(data, _usage(data), request)


_CLIENTS: dict[str, ProviderClient] = {"openai": OpenAIClient(), "anthropic": AnthropicClient()}


def client_for(provider: str) -> ProviderClient:
    """The client for ``provider`` (``openai`` or ``anthropic``)."""
    return _CLIENTS[provider]
