"""Request/reply over the bus: publish an event, wait for the event answering it.

The request goes to the events exchange like any event, with ``reply_to`` set to a private
reply address (RabbitMQ's direct reply-to on AMQP, a temporary queue in memory) and the AMQP
``correlation_id`` set to the request's event id, so concurrent requests sharing an envelope
correlation id never take each other's replies. The worker answering it registers its route
with ``reply=True``; the pipeline sends its output there as well as to the topic.

    reply = await request(publisher, new_event("ai.completion.requested", data, source="me"),
                          timeout_s=30)
    if reply.type == "ai.completion.failed": ...
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from common.bus.publisher import Publisher, to_message
from common.errors import DeliveryError
from schemas.envelope import Envelope
from schemas.registry import envelope_model, is_known

__all__ = ["request"]


async def request(publisher: Publisher, event: Envelope[Any], *, timeout_s: float) -> Envelope[Any]:
    """Publish ``event`` (confirmed) and return the validated reply.

    Raises TimeoutError when no reply comes within ``timeout_s``, DeliveryError when the
    request is not taken by the broker or the reply is not a catalogue event.
    """
    message = to_message(
        event,
        user_id=publisher.user_id,
        exchange=publisher.exchange,
        correlation_id=event.id,
    )
    reply = await publisher.broker.request_reply(message, timeout_s=timeout_s)
    event_type = reply.type or ""
    if not is_known(event_type):
        raise DeliveryError(f"reply to {event.id} has an unknown type {event_type!r}")
    try:
        return envelope_model(event_type).model_validate_json(reply.body)
    except ValidationError as error:
        raise DeliveryError(f"reply to {event.id} is not a valid {event_type}") from error
