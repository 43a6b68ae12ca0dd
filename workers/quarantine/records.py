"""What a quarantine record holds, how a dead message becomes one, and how reasons are classed.

A dead message is recorded byte for byte: the body as bytes, the headers as JSON in which
every value keeps its type (bytes as ``{"$b64": ...}``, datetimes as ``{"$dt": ...}``, decimals
as ``{"$dec": ...}``), and the AMQP properties. Nothing about the message has to be valid:
a body that is not UTF-8, huge, or a message with no headers is recorded with what can be
known, and the reason falls back to RabbitMQ's own ``x-death`` or ``unknown``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from common.bus import headers as h
from common.bus.message import HeaderValue, IncomingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.security.producers import ANONYMOUS
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineEntryAdded

__all__ = [
    "ACTIVE",
    "ENTITY_REASONS",
    "PERMANENT_REASONS",
    "REASON_CODES",
    "STATUSES",
    "TRANSIENT_REASONS",
    "DeadMessage",
    "Destination",
    "classify",
    "dead_message_from",
    "decode_headers",
    "encode_headers",
    "entry_added",
    "reason_code",
    "record_id_for",
    "release_headers",
]

STATUSES = ("quarantined", "under_review", "releasing", "released", "discarded")
ACTIVE = frozenset({"quarantined", "under_review"})

# Reasons that cannot pass on a retry: the same bytes will fail the same way (every runtime
# reason but max_attempts; see common.bus.headers.DeadReason).
PERMANENT_REASONS = h.DEAD_REASONS - {"max_attempts"}
# Reasons a message ran out of chances for, though it might pass later.
# (``producer_blocked`` passes once the producer's block ends.)
TRANSIENT_REASONS = frozenset(
    {"max_attempts", "delivery_limit", "expired", "maxlen", "producer_blocked"}
)
ENTITY_REASONS = frozenset({"requested", "health_alert", "flood"})
REASON_CODES = PERMANENT_REASONS | TRANSIENT_REASONS | ENTITY_REASONS | {"rejected", "unknown"}

# Headers the runtime or RabbitMQ added on the way to the dead-letter queue; a release drops
# them so the message starts afresh (the producer header stays: it authorises the relay).
_DEATH_HEADERS = frozenset(
    {
        h.ATTEMPT,
        h.REASON,
        h.EXCEPTION,
        h.ERROR,
        h.ORIGINAL_ROUTING_KEY,
        h.ORIGINAL_EXCHANGE,
        h.WORKER,
        h.QUEUE,
        h.DEAD_AT,
        h.RELEASE_ID,
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
_UNSTABLE_HEADERS = frozenset({"x-delivery-count"})  # changes on redelivery, not identity


def reason_code(value: str) -> str:
    """``value`` if it is a known reason code, else ``unknown`` (metric labels stay bounded)."""
    return value if value in REASON_CODES else "unknown"


def classify(reason: str) -> str:
    """``permanent``, ``transient``, ``entity`` or ``unknown``."""
    if reason in PERMANENT_REASONS:
        return "permanent"
    if reason in TRANSIENT_REASONS:
        return "transient"
    if reason in ENTITY_REASONS:
        return "entity"
    return "unknown"


# -- header codec ---------------------------------------------------------------------------


def _encode(value: HeaderValue) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return {"$repr": repr(value)}


def _decode(value: Any) -> HeaderValue:
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$b64":
                return base64.b64decode(inner)
            if tag == "$dt":
                return datetime.fromisoformat(inner)
            if tag == "$dec":
                return Decimal(inner)
            if tag == "$repr":
                return str(inner)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def encode_headers(headers: dict[str, HeaderValue]) -> str:
    """Headers as JSON, every value's type kept (see the module docstring)."""
    return json.dumps({str(k): _encode(v) for k, v in headers.items()}, sort_keys=True)


def decode_headers(text: str | bytes) -> dict[str, HeaderValue]:
    """The headers :func:`encode_headers` wrote."""
    data = json.loads(text) if text else {}
    return {k: _decode(v) for k, v in data.items()}


# -- dead messages --------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where a released message goes: its original exchange and routing key."""

    exchange: str
    routing_key: str


@dataclass(frozen=True)
class DeadMessage:
    """A dead message as recorded: bytes, headers, properties, and what could be learnt."""

    record_id: str
    body: bytes
    headers: dict[str, HeaderValue]
    properties: dict[str, Any]
    reason: str
    detail: str
    exception: str
    attempts: int
    worker: str
    queue: str
    producer: str
    event_type: str
    event_id: str
    dead_at: str
    destination: Destination | None
    headers_json: str = ""  # encode_headers(headers), when already computed
    # Set by workers.quarantine.scrub: the original body's digest and size, and whether
    # anything was redacted before recording.
    original_sha256: str = ""
    original_size: int | None = None
    redacted: bool = False

    def fields(self, *, now: float) -> dict[str, Any]:
        """The record hash of this message."""
        dest = self.destination
        return {
            "id": self.record_id,
            "kind": "message",
            "entity_id": self.event_id or self.record_id,
            "status": "quarantined",
            "reason": self.reason,
            "class": classify(self.reason),
            "detail": self.detail,
            "exception": self.exception,
            "severity": "warning",
            "created_at": repr(now),
            "updated_at": repr(now),
            "body": self.body,
            "body_size": str(len(self.body) if self.original_size is None else self.original_size),
            "body_sha256": self.original_sha256 or hashlib.sha256(self.body).hexdigest(),
            "redacted": "1" if self.redacted else "0",
            "headers": self.headers_json or encode_headers(self.headers),
            "props": json.dumps(self.properties, sort_keys=True),
            "exchange": dest.exchange if dest else "",
            "routing_key": dest.routing_key if dest else "",
            "attempts": str(self.attempts),
            "worker": self.worker,
            "queue": self.queue,
            "producer": self.producer,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "dead_at": self.dead_at,
            "requested_by": "eventguard.dead",
        }


def _text(value: HeaderValue, limit: int = 2_000) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[:limit]
    return str(value)[:limit]


def _first_death(headers: dict[str, HeaderValue]) -> dict[str, HeaderValue]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], dict):
        return dict(deaths[0])
    return {}


def _destination(headers: dict[str, HeaderValue]) -> Destination | None:
    key = headers.get(h.ORIGINAL_ROUTING_KEY)
    if key is not None:
        exchange = headers.get(h.ORIGINAL_EXCHANGE)
        return Destination(_text(exchange) if exchange is not None else EVENTS_EXCHANGE, _text(key))
    death = _first_death(headers)
    keys = death.get("routing-keys")
    if isinstance(keys, list | tuple) and keys:
        return Destination(_text(death.get("exchange", EVENTS_EXCHANGE)), _text(keys[0]))
    return None


def _peek_event(body: bytes) -> tuple[str, str]:
    """The envelope's id and type, when the body is a JSON object that has them.

    Anything else (not JSON, not UTF-8, nested past the parser's depth, over 4 MiB) yields
    nothing: the record is kept byte for byte all the same.
    """
    if not body.startswith(b"{") or len(body) > 4 * 1024 * 1024:
        return "", ""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    eid, etype = data.get("id"), data.get("type")
    return (
        str(eid)[:128] if isinstance(eid, str) else "",
        str(etype)[:128] if isinstance(etype, str) else "",
    )


def _attempts(headers: dict[str, HeaderValue], death: dict[str, HeaderValue]) -> int:
    for value in (headers.get(h.ATTEMPT), death.get("count"), headers.get("x-delivery-count")):
        try:
            if value is not None:
                return max(0, int(value))
        except (TypeError, ValueError):
            continue
    return 0


def record_id_for(body: bytes, stable_headers_json: str, message_id: str | None) -> str:
    """A deterministic id: the same dead message redelivered maps to the same record.

    SHA-256 over the body, the message id and the headers (canonical JSON, minus the
    redelivery counter), which include the runtime's reason and dead-at time, so the same
    event dead-lettered again later is a new record.
    """
    digest = hashlib.sha256()
    digest.update(body)
    digest.update(b"\x00" + (message_id or "").encode() + b"\x00")
    digest.update(stable_headers_json.encode())
    return digest.hexdigest()[:32]


def dead_message_from(message: IncomingMessage) -> DeadMessage:
    """Everything that can be known about a delivery from ``eventguard.dead``."""
    headers = dict(message.headers or {})
    death = _first_death(headers)
    if h.REASON in headers:
        reason = reason_code(_text(headers[h.REASON], 64))
    elif death:
        reason = reason_code(_text(death.get("reason"), 64))
    else:
        reason = "unknown"
    event_id, event_type = _peek_event(message.body)
    # The pipeline names the producer in a header (``anonymous`` when the message had no
    # user_id); without it, the message's own user_id. Never the dead-lettering worker's user.
    if h.PRODUCER in headers:
        producer = _text(headers.get(h.PRODUCER), 200) or ANONYMOUS
    else:
        producer = message.user_id or ANONYMOUS
    properties = {
        "message_id": message.message_id,
        "type": message.type,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "user_id": message.user_id,
        "app_id": message.app_id,
        "timestamp": message.timestamp.isoformat() if message.timestamp else None,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "routing_key": message.routing_key,
        "exchange": message.exchange,
        "redelivered": message.redelivered,
    }
    headers_json = encode_headers(headers)
    stable_json = (
        encode_headers({k: v for k, v in headers.items() if k not in _UNSTABLE_HEADERS})
        if _UNSTABLE_HEADERS & headers.keys()
        else headers_json
    )
    return DeadMessage(
        record_id=record_id_for(message.body, stable_json, message.message_id),
        headers_json=headers_json,
        body=message.body,
        headers=headers,
        properties=properties,
        reason=reason,
        detail=_text(headers.get(h.ERROR)),
        exception=_text(headers.get(h.EXCEPTION), 200),
        attempts=_attempts(headers, death),
        worker=_text(headers.get(h.WORKER), 200),
        queue=_text(headers.get(h.QUEUE) or death.get("queue"), 300),
        producer=producer,
        event_type=(message.type or event_type)[:128],
        event_id=(event_id or message.message_id or "")[:128],
        dead_at=_text(headers.get(h.DEAD_AT) or death.get("time"), 64),
        destination=_destination(headers),
    )


def release_headers(headers: dict[str, HeaderValue], release_id: str) -> dict[str, HeaderValue]:
    """The original headers without the death marks, plus the release id (and the dead
    message's ``traceparent`` as the origin its trace links to)."""
    kept = {k: v for k, v in headers.items() if k not in _DEATH_HEADERS}
    kept[h.RELEASE_ID] = release_id
    if h.TRACEPARENT in headers:  # the released copy's spans link to the dead message's trace
        kept[h.ORIGIN_TRACEPARENT] = headers[h.TRACEPARENT]
    return kept


def entry_added(
    record: dict[str, Any], *, source: str, causation: Envelope[Any] | None
) -> Envelope[Any]:
    """``quarantine.entry.added`` for a stored record (entity or message)."""
    expires = record.get("expires_at") or ""
    data = QuarantineEntryAdded(
        record_id=str(record["id"]),
        kind=record["kind"],
        entity_id=str(record.get("entity_id") or record["id"]),
        reason=str(record.get("detail") or record.get("reason", ""))[:2000],
        severity=record.get("severity") or "warning",
        expires_at=float(expires) if expires else None,
    )
    return new_event("quarantine.entry.added", data, source=source, causation=causation)
