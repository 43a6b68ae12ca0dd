"""What the console reads: quarantine filters and groups, the tap, the fleet rows."""

from __future__ import annotations

import base64
import json

import fakeredis

from common.bus import headers as h
from common.bus.memory import MemoryBroker
from common.config.workers import AiFallbackSettings, AiModelSettings
from common.store import Store
from eventguard.console.fleet import FleetView
from eventguard.console.reads import AiModels, Filters, Quarantine
from eventguard.console.tap import Tap
from workers.ai_fallback import keys as ai_keys
from workers.quarantine.records import DeadMessage

# A JWT-shaped value, made at run time, for the redaction check (no token is committed).
_PARTS = (b'{"alg":"HS256"}', b"{}", b"s")
_FAKE_JWT = ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in _PARTS)


def _dead(i: int, *, worker: str, event_type: str, reason: str) -> DeadMessage:
    return DeadMessage(
        record_id=f"r{i:04d}", body=b'{"token": "%s", "n": %d}' % (_FAKE_JWT.encode(), i),
        headers={h.REASON: reason}, properties={}, reason=reason, detail="", exception="",
        attempts=1, worker=worker, queue="q", producer=f"p{i % 2}", event_type=event_type,
        event_id=f"e{i}", dead_at="", destination=None,
    )  # fmt: skip


async def _filled(clock: list[float]) -> Quarantine:
    quarantine = Quarantine(
        Store(fakeredis.FakeAsyncRedis(), prefix="t:"), scan_limit=500, now=lambda: clock[0]
    )
    for i in range(30):
        worker, event_type = ("w1", "a.b") if i % 3 else ("w2", "c.d")
        reason = "schema_violation" if i % 2 else "invalid_json"
        await quarantine.repo.add_dead(
            _dead(i, worker=worker, event_type=event_type, reason=reason),
            now=1_000.0 + i, window_s=60, announce=False,
        )  # fmt: skip
    return quarantine


async def test_unindexed_filters_match_within_the_scan_and_page_newest_first() -> None:
    """worker/type/producer filters keep only matching rows; totals and pages are consistent."""
    quarantine = await _filled([2_000.0])
    total, rows = await quarantine.page(Filters(worker="w2"), offset=0, limit=5)
    assert total == 10
    assert [r["worker"] for r in rows] == ["w2"] * 5
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    total, rows = await quarantine.page(
        Filters(worker="w1", producer="p1", reason="schema_violation"), offset=0, limit=50
    )
    assert total == len(rows) == sum(1 for i in range(30) if i % 3 and i % 2)


async def test_groups_count_by_reason_type_and_worker_and_are_cached_briefly() -> None:
    """Groups add up to every quarantined message; within the TTL a new record is not counted."""
    clock = [2_000.0]
    quarantine = await _filled(clock)
    groups = await quarantine.groups()
    assert sum(g.count for g in groups) == 30
    pairs = (("a.b", "w1"), ("c.d", "w2"))
    assert {(g.reason, g.event_type, g.worker) for g in groups} == {
        (r, t, w) for r in ("schema_violation", "invalid_json") for t, w in pairs
    }
    members = await quarantine.members("invalid_json", "c.d", "w2")
    assert sorted(members) == [f"r{i:04d}" for i in range(30) if i % 3 == 0 and i % 2 == 0]
    await quarantine.repo.add_dead(
        _dead(99, worker="w9", event_type="x.y", reason="invalid_json"), now=1_100.0, window_s=60
    )
    assert sum(g.count for g in await quarantine.groups()) == 30
    clock[0] += 6
    assert sum(g.count for g in await quarantine.groups()) == 31


async def test_a_record_shows_its_body_with_secrets_redacted() -> None:
    """The body of a record is shown as JSON with token-like values replaced."""
    quarantine = await _filled([2_000.0])
    record = await quarantine.record("r0001")
    assert record is not None
    assert _FAKE_JWT.split(".")[0] not in record["body_text"]
    assert '"n": 1' in record["body_text"]
    assert await quarantine.record("nope") is None


def test_the_tap_keeps_heartbeats_and_events_without_actor_tokens() -> None:
    """Heartbeats go to the fleet view; other events keep the actor's subject, never its token."""
    tap = Tap(MemoryBroker(), exchange="x", instance="i", now=lambda: 5.0)
    heartbeat = {"type": "health.heartbeat", "data": {"worker": "q", "instance": "a"}}
    tap.remember(json.dumps(heartbeat).encode())
    tap.remember(
        json.dumps(
            {
                "id": "e1", "type": "quarantine.release.requested", "source": "console",
                "actor": {"subject": "ann", "role": "operator", "token": "secret-token-value"},
                "data": {"record_id": "r1"},
            }
        ).encode()
    )  # fmt: skip
    tap.remember(b"{not json")
    assert tap.heartbeats[("q", "a")][1]["worker"] == "q"
    [seen] = tap.recent()
    assert seen.actor == "ann (operator)"
    assert "secret-token-value" not in repr(seen)


async def test_fleet_rows_say_why_a_worker_is_not_ready() -> None:
    """Paused names the open breaker; silence names the age; a worker never heard is listed."""
    tap = Tap(MemoryBroker(), exchange="x", instance="i")
    paused = {"paused": True, "consumers": 1, "breakers": {"redis": "open"}}
    tap.heartbeats[("quarantine", "a")] = (100.0, paused)
    tap.heartbeats[("quarantine", "b")] = (10.0, {"consumers": 1})
    workers = ["quarantine", "ai_fallback"]
    view = FleetView(tap, MemoryBroker(), workers=workers, now=lambda: 101.0)
    rows = {(r.worker, r.instance): r for r in (await view.snapshot()).workers}
    assert rows[("quarantine", "a")].why == "paused by breaker redis"
    assert rows[("quarantine", "b")].why == "no heartbeat for 91s"
    assert not rows[("ai_fallback", "-")].ready


async def test_ai_models_show_cool_downs_auth_disables_and_the_windows_spend() -> None:
    """Cool-down TTL, auth and operator disables, the global budget and each requester's
    budget hash are read from Redis."""
    settings = AiFallbackSettings(
        models=(
            AiModelSettings(name="m1", provider="openai", endpoint="http://x", context_window=8,
                            max_output=8),
            AiModelSettings(name="m2", provider="anthropic", endpoint="http://y", context_window=8,
                            max_output=8),
        ),
        global_max_tokens=1_000,
    )  # fmt: skip
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    now = 86_400.0 * 3 + 5
    window = int(now // settings.budget_window_s)
    await store.execute(lambda r: r.set(ai_keys.cooldown(store, "m1"), "429", ex=30))
    await store.execute(lambda r: r.set(ai_keys.disabled(store, "m2"), "fp"))
    budget = ai_keys.budget(store, window, "global")
    await store.execute(lambda r: r.hset(budget, mapping={"tokens": 120, "micro_usd": 2_500}))
    off = json.dumps({"by": "alice", "note": "INC-7", "at": now})
    await store.execute(lambda r: r.set(ai_keys.off(store, "m1"), off))
    bob, chat = (ai_keys.budget(store, window, s) for s in ("actor:bob", "producer:chat"))
    await store.execute(lambda r: r.hset(bob, mapping={"tokens": 40}))
    await store.execute(lambda r: r.hset(chat, mapping={"tokens": 80}))
    index = ai_keys.budget_index(store, window)
    await store.execute(lambda r: r.sadd(index, "actor:bob", "producer:chat"))
    reads = AiModels(store, settings, now=lambda: now)
    models, spend = await reads.load()
    assert [(m.name, m.cooldown_s > 0, m.auth_disabled, m.off_by) for m in models] == [
        ("m1", True, False, "alice"), ("m2", False, True, ""),
    ]  # fmt: skip
    assert models[0].off_note == "INC-7"
    assert (spend.tokens, spend.usd, spend.max_tokens) == (120, 0.0025, 1_000)
    actors = await reads.per_actor()
    assert [(a.scope, a.tokens) for a in actors] == [("producer:chat", 80), ("actor:bob", 40)]
