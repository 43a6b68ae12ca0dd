"""JSON Schema for every event and an AsyncAPI 3.0 document of the exchange and queues."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas.registry import CATALOGUE, envelope_model

__all__ = ["asyncapi_document", "event_schemas", "write_all"]

_EXCHANGE = "eventguard.events"


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each event type's full envelope, by type."""
    return {t: envelope_model(t).model_json_schema() for t in sorted(CATALOGUE)}


def asyncapi_document(consumers: Mapping[str, Sequence[str]], *, version: str) -> dict[str, Any]:
    """AsyncAPI 3.0: one channel per event type on the topic exchange, one receive operation per
    (worker, type) and one send operation per type."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for event_type in sorted(CATALOGUE):
        key = event_type.replace(".", "_")
        payload = envelope_model(event_type).model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        shared.update(payload.pop("$defs", {}))
        messages[key] = {"name": event_type, "contentType": "application/json", "payload": payload}
        channels[key] = {
            "address": event_type,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": _EXCHANGE, "type": "topic", "durable": True, "vhost": "/"},
                    "bindingVersion": "0.3.0",
                }
            },
        }
        operations[f"send_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": "0.3.0"}},
        }
    for worker, types in sorted(consumers.items()):
        for event_type in sorted(types):
            key = event_type.replace(".", "_")
            operations[f"{worker}_receives_{key}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "bindings": {"amqp": {"ack": True, "bindingVersion": "0.3.0"}},
                "description": f"consumed from quorum queue eventguard.{worker}",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "EventGuard events",
            "version": version,
            "description": "Events on the eventguard.events topic exchange; routing key = type.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": shared},
    }


def write_all(out: Path, consumers: Mapping[str, Sequence[str]], *, version: str) -> list[Path]:
    """Write ``<type>.schema.json`` for each event and ``asyncapi.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in event_schemas().items():
        path = out / f"{event_type}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    path = out / "asyncapi.json"
    path.write_text(json.dumps(asyncapi_document(consumers, version=version), indent=2) + "\n")
    written.append(path)
    return written
