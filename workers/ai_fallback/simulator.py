"""A local LLM provider simulator speaking the OpenAI Chat Completions and Anthropic Messages APIs.

Used by ``eventguard demo`` and the tests only (nothing else starts it). Each model (the
``model`` field of the request) follows a script of :class:`Step` s, one per call, then its
default step: answer after some latency, fail with a status, 429/529 with ``Retry-After``, hang
until closed, or return malformed JSON, an empty choice list, a truncated body, a context-length
error, a content-policy refusal or an authentication failure; or answer with a given body
(``Step("recorded", body=...)``: a response recorded from the real API, returned as is).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

__all__ = ["ProviderSimulator", "Step"]

StepKind = Literal[
    "ok",
    "error",
    "rate_limit",
    "overloaded",
    "hang",
    "malformed",
    "empty",
    "truncated",
    "context_length",
    "content_policy",
    "auth",
    "recorded",
]


@dataclass(frozen=True)
class Step:
    """What the simulator does for one call."""

    kind: StepKind = "ok"
    latency_s: float = 0.0
    status: int = 500
    retry_after: float | None = None
    content: str | None = None
    body: dict[str, Any] | None = None  # "recorded": the response body to return


class ProviderSimulator:
    """An aiohttp server on 127.0.0.1 with an OS-assigned port; script it per model."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.calls: dict[str, int] = defaultdict(int)
        self.call_times: dict[str, list[float]] = defaultdict(list)
        self.requests: list[dict[str, Any]] = []
        self._scripts: dict[str, deque[Step]] = defaultdict(deque)
        self._defaults: dict[str, Step] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL to configure as a model's endpoint (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, *steps: Step) -> None:
        """Queue ``steps`` for the next calls to ``model``."""
        self._scripts[model].extend(steps)

    def set_default(self, model: str, step: Step) -> None:
        """What ``model`` does once its script is used up."""
        self._defaults[model] = step

    def reset(self) -> None:
        """Forget scripts, defaults and counts."""
        self._scripts.clear()
        self._defaults.clear()
        self.calls.clear()
        self.call_times.clear()
        self.requests.clear()

    async def start(self) -> str:
        """Listen on 127.0.0.1 with an OS-assigned port; returns the base URL."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.url

    async def close(self) -> None:
        """Release hung calls and stop listening."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProviderSimulator]:
        """Start, yield, close."""
        await self.start()
        try:
            yield self
        finally:
            await self.close()

    # -- protocol ----------------------------------------------------------------------------

    def _next(self, model: str) -> Step:
        self.calls[model] += 1
        self.call_times[model].append(asyncio.get_running_loop().time())
        queue = self._scripts[model]
        if queue:
            return queue.popleft()
        return self._defaults.get(model, Step("ok"))

    async def _prelude(self, request: web.Request) -> tuple[dict[str, Any], Step]:
        body = await request.json()
        self.requests.append(body)
        step = self._next(str(body.get("model", "")))
        delay = step.latency_s or self.latency_s
        if delay:
            await asyncio.sleep(delay)
        if step.kind == "hang":
            await self._closing.wait()
        return body, step

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body, step = await self._prelude(request)
        model = str(body.get("model", ""))
        failure = await self._failure(request, step, anthropic=False)
        if failure is not None:
            return failure
        content = step.content or _answer(model, body.get("messages", []))
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        finish = "content_filter" if step.kind == "content_policy" else "stop"
        choices: list[dict[str, Any]] = []
        if step.kind != "empty":
            message = {"role": "assistant", "content": "" if finish != "stop" else content}
            choices = [{"index": 0, "message": message, "finish_reason": finish}]
        return web.json_response(
            {
                "id": "chatcmpl-sim",
                "object": "chat.completion",
                "model": model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt + 3,
                    "completion_tokens": len(content.split()),
                    "total_tokens": prompt + 3 + len(content.split()),
                },
            }
        )

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body, step = await self._prelude(request)
        model = str(body.get("model", ""))
        failure = await self._failure(request, step, anthropic=True)
        if failure is not None:
            return failure
        content = step.content or _answer(model, body.get("messages", []))
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        refused = step.kind == "content_policy"
        blocks = [] if step.kind == "empty" else [{"type": "text", "text": content}]
        return web.json_response(
            {
                "id": "msg-sim",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [] if refused else blocks,
                "stop_reason": "refusal" if refused else "end_turn",
                "usage": {"input_tokens": prompt + 5, "output_tokens": len(content.split())},
            }
        )

    async def _failure(
        self, request: web.Request, step: Step, *, anthropic: bool
    ) -> web.StreamResponse | None:
        kind = step.kind
        if kind == "recorded":
            return web.json_response(step.body or {})
        if kind in {"ok", "empty", "content_policy"}:
            return None
        if kind == "malformed":
            return web.Response(text='{"choices": [', content_type="application/json")
        if kind == "truncated":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 4096
            await response.prepare(request)
            await response.write(b'{"id": "cut", "choices": [{"message": ')
            if request.transport is not None:
                request.transport.close()
            return response
        headers: dict[str, str] = {}
        if step.retry_after is not None:
            headers["Retry-After"] = f"{step.retry_after:g}"
        status, error_type, message = {
            "error": (step.status, "api_error", "simulated server error"),
            "rate_limit": (429, "rate_limit_error", "rate limited"),
            "overloaded": (529, "overloaded_error", "overloaded"),
            "auth": (401, "authentication_error", f"invalid api key {_key_of(request)}"),
            "context_length": (
                400,
                "invalid_request_error",
                "prompt is too long: maximum context length exceeded",
            ),
        }.get(kind, (500, "api_error", "simulated"))
        if anthropic:
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": error_type, "message": message},
            }
        else:
            code = "context_length_exceeded" if kind == "context_length" else error_type
            payload = {"error": {"message": message, "type": error_type, "code": code}}
        return web.Response(
            status=status,
            text=json.dumps(payload),
            headers=headers,
            content_type="application/json",
        )


def _answer(model: str, messages: list[Any]) -> str:
    last = next(
        (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    return f"[{model}] you said: {last[:200]}"


def _key_of(request: web.Request) -> str:
    """The key the caller sent (echoed back like some providers do, to test redaction)."""
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return request.headers.get("x-api-key", bearer)
