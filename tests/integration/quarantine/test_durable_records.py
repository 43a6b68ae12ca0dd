"""Quarantine records with ``WAIT`` on: a change is reported only once a replica holds it, and
the guard sending it again (a lost reply, a short ``WAIT``) changes nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from common.errors import NotReplicated
from common.reliability.guard import Guards
from common.store import Store, connect_redis
from common.testing import forget_prefix
from workers.quarantine.records import DeadMessage
from workers.quarantine.repository import Repository

NOW = 1_700_000_000.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    """The test Redis (it has no replica) and a key prefix of this test, deleted afterwards."""
    client = connect_redis(redis_url)
    prefix = f"egtest:durable-{uuid.uuid4().hex[:8]}:"
    try:
        yield client, prefix
    finally:
        await forget_prefix(client, prefix)
        await client.aclose()


def _repository(client: Redis, prefix: str, wait_replicas: int) -> Repository:
    guards = Guards()
    guards.instant()
    store = Store(
        client,
        prefix=prefix,
        guard=guards.guard("redis"),
        wait_replicas=wait_replicas,
        wait_timeout_ms=10,
    )
    return Repository(store)


def _dead(record_id: str) -> DeadMessage:
    return DeadMessage(
        record_id=record_id,
        body=b"{}",
        headers={},
        properties={},
        reason="invalid_json",
        detail="bad",
        exception="",
        attempts=1,
        worker="w",
        queue="q",
        producer="p",
        event_type="",
        event_id="e1",
        dead_at="",
        destination=None,
    )


async def test_record_changes_wait_for_a_replica_and_a_resend_changes_nothing_twice(
    redis: tuple[Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With WAIT 1 and no replica, writing a dead letter and moving a record fail with
    NotReplicated after the guard's attempts, each change made once (one record, one history
    entry per change); the same change sent again reads as done, a new one is refused."""
    client, prefix = redis
    waiting = _repository(client, prefix, wait_replicas=1)
    plain = _repository(client, prefix, wait_replicas=0)
    with pytest.raises(NotReplicated):
        await waiting.add_dead(_dead("r1"), now=NOW, window_s=60)
    record = await plain.get("r1")
    assert record is not None
    assert record["status"] == "quarantined"
    with pytest.raises(NotReplicated):
        await waiting.transition(
            "r1", "discarded", allowed=("quarantined",), by="op", note="n", now=NOW + 1
        )
    record = await plain.get("r1")
    assert record is not None
    assert record["status"] == "discarded"
    assert [entry["to"] for entry in record["history"]] == ["quarantined", "discarded"]

    await plain.add_dead(_dead("r2"), now=NOW, window_s=60)
    fixed = uuid.UUID(int=7)
    with monkeypatch.context() as patched:  # the same change id twice: a resend
        patched.setattr(uuid, "uuid4", lambda: fixed)
        first, resent = [
            await plain.transition(
                "r2", "discarded", allowed=("quarantined",), by="op", note="n", now=NOW + 1
            )
            for _ in range(2)
        ]
    assert (first.outcome, resent.outcome) == ("ok", "ok")
    again = await plain.transition(
        "r2", "discarded", allowed=("quarantined",), by="op", note="n", now=NOW + 1
    )
    assert again.outcome == "conflict"  # a new request, however alike: refused as before
    record = await plain.get("r2")
    assert record is not None
    assert [entry["to"] for entry in record["history"]] == ["quarantined", "discarded"]
