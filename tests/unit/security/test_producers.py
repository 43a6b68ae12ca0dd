"""Event authorisation: each type names its producers; everything else is dead-lettered."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from common.bus import headers as h
from common.bus.router import Emit
from common.config import SecuritySettings, Settings
from common.security.admission import Admission
from common.security.producers import DEFAULT_PRODUCERS, WORKER_USERS, ProducerPolicy
from common.service import BaseService, WorkerContext
from common.testing import run_workers
from schemas.envelope import Envelope
from schemas.quarantine import QuarantineRequested
from schemas.registry import CATALOGUE


def test_every_catalogue_type_has_a_producer_rule() -> None:
    """Each catalogue type names at least one producer, and the table names no other type."""
    assert set(DEFAULT_PRODUCERS) == set(CATALOGUE)
    assert all(DEFAULT_PRODUCERS[t] for t in CATALOGUE)


@pytest.mark.parametrize(
    ("event_type", "user_id"),
    [
        ("quarantine.entry.added", "quarantine"),
        ("health.heartbeat", "ai_fallback"),
        ("health.alert.raised", "health_monitor"),
        ("ai.completion.succeeded", "ai_fallback"),
        ("opportunity.found", "opportunity_discovery"),
        ("marketplace.strategy.purchased", "marketplace"),
        ("quarantine.release.requested", "operator"),
    ],
)
def test_named_producers_are_allowed(event_type: str, user_id: str) -> None:
    """The producer the catalogue names may publish its type."""
    assert ProducerPolicy.from_settings(Settings()).is_allowed(event_type, user_id)


@pytest.mark.parametrize(
    ("event_type", "user_id"),
    [
        ("quarantine.entry.added", "ai_fallback"),
        ("quarantine.release.requested", "chat"),
        ("health.alert.raised", "quarantine"),
        ("ai.completion.succeeded", "chat"),
        ("marketplace.strategy.purchased", "chat"),
        ("opportunity.found", "marketplace"),
        ("health.heartbeat", None),
        ("health.heartbeat", ""),
        ("no.such.type", "operator"),
        ("no.such.type", "quarantine"),
    ],
)
def test_other_producers_are_refused(event_type: str, user_id: str | None) -> None:
    """A producer not named for a type, no producer, or an unknown type: denied."""
    assert not ProducerPolicy.from_settings(Settings()).is_allowed(event_type, user_id)


def test_settings_extend_the_producer_table() -> None:
    """Settings add producers per type and, for development, users allowed every type."""
    settings = Settings(
        security=SecuritySettings(
            producers={"marketplace.strategy.purchased": frozenset({"shop"})},
            any_type_producers=frozenset({"dev"}),
        )
    )
    policy = ProducerPolicy.from_settings(settings)
    assert policy.is_allowed("marketplace.strategy.purchased", "shop")
    assert policy.is_allowed("marketplace.strategy.purchased", "marketplace")
    assert policy.is_allowed("ai.completion.succeeded", "dev")
    assert not policy.is_allowed("ai.completion.succeeded", "shop")
    assert policy.producers("health.heartbeat") == WORKER_USERS


class _Counting(BaseService):
    """Counts quarantine.requested deliveries."""

    name = "counting"
    calls = 0

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.router.add(QuarantineRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        type(self).calls += 1
        return []


async def test_unallowed_producer_is_dead_lettered_and_the_worker_goes_on() -> None:
    """An event from a producer not allowed for its type never reaches the handler."""
    admission = Admission.from_settings(Settings())
    data = QuarantineRequested(kind="producer", entity_id="p1", reason="r", requested_by="t")
    _Counting.calls = 0
    async with run_workers([("counting", _Counting)], authorize=admission) as fleet:
        with capture_logs():
            await fleet.publish("quarantine.requested", data, user_id="chat")
            await fleet.settle()
        (dead,) = fleet.dead()
        assert dead.headers[h.REASON] == "unauthorized"
        assert _Counting.calls == 0
        await fleet.publish("quarantine.requested", data, user_id="operator")
        await fleet.settle()
        assert _Counting.calls == 1
