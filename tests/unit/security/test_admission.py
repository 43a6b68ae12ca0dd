"""The pipeline's admission: actor rules, actor assertion, producer blocks, anonymous."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.bus import headers as h
from common.bus.message import IncomingMessage
from common.bus.router import Emit
from common.config import Settings
from common.security.admission import Admission, requester
from common.service import BaseService, WorkerContext
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.envelope import Actor, Envelope
from schemas.quarantine import (
    QuarantineEntryAdded,
    QuarantineEntryReleased,
    QuarantineReleaseRequested,
    QuarantineRequested,
)
from workers.quarantine import create as create_quarantine
from workers.quarantine.records import dead_message_from


class _Recorder(BaseService):
    """Records who asked for each release request it is given."""

    name = "recorder"
    asked: list[tuple[str, str]] = []

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.router.add(QuarantineReleaseRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineReleaseRequested]) -> Emit:
        who = requester(event)
        type(self).asked.append((who.key, who.producer))
        return []


def _settings() -> Settings:
    return Settings(runtime=fast_runtime_settings())


async def _release(env: Harness, *, actor: Actor | None, user_id: str | None) -> None:
    await env.publish(
        "quarantine.release.requested",
        QuarantineReleaseRequested(record_id="r1"),
        actor=actor,
        user_id=user_id,
    )
    await env.settle()


async def test_actor_below_the_types_role_is_dead_lettered_unauthorized() -> None:
    """A user actor on a release request (operator needed) never reaches the handler."""
    _Recorder.asked = []
    admission = Admission.from_settings(_settings())
    async with run_workers([("recorder", _Recorder)], authorize=admission) as env:
        await _release(env, actor=Actor(subject="bob", role="user"), user_id="operator")
        (dead,) = env.dead()
        assert dead.headers[h.REASON] == "unauthorized"
        assert "insufficient_role" in str(dead.headers[h.ERROR])
        assert _Recorder.asked == []


async def test_producer_that_may_not_assert_actors_is_refused() -> None:
    """An admin actor from a producer the actor policy does not trust: unauthorized."""
    _Recorder.asked = []
    settings = _settings()
    settings.security.producers["quarantine.release.requested"] = frozenset({"chat"})
    admission = Admission.from_settings(settings)
    async with run_workers([("recorder", _Recorder)], authorize=admission) as env:
        await _release(env, actor=Actor(subject="root", role="admin"), user_id="chat")
        (dead,) = env.dead()
        assert dead.headers[h.REASON] == "unauthorized"
        assert "actor_not_allowed" in str(dead.headers[h.ERROR])
        await _release(env, actor=Actor(subject="root", role="admin"), user_id="operator")
        assert _Recorder.asked == [("actor:root", "operator")]


async def test_handlers_see_the_admitted_producer_when_there_is_no_actor() -> None:
    """Without an actor the requester is the producer, as RabbitMQ vouched for it."""
    _Recorder.asked = []
    admission = Admission.from_settings(_settings())
    async with run_workers([("recorder", _Recorder)], authorize=admission) as env:
        await _release(env, actor=None, user_id="operator")
    assert _Recorder.asked == [("producer:operator", "operator")]


async def test_blocked_producer_is_dead_lettered_while_the_block_lasts() -> None:
    """After quarantine.entry.added names a producer every event of it is producer_blocked;
    after quarantine.entry.released it is admitted again."""
    _Recorder.asked = []
    admission = Admission.from_settings(_settings())
    operator = Actor(subject="olga", role="operator")
    async with run_workers([("recorder", _Recorder)], authorize=admission) as env:
        added = QuarantineEntryAdded(
            record_id="b1", kind="producer", entity_id="operator", reason="flood"
        )
        await env.publish("quarantine.entry.added", added, user_id="quarantine")
        await env.settle()
        await _release(env, actor=operator, user_id="operator")
        (dead,) = env.dead()
        assert dead.headers[h.REASON] == "producer_blocked"
        assert dead.headers[h.PRODUCER] == "operator"
        assert _Recorder.asked == []
        released = QuarantineEntryReleased(
            record_id="b1", kind="producer", entity_id="operator", released_by="olga"
        )
        await env.publish("quarantine.entry.released", released, user_id="quarantine")
        await env.settle()
        await _release(env, actor=operator, user_id="operator")
        assert _Recorder.asked == [("actor:olga", "operator")]


async def test_a_block_is_remembered_by_the_next_process() -> None:
    """Blocks live in the quarantine's blacklist in Redis: a worker started after the block
    was made refuses the producer at once, without having seen the broadcast."""
    _Recorder.asked = []
    admission = Admission.from_settings(_settings())
    async with run_workers([("quarantine", create_quarantine)], authorize=admission) as env:
        block = QuarantineRequested(
            kind="producer", entity_id="operator", reason="flood", requested_by="t", ttl_s=600
        )
        await env.publish("quarantine.requested", block, user_id="quarantine")
        await env.settle()
        client = env.store.client
    async with run_workers([("recorder", _Recorder)], authorize=admission, redis=client) as env:
        await _release(env, actor=None, user_id="operator")
        (dead,) = env.dead()
        assert dead.headers[h.REASON] == "producer_blocked"
        assert _Recorder.asked == []


async def test_a_message_without_user_id_is_anonymous_and_refused() -> None:
    """No AMQP user_id: the producer is ``anonymous`` (never the worker's own user), refused."""
    _Recorder.asked = []
    settings = _settings().model_copy(update={"broker_user": "guest"})
    admission = Admission.from_settings(settings)
    async with run_workers(
        [("recorder", _Recorder)], settings=settings, authorize=admission
    ) as env:
        await _release(env, actor=None, user_id=None)
        (dead,) = env.dead()
    assert dead.headers[h.REASON] == "unauthorized"
    assert dead.headers[h.PRODUCER] == "anonymous"
    assert dead.user_id == "guest"  # the dead-letter copy is published by the worker ...
    assert _record_producer(dead.headers, dead.user_id) == "anonymous"  # ... not blamed on it


def _record_producer(headers: Mapping[str, Any], user_id: str | None) -> str:
    """The producer the quarantine records for a dead letter."""

    async def settle(*_args: Any) -> None:
        return None

    message = IncomingMessage(
        body=b"{}",
        routing_key="k",
        exchange="eventguard.dlx",
        queue="eventguard.dead",
        headers=headers,
        message_id="m",
        type=None,
        correlation_id=None,
        reply_to=None,
        user_id=user_id,
        app_id=None,
        timestamp=None,
        content_type=None,
        redelivered=False,
        _ack=settle,
        _reject=settle,
    )
    return dead_message_from(message).producer


def test_the_quarantine_never_blames_the_dead_lettering_worker() -> None:
    """An empty producer header (older workers) or none at all with no user_id: anonymous."""
    assert _record_producer({h.PRODUCER: ""}, "guest") == "anonymous"
    assert _record_producer({}, None) == "anonymous"
    assert _record_producer({}, "chat") == "chat"


async def test_a_blocked_quarantine_user_can_still_lift_blocks() -> None:
    """Blocks travel from the quarantine user: blocking that user must not stop its release."""
    _Recorder.asked = []
    admission = Admission.from_settings(_settings())
    async with run_workers([("recorder", _Recorder)], authorize=admission) as env:
        view = env.runtime.workers["recorder"].service.quarantine
        for record_id in ("b3", "b4"):
            added = QuarantineEntryAdded(
                record_id=record_id, kind="producer", entity_id="quarantine", reason="flood"
            )
            await env.publish("quarantine.entry.added", added, user_id="quarantine")
            await env.settle()
        assert view.is_quarantined("producer", "quarantine")
        released = QuarantineEntryReleased(
            record_id="b4", kind="producer", entity_id="quarantine", released_by="olga"
        )
        await env.publish("quarantine.entry.released", released, user_id="quarantine")
        await env.settle()
        assert not view.is_quarantined("producer", "quarantine")
        assert env.dead() == []
