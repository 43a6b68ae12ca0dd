"""The runtime with several replicas: per-replica queues, resync, liveness during an outage."""

from __future__ import annotations

import asyncio
import socket

from aiohttp.test_utils import TestClient, TestServer

from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.bus.router import Emit
from common.bus.topology import EVENTS_EXCHANGE
from common.config import Settings
from common.ops import EventStream, build_app
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.service import BaseService, WorkerContext
from common.testing import fast_runtime_settings, run_workers
from schemas.envelope import Envelope
from schemas.quarantine import QuarantineRequested


class Both(BaseService):
    """One shared route, and the broadcast routes every BaseService has (its quarantine view's
    ``quarantine.entry.added``/``.released``); counts resyncs."""

    name = "both"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.resyncs = 0
        self.router.add(QuarantineRequested, self.shared)

    async def shared(self, event: Envelope[QuarantineRequested]) -> Emit:
        return []

    async def resync(self) -> None:
        self.resyncs += 1


async def test_broadcast_types_get_a_queue_of_the_replicas_own() -> None:
    """Every type binds the work queue (one durable copy, handled once); broadcast types also
    bind a queue named after the instance, this replica's own, consumed with no claim."""
    settings = Settings(runtime=fast_runtime_settings(), instance="pod-7")
    async with run_workers([("both", Both)], settings=settings) as fleet:
        running = fleet.runtime.workers["both"]
        work, replica = running.queues
        assert work == "eventguard.both"
        assert replica.startswith("eventguard.both.replica.pod-7.")
        assert running.replica_queue == replica
        assert running.replica_pipeline is not None
        assert running.replica_pipeline.idempotency is None
        bound = fleet.broker._bindings["eventguard.events"]
        assert (work, "quarantine.requested") in bound
        assert (work, "quarantine.entry.added") in bound
        assert (replica, "quarantine.requested") not in bound
        assert (replica, "quarantine.entry.added") in bound


async def test_services_resync_periodically() -> None:
    """The runtime calls every service's resync() every replica_resync_s."""
    settings = Settings(runtime=fast_runtime_settings(replica_resync_s=0.01))
    async with run_workers([("both", Both)], settings=settings) as fleet:
        service = fleet.runtime.workers["both"].service
        assert isinstance(service, Both)
        async with asyncio.timeout(5):
            while service.resyncs < 3:
                await asyncio.sleep(0.005)


async def test_liveness_stays_up_while_the_broker_is_down() -> None:
    """With the broker disconnected /healthz answers 200 (a restart would not help) and says
    the broker is down, while /readyz answers 503."""
    settings = Settings(runtime=fast_runtime_settings(), security=demo_settings(), instance="i-1")
    async with run_workers([("both", Both)], settings=settings) as fleet:
        auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
        app = build_app(fleet.runtime, auth=auth, stream=EventStream())
        async with TestClient(TestServer(app)) as client:
            fleet.broker._connected = False
            live = await client.get("/healthz")
            ready = await client.get("/readyz")
            assert live.status == 200
            assert (await live.json())["broker"] is False
            assert (await live.json())["instance"] == "i-1"
            assert ready.status == 503
            fleet.broker._connected = True


def test_instance_defaults_to_the_host_name() -> None:
    """Without EVENTGUARD_INSTANCE a replica is named by its host (the pod name in k8s)."""
    assert Settings().instance == (socket.gethostname()[:100] or "local")
    assert Settings(instance="pod-1").instance == "pod-1"


async def test_a_poison_broadcast_event_is_dead_lettered_once() -> None:
    """The work queue's copy of a bad broadcast event is dead-lettered (and recorded once);
    the replica's own copy is dropped, not dead-lettered a second time."""
    async with run_workers([("both", Both)]) as fleet:
        await fleet.broker.publish(
            OutgoingMessage(
                body=b'{"not": "an envelope"}',
                routing_key="quarantine.entry.added",
                exchange=EVENTS_EXCHANGE,
                type="quarantine.entry.added",
                user_id="test",
            )
        )
        await fleet.settle()
        assert [m.headers[h.REASON] for m in fleet.dead()] == ["schema_violation"]
        dropped = fleet.metrics.registry.get_sample_value(
            "eventguard_messages_consumed_total",
            {"worker": "both", "type": "quarantine.entry.added", "outcome": "rejected"},
        )
        assert dropped == 2  # both copies refused; one of them dead-lettered
