"""The consumer pipeline's fates on the in-memory broker and fakeredis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import fakeredis
from structlog.testing import capture_logs

from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.bus.router import Emit
from common.bus.topology import EVENTS_EXCHANGE
from common.errors import Reject, RetryLater
from common.reliability.errors import CircuitOpen
from common.service import BaseService, WorkerContext
from common.testing import Harness, run_workers
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested


class Echo(BaseService):
    """Answers quarantine.requested; fails on command through the reason text."""

    name = "echo"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.calls: list[str] = []
        self.failures_left = 0
        self.router.add(QuarantineRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        self.calls.append(event.id)
        reason = event.data.reason
        if reason == "poison":
            raise Reject("cannot ever work")
        if reason == "flaky" and self.failures_left > 0:
            self.failures_left -= 1
            raise RetryLater("not yet")
        if reason == "crash":
            raise KeyError("bug")
        if reason == "breaker" and self.failures_left > 0:
            self.failures_left -= 1
            raise CircuitOpen("llm:m1", remaining_s=0.03)
        data = QuarantineReleaseRequested(record_id=event.data.entity_id)
        return [new_event("quarantine.release.requested", data, source=self.name, causation=event)]


def _request(reason: str) -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id="m1", reason=reason, requested_by="t")


services: dict[str, Echo] = {}


def _factory(ctx: WorkerContext) -> Echo:
    services["echo"] = Echo(ctx)
    return services["echo"]


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def _raw(harness: Harness, body: bytes, *, type_: str | None, **kw: Any) -> None:
    await harness.broker.publish(
        OutgoingMessage(
            body=body,
            routing_key="quarantine.requested",
            exchange=EVENTS_EXCHANGE,
            type=type_,
            **kw,
        )
    )


async def test_publish_consume_ack_emits_output() -> None:
    """A handled event is acked and its output event is published with the causation chain."""
    async with run_workers([("echo", _factory)]) as harness:
        sent = await harness.publish("quarantine.requested", _request("ok"))
        out = await harness.wait_for("quarantine.release.requested")
        await harness.settle()
        assert out.causation_id == sent.id
        assert out.correlation_id == sent.correlation_id
        assert harness.dead() == []
        assert services["echo"].calls == [sent.id]


async def test_retry_then_success_counts_attempts_in_headers() -> None:
    """A RetryLater goes through the delay queue and succeeds on a later attempt."""
    async with run_workers([("echo", _factory)]) as harness:
        services["echo"].failures_left = 2
        sent = await harness.publish("quarantine.requested", _request("flaky"))
        await harness.wait_for("quarantine.release.requested")
        assert services["echo"].calls == [sent.id] * 3
        retried = [
            m for m in harness.broker.published if m.routing_key.startswith("eventguard.echo.retry")
        ]
        assert [m.headers[h.ATTEMPT] for m in retried] == [1, 2]


async def test_an_open_breaker_delays_the_retry_until_it_may_let_a_probe_through() -> None:
    """CircuitOpen carries how long the breaker stays open: the retry waits in the first
    delay tier at least that long (here 40 ms for 30 ms), not the first one by attempt."""
    async with run_workers([("echo", _factory)]) as harness:
        services["echo"].failures_left = 1
        await harness.publish("quarantine.requested", _request("breaker"))
        await harness.wait_for("quarantine.release.requested")
        retried = [
            m.routing_key
            for m in harness.broker.published
            if m.routing_key.startswith("eventguard.echo.retry")
        ]
        assert retried == ["eventguard.echo.retry.40ms"]


async def test_dead_letter_after_last_attempt_with_headers() -> None:
    """A handler that keeps failing is dead-lettered with reason max_attempts and every header."""
    async with run_workers([("echo", _factory)]) as harness:
        sent = await harness.publish("quarantine.requested", _request("crash"))
        await _until(lambda: bool(harness.dead()))
        (dead,) = harness.dead()
        assert dead.headers[h.REASON] == "max_attempts"
        assert dead.headers[h.EXCEPTION] == "KeyError"
        assert dead.headers[h.ATTEMPT] == 3
        assert dead.headers[h.WORKER] == "echo"
        assert dead.headers[h.ORIGINAL_ROUTING_KEY] == "quarantine.requested"
        assert dead.headers[h.PRODUCER] == "test"
        assert json.loads(dead.body)["id"] == sent.id
        assert len(services["echo"].calls) == 3


async def test_reject_dead_letters_at_once() -> None:
    """Reject from a handler dead-letters on the first attempt with handler_rejected."""
    async with run_workers([("echo", _factory)]) as harness:
        await harness.publish("quarantine.requested", _request("poison"))
        await harness.settle()
        (dead,) = harness.dead()
        assert dead.headers[h.REASON] == "handler_rejected"
        assert dead.headers[h.ERROR] == "cannot ever work"


async def test_bad_input_each_kind_dead_letters_with_reason() -> None:
    """Malformed messages end in the dead queue with their reason, and consuming goes on."""
    async with run_workers([("echo", _factory)]) as harness:
        good = new_event("quarantine.requested", _request("ok"), source="t").model_dump_json()
        await _raw(harness, b"{not json", type_="quarantine.requested")
        await _raw(harness, b'{"id": "x"}', type_=None)
        unknown = good.replace("quarantine.requested", "nope.never").encode()
        await _raw(harness, unknown, type_="nope.never")
        bad_payload = json.loads(good)
        bad_payload["data"]["kind"] = "volcano"
        await _raw(harness, json.dumps(bad_payload).encode(), type_="quarantine.requested")
        await _raw(harness, b" " * (300 * 1024), type_="quarantine.requested")
        await _raw(harness, good.encode(), type_=None)  # no properties at all: still handled
        await harness.settle()
        reasons = sorted(str(m.headers[h.REASON]) for m in harness.dead())
        assert reasons == [
            "invalid_json",
            "schema_violation",
            "schema_violation",
            "too_large",
            "unknown_type",
        ]
        assert len(services["echo"].calls) == 1


async def test_duplicate_delivery_is_handled_once() -> None:
    """The same event id delivered twice runs the handler once and is acked as duplicate."""
    async with run_workers([("echo", _factory)]) as harness:
        event = new_event("quarantine.requested", _request("ok"), source="t")
        for _ in range(2):
            await harness.producer.publish(event)
            await harness.settle()
        assert services["echo"].calls == [event.id]
        counted = harness.metrics.registry.get_sample_value(
            "eventguard_messages_consumed_total",
            {"worker": "echo", "type": "quarantine.requested", "outcome": "duplicate"},
        )
        assert counted == 1.0


async def test_unauthorized_producer_is_dead_lettered() -> None:
    """A producer the authorizer refuses never reaches the handler."""

    def only_ops(event: Envelope[Any], producer: str) -> tuple[h.DeadReason, str] | None:
        return None if producer == "ops" else ("unauthorized", f"{producer} is not ops")

    async with run_workers([("echo", _factory)], authorize=only_ops) as harness:
        await harness.publish("quarantine.requested", _request("ok"), user_id="mallory")
        await harness.settle()
        (dead,) = harness.dead()
        assert dead.headers[h.REASON] == "unauthorized"
        assert services["echo"].calls == []


async def test_redis_down_during_the_claim_retries_later_instead_of_crashing() -> None:
    """redis-py's ConnectionError on the claim sends the message through the retry queue (it
    used to escape as a pipeline crash and be requeued at once, in a hot loop)."""
    server = fakeredis.FakeServer()
    server.connected = False
    async with run_workers(
        [("echo", _factory)], redis=fakeredis.FakeAsyncRedis(server=server)
    ) as harness:
        with capture_logs() as logs:
            sent = await harness.publish("quarantine.requested", _request("ok"))
            await _until(lambda: any(e["event"] == "message.retry_scheduled" for e in logs))
            server.connected = True
            out = await harness.wait_for("quarantine.release.requested")
        assert out.causation_id == sent.id
        assert not [e for e in logs if e["event"] == "pipeline.crashed"]
        assert services["echo"].calls == [sent.id]
