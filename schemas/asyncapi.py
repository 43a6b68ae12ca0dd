"""The AsyncAPI 3.1 document of the fleet's events.

One channel per event type on the ``eventguard.events`` topic exchange (address = routing key
= type), each naming the producers allowed to publish it; a ``replies`` channel for
request/reply (``amq.rabbitmq.reply-to``); one send operation per type, one receive operation
per (worker, type), and ``reply`` objects on requests. Every message carries the AMQP
properties and headers of the contract. What this module cannot know (the server, the
producer policy, the body limit, the dead-letter reasons) comes in a :class:`Contract` that
``eventguard schema export`` builds from the settings; ``@asyncapi/parser`` validates the
result in the test suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from schemas.event_schema import DEFAULT_MAX_BODY_BYTES, envelope_schema
from schemas.examples import example
from schemas.registry import CATALOGUE, REPLIES

__all__ = ["AMQP_PROPERTIES", "Contract", "asyncapi_document"]

_EXCHANGE = "eventguard.events"
_AMQP = {"bindingVersion": "0.3.0"}
_REPLIES_CHANNEL = "replies"

# The AMQP properties of every event (docs/wire-contract.md says more).
AMQP_PROPERTIES: dict[str, dict[str, Any]] = {
    "user_id": {
        "required": True,
        "description": "The producer's RabbitMQ user; RabbitMQ rejects a user_id other than "
        "the connection's own, and the producer policy of the channel decides (else "
        "dead-lettered unauthorized).",
    },
    "message_id": {"required": True, "description": "The envelope's id."},
    "type": {
        "required": False,
        "description": "The event type; when present it must equal the body's type (else "
        "type_mismatch).",
    },
    "content_type": {
        "required": False,
        "description": "application/json (charset=utf-8 allowed); absent means JSON; "
        "anything else is dead-lettered bad_content_type.",
    },
    "content_encoding": {
        "required": False,
        "description": "Absent or identity; anything else is dead-lettered "
        "bad_content_encoding.",
    },
    "correlation_id": {
        "required": False,
        "description": "For request/reply: copied onto the reply sent to reply_to.",
    },
    "reply_to": {
        "required": False,
        "description": "amq.rabbitmq.reply-to to get the answers of a request directly.",
    },
    "delivery_mode": {"required": False, "description": "2 (persistent) is recommended."},
    "timestamp": {"required": False, "description": "Informational."},
    "app_id": {"required": False, "description": "Informational."},
}

_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "AMQP headers. A producer may set traceparent and tracestate (W3C trace "
    "context): a worker with tracing on continues that trace and writes its own publish span's "
    "context on everything it publishes; with tracing off they are copied unchanged onto retry "
    "copies and dead letters. The x-eventguard-* headers are written by the runtime on retry "
    "copies, dead letters and releases, and believed only from a worker's own user or a relay "
    "user.",
    "properties": {
        "traceparent": {
            "type": "string",
            "description": "W3C trace context: the span that published this message.",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        },
        "tracestate": {
            "type": "string",
            "description": "W3C trace state (vendor entries), travels with traceparent.",
            "maxLength": 512,
        },
        "x-eventguard-origin-traceparent": {
            "type": "string",
            "description": "Set on a quarantine release: the traceparent the dead message "
            "carried; the spans of the released copy link to that trace.",
        },
        "x-eventguard-producer": {
            "type": "string",
            "description": "The original producer of a relayed copy (retry, release).",
        },
        "x-eventguard-attempt": {"type": "integer", "minimum": 0},
        "x-eventguard-routing-key": {
            "type": "string",
            "description": "The original routing key of a retry copy or dead letter.",
        },
        "x-eventguard-exchange": {"type": "string"},
        "x-eventguard-release-id": {
            "type": "string",
            "description": "Set on a dead message re-published by a quarantine release.",
        },
        "x-eventguard-reason": {
            "type": "string",
            "description": "On dead letters only: why (docs/wire-contract.md).",
        },
        "x-eventguard-exception": {"type": "string"},
        "x-eventguard-error": {"type": "string"},
        "x-eventguard-worker": {"type": "string"},
        "x-eventguard-queue": {"type": "string"},
        "x-eventguard-dead-at": {"type": "string", "format": "date-time"},
    },
}


@dataclass(frozen=True)
class Contract:
    """What the document states beyond the models: server, producer policy, limits."""

    host: str = "localhost:5672"
    vhost: str = "/"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    producers: Mapping[str, Sequence[str]] = field(default_factory=dict)  # type -> AMQP users
    dead_reasons: Sequence[str] = ()


def _key(event_type: str) -> str:
    return event_type.replace(".", "_")


def _channel(event_type: str, contract: Contract) -> dict[str, Any]:
    key = _key(event_type)
    producers = sorted(contract.producers.get(event_type, ()))
    who = ", ".join(producers) if producers else "nobody outside the fleet's configuration"
    return {
        "address": event_type,
        "title": event_type,
        "description": (
            f"Publish to {_EXCHANGE} with routing key {event_type!r} (the AMQP type property, "
            f"when set, must match). Producers allowed (AMQP user_id): {who}; any other "
            "producer's message is dead-lettered unauthorized."
        ),
        "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        "servers": [{"$ref": "#/servers/rabbitmq"}],
        "x-eventguard-producers": producers,
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": _EXCHANGE,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": contract.vhost,
                },
                **_AMQP,
            }
        },
    }


def _replies_channel(contract: Contract) -> dict[str, Any]:
    types = sorted({t for answers in REPLIES.values() for t in answers})
    return {
        "address": None,
        "title": "replies",
        "description": "A requester's reply queue, named by the request's reply_to property "
        "(amq.rabbitmq.reply-to, direct reply-to); each answer carries the request's "
        "correlation_id. The same answers are also published on their own channels.",
        "messages": {_key(t): {"$ref": f"#/components/messages/{_key(t)}"} for t in types},
        "servers": [{"$ref": "#/servers/rabbitmq"}],
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": "amq.rabbitmq.reply-to",
                    "durable": False,
                    "exclusive": True,
                    "autoDelete": True,
                    "vhost": contract.vhost,
                },
                **_AMQP,
            }
        },
    }


def _reply(event_type: str) -> dict[str, Any]:
    return {
        "address": {
            "description": "The request's AMQP reply_to property (amq.rabbitmq.reply-to).",
            "location": "$message.header#/reply_to",
        },
        "channel": {"$ref": f"#/channels/{_REPLIES_CHANNEL}"},
        "messages": [
            {"$ref": f"#/channels/{_REPLIES_CHANNEL}/messages/{_key(t)}"}
            for t in REPLIES[event_type]
        ],
    }


def _message(event_type: str, payload: dict[str, Any], contract: Contract) -> dict[str, Any]:
    doc = (CATALOGUE[event_type].__doc__ or "").strip()
    summary = doc.split("\n\n")[0].replace("\n", " ").replace("    ", " ")
    return {
        "name": event_type,
        "title": event_type,
        "summary": summary[:300],
        "description": f"UTF-8 JSON, at most {contract.max_body_bytes} bytes.",
        "contentType": "application/json",
        "payload": payload,
        "traits": [{"$ref": "#/components/messageTraits/amqp"}],
        "bindings": {"amqp": {"messageType": event_type, **_AMQP}},
        "examples": [{"name": "example", "payload": example(event_type)}],
    }


def _trait(contract: Contract) -> dict[str, Any]:
    reasons = ", ".join(contract.dead_reasons)
    return {
        "headers": {"$ref": "#/components/schemas/AmqpHeaders"},
        "correlationId": {
            "description": "The envelope's correlation_id (the AMQP correlation_id property "
            "on replies).",
            "location": "$message.payload#/correlation_id",
        },
        "description": (
            "AMQP properties: "
            + "; ".join(f"{name}: {p['description']}" for name, p in AMQP_PROPERTIES.items())
            + (f" Dead-letter reasons: {reasons}." if reasons else "")
        ),
        "x-amqp-properties": AMQP_PROPERTIES,
    }


def asyncapi_document(
    consumers: Mapping[str, Sequence[str]], *, version: str, contract: Contract | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.1 document: ``consumers`` maps each worker to the types it consumes."""
    contract = contract or Contract()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    shared: dict[str, Any] = {"AmqpHeaders": _HEADERS}
    for event_type in sorted(CATALOGUE):
        key = _key(event_type)
        payload = envelope_schema(
            event_type,
            max_body_bytes=contract.max_body_bytes,
            ref_template="#/components/schemas/{model}",
        )
        shared.update(payload.pop("$defs", {}))
        payload.pop("examples", None)  # the message's examples hold it
        messages[key] = _message(event_type, payload, contract)
        channels[key] = _channel(event_type, contract)
        send: dict[str, Any] = {
            "action": "send",
            "title": f"publish {event_type}",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, **_AMQP}},
        }
        if event_type in REPLIES:
            send["reply"] = _reply(event_type)
        operations[f"send_{key}"] = send
    channels[_REPLIES_CHANNEL] = _replies_channel(contract)
    for worker, types in sorted(consumers.items()):
        for event_type in sorted(types):
            key = _key(event_type)
            receive: dict[str, Any] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
                "bindings": {"amqp": {"ack": True, **_AMQP}},
                "description": f"consumed from quorum queue eventguard.{worker}",
            }
            if event_type in REPLIES:
                receive["reply"] = _reply(event_type)
            operations[f"{worker}_receives_{key}"] = receive
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "EventGuard events",
            "version": version,
            "description": (
                f"Events on the {_EXCHANGE} topic exchange; routing key = type. Wire JSON is "
                "validated strictly against each message's schema (no string-to-number or "
                "string-to-bool coercion; times are RFC 3339 strings with an offset); bodies "
                f"over {contract.max_body_bytes} bytes are refused. A message that breaks the "
                "contract is dead-lettered with a reason (docs/wire-contract.md)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": contract.host,
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "pathname": "/" + quote(contract.vhost, safe=""),
                "description": f"RabbitMQ, vhost {contract.vhost!r}. Each producer connects as "
                "its own user and sets the user_id property to it.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": shared,
            "messageTraits": {"amqp": _trait(contract)},
        },
    }
