"""OutgoingMessage.with_headers: the same message as ``dataclasses.replace`` would make."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from common.bus.message import OutgoingMessage


def test_with_headers_keeps_every_other_field() -> None:
    """Every field set to a value of its own (none at its default): only the headers change."""
    message = OutgoingMessage(
        body=b"{}",
        routing_key="quarantine.requested",
        exchange="eventguard.events",
        headers={"x-eventguard-attempt": 2},
        message_id="id-1",
        type="quarantine.requested",
        correlation_id="corr-1",
        reply_to="amq.rabbitmq.reply-to",
        user_id="producer",
        app_id="app",
        timestamp=datetime(2026, 12, 2, tzinfo=UTC),
        content_type="application/vnd.test+json",
        mandatory=False,
        content_encoding="identity",
    )
    defaults = OutgoingMessage(b"", "", "")
    changed = [f.name for f in dataclasses.fields(OutgoingMessage)]
    assert all(getattr(message, n) != getattr(defaults, n) for n in changed)
    copy = message.with_headers({"traceparent": "00-1-2-01"})
    assert copy == dataclasses.replace(message, headers={"traceparent": "00-1-2-01"})
    assert message.headers == {"x-eventguard-attempt": 2}
