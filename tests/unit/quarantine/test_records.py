"""Recording dead messages byte for byte: the header codec, reasons and destinations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from common.bus import headers as h
from common.bus.message import HeaderValue, IncomingMessage
from workers.quarantine.records import (
    classify,
    dead_message_from,
    decode_headers,
    encode_headers,
    release_headers,
)


async def _noop(*_args: object) -> None:
    return None


def _incoming(body: bytes, headers: dict[str, HeaderValue], **kw: object) -> IncomingMessage:
    values: dict[str, object] = {
        "routing_key": "x.y",
        "exchange": "eventguard.dlx",
        "queue": "eventguard.dead",
        "message_id": None,
        "type": None,
        "correlation_id": None,
        "reply_to": None,
        "user_id": None,
        "app_id": None,
        "timestamp": None,
        "content_type": None,
        "redelivered": False,
        **kw,
    }
    return IncomingMessage(body=body, headers=headers, _ack=_noop, _reject=_noop, **values)  # type: ignore[arg-type]


def test_header_codec_keeps_every_type() -> None:
    """bytes, datetimes, decimals, nested tables and lists survive the JSON round trip."""
    headers: dict[str, HeaderValue] = {
        "raw": b"\xff\x00",
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "price": Decimal("1.50"),
        "n": 7,
        "flag": True,
        "nested": {"list": [1, "a", b"b"], "none": None},
    }
    assert decode_headers(encode_headers(headers)) == headers


def test_x_death_only_message() -> None:
    """A message RabbitMQ dead-lettered itself: reason and destination come from x-death."""
    death = {
        "queue": "eventguard.ai_fallback",
        "reason": "delivery_limit",
        "count": 21,
        "exchange": "eventguard.events",
        "routing-keys": ["ai.completion.requested"],
    }
    dead = dead_message_from(_incoming(b"{}", {"x-death": [death]}, user_id="svc"))
    assert dead.reason == "delivery_limit"
    assert classify(dead.reason) == "transient"
    assert dead.attempts == 21
    assert dead.queue == "eventguard.ai_fallback"
    assert dead.producer == "svc"
    assert dead.destination is not None
    assert dead.destination.exchange == "eventguard.events"
    assert dead.destination.routing_key == "ai.completion.requested"


def test_unknown_reason_is_bounded() -> None:
    """A reason header outside the known codes is recorded as unknown (labels stay bounded)."""
    dead = dead_message_from(_incoming(b"x", {h.REASON: "made-up " * 50}))
    assert dead.reason == "unknown"
    assert dead.destination is None


def test_record_id_is_deterministic_and_ignores_redelivery_count() -> None:
    """The same dead message maps to one id, a different dead-at to another."""
    base = {h.REASON: "invalid_json", h.DEAD_AT: "2026-01-01T00:00:00+00:00"}
    first = dead_message_from(_incoming(b"body", dict(base), message_id="m1"))
    again = dead_message_from(
        _incoming(b"body", {**base, "x-delivery-count": 3}, message_id="m1", redelivered=True)
    )
    later = dead_message_from(
        _incoming(b"body", {**base, h.DEAD_AT: "2026-01-02T00:00:00+00:00"}, message_id="m1")
    )
    assert first.record_id == again.record_id
    assert first.record_id != later.record_id


def test_release_headers_reset_attempts_and_keep_producer() -> None:
    """Death marks go, the producer and custom headers stay, the release id is added, and the
    dead message's traceparent becomes the origin its trace links to."""
    headers: dict[str, HeaderValue] = {
        h.REASON: "max_attempts",
        h.ATTEMPT: 5,
        h.DEAD_AT: "t",
        h.PRODUCER: "svc",
        "x-death": [{}],
        "traceparent": "00-abc",
    }
    out = release_headers(headers, "rel1")
    assert out == {
        h.PRODUCER: "svc",
        "traceparent": "00-abc",
        h.RELEASE_ID: "rel1",
        h.ORIGIN_TRACEPARENT: "00-abc",
    }
