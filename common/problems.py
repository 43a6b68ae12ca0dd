"""RFC 9457 problem documents: every error the ops server answers is ``application/problem+json``.

A problem is ``{"type", "title", "status", "detail", "code"}`` plus optional extension
members (``errors`` for a body that failed validation). ``type`` is
``urn:eventguard:problem:<code>``; ``code`` is the same short word, for programs. Handlers
raise :class:`Problem` (or answer :func:`problem_response`); :func:`problem_middleware`, the
outermost middleware, turns aiohttp's own HTTP errors (404, 405, 413) into problems too, and
answers anything unexpected with a bare 500 problem (the traceback goes to the log, never to the
client).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_SCHEMA",
    "Problem",
    "problem_middleware",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
# structlog directly: common.logging imports common.security, which imports this module.
_log = structlog.get_logger("eventguard.ops")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The JSON Schema of a problem document (served in the OpenAPI document's components).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def _code_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def problem_response(
    status: int,
    detail: str = "",
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    """A ``status`` answer carrying a problem document."""
    code = code or _code_of(status)
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"urn:eventguard:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=dict(headers or {}),
    )


class Problem(Exception):
    """Raised by a handler to answer a problem document."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or code or str(status))
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = dict(headers or {})
        self.extensions = extensions

    def response(self) -> web.Response:
        """This problem as a response."""
        return problem_response(
            self.status, self.detail, code=self.code, headers=self.headers, **self.extensions
        )


def _from_http_error(error: web.HTTPException) -> web.Response:
    headers = {
        name: value
        for name, value in error.headers.items()
        if name in {"Allow", "Retry-After", "WWW-Authenticate"}
    }
    detail = {404: "no such route", 405: "method not allowed on this route"}.get(error.status, "")
    if error.status == 413:
        detail = "request body too large"
    return problem_response(error.status, detail, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: every error leaves as a problem document, never a traceback."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _from_http_error(error)
    except Exception:  # noqa: BLE001 - the last line of defence: logged whole, a bare 500 answered
        _log.exception("http.unhandled", method=request.method, route=_route_of(request))
        return problem_response(500, "internal error", code="internal_error")


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unknown"
