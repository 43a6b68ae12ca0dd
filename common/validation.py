"""Admin request bodies and query strings, validated by pydantic models before a handler runs.

A route declares its models (:class:`common.service.AdminRoute` ``body=`` and ``query=``); the
ops server validates them when the request arrives and handlers read the result with
:func:`body_of` / :func:`query_of`. Bounds, in this order, each refused with a 400 (413 for
size) problem document and never a 500:

* size: at most :data:`MAX_BODY_BYTES` (64 KiB);
* nesting: at most :data:`MAX_DEPTH` levels of arrays and objects (checked on the raw bytes,
  before any parser recurses);
* JSON itself, then the model: unknown fields refused, no string-to-number coercion, every
  string, list and number bounded by the model (a 5,000-digit integer fails the bound).

A body model may be sent as nothing at all when every field has a default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from common.problems import Problem
from common.service import AdminRoute

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "Answer",
    "EmptyBody",
    "RequestModel",
    "body_of",
    "endpoint",
    "query_of",
    "validate_request",
]

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
M = TypeVar("M", bound=BaseModel)
_BODY = web.RequestKey("validated_body", BaseModel)
_QUERY = web.RequestKey("validated_query", BaseModel)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestModel(BaseModel):
    """Base of admin request models: unknown fields refused, strict types, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Answer(BaseModel):
    """Base of admin answer models (the OpenAPI document's 200 schemas): no unknown fields."""

    model_config = ConfigDict(extra="forbid")


class EmptyBody(RequestModel):
    """The body of a route that takes none: nothing, or ``{}``."""


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (JSON), ignoring strings."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def _errors(error: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"][:200], "type": e["type"]}
        for e in error.errors(include_url=False, include_input=False, include_context=False)
    ][:20]


def _parse_body(raw: bytes, model: type[M]) -> M:
    if len(raw) > MAX_BODY_BYTES:
        raise Problem(413, f"the body exceeds {MAX_BODY_BYTES} bytes", code="body_too_large")
    if not raw.strip():
        raw = b"{}"
    if _depth(raw) > MAX_DEPTH:
        raise Problem(400, f"the body nests deeper than {MAX_DEPTH} levels", code="invalid_body")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise Problem(
            400, "the body does not match its schema", code="invalid_body", errors=_errors(error)
        ) from None


def _parse_query(request: web.Request, model: type[M]) -> M:
    if len(request.query_string) > 4_096:
        raise Problem(400, "the query string is too long", code="invalid_query")
    values: dict[str, Any] = {}
    for name in request.query:
        found = request.query.getall(name)
        if len(found) > 1:
            raise Problem(400, f"query parameter {name[:40]!r} repeated", code="invalid_query")
        values[name] = found[0]
    try:
        # Query strings are text: let pydantic read numbers out of them (lax mode).
        return model.model_validate(values, strict=False)
    except ValidationError as error:
        raise Problem(
            400,
            "the query string does not match its schema",
            code="invalid_query",
            errors=_errors(error),
        ) from None


async def _read_bounded(request: web.Request) -> bytes:
    """The body, read chunk by chunk until its end or one byte past the limit."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def validate_request(
    request: web.Request, *, body: type[BaseModel] | None, query: type[BaseModel] | None
) -> None:
    """Validate ``request`` against the route's models, keeping the results for the handler."""
    if query is not None:
        request[_QUERY] = _parse_query(request, query)
    if body is not None:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise Problem(413, f"the body exceeds {MAX_BODY_BYTES} bytes", code="body_too_large")
        raw = await _read_bounded(request) if request.can_read_body else b""
        request[_BODY] = _parse_body(raw, body)


def body_of(request: web.Request, model: type[M]) -> M:
    """The validated body of ``request`` (the route must declare ``body=model``)."""
    found = request.get(_BODY)
    if not isinstance(found, model):
        raise TypeError(f"route did not declare body={model.__name__}")
    return found


def query_of(request: web.Request, model: type[M]) -> M:
    """The validated query of ``request`` (the route must declare ``query=model``)."""
    found = request.get(_QUERY)
    if not isinstance(found, model):
        raise TypeError(f"route did not declare query={model.__name__}")
    return found


def endpoint(route: AdminRoute) -> Handler:
    """``route``'s handler behind the validation of its body and query models (the ops server
    mounts this; so may a test mounting routes bare, beside :func:`problem_middleware`)."""
    if route.body is None and route.query is None:
        return route.handler
    inner = route.handler

    async def validated(request: web.Request) -> web.StreamResponse:
        await validate_request(request, body=route.body, query=route.query)
        return await inner(request)

    return validated
