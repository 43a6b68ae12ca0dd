"""The OpenAPI 3.1 document of the admin API, generated from the routes and their pydantic models.

Each :class:`~common.service.AdminRoute` becomes one operation: its path parameters, its query
model's fields as query parameters, its body model as the JSON request body, and its response
model as the 200 (201 for silences) answer; a route without a response model answers "a JSON
object". Every operation documents its error answers as RFC 9457 problem documents
(``application/problem+json``): 400 invalid input, 401 missing or invalid credentials, 403 role
too low, 404, 409 a conflicting state, 413 too large, 429 too many failed authentications, 503
dependency unavailable. The same models validate the requests (:mod:`common.validation`), so the
document cannot drift from what the server accepts. ``/admin/stream`` (a WebSocket) is
described in the document's description, not as an operation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from common.problems import PROBLEM_CONTENT_TYPE, PROBLEM_SCHEMA
from common.service import AdminRoute

__all__ = ["openapi_document"]

_PLACEHOLDER = re.compile(r"\{([^/{}]+)\}")
_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "invalid body, query or path",
    "401": "missing or invalid credentials (the answer never says which)",
    "403": "the caller's role may not call this route",
    "404": "no such route or resource",
    "405": "method not allowed",
    "409": "the resource is in a state that refuses this",
    "413": "body too large",
    "429": "too many failed authentications from this address or for this key id",
    "503": "a dependency (Redis, the broker, token verification) is unavailable",
}
_DESCRIPTION = (
    "The admin API of an EventGuard worker's ops server. Authenticate with "
    "`Authorization: Bearer <access token>` or `X-API-Key: <key>`. Every error is an RFC 9457 "
    "problem document. `GET /admin/stream` is a WebSocket (subprotocol `eventguard.v1`; a "
    "browser may offer its token as the subprotocol `eventguard.bearer.<token>`) streaming the "
    "events the workers publish to operators; it closes with code 4401 when the token expires "
    "or is revoked."
)


def _schema(model: type[BaseModel], components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema.get("properties", {}).items()
    ]


def _operation(route: AdminRoute, components: dict[str, Any]) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^/]+$"},
        }
        for name in _PLACEHOLDER.findall(route.path)
    ]
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    success = "201" if route.method == "POST" and route.path.endswith("/silences") else "200"
    body_schema: dict[str, Any] = (
        _schema(route.response, components, "serialization")
        if route.response is not None
        else {"type": "object"}
    )
    responses: dict[str, Any] = {
        success: {
            "description": "done",
            "content": {"application/json": {"schema": body_schema}},
        }
    }
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}}
    for status, why in _ERRORS.items():
        responses[status] = {"description": why, "content": problem}
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', route.path.lower())}",
        "summary": route.summary or route.action or route.path,
        "description": f"Least role: `{route.min_role}`.",
        "parameters": parameters,
        "responses": responses,
        "security": [] if route.min_role == "guest" else [{"bearer": []}, {"apiKey": []}],
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {"schema": _schema(route.body, components, "validation")}
            },
        }
    return operation


def openapi_document(routes: Sequence[AdminRoute], *, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 for ``routes`` (their paths already rooted at ``/admin/``)."""
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "EventGuard admin API", "version": version, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
