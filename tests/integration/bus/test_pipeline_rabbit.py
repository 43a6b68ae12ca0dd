"""The consumer pipeline over the real RabbitMQ and Redis: every fate a message can have."""

from __future__ import annotations

import json
import time

from common.bus import headers as h
from common.bus.idempotency import body_digest
from common.bus.router import Emit, Router
from common.errors import Reject, RetryLater
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested
from tests.integration.bus.conftest import PRODUCER, Rig, until


def _request(reason: str = "ok") -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id="m1", reason=reason, requested_by="t")


class Handler:
    """Records calls; fails on command through the payload's reason."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[str] = []
        self.failures_left = failures

    async def __call__(self, event: Envelope[QuarantineRequested]) -> Emit:
        self.calls.append(event.id)
        if event.data.reason == "crash":
            raise KeyError("bug")
        if event.data.reason == "poison":
            raise Reject("cannot ever work")
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RetryLater("not yet")
        out = QuarantineReleaseRequested(record_id="r1")
        return [new_event("quarantine.release.requested", out, source="it", causation=event)]


def _router(handler: Handler) -> Router:
    router = Router()
    router.add(QuarantineRequested, handler)
    return router


async def test_publish_consume_ack_through_the_pipeline(rig: Rig) -> None:
    """An event is handled once, its output is published and confirmed, the message is acked."""
    broker = await rig.broker()
    handler = Handler()
    await rig.pipeline(broker, _router(handler))
    sent = new_event("quarantine.requested", _request(), source="it")
    await rig.publisher(broker).publish(sent)
    await until(lambda: rig.count("ack") == 1)
    assert handler.calls == [sent.id]
    unrouted = rig.names()["eventguard.unrouted"]  # the output type has no subscriber here
    assert await broker.queue_depth(unrouted) == 1
    assert await broker.queue_depth(rig.work_queue) == 0
    assert rig.dead == []


async def test_retry_through_the_delay_queues_then_success(rig: Rig) -> None:
    """RetryLater twice: the message waits in the 50 ms and 100 ms tiers, then succeeds."""
    broker = await rig.broker()
    handler = Handler(failures=2)
    await rig.pipeline(broker, _router(handler))
    sent = new_event("quarantine.requested", _request(), source="it")
    started = time.perf_counter()
    await rig.publisher(broker).publish(sent)
    await until(lambda: rig.count("ack") == 1)
    assert time.perf_counter() - started >= 0.15
    assert handler.calls == [sent.id] * 3
    assert rig.count("retry") == 2
    assert rig.dead == []


async def test_dead_letter_after_the_last_attempt_carries_every_header(rig: Rig) -> None:
    """A handler that keeps failing is dead-lettered after max_attempts with its reason."""
    broker = await rig.broker()
    handler = Handler()
    await rig.pipeline(broker, _router(handler))
    sent = new_event("quarantine.requested", _request("crash"), source="it")
    await rig.publisher(broker).publish(sent)
    await until(lambda: len(rig.dead) == 1)
    (dead,) = rig.dead
    assert json.loads(dead.body)["id"] == sent.id
    assert dead.message_id == sent.id
    assert dead.headers[h.REASON] == "max_attempts"
    assert dead.headers[h.EXCEPTION] == "KeyError"
    assert "bug" in dead.headers[h.ERROR]
    assert dead.headers[h.ATTEMPT] == 3
    assert dead.headers[h.WORKER] == rig.worker
    assert dead.headers[h.QUEUE] == rig.work_queue
    assert dead.headers[h.ORIGINAL_ROUTING_KEY] == "quarantine.requested"
    assert dead.headers[h.ORIGINAL_EXCHANGE] == rig.events
    assert dead.headers[h.PRODUCER] == PRODUCER
    assert dead.headers[h.DEAD_AT]
    assert len(handler.calls) == 3


async def test_reject_dead_letters_at_once(rig: Rig) -> None:
    """Reject from the handler dead-letters on the first attempt as handler_rejected."""
    broker = await rig.broker()
    handler = Handler()
    await rig.pipeline(broker, _router(handler))
    await rig.publisher(broker).publish(
        new_event("quarantine.requested", _request("poison"), source="it")
    )
    await until(lambda: len(rig.dead) == 1)
    assert rig.dead[0].headers[h.REASON] == "handler_rejected"
    assert rig.dead[0].headers[h.ATTEMPT] == 1
    assert len(handler.calls) == 1


async def test_each_bad_input_is_dead_lettered_and_consuming_goes_on(rig: Rig) -> None:
    """Malformed messages end in the dead queue with their reason; a good one still flows."""
    broker = await rig.broker()
    handler = Handler()
    await rig.pipeline(broker, _router(handler))
    good = new_event("quarantine.requested", _request(), source="it").model_dump_json()
    schema_broken = json.loads(good)
    schema_broken["data"]["kind"] = "volcano"
    bad = {
        "invalid_json": (b"{not json", "quarantine.requested"),
        "wrong_envelope": (b'{"id": "x"}', None),
        "unknown_type": (good.replace("quarantine.requested", "nope.never").encode(), "nope.never"),
        "schema_violation": (json.dumps(schema_broken).encode(), "quarantine.requested"),
        "too_large": (b" " * (rig.settings.max_body_bytes + 1), "quarantine.requested"),
    }
    for body, type_ in bad.values():
        await rig.publish_raw(broker, body, type=type_)
    await rig.publish_raw(broker, good.encode())  # no properties or headers at all: handled
    await until(lambda: len(rig.dead) == len(bad) and rig.count("ack") == 1)
    reasons = sorted(str(m.headers[h.REASON]) for m in rig.dead)
    assert reasons == [
        "invalid_json",
        "schema_violation",
        "schema_violation",
        "too_large",
        "unknown_type",
    ]
    assert all(m.headers[h.WORKER] == rig.worker for m in rig.dead)
    assert sorted(m.body for m in rig.dead) == sorted(body for body, _ in bad.values())
    assert len(handler.calls) == 1
    assert broker.active_consumers(rig.work_queue) == 1


async def test_duplicate_delivery_is_handled_once(rig: Rig) -> None:
    """The same event id delivered twice runs the handler once (Redis claim) and acks both."""
    broker = await rig.broker()
    handler = Handler()
    await rig.pipeline(broker, _router(handler))
    event = new_event("quarantine.requested", _request(), source="it")
    publisher = rig.publisher(broker)
    await publisher.publish(event)
    await until(lambda: rig.count("ack") == 1)
    await publisher.publish(event)  # a redelivery as a producer retrying after a lost confirm
    await until(lambda: rig.count("duplicate") == 1)
    assert handler.calls == [event.id]
    digest = body_digest(event.model_dump_json().encode())
    assert await rig.redis.get(f"{rig.prefix}idem:{rig.worker}:{event.id}") == b"done:" + digest
