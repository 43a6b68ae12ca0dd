"""The wire contract on the real RabbitMQ: AMQP properties as aiormq delivers them, and the
dead-letter queue's last resort."""

from __future__ import annotations

import json

import aiormq

from common.bus import headers as h
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.raw import RawPipeline
from common.bus.router import Emit, Router
from common.bus.topology import DEAD_DELIVERY_LIMIT, DEAD_LETTER_EXCHANGE, DEAD_QUEUE
from common.bus.topology import UNRECORDED_QUEUE as UNRECORDED
from common.errors import EventGuardError
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested
from tests.integration.bus.conftest import PRODUCER, Rig, until

TYPE = "quarantine.requested"


def _event() -> Envelope[QuarantineRequested]:
    data = QuarantineRequested(kind="producer", entity_id="p", reason="r", requested_by="t")
    return new_event(TYPE, data, source="it")


async def test_properties_decide_the_fate_on_the_real_broker(rig: Rig) -> None:
    """No content_type is JSON; gzip, text/plain, a lying type and a wrong key are dead."""
    broker = await rig.broker()
    handled: list[str] = []

    async def handle(event: Envelope[QuarantineRequested]) -> Emit:
        handled.append(event.id)
        return []

    router = Router()
    router.add(QuarantineRequested, handle)
    await rig.pipeline(broker, router)
    async with aiormq.connect(rig.rabbit_url) as conn:  # a stray binding, as a typo would make
        channel = await conn.channel()
        await channel.queue_bind(rig.work_queue, rig.events, routing_key="quarantine.other")
    plain = _event()
    body = plain.model_dump_json().encode()
    await rig.publish_raw(broker, body, content_type=None, user_id=PRODUCER, type=TYPE)
    await until(lambda: handled == [plain.id])
    breaches = {
        "bad_content_encoding": {"content_encoding": "gzip"},
        "bad_content_type": {"content_type": "text/plain"},
        "type_mismatch": {"type": "opportunity.scan.requested"},
        "routing_key_mismatch": {"routing_key": "quarantine.other"},
    }
    for props in breaches.values():
        other = _event().model_dump_json().encode()
        await rig.publish_raw(broker, other, user_id=PRODUCER, **props)
    await until(lambda: len(rig.dead) == len(breaches))
    assert sorted(str(m.headers[h.REASON]) for m in rig.dead) == sorted(breaches)
    gzip = next(m for m in rig.dead if m.headers[h.REASON] == "bad_content_encoding")
    assert gzip.content_encoding == "gzip"  # the dead letter keeps the property it broke
    assert handled == [plain.id]


async def test_dead_queue_hands_an_unrecordable_message_to_the_last_resort(rig: Rig) -> None:
    """A dead letter that fails every recording attempt ends in the unrecorded queue, once."""
    broker = await rig.broker()
    await rig.declare(broker, [TYPE])
    names = rig.names()
    attempts = 0

    async def always_fails(message: IncomingMessage) -> Emit:
        nonlocal attempts
        attempts += 1
        raise EventGuardError("a recorder bug")

    kept: list[IncomingMessage] = []

    async def keep(message: IncomingMessage) -> None:
        kept.append(message)
        await message.ack()

    raw = RawPipeline(
        worker=rig.worker,
        handler=always_fails,
        publisher=rig.publisher(broker),
        metrics=rig.metrics,
        timeout_s=5,
        retry_pause_s=0,
    )
    await broker.consume(names[DEAD_QUEUE], raw, prefetch=1)
    await broker.consume(names[UNRECORDED], keep, prefetch=10)
    poison = json.dumps({"a": 1}).encode()
    dead = OutgoingMessage(
        body=poison, routing_key=TYPE, exchange=names[DEAD_LETTER_EXCHANGE], user_id=PRODUCER
    )
    await broker.publish(dead)
    await until(lambda: len(kept) == 1, within=30)
    assert kept[0].body == poison
    assert attempts == DEAD_DELIVERY_LIMIT + 1
    await raw.drained()
