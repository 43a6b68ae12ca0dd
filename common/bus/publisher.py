"""Publishing events: envelope -> AMQP message with mirrored properties, confirmed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from common.bus.amqp import DIRECT_REPLY_TO
from common.bus.broker import Broker
from common.bus.message import HeaderValue, OutgoingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.metrics import Metrics
from schemas.envelope import Envelope

__all__ = ["Publisher", "to_message"]

EventListener = Callable[[Envelope[Any]], None]


def to_message(
    event: Envelope[Any],
    *,
    user_id: str | None,
    exchange: str = EVENTS_EXCHANGE,
    routing_key: str | None = None,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    headers: Mapping[str, HeaderValue] | None = None,
) -> OutgoingMessage:
    """The AMQP message for ``event``: properties mirror the envelope, persistent, mandatory."""
    return OutgoingMessage(
        body=event.model_dump_json().encode(),
        routing_key=routing_key or event.type,
        exchange=exchange,
        headers=dict(headers or {}),
        message_id=event.id,
        type=event.type,
        correlation_id=correlation_id or event.correlation_id,
        reply_to=reply_to,
        user_id=user_id,
        app_id=event.source,
        timestamp=event.time,
    )


class Publisher:
    """Publishes events for one worker; every publish waits for the broker's confirm."""

    def __init__(
        self,
        broker: Broker,
        *,
        worker: str,
        user_id: str | None,
        metrics: Metrics,
        exchange: str = EVENTS_EXCHANGE,
    ) -> None:
        self.broker = broker
        self.worker = worker
        self.user_id = user_id
        self.exchange = exchange
        self._metrics = metrics.runtime
        self._listeners: list[EventListener] = []

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every event published (the ops stream uses this)."""
        self._listeners.append(listener)

    async def publish(
        self,
        event: Envelope[Any],
        *,
        reply_to: str | None = None,
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> None:
        """Publish ``event`` to the events exchange and wait for the confirm."""
        await self.broker.publish(
            to_message(
                event,
                user_id=self.user_id,
                exchange=self.exchange,
                reply_to=reply_to,
                headers=headers,
            )
        )
        self._metrics.published.labels(self.worker, event.type).inc()
        for listener in self._listeners:
            listener(event)

    async def reply(
        self, event: Envelope[Any], *, reply_to: str, correlation_id: str | None
    ) -> None:
        """Send ``event`` straight to a requester's reply queue.

        A reply to RabbitMQ's direct reply-to goes out without ``mandatory``: RabbitMQ returns a
        mandatory publish there as unroutable even when it delivers it (seen on 3.10), and a
        requester that left loses nothing the topic copy does not keep.
        """
        message = to_message(
            event,
            user_id=self.user_id,
            exchange="",
            routing_key=reply_to,
            correlation_id=correlation_id,
        )
        if reply_to.startswith(DIRECT_REPLY_TO):
            message = replace(message, mandatory=False)
        await self.broker.publish(message)
        self._metrics.published.labels(self.worker, event.type).inc()
