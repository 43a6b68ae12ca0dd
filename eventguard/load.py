"""``eventguard load``: publish a mix of every consumable event type, with a share of malformed
and poison messages and of deliberate duplicates, and keep a ledger of what became of each.

Every message carries its event id as the AMQP message_id (an invalid JSON body a generated
one). An observer queue (classic, self-expiring) bound with ``#`` to ``eventguard.events``
sees the answers by ``causation_id`` and the quarantine records of dead messages
(``quarantine.entry.added``, kind ``message``, entity_id = the id); for types answered by no
event, the consuming worker's idempotency key in Redis reading ``done`` is the effect (see
:mod:`eventguard.load_ledger`). At the end it prints published, handled, quarantined, lost and
duplicated effects with p50/p99 end-to-end latency per type, and exits non-zero when anything
is lost or done twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from common.bus.amqp import AmqpBroker
from common.bus.broker import Broker
from common.bus.idempotency import is_done
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.nodes import broker_urls
from common.bus.publisher import to_message
from common.bus.topology import (
    EVENTS_EXCHANGE,
    QueueSpec,
    Topology,
    base_exchanges,
    worker_topology,
)
from common.clitools import progress_bar
from common.config import Settings
from common.errors import ConfigError, EventGuardError
from common.metrics import Metrics
from common.security.actors import ActorPolicy
from common.security.roles import Role
from common.store import Store
from eventguard.load_ledger import Ledger, Report, Sent
from eventguard.synthetic import refuse_unless_test_vhost
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Actor, Envelope, Payload, new_event
from schemas.health import AlertRaised, Heartbeat
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import ScanRequested
from schemas.ops import AuditRecorded
from schemas.quarantine import (
    QuarantineDiscardRequested,
    QuarantineEntryAdded,
    QuarantineEntryReleased,
    QuarantineReleaseRequested,
    QuarantineRequested,
)
from workers.registry import consumed_types

__all__ = [
    "ANSWERS",
    "POISON_KINDS",
    "LoadGenerator",
    "Mix",
    "Operator",
    "add_commands",
    "consumers_of",
    "fleet_topologies",
    "operator_for",
]

# Request type -> the event types that answer it (one of them, once, per request).
ANSWERS: dict[str, frozenset[str]] = {
    "quarantine.requested": frozenset({"quarantine.entry.added"}),
    "quarantine.release.requested": frozenset({"quarantine.release.refused"}),
    "quarantine.discard.requested": frozenset({"quarantine.release.refused"}),
    "health.alert.raised": frozenset({"quarantine.entry.added"}),
    "ai.completion.requested": frozenset({"ai.completion.succeeded", "ai.completion.failed"}),
    "opportunity.scan.requested": frozenset({"opportunity.scan.completed"}),
}
POISON_KINDS = ("invalid_json", "schema_violation", "unknown_type", "handler_rejected")
# Dead letters of these types are recorded by quarantine but not announced (an announcement
# could loop), so the ledger could not see them: poison is never made from them.
_UNANNOUNCED = frozenset({"quarantine.entry.added", "quarantine.entry.released"})
# Requests the quarantine worker acts on only for an operator's verified token.
_NEEDS_OPERATOR = frozenset({"quarantine.release.requested", "quarantine.discard.requested"})
# Operators' levers and their answers are never part of a load: they would switch models off or
# silence alerts on the very fleet being measured.
_LEVERS = frozenset(
    f"{domain}.{what}"
    for domain, whats in (
        ("ai.model", ("disable.requested", "enable.requested", "disabled", "enabled")),
        ("health.silence", ("requested", "expire.requested", "created", "expired")),
    )
    for what in whats
)


def _uid() -> str:
    return uuid.uuid4().hex


def _valid(event_type: str, operator: Actor | None, scan_user: str | None = None) -> Envelope[Any]:
    """A valid event of ``event_type`` that its worker handles cheaply (scans for
    ``scan_user``, when given, run for real; otherwise they are refused: nothing owned)."""
    now = datetime.now(UTC)
    actor: Actor | None = None
    data: Payload
    match event_type:
        case "health.heartbeat":
            data = Heartbeat(worker="load", instance="load", started_at=now, uptime_s=1.0)
        case "health.alert.raised":
            data = AlertRaised(
                fingerprint=_uid(),
                rule="LoadProbe",
                severity="critical",
                started_at=now,
                entity_kind="producer",
                entity_id=f"load-{_uid()}",
                quarantine=True,
            )
        case "quarantine.requested":
            data = QuarantineRequested(
                kind="producer",
                entity_id=f"load-{_uid()}",
                reason="load",
                requested_by="load",
                ttl_s=600,
            )
        case "quarantine.release.requested" | "quarantine.discard.requested":
            model = (
                QuarantineReleaseRequested
                if event_type == "quarantine.release.requested"
                else QuarantineDiscardRequested
            )
            data = model(record_id=f"load-{_uid()}")  # an unknown record: refused
            actor = operator
        case "quarantine.entry.added":
            data = QuarantineEntryAdded(
                record_id=_uid(), kind="producer", entity_id=f"load-{_uid()}", reason="load"
            )
        case "quarantine.entry.released":
            data = QuarantineEntryReleased(
                record_id=_uid(), kind="producer", entity_id=f"load-{_uid()}", released_by="load"
            )
        case "ai.completion.requested":
            data = CompletionRequested(
                messages=[Message(role="user", content=f"load {_uid()}")], max_tokens=16
            )
        case "opportunity.scan.requested":
            data = ScanRequested(user_id=scan_user or f"load-nobody-{_uid()[:8]}")
        case "marketplace.strategy.purchased":
            data = StrategyPurchased(user_id=f"load-{_uid()[:8]}", strategy="spot_arbitrage")
        case "marketplace.strategy.revoked":
            data = StrategyRevoked(user_id=f"load-{_uid()[:8]}", strategy="spot_arbitrage")
        case "ops.audit.recorded":
            data = AuditRecorded(
                subject="load",
                role="operator",
                auth="token",
                action="load.probe",
                method="POST",
                route="/admin/load",
                outcome="ok",
                status=200,
                at=now,
                worker="load",
            )
        case _:
            raise ValueError(f"the load generator cannot make {event_type}")
    return new_event(event_type, data, source="load", actor=actor)


@dataclass
class Mix:
    """Which types to publish and what share of poison and duplicates."""

    consumers: Mapping[str, str]  # event type -> the worker consuming it
    poison_share: float = 0.2
    duplicate_share: float = 0.05
    operator: Operator | None = None  # needed for valid release requests
    seed: int = 1
    scan_user: str | None = None  # scans for a user owning strategies reach the market source

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - a load mix, not cryptography
        self.types = sorted(
            t
            for t in self.consumers
            if (t not in _NEEDS_OPERATOR or self.operator is not None) and t not in _LEVERS
        )
        if not self.types:
            raise ConfigError("nothing to publish: no consumable type selected")
        self.poison_bases = [t for t in self.types if t not in _UNANNOUNCED]
        self.rejectable = [
            t
            for t in ("quarantine.requested", "quarantine.release.requested")
            if t in self.consumers
        ]

    def next(self) -> tuple[str, Sent, OutgoingMessage]:
        """One message: its id, what must come of it, and the message."""
        if self.poison_bases and self.rng.random() < self.poison_share:
            return self._poison(self.rng.choice(self.poison_bases))
        event_type = self.rng.choice(self.types)
        operator = self.operator.actor() if self.operator is not None else None
        event = _valid(event_type, operator, self.scan_user)
        answers = ANSWERS.get(event_type, frozenset())
        sent = (
            Sent(event_type, "valid", "result", answers=answers)
            if answers
            else Sent(event_type, "valid", "done", worker=self.consumers[event_type])
        )
        return event.id, sent, to_message(event, user_id=None)

    def _poison(self, base: str) -> tuple[str, Sent, OutgoingMessage]:
        kinds = [k for k in POISON_KINDS if k != "handler_rejected" or self.rejectable]
        kind = self.rng.choice(kinds)
        if kind == "handler_rejected":
            base = self.rng.choice(self.rejectable)
            event: Envelope[Any] = (
                new_event(  # valid, but a permanent block without an admin actor is refused
                    base,
                    QuarantineRequested(
                        kind="producer",
                        entity_id=_uid(),
                        reason="load",
                        requested_by="load",
                        permanent=True,
                    ),
                    source="load",
                )
                if base == "quarantine.requested"
                else new_event(  # no actor: refused as unauthorized
                    base, QuarantineReleaseRequested(record_id=_uid()), source="load"
                )
            )
            return event.id, Sent(base, kind, "quarantine"), to_message(event, user_id=None)
        event = _valid(base, None)
        body = event.model_dump_json()
        message_type = base
        event_id = event.id
        if kind == "invalid_json":
            event_id = _uid()  # the body carries no readable id
            raw = body[: len(body) // 2].encode()
        elif kind == "schema_violation":
            raw = body.replace('"data":{', '"data":{"surplus":1,', 1).encode()
        else:
            message_type = "load.unknown_type"  # routed as ``base``, typed as nothing known
            raw = body.replace(f'"type":"{base}"', f'"type":"{message_type}"', 1).encode()
        message = OutgoingMessage(
            body=raw,
            routing_key=base,
            exchange=EVENTS_EXCHANGE,
            message_id=event_id,
            type=message_type,
        )
        return event_id, Sent(base, kind, "quarantine"), message


class LoadGenerator:
    """Publishes a :class:`Mix` and folds what it observes into a :class:`Ledger`."""

    def __init__(
        self,
        broker: Broker,
        mix: Mix,
        *,
        store: Store | None,
        user_id: str | None,
        replicated: bool = False,
    ) -> None:
        self.broker = broker
        self.replicated = replicated  # a cluster: the observer queue survives a node's loss
        self.mix = mix
        self.store = store
        self.user_id = user_id
        self.ledger = Ledger()
        self.confirmed_at: list[float] = []  # monotonic time of every confirmed publish
        self.observer = f"eventguard.ledger.{_uid()[:12]}"
        self._poller: asyncio.Task[None] | None = None
        if store is None and any(s == "done" for s in self._expectations()):
            raise ConfigError("types answered by no event need Redis to read their effect")

    def _expectations(self) -> Iterable[str]:
        return ("result" if t in ANSWERS else "done" for t in self.mix.types)

    async def start(self, topologies: Iterable[Topology] = ()) -> None:
        """Declare ``topologies`` (so messages wait for workers not up yet), bind a private,
        self-expiring queue to every event type, and poll Redis for effects."""
        for topology in topologies:
            await self.broker.declare(topology)
        spec = QueueSpec(
            self.observer,
            {"x-queue-type": "quorum" if self.replicated else "classic", "x-expires": 120_000},
            bindings=((EVENTS_EXCHANGE, "#"),),
        )
        await self.broker.declare(Topology(exchanges=base_exchanges(), queues=(spec,)))

        async def see(message: IncomingMessage) -> None:
            self.ledger.observe(message.body)
            await message.ack()

        await self.broker.consume(self.observer, see, prefetch=500)
        if self.store is not None:
            self._poller = asyncio.create_task(self._poll_effects(self.store), name="load.poll")

    async def stop(self) -> None:
        """Stop polling Redis."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def _poll_effects(self, store: Store, interval_s: float = 0.1) -> None:
        while True:
            waiting = self.ledger.awaiting_done()[:2000]
            if waiting:
                keys = [store.key("idem", worker, event_id) for worker, event_id in waiting]
                try:
                    values = await store.client.mget(keys)
                except (OSError, EventGuardError, RedisError) as error:  # Redis may be restarting
                    print(f"load: reading effects failed: {error!r}", file=sys.stderr)
                else:
                    now = time.monotonic()
                    for (_, event_id), value in zip(waiting, values, strict=True):
                        if is_done(value):
                            self.ledger.mark_done(event_id, at=now)
            await asyncio.sleep(interval_s)

    async def _send(self, message: OutgoingMessage, deadline_s: float = 60.0) -> None:
        """Publish until confirmed (the broker may be restarting); a retry after an unconfirmed
        publish may deliver twice, which the workers' idempotency must absorb."""
        give_up = time.monotonic() + deadline_s
        delay = 0.05
        while True:
            try:
                await self.broker.publish(message)
            except (EventGuardError, OSError, TimeoutError):
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
            else:
                self.confirmed_at.append(time.monotonic())
                return

    async def publish(
        self,
        count: int,
        *,
        rate: float = 0.0,
        window: int = 64,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """Publish ``count`` messages at ``rate`` per second (0: as fast as confirms allow);
        ``on_sent(1)`` after each (a progress bar)."""
        gate = asyncio.Semaphore(window)
        started = time.monotonic()
        user_id = self.user_id

        async def one(index: int) -> None:
            if rate > 0:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            async with gate:
                event_id, sent, message = self.mix.next()
                message = _as_user(message, user_id)
                self.ledger.record(event_id, sent)
                await self._send(message)
                if sent.kind == "valid" and self.mix.rng.random() < self.mix.duplicate_share:
                    self.ledger.record(event_id, sent)
                    await self._send(message)
            if on_sent is not None:
                on_sent(1)

        await asyncio.gather(*(one(i) for i in range(count)))

    async def wait(self, timeout_s: float, *, settle_s: float = 1.0) -> Report:
        """Wait until every id has an outcome or ``timeout_s`` passes; then, so that a late
        duplicate is counted, ``settle_s`` more; then report."""
        deadline = time.monotonic() + timeout_s
        while not self.ledger.settled() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(settle_s)
        return self.ledger.report()


def _as_user(message: OutgoingMessage, user_id: str | None) -> OutgoingMessage:
    return message if message.user_id == user_id else replace(message, user_id=user_id)


def consumers_of(types: Mapping[str, list[str]], workers: Iterable[str]) -> dict[str, str]:
    """Event type -> consuming worker, for the given workers."""
    return {t: w for w in workers for t in types.get(w, [])}


def fleet_topologies(
    catalogue: Mapping[str, list[str]], workers: Iterable[str], settings: Settings
) -> list[Topology]:
    """The topologies of ``workers``, as the workers themselves declare them."""
    return [worker_topology(worker, catalogue[worker], settings) for worker in workers]


class Operator:
    """The operator on whose behalf release requests are published: an identity that the load
    generator's AMQP user asserts (the actor policy must let it), never a credential."""

    def actor(self) -> Actor:
        """The load operator."""
        return Actor(subject="load-operator", role="operator")


def operator_for(settings: Settings) -> Operator | None:
    """The load operator, when the actor policy lets ``broker_user`` assert an operator on
    release requests (otherwise those would be dead-lettered as unauthorized)."""
    policy = ActorPolicy.from_settings(settings)
    if not policy.may_assert("quarantine.release.requested", settings.broker_user, Role.OPERATOR):
        return None
    return Operator()


def add_commands(subparsers: Any) -> None:
    """Register ``eventguard load``."""
    load = subparsers.add_parser(
        "load", help="publish a mix with poison and duplicates and check the ledger"
    )
    load.add_argument("--count", type=int, default=1000, help="messages to publish")
    load.add_argument(
        "--rate", type=float, default=0.0, help="per second; 0 = as fast as confirms allow"
    )
    load.add_argument(
        "--poison-share", type=float, default=0.2, help="share of malformed or poison messages"
    )
    load.add_argument(
        "--duplicate-share", type=float, default=0.05, help="share of valid ones sent twice"
    )
    load.add_argument(
        "--workers", nargs="*", default=None, help="only the types these workers consume"
    )
    load.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for outcomes")
    load.add_argument("--json", action="store_true", help="print the report as JSON")
    load.add_argument(
        "--i-know-this-is-synthetic",
        dest="synthetic_ok",
        action="store_true",
        help="publish into a vhost whose name does not say test (it receives fake alerts, "
        "quarantine requests, purchases and real AI calls)",
    )
    load.add_argument(
        "--timeline",
        default=None,
        help="write every confirm's and outcome's time (monotonic seconds) to this JSON file; "
        "'load: publishing' on stderr marks its start",
    )
    load.set_defaults(func=_load)


async def _load(args: argparse.Namespace, settings: Settings) -> int:
    urls = broker_urls(settings)
    refuse_unless_test_vhost(urls[0], confirmed=args.synthetic_ok)
    catalogue = consumed_types()
    workers = args.workers or sorted(catalogue)
    consumers = consumers_of(catalogue, workers)
    has_redis = settings.redis_url is not None or bool(settings.redis_sentinels)
    store = Store.from_settings(settings) if has_redis else None
    if store is None:
        consumers = {t: w for t, w in consumers.items() if t in ANSWERS}
    mix = Mix(
        consumers,
        poison_share=args.poison_share,
        duplicate_share=args.duplicate_share,
        operator=operator_for(settings),
    )
    metrics = Metrics()
    broker = AmqpBroker(urls, metrics=metrics, name="eventguard-load")
    await broker.start()
    generator = LoadGenerator(
        broker, mix, store=store, user_id=settings.broker_user, replicated=len(urls) > 1
    )
    try:
        await generator.start(
            fleet_topologies(catalogue, workers, settings)
        )
        if args.timeline:  # the timeline starts now: say so to whoever injects faults
            print("load: publishing", file=sys.stderr, flush=True)
        started = time.monotonic()
        with progress_bar("publishing", args.count) as advance:
            await generator.publish(args.count, rate=args.rate, on_sent=advance)
        published_s = time.monotonic() - started
        report = await generator.wait(args.timeout)
    finally:
        await generator.stop()
        await broker.close()
        if store is not None:
            await store.close()
    republished = {
        sample.labels["reason"]: int(sample.value)
        for family in metrics.runtime.republished.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    if args.timeline:
        timeline = {
            "confirmed": generator.confirmed_at,
            "outcomes": sorted(generator.ledger.outcome_at.values()),
        }
        await asyncio.to_thread(Path(args.timeline).write_text, json.dumps(timeline))
    if args.json:
        figures = {**report.as_dict(), "publish_s": round(published_s, 2)}
        print(json.dumps({**figures, "republished": republished}, indent=2))
    else:
        print(report.text())
        print(f"publish rate {report.copies / max(published_s, 1e-9):.0f} msg/s")
    return 0 if report.ok else 1
