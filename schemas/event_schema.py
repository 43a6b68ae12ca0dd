"""The JSON Schema of one event type's envelope, with what the pydantic model cannot say:
``type`` pinned as a ``const``, ``specversion`` required, the body size limit, an example."""

from __future__ import annotations

from typing import Any

from schemas.examples import example
from schemas.registry import envelope_model

__all__ = ["DEFAULT_MAX_BODY_BYTES", "JSON_SCHEMA_DIALECT", "envelope_schema"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_MAX_BODY_BYTES = 256 * 1024  # EVENTGUARD_RUNTIME__MAX_BODY_BYTES' default


def envelope_schema(
    event_type: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ref_template: str = "#/$defs/{model}",
) -> dict[str, Any]:
    """The JSON Schema of ``event_type``'s envelope, with the contract the model cannot say."""
    schema = envelope_model(event_type).model_json_schema(ref_template=ref_template)
    schema["title"] = event_type
    schema["description"] = (
        f"One {event_type} event: a CloudEvents 1.0 envelope, UTF-8 JSON on the wire, at most "
        f"{max_body_bytes} bytes (a larger body is dead-lettered as too_large). Published to "
        f"the eventguard.events topic exchange with routing key and AMQP type {event_type!r}."
    )
    schema["x-eventguard-max-body-bytes"] = max_body_bytes
    properties = schema["properties"]
    properties["type"] = {"const": event_type, "type": "string", "title": "Type"}
    required = schema.setdefault("required", [])
    if "specversion" not in required:
        required.insert(0, "specversion")
    schema["examples"] = [example(event_type)]
    return schema
