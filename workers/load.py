"""``eventguard load``: publish a mix of events (with a share of poison) and keep a ledger.

Every message carries its event id as the AMQP message_id. An observer queue bound to every
event type watches the results: for each id published, the result event caused by it
(``causation_id``), or for poison the quarantine record of it (``quarantine.entry.added`` with
kind ``message`` and entity_id = the id). At the end it prints published, handled,
quarantined, lost (neither within the timeout) and duplicated effects (more than one distinct
result event for one request), and exits non-zero when lost or duplicated is above zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.bus.amqp import AmqpBroker
from common.bus.broker import Broker
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.publisher import to_message
from common.bus.topology import EVENTS_EXCHANGE, QueueSpec, Topology, base_exchanges
from common.config import Settings
from common.errors import ConfigError
from common.metrics import Metrics
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested

__all__ = [
    "Ledger",
    "LoadGenerator",
    "Report",
    "add_commands",
    "completion_request",
    "quarantine_request",
]

POISON_KINDS = ("invalid_json", "schema_violation", "unknown_type")


@dataclass
class Report:
    """What a run saw."""

    published: int
    handled: int
    quarantined: int
    lost: list[str]
    duplicated: list[str]
    latencies_ms: dict[str, tuple[float, float]]  # type -> (p50, p99)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing done twice."""
        return not self.lost and not self.duplicated

    def text(self) -> str:
        """The summary lines."""
        lines = [
            f"published   {self.published}",
            f"handled     {self.handled}",
            f"quarantined {self.quarantined}",
            f"lost        {len(self.lost)}",
            f"duplicated  {len(self.duplicated)}",
        ]
        for kind, (p50, p99) in sorted(self.latencies_ms.items()):
            lines.append(f"latency {kind}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        return "\n".join(lines)


@dataclass
class Ledger:
    """Ids published and the outcomes observed for them."""

    sent_at: dict[str, float] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)  # id -> "request" | poison kind
    results: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    result_types: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    result_at: dict[str, float] = field(default_factory=dict)
    quarantined: set[str] = field(default_factory=set)

    def observe(self, message: IncomingMessage) -> None:
        """Fold one observed event into the ledger."""
        try:
            event = json.loads(message.body)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        data = event.get("data") or {}
        if event.get("type") == "quarantine.entry.added" and data.get("kind") == "message":
            entity = str(data.get("entity_id"))
            if entity in self.kind:
                self.quarantined.add(entity)
                self.result_at.setdefault(entity, time.monotonic())
            return
        cause = event.get("causation_id")
        if cause in self.kind and self.kind[cause] == "request":
            self.results[cause].add(str(event.get("id")))
            self.result_types[cause].add(str(event.get("type")))
            self.result_at.setdefault(cause, time.monotonic())

    def done(self) -> bool:
        """Every id has an outcome."""
        return all(
            (i in self.quarantined) if k != "request" else bool(self.results.get(i))
            for i, k in self.kind.items()
        )

    def report(self) -> Report:
        """The totals."""
        requests = [i for i, k in self.kind.items() if k == "request"]
        poison = [i for i, k in self.kind.items() if k != "request"]
        handled = [i for i in requests if self.results.get(i)]
        lost = [i for i in requests if not self.results.get(i)]
        lost += [i for i in poison if i not in self.quarantined]
        duplicated = [i for i in requests if len(self.results.get(i, ())) > 1]
        latencies: dict[str, list[float]] = defaultdict(list)
        for i, at in self.result_at.items():
            latencies[self.kind[i]].append((at - self.sent_at[i]) * 1000)
        summary = {}
        for kind, values in latencies.items():
            values.sort()
            summary[kind] = (
                values[len(values) // 2],
                values[min(len(values) - 1, int(len(values) * 0.99))],
            )
        return Report(
            len(self.kind), len(handled), len(self.quarantined), lost, duplicated, summary
        )


def quarantine_request() -> Envelope[Any]:
    """A request the quarantine worker answers with exactly one event."""
    data = QuarantineRequested(
        kind="producer",
        entity_id=f"load-{uuid.uuid4().hex}",
        reason="load",
        requested_by="load",
        ttl_s=60,
    )
    return new_event("quarantine.requested", data, source="load")


def completion_request() -> Envelope[Any]:
    """A request the AI fallback worker answers with succeeded or failed."""
    data = CompletionRequested(
        messages=[Message(role="user", content=f"load {uuid.uuid4().hex}")], max_tokens=16
    )
    return new_event("ai.completion.requested", data, source="load")


class LoadGenerator:
    """Publishes requests (each answered by exactly one event) and a share of poison."""

    def __init__(
        self,
        broker: Broker,
        *,
        user_id: str | None,
        poison_share: float,
        seed: int = 1,
        make: Callable[[], Envelope[Any]] = quarantine_request,
    ):
        self.make = make
        self.broker = broker
        self.user_id = user_id
        self.poison_share = poison_share
        self.rng = random.Random(seed)  # noqa: S311 - a load mix, not cryptography
        self.ledger = Ledger()
        self.observer = f"eventguard.ledger.{uuid.uuid4().hex[:12]}"

    async def start_observing(self) -> None:
        """Bind a private, self-expiring queue to every event type."""
        spec = QueueSpec(
            self.observer,
            {"x-queue-type": "classic", "x-expires": 120_000},
            bindings=((EVENTS_EXCHANGE, "#"),),
        )
        await self.broker.declare(Topology(exchanges=base_exchanges(), queues=(spec,)))

        async def see(message: IncomingMessage) -> None:
            self.ledger.observe(message)
            await message.ack()

        await self.broker.consume(self.observer, see, prefetch=500)

    def _message(self) -> tuple[str, str, OutgoingMessage]:
        event = self.make()
        if self.rng.random() >= self.poison_share:
            return event.id, "request", to_message(event, user_id=self.user_id)
        kind = self.rng.choice(POISON_KINDS)
        body = event.model_dump_json()
        if kind == "invalid_json":
            raw = body[: len(body) // 2].encode()
        elif kind == "schema_violation":
            raw = body.replace('"data":{', '"data":{"surplus":1,').encode()
        else:
            raw = body.replace(event.type, "load.unknown_type").encode()
        message = OutgoingMessage(
            body=raw,
            routing_key=event.type,
            exchange=EVENTS_EXCHANGE,
            message_id=event.id,
            type=event.type if kind != "unknown_type" else "load.unknown_type",
            user_id=self.user_id,
        )
        return event.id, kind, message

    async def publish(self, count: int, *, rate: float = 0.0, window: int = 64) -> None:
        """Publish ``count`` messages, at ``rate`` per second (0: as fast as confirms allow)."""
        gate = asyncio.Semaphore(window)
        started = time.monotonic()

        async def one(index: int) -> None:
            async with gate:
                if rate > 0:
                    delay = started + index / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                event_id, kind, message = self._message()
                self.ledger.kind[event_id] = kind
                self.ledger.sent_at[event_id] = time.monotonic()
                for attempt in range(20):  # the broker may be restarting: keep the message
                    try:
                        await self.broker.publish(message)
                        break
                    except Exception:  # noqa: BLE001 - retried; the ledger counts it as lost
                        await asyncio.sleep(min(2.0, 0.1 * (attempt + 1)))

        await asyncio.gather(*(one(i) for i in range(count)))

    async def wait(self, timeout_s: float) -> Report:
        """Wait until every id has an outcome or ``timeout_s`` passes; then report."""
        deadline = time.monotonic() + timeout_s
        while not self.ledger.done() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let any duplicate arrive before counting
        return self.ledger.report()


def add_commands(subparsers: Any) -> None:
    """Register ``eventguard load``."""
    load = subparsers.add_parser("load", help="publish a mix with poison and check the ledger")
    load.add_argument("--count", type=int, default=1000)
    load.add_argument(
        "--rate", type=float, default=0.0, help="per second; 0 = as fast as confirms allow"
    )
    load.add_argument("--poison-share", type=float, default=0.2)
    load.add_argument("--timeout", type=float, default=60.0)
    load.set_defaults(func=_load)


async def _load(args: argparse.Namespace, settings: Settings) -> int:
    if settings.broker_url is None:
        raise ConfigError("EVENTGUARD_BROKER_URL is missing")
    broker = AmqpBroker(
        settings.broker_url.get_secret_value(), metrics=Metrics(), name="eventguard-load"
    )
    await broker.start()
    try:
        generator = LoadGenerator(
            broker, user_id=settings.broker_user, poison_share=args.poison_share
        )
        await generator.start_observing()
        await generator.publish(args.count, rate=args.rate)
        report = await generator.wait(args.timeout)
    finally:
        await broker.close()
    print(report.text())
    return 0 if report.ok else 1
