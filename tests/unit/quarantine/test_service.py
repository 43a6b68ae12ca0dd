"""The quarantine worker on the in-memory broker and fakeredis."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.bus.topology import DEAD_LETTER_EXCHANGE
from common.errors import DeliveryError
from common.quarantine_view import QuarantineView
from common.security.admission import Admission
from common.service import BaseService, WorkerContext
from common.testing import Harness, run_workers
from schemas.envelope import Actor
from schemas.health import AlertRaised
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested
from tests.unit.quarantine.conftest import (
    POISON_TYPE,
    Clock,
    factories,
    poison_payload,
    settings,
    until,
)
from workers.quarantine.records import decode_headers

OPERATOR = Actor(subject="alice", role="operator")


async def test_poison_is_recorded_with_every_header() -> None:
    """A rejected message lands in a record with its body and every dead-letter header."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        sent = await env.publish(POISON_TYPE, poison_payload())
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        q = holder["quarantine"]
        record = await q.repo.get(added.data.record_id)
        assert record is not None
        assert json.loads(record["body"])["id"] == sent.id
        headers = decode_headers(record["headers"])
        assert headers[h.REASON] == "handler_rejected"
        assert headers[h.WORKER] == "poison"
        assert headers[h.PRODUCER] == "test"
        assert record["reason"] == "handler_rejected"
        assert record["class"] == "permanent"
        assert record["routing_key"] == POISON_TYPE
        assert record["status"] == "quarantined"
        total, rows = await q.repo.search(status="quarantined", kind="message")
        assert total == 1
        assert rows[0]["id"] == added.data.record_id


async def test_release_twice_republishes_once_and_runs_once() -> None:
    """Two release requests re-publish once; the released message runs through its worker."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        sent = await env.publish(POISON_TYPE, poison_payload())
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        holder["poison"].accept = True
        request = QuarantineReleaseRequested(record_id=added.data.record_id, note="fixed")
        await env.publish("quarantine.release.requested", request, actor=OPERATOR)
        await env.publish("quarantine.release.requested", request, actor=OPERATOR)
        released = await env.wait_for("quarantine.entry.released")
        refused = await env.wait_for("quarantine.release.refused")
        await env.settle()
        assert refused.data.reason in {"already_released", "in_progress"}
        republished = [m for m in env.broker.published if m.headers.get(h.RELEASE_ID)]
        assert len(republished) == 1
        assert republished[0].headers[h.RELEASE_ID] == released.data.release_id
        assert h.REASON not in republished[0].headers
        assert h.ATTEMPT not in republished[0].headers
        assert republished[0].headers[h.PRODUCER] == "test"
        assert holder["poison"].calls == [sent.id, sent.id]


async def test_release_without_role_is_dead_lettered_unauthorized() -> None:
    """A release asked by a plain user is refused as unauthorized and changes nothing."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        await env.publish(POISON_TYPE, poison_payload())
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        request = QuarantineReleaseRequested(record_id=added.data.record_id)
        await env.publish(
            "quarantine.release.requested", request, actor=Actor(subject="bob", role="user")
        )
        await until(
            lambda: env.metrics.quarantine.added.labels("message", "unauthorized")._value.get() == 1
        )
        record = await holder["quarantine"].repo.get(added.data.record_id)
        assert record is not None
        assert record["status"] == "quarantined"


async def test_release_of_unknown_record_answers_clearly() -> None:
    """Releasing an id that does not exist answers quarantine.release.refused unknown_record."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        request = QuarantineReleaseRequested(record_id="nope")
        await env.publish("quarantine.release.requested", request, actor=OPERATOR)
        refused = await env.wait_for("quarantine.release.refused")
        assert refused.data.reason == "unknown_record"


async def test_crash_after_publish_is_completed_once_on_restart() -> None:
    """A release interrupted after its publish is finished with the same id, effect once."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings(tick_s=3600)) as env:
        sent = await env.publish(POISON_TYPE, poison_payload())
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        holder["poison"].accept = True
        q = holder["quarantine"]
        real = q.repo.transition

        async def crash(record_id: str, to: str, **kw: Any) -> Any:
            if to == "released":
                raise RuntimeError("killed between publish and state change")
            return await real(record_id, to, **kw)

        q.repo.transition = crash
        with contextlib.suppress(RuntimeError):
            await q.releaser.release(added.data.record_id, by="alice")
        q.repo.transition = real
        record = await q.repo.get(added.data.record_id)
        assert record is not None
        assert record["status"] == "releasing"
        first_id = record["release_id"]
        # "restart": the start-up recovery resumes every releasing record
        assert await q.housekeeping.finish_interrupted(q.now() + 1) == 1
        await env.settle()
        record = await q.repo.get(added.data.record_id)
        assert record is not None
        assert record["status"] == "released"
        ids = [m.headers[h.RELEASE_ID] for m in env.broker.published if m.headers.get(h.RELEASE_ID)]
        assert ids == [first_id, first_id]
        assert holder["poison"].calls == [sent.id, sent.id]  # the duplicate copy did not run


async def test_ttl_expiry_releases_entity_with_event() -> None:
    """An entity blocked with a TTL is released at expiry by the tick, with an event."""
    clock = Clock()
    holder: dict[str, Any] = {}
    async with run_workers(factories(clock, holder), settings=settings()) as env:
        request = QuarantineRequested(
            kind="ai_model", entity_id="gpt-x", reason="errors", ttl_s=60, requested_by="hm"
        )
        await env.publish("quarantine.requested", request)
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "ai_model")
        q = holder["quarantine"]
        assert added.data.expires_at == clock.now + 60
        assert await q.is_blocked("ai_model", "gpt-x")
        clock.now += 61
        released = await env.wait_for("quarantine.entry.released")
        assert released.data.entity_id == "gpt-x"
        assert released.data.released_by == "expiry"
        assert not await q.is_blocked("ai_model", "gpt-x")


async def test_permanent_block_needs_admin() -> None:
    """A permanent quarantine.requested from an operator is dead-lettered unauthorized."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        request = QuarantineRequested(
            kind="producer", entity_id="p", reason="x", permanent=True, requested_by="op"
        )
        await env.publish("quarantine.requested", request, actor=OPERATOR)
        await until(
            lambda: env.metrics.quarantine.added.labels("message", "unauthorized")._value.get() == 1
        )
        assert not await holder["quarantine"].is_blocked("producer", "p")
        await env.publish(
            "quarantine.requested", request, actor=Actor(subject="root", role="admin")
        )
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "producer")
        assert added.data.expires_at is None


async def test_unknown_kind_is_a_schema_violation() -> None:
    """A quarantine.requested with an unknown kind is dead-lettered as schema_violation."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        body = json.dumps(
            {
                "id": "bad1",
                "type": "quarantine.requested",
                "source": "t",
                "time": "2026-01-01T00:00:00Z",
                "data": {"kind": "planet", "entity_id": "x", "reason": "r", "requested_by": "t"},
            }
        ).encode()
        await env.broker.publish(
            OutgoingMessage(
                body=body,
                routing_key="quarantine.requested",
                exchange="eventguard.events",
                type="quarantine.requested",
            )
        )
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        record = await holder["quarantine"].repo.get(added.data.record_id)
        assert record is not None
        assert record["reason"] == "schema_violation"


async def test_odd_dead_messages_recorded_byte_for_byte() -> None:
    """Non-UTF-8, huge and header-less dead messages are recorded exactly, reason unknown."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        bodies = [b"\xff\xfe\x00garbage", b"x" * (2 * 1024 * 1024), b""]
        for body in bodies:
            await env.broker.publish(
                OutgoingMessage(body=body, routing_key="", exchange=DEAD_LETTER_EXCHANGE)
            )
        await until(lambda: len(env.emitted("quarantine.entry.added")) == 3)
        q = holder["quarantine"]
        stored = []
        for event in env.emitted("quarantine.entry.added"):
            record = await q.repo.get(event.data.record_id)
            assert record is not None
            assert record["reason"] == "unknown"
            stored.append(record["body"])
        assert sorted(stored) == sorted(bodies)


async def test_redelivery_makes_no_second_record() -> None:
    """The same dead message delivered twice is one record."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        message = OutgoingMessage(
            body=b'{"id": "e1"}',
            routing_key="x.y",
            exchange=DEAD_LETTER_EXCHANGE,
            headers={h.REASON: "invalid_json", h.DEAD_AT: "2026-01-01T00:00:00+00:00"},
            message_id="e1",
        )
        await env.broker.publish(message)
        await env.broker.publish(message)
        await env.settle()
        total, _ = await holder["quarantine"].repo.search()
        assert total == 1


async def test_flood_quarantines_producer_and_records_everything() -> None:
    """Dead letters past the threshold from one producer block it; all are recorded."""
    holder: dict[str, Any] = {}
    config = settings(flood_producer_threshold=20, flood_type_threshold=1000)
    async with run_workers(factories(Clock(), holder), settings=config) as env:
        for i in range(50):
            await env.broker.publish(
                OutgoingMessage(
                    body=f"poison {i}".encode(),
                    routing_key="x.y",
                    exchange=DEAD_LETTER_EXCHANGE,
                    headers={h.REASON: "invalid_json", h.PRODUCER: "mallory"},
                )
            )
        await env.settle()
        q = holder["quarantine"]
        total, _ = await q.repo.search(kind="message")
        assert total == 50
        assert await q.is_blocked("producer", "mallory")
        floods = [e for e in env.emitted("quarantine.entry.added") if e.data.kind == "producer"]
        assert len(floods) == 1
        assert env.metrics.quarantine.floods.labels("producer")._value.get() == 1


async def test_critical_alert_quarantines_entity() -> None:
    """health.alert.raised critical with quarantine true blocks the named entity."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        alert = AlertRaised(
            fingerprint="f1",
            rule="model_errors",
            severity="critical",
            entity_kind="ai_model",
            entity_id="gpt-x",
            quarantine=True,
            started_at=datetime.now(UTC),
        )
        await env.publish("health.alert.raised", alert)
        await env.publish(
            "health.alert.raised",
            alert.model_copy(update={"severity": "warning", "entity_id": "other"}),
        )
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "ai_model")
        await env.settle()
        assert added.data.entity_id == "gpt-x"
        assert await holder["quarantine"].is_blocked("ai_model", "gpt-x")
        assert not await holder["quarantine"].is_blocked("ai_model", "other")


async def test_type_flood_quarantines_event_type() -> None:
    """Dead letters of one type past its threshold block the type as an entity."""
    holder: dict[str, Any] = {}
    config = settings(flood_producer_threshold=10_000, flood_type_threshold=15)
    async with run_workers(factories(Clock(), holder), settings=config) as env:
        for i in range(20):
            await env.broker.publish(
                OutgoingMessage(
                    body=f"p{i}".encode(),
                    routing_key="x.y",
                    exchange=DEAD_LETTER_EXCHANGE,
                    type="ai.completion.requested",
                    headers={h.REASON: "schema_violation", h.PRODUCER: f"p{i}"},
                )
            )
        await env.settle()
        assert await holder["quarantine"].is_blocked("event_type", "ai.completion.requested")


async def test_read_honours_expiry_before_the_tick() -> None:
    """A read of an expired block releases it at once, without waiting for the tick."""
    clock = Clock()
    holder: dict[str, Any] = {}
    async with run_workers(factories(clock, holder), settings=settings(tick_s=3600)) as env:
        q = holder["quarantine"]
        await q._block(
            record_id="e1",
            kind="strategy",
            entity_id="s1",
            reason="requested",
            detail="d",
            severity="info",
            evidence={},
            requested_by="t",
            ttl_s=5,
            now=clock.now,
            causation=None,
        )
        clock.now += 6
        assert not await q.is_blocked("strategy", "s1")
        released = await env.wait_for("quarantine.entry.released")
        assert released.data.released_by == "expiry"


@contextlib.asynccontextmanager
async def _one_dead_message_in_the_outbox(clock: Clock) -> AsyncIterator[tuple[Any, Harness]]:
    """Quarantine with one recorded dead message waiting in its outbox, and no announcer
    running: the test drives the outbox by hand."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(clock, holder), settings=settings(tick_s=3600)) as env:
        q = holder["quarantine"]
        await q.stop()
        await env.broker.publish(
            OutgoingMessage(body=b"x", routing_key="", exchange=DEAD_LETTER_EXCHANGE)
        )
        await env.settle()
        yield q, env


async def test_unconfirmed_announcement_is_sent_again() -> None:
    """An announcement claimed but never confirmed (crash) is published again after the lease."""
    clock = Clock()
    async with _one_dead_message_in_the_outbox(clock) as (q, env):
        claimed = await q.repo.claim_announcements(10, now=clock.now, lease_s=30)
        assert len(claimed) == 1  # ... and the process dies before publishing
        assert await q.housekeeping.announce_outbox() == 0  # still leased
        clock.now += 31
        assert await q.housekeeping.announce_outbox() == 1
        assert len(env.emitted("quarantine.entry.added")) == 1
        assert await q.housekeeping.announce_outbox() == 0


async def test_a_failed_announcement_gives_its_claim_back_at_once() -> None:
    """The broker refuses the publish: the claim is returned, and the next try (not the one
    after the lease) announces it, once."""
    clock = Clock()
    async with _one_dead_message_in_the_outbox(clock) as (q, env):
        publisher = q.housekeeping.publisher
        real = publisher.publish

        async def refused(*_args: Any, **_kwargs: Any) -> None:
            raise DeliveryError("broker away")

        publisher.publish = refused
        with pytest.raises(DeliveryError):
            await q.housekeeping.announce_outbox()
        publisher.publish = real
        assert await q.housekeeping.announce_outbox() == 1  # no lease to wait out
        assert len(env.emitted("quarantine.entry.added")) == 1
        assert await q.housekeeping.announce_outbox() == 0


class Viewer(BaseService):
    """A worker that reads the local quarantine view every service keeps, like ai_fallback."""

    name = "viewer"

    @property
    def view(self) -> QuarantineView:
        """The view the base service registered."""
        return self.quarantine


async def test_other_workers_view_follows_alerts_and_releases() -> None:
    """A critical alert blocks a model in another worker's view; an operator's release frees it."""
    holder: dict[str, Any] = {}
    viewers: list[Viewer] = []

    def viewer(ctx: WorkerContext) -> Viewer:
        viewers.append(Viewer(ctx))
        return viewers[-1]

    clock = Clock(time.time())  # the view checks expiry against the wall clock
    async with run_workers(
        [*factories(clock, holder), ("viewer", viewer)], settings=settings()
    ) as env:
        alert = AlertRaised(
            fingerprint="f2",
            rule="model_errors",
            severity="critical",
            entity_kind="ai_model",
            entity_id="gpt-x",
            quarantine=True,
            started_at=datetime.now(UTC),
        )
        await env.publish("health.alert.raised", alert)
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "ai_model")
        await until(lambda: viewers[0].view.is_quarantined("ai_model", "gpt-x"))
        request = QuarantineReleaseRequested(record_id=added.data.record_id)
        await env.publish("quarantine.release.requested", request, actor=OPERATOR)
        await until(lambda: not viewers[0].view.is_quarantined("ai_model", "gpt-x"))


async def test_second_block_merges_into_the_active_one() -> None:
    """A second request for a blocked entity extends the same record; permanent stays permanent."""
    clock = Clock()
    holder: dict[str, Any] = {}
    async with run_workers(factories(clock, holder), settings=settings(tick_s=3600)) as env:
        q = holder["quarantine"]
        for ttl in (60, 600, 30):
            request = QuarantineRequested(
                kind="exchange_source", entity_id="binance", reason="stale", ttl_s=ttl,
                requested_by="hm",
            )  # fmt: skip
            await env.publish("quarantine.requested", request)
        await env.settle()
        total, rows = await q.repo.search(kind="exchange_source")
        assert total == 1
        assert float(rows[0]["expires_at"]) == clock.now + 600
        record = await q.repo.get(rows[0]["id"])
        assert [step["to"] for step in record["history"]] == ["quarantined", "extended", "extended"]


async def test_entity_block_cannot_be_discarded() -> None:
    """Discard is for dead messages: an entity block answers not_a_message and stays."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        request = QuarantineRequested(
            kind="strategy", entity_id="s9", reason="r", ttl_s=60, requested_by="t"
        )
        await env.publish("quarantine.requested", request)
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "strategy")
        q = holder["quarantine"]
        outcome = await q.releaser.discard(added.data.record_id, by="alice")
        assert not outcome.changed
        assert outcome.refusal == "not_a_message"
        assert await q.is_blocked("strategy", "s9")


async def test_release_needs_an_operator_asserted_by_an_allowed_producer() -> None:
    """An operator actor from a producer the actor policy does not trust is dead-lettered
    unauthorized before the handler; the operators' tool user's assertion is acted on."""
    holder: dict[str, Any] = {}
    config = settings()
    admission = Admission.from_settings(config)
    async with run_workers(factories(Clock(), holder), settings=config, authorize=admission) as env:
        request = QuarantineReleaseRequested(record_id="nope")
        await env.publish("quarantine.release.requested", request, actor=OPERATOR, user_id="chat")
        await until(
            lambda: env.metrics.quarantine.added.labels("message", "unauthorized")._value.get() == 1
        )
        assert env.emitted("quarantine.release.refused") == []
        await env.publish(
            "quarantine.release.requested", request, actor=OPERATOR, user_id="operator"
        )
        refused = await env.wait_for("quarantine.release.refused")
        assert refused.data.reason == "unknown_record"


async def test_dead_quarantine_event_is_recorded_not_announced() -> None:
    """A dead quarantine.entry.added is kept on record without a new announcement (no loop)."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        await env.broker.publish(
            OutgoingMessage(
                body=b'{"type": "quarantine.entry.added"}',
                routing_key="quarantine.entry.added",
                exchange=DEAD_LETTER_EXCHANGE,
                type="quarantine.entry.added",
                headers={h.REASON: "unauthorized"},
            )
        )
        await env.settle()
        total, _ = await holder["quarantine"].repo.search(kind="message", reason="unauthorized")
        assert total == 1
        assert await holder["quarantine"].housekeeping.announce_outbox() == 0
        announced = [
            m
            for m in env.broker.published
            if m.type == "quarantine.entry.added" and m.exchange != DEAD_LETTER_EXCHANGE
        ]
        assert announced == []


async def test_gauges_follow_records() -> None:
    """Entries by kind/reason/status, blacklist size and oldest unreviewed age are exported."""
    clock = Clock()
    holder: dict[str, Any] = {}
    async with run_workers(factories(clock, holder), settings=settings(tick_s=3600)) as env:
        q = holder["quarantine"]
        await env.publish(POISON_TYPE, poison_payload())
        await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        await q._block(
            record_id="g1",
            kind="producer",
            entity_id="p",
            reason="requested",
            detail="d",
            severity="info",
            evidence={},
            requested_by="t",
            ttl_s=600,
            now=clock.now,
            causation=None,
        )
        clock.now += 42
        await q.housekeeping.refresh_gauges()
        m = env.metrics.quarantine
        assert m.entries.labels("message", "handler_rejected", "quarantined")._value.get() == 1
        assert m.entries.labels("producer", "requested", "quarantined")._value.get() == 1
        assert m.blacklist_size._value.get() == 1
        assert m.oldest_unreviewed._value.get() == 42
