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
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from common.bus.amqp import AmqpBroker
from common.bus.broker import Broker
from common.bus.idempotency import is_done
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.nodes import broker_urls
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
from common.store import Store
from eventguard.load_ledger import Ledger, Report
from eventguard.load_mix import ANSWERS, Mix, operator_for
from eventguard.synthetic import refuse_unless_test_vhost
from workers.registry import consumed_types

__all__ = ["LoadGenerator", "add_commands", "consumers_of", "fleet_topologies"]

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
        self.observer = f"eventguard.ledger.{uuid.uuid4().hex[:12]}"
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
