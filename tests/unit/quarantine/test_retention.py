"""Quarantine retention: old records and bodies are purged, active blocks are kept."""

from __future__ import annotations

import fakeredis
from prometheus_client import CollectorRegistry

from common.config import QuarantineSettings
from common.metrics import Metrics
from common.store import Store
from workers.quarantine.housekeeping import Housekeeping
from workers.quarantine.records import DeadMessage
from workers.quarantine.repository import Repository

_DAY = 86_400.0
_NOW = 1_800_000_000.0


def _dead(n: int) -> DeadMessage:
    return DeadMessage(
        record_id=f"d{n}",
        body=b"x" * 100,
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
        event_id=f"e{n}",
        dead_at="",
        destination=None,
    )


async def test_records_older_than_the_retention_are_purged_active_blocks_kept() -> None:
    """Three dead messages 31 days old go (records, bodies, indexes); an entity block as old
    but still active, and a dead message of yesterday, stay; the gauges report what is held."""
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    repo = Repository(store)
    for n in range(3):
        await repo.add_dead(_dead(n), now=_NOW - 31 * _DAY, window_s=60, announce=False)
    await repo.add_dead(_dead(9), now=_NOW - _DAY, window_s=60, announce=False)
    await repo.add_entity(
        record_id="block",
        kind="ai_model",
        entity_id="gpt",
        reason="errors",
        detail="d",
        severity="critical",
        evidence={},
        requested_by="t",
        expires_at=None,
        now=_NOW - 40 * _DAY,
    )
    metrics = Metrics(CollectorRegistry())
    housekeeping = Housekeeping(
        repo=repo,
        releaser=None,  # type: ignore[arg-type]  # purge never releases
        publisher=None,  # type: ignore[arg-type]
        settings=QuarantineSettings(purge_batch=2, max_records=10),
        metrics=metrics,
        now=lambda: _NOW,
        source="quarantine",
    )
    assert await housekeeping.purge() == 3
    assert await repo.count() == 2
    assert not await store.execute(lambda r: r.exists(repo.keys.record("d0")))
    assert await store.execute(lambda r: r.exists(repo.keys.record("block")))
    assert await store.execute(lambda r: r.zcard(repo.keys.index("quarantined", "message"))) == 1
    assert metrics.registry.get_sample_value("eventguard_quarantine_records") == 2
    assert metrics.registry.get_sample_value("eventguard_quarantine_records_cap") == 10
    assert metrics.registry.get_sample_value("eventguard_quarantine_purged_total") == 3
    assert await housekeeping.purge() == 0
