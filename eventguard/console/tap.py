"""What the console hears on the bus: its own queue bound to every event type.

The queue ``eventguard.console.<instance>`` (classic, ``x-expires`` 5 min, at most 10,000
messages, oldest dropped) sees every event on the events exchange. The tap keeps, in memory:
the last heartbeat of every worker instance (the Fleet page), and the last ``keep`` events (Live,
scans, resolved alerts, audit). It acks everything: nothing here is work, only a view, and a
console restart starts with an empty view that fills within one heartbeat interval.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.bus.broker import Broker
from common.bus.message import IncomingMessage
from common.bus.topology import QueueSpec, Topology, base_exchanges
from common.logging import get_logger
from common.security.redaction import redact

__all__ = ["Seen", "Tap"]

_log = get_logger("eventguard.console.tap")
_QUEUE_ARGS: dict[str, str | int] = {
    "x-expires": 300_000,
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
}


@dataclass(frozen=True)
class Seen:
    """One event as the console saw it (the actor's token removed, secrets redacted)."""

    at: float
    id: str
    type: str
    source: str
    actor: str
    data: dict[str, Any]


class Tap:
    """Consumes the console's queue and keeps heartbeats and recent events."""

    def __init__(
        self,
        broker: Broker,
        *,
        exchange: str,
        instance: str,
        keep: int = 2_000,
        declare_exchanges: bool = True,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.exchange = exchange
        self.queue = f"eventguard.console.{instance}"
        self.now = now
        self.declare_exchanges = declare_exchanges
        self.heartbeats: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.events: deque[Seen] = deque(maxlen=keep)
        self._tag: str | None = None

    async def start(self) -> None:
        """Declare the console's queue (and the exchanges, unless the deployment's topology has
        them and the console's broker user may not declare them); consume it."""
        spec = QueueSpec(self.queue, dict(_QUEUE_ARGS), ((self.exchange, "#"),))
        exchanges = base_exchanges() if self.declare_exchanges else ()
        await self.broker.declare(Topology(exchanges=exchanges, queues=(spec,)))
        self._tag = await self.broker.consume(self.queue, self.on_message, prefetch=200)

    async def stop(self) -> None:
        """Stop consuming."""
        if self._tag is not None:
            await self.broker.cancel(self._tag)
            self._tag = None

    async def on_message(self, message: IncomingMessage) -> None:
        """Remember one event, then ack it."""
        try:
            self.remember(message.body)
        finally:
            await message.ack()

    def remember(self, body: bytes) -> None:
        """Decode ``body`` (an envelope) into the view; anything undecodable is skipped."""
        try:
            event = json.loads(body)
            kind, data = str(event["type"]), dict(event.get("data") or {})
        except (ValueError, KeyError, TypeError):
            _log.debug("console.tap_undecodable", size=len(body))  # poison, seen by all
            return
        now = self.now()
        if kind == "health.heartbeat":
            key = (str(data.get("worker", "?")), str(data.get("instance", "?")))
            self.heartbeats[key] = (now, data)
            return
        actor = event.get("actor") or {}
        who = f"{actor.get('subject', '')} ({actor.get('role', '')})" if actor else ""
        event_id, source = str(event.get("id", "")), str(event.get("source", ""))
        self.events.append(Seen(now, event_id, kind, source, who, redact(data)))

    def recent(self, prefix: str = "", limit: int = 100) -> list[Seen]:
        """The newest events whose type starts with ``prefix``, newest first."""
        out: list[Seen] = []
        for seen in reversed(self.events):
            if seen.type.startswith(prefix):
                out.append(seen)
                if len(out) >= limit:
                    break
        return out
