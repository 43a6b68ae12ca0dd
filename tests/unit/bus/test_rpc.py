"""Request/reply on the in-memory broker: the same helper as on RabbitMQ."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from common.bus.memory import MemoryBroker
from common.bus.message import OutgoingMessage
from common.bus.publisher import Publisher
from common.bus.router import Emit
from common.bus.rpc import request
from common.metrics import Metrics
from common.service import BaseService, WorkerContext
from common.testing import run_workers
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested


class Answer(BaseService):
    """Replies to quarantine.requested with a release request naming the entity."""

    name = "answer"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.router.add(QuarantineRequested, self.handle, reply=True)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        out = QuarantineReleaseRequested(record_id=f"r-{event.data.entity_id}")
        return [new_event("quarantine.release.requested", out, source=self.name, causation=event)]


def _request(entity: str) -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id=entity, reason="ok", requested_by="t")


async def test_request_reply_in_memory() -> None:
    """The reply caused by the request comes back; its temporary reply queue is removed."""
    async with run_workers([("answer", Answer)]) as harness:
        event = new_event("quarantine.requested", _request("m7"), source="test")
        reply = await request(harness.producer, event, timeout_s=2)
        assert reply.causation_id == event.id
        assert reply.data.record_id == "r-m7"
        assert not any(q.startswith("amq.gen-reply") for q in harness.broker._queues)


async def test_request_without_responder_times_out_in_memory() -> None:
    """No consumer: TimeoutError, and nothing is left behind."""
    broker = MemoryBroker()
    await broker.start()
    broker.declare_queue("quarantine.requested")  # the request waits there, unanswered
    publisher = Publisher(
        broker, worker="t", user_id="t", metrics=Metrics(CollectorRegistry()), exchange=""
    )
    event = new_event("quarantine.requested", _request("m1"), source="test")
    with pytest.raises(TimeoutError):
        await request(publisher, event, timeout_s=0.05)
    await broker.close()


async def test_reply_goes_out_before_the_topic_copy_and_beside_the_outbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The requester's answer waits neither for the topic copy's confirm nor for the outbox
    write; the topic copy waits for the outbox, and the ack for both confirms."""
    async with run_workers([("answer", Answer)]) as harness:
        broker, publish = harness.broker, harness.broker.publish
        events: list[str] = []

        async def slow_confirm(message: OutgoingMessage) -> None:
            kind = message.type if message.exchange else "reply"
            events.append(f"sent {kind}")
            if message.exchange:
                await asyncio.sleep(0.05)  # a slow confirm of the durable copy
            await publish(message)
            events.append(f"confirmed {kind}")

        monkeypatch.setattr(broker, "publish", slow_confirm)
        event = new_event("quarantine.requested", _request("m9"), source="test")
        reply = await request(harness.producer, event, timeout_s=2)
        events.append("answered")
        await harness.settle()
    assert reply.data.record_id == "r-m9"
    assert events.index("answered") < events.index("confirmed quarantine.release.requested")
    assert events.index("sent reply") < events.index("sent quarantine.release.requested")
