"""The quarantine worker against the real RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from structlog.testing import capture_logs

from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.bus.topology import DEAD_LETTER_EXCHANGE
from schemas.envelope import new_event
from schemas.marketplace import StrategyRevoked
from tests.integration.bus.conftest import PRODUCER, until
from tests.integration.quarantine.conftest import FLOOD_TYPE, POISON_TYPE, QuarantineRig
from workers.quarantine import QuarantineService
from workers.quarantine.records import decode_headers


async def _poison(q: QuarantineRig, user: str = "u1") -> str:
    event = new_event(POISON_TYPE, StrategyRevoked(user_id=user, strategy="s"), source="it")
    await q.rig.publisher(q.broker).publish(event, headers={"x-custom": "kept", "x-n": 7})
    return event.id


async def _record_for(q: QuarantineRig, event_id: str) -> dict[str, Any]:
    service = q.services[0]
    found: dict[str, Any] = {}

    async def look() -> bool:
        _, rows = await service.repo.search(kind="message", limit=50)
        for row in rows:
            record = await service.repo.get(row["id"])
            if record and record["event_id"] == event_id and record["status"] == "quarantined":
                found.update(record)
                return True
        return False

    async with asyncio.timeout(10):
        while not await look():
            await asyncio.sleep(0.02)
    return found


async def test_poison_reaches_a_record_with_every_header(qrig: QuarantineRig) -> None:
    """Worker queue -> eventguard.dead -> a record holding the body and every header."""
    await qrig.start_quarantine()
    event_id = await _poison(qrig)
    record = await _record_for(qrig, event_id)
    headers = decode_headers(record["headers"])
    for name in (
        h.REASON, h.EXCEPTION, h.ERROR, h.ORIGINAL_ROUTING_KEY, h.ORIGINAL_EXCHANGE,
        h.ATTEMPT, h.WORKER, h.QUEUE, h.DEAD_AT, h.PRODUCER,
    ):  # fmt: skip
        assert name in headers, name
    assert headers["x-custom"] == "kept"
    assert headers["x-n"] == 7
    assert headers[h.REASON] == "handler_rejected"
    assert json.loads(record["body"])["id"] == event_id
    assert record["exchange"] == qrig.rig.events
    assert record["routing_key"] == POISON_TYPE
    assert record["worker"] == qrig.rig.worker


async def test_release_requested_twice_republishes_once(qrig: QuarantineRig) -> None:
    """Two concurrent releases: one copy on the broker, the worker runs it once."""
    service = await qrig.start_quarantine()
    event_id = await _poison(qrig)
    record = await _record_for(qrig, event_id)
    qrig.poison.accept = True
    first, second = await asyncio.gather(
        service.releaser.release(record["id"], by="alice"),
        service.releaser.release(record["id"], by="bob"),
    )
    assert sorted([first.changed, second.changed]) == [False, True]
    await until(lambda: qrig.poison.calls.count(event_id) == 2)
    await asyncio.sleep(0.3)
    copies = qrig.released_copies()
    assert len(copies) == 1
    assert h.REASON not in copies[0].headers
    assert h.ATTEMPT not in copies[0].headers
    assert copies[0].headers[h.PRODUCER] == "guest"
    assert copies[0].headers["x-custom"] == "kept"
    assert qrig.poison.calls.count(event_id) == 2  # the poison run, then the release


async def test_crash_between_publish_and_state_change(qrig: QuarantineRig) -> None:
    """Killed after publishing: the restarted worker finishes with the same release id; the
    duplicate copy is acked as a duplicate, so the event runs once."""
    service = await qrig.start_quarantine()
    event_id = await _poison(qrig)
    record = await _record_for(qrig, event_id)
    qrig.poison.accept = True
    real = service.repo.transition

    async def crash(record_id: str, to: str, **kw: Any) -> Any:
        if to == "released":
            raise RuntimeError("worker killed")
        return await real(record_id, to, **kw)

    service.repo.transition = crash  # type: ignore[method-assign]
    with contextlib.suppress(RuntimeError):
        await service.releaser.release(record["id"], by="alice")
    await qrig.stop_quarantine(service)
    restarted = await qrig.start_quarantine()  # start() resumes every releasing record
    done = await restarted.repo.get(record["id"])
    assert done is not None
    assert done["status"] == "released"
    await until(lambda: len(qrig.released_copies()) == 2)
    ids = {m.headers[h.RELEASE_ID] for m in qrig.released_copies()}
    assert ids == {done["release_id"]}
    await asyncio.sleep(0.3)
    assert qrig.poison.calls.count(event_id) == 2  # poison run + one released run
    duplicates = qrig.rig.sample(
        "eventguard_messages_consumed_total",
        {"worker": qrig.rig.worker, "type": POISON_TYPE, "outcome": "duplicate"},
    )
    assert duplicates == 1


async def test_ttl_expiry_releases_entity_with_event(qrig: QuarantineRig) -> None:
    """An entity's TTL passes: the tick releases it and quarantine.entry.released is on the bus."""
    service = await qrig.start_quarantine()
    outcome, _ = await service._block(
        record_id="ttl1",
        kind="ai_model",
        entity_id="gpt-x",
        reason="requested",
        detail="errors",
        severity="critical",
        evidence={},
        requested_by="it",
        ttl_s=30,
        now=qrig.clock(),
        causation=None,
    )
    assert outcome == "created"
    assert await service.is_blocked("ai_model", "gpt-x")
    qrig.clock.now += 31
    await service.housekeeping.tick()
    await until(
        lambda: any(
            m.routing_key == "quarantine.entry.released"
            and json.loads(m.body)["data"]["entity_id"] == "gpt-x"
            for m in qrig.spy
        )
    )
    assert not await service.is_blocked("ai_model", "gpt-x")


async def test_restart_loses_nothing(qrig: QuarantineRig) -> None:
    """Records, history, blacklist and indexes are all there for a fresh process."""
    service = await qrig.start_quarantine()
    event_id = await _poison(qrig)
    record = await _record_for(qrig, event_id)
    await service.releaser.review(record["id"], by="alice", note="looking")
    await service._block(
        record_id="keep1",
        kind="producer",
        entity_id="p1",
        reason="requested",
        detail="d",
        severity="warning",
        evidence={"k": "v"},
        requested_by="it",
        ttl_s=None,
        now=qrig.clock(),
        causation=None,
    )
    await qrig.stop_quarantine(service)
    fresh = await qrig.start_quarantine()
    again = await fresh.repo.get(record["id"])
    assert again is not None
    assert again["body"] == record["body"]
    assert [step["to"] for step in again["history"]] == ["quarantined", "under_review"]
    total, _ = await fresh.repo.search(status="under_review", kind="message")
    assert total == 1
    assert await fresh.is_blocked("producer", "p1")


async def test_flood_of_10000_quarantines_producer(qrig: QuarantineRig) -> None:
    """10,000 poison messages from one producer arrive dead: every one is recorded and the
    producer is quarantined once. (They are published straight to the dead-letter exchange
    with the runtime's headers, so the run measures the quarantine's write path; the trip
    from a worker queue is pinned by test_poison_reaches_a_record_with_every_header.)"""
    service = await qrig.start_quarantine(flood_producer_threshold=1000, flood_type_threshold=10**6)
    with capture_logs() as logs:  # 10,000 rendered log lines would dominate the run
        await _flood(qrig, service)
    floods = [e for e in logs if e["event"] == "quarantine.flood_contained"]
    assert len(floods) == 1
    assert floods[0]["entity"] == "mallory"
    assert await service.is_blocked("producer", "mallory")
    total, rows = await service.repo.search(kind="producer")
    assert total == 1
    assert rows[0]["reason"] == "flood"


async def _flood(qrig: QuarantineRig, service: QuarantineService) -> None:
    dlx = qrig.rig.names()[DEAD_LETTER_EXCHANGE]
    started = time.perf_counter()
    batch = 500
    for offset in range(0, 10_000, batch):
        await asyncio.gather(
            *(
                qrig.broker.publish(
                    OutgoingMessage(
                        body=f"poison {i}".encode(),
                        routing_key=FLOOD_TYPE,
                        exchange=dlx,
                        headers={
                            h.REASON: "schema_violation",
                            h.PRODUCER: "mallory",
                            h.ORIGINAL_ROUTING_KEY: FLOOD_TYPE,
                            h.DEAD_AT: "2026-01-01T00:00:00+00:00",
                        },
                        user_id=PRODUCER,
                    )
                )
                for i in range(offset, offset + batch)
            )
        )
    published = time.perf_counter() - started

    async def recorded() -> int:
        total, _ = await service.repo.search(kind="message")
        return total

    async with asyncio.timeout(60):
        while await recorded() < 10_000:
            await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    assert await recorded() == 10_000
    print(f"10,000 dead letters published in {published:.1f}s, all recorded after {elapsed:.1f}s")
