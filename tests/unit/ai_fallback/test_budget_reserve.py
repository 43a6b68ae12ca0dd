"""Budgets are reserved before the call and settled after, one Lua step each."""

from __future__ import annotations

import asyncio

import fakeredis

from common.config.workers import AiFallbackSettings
from common.store import Store
from workers.ai_fallback import keys
from workers.ai_fallback.budget import Budgets, Reservation, Usage


def _budgets(**limits: float | int) -> Budgets:
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    return Budgets(store, AiFallbackSettings(**limits), now=lambda: 1_000_000.0)


async def test_concurrent_reservations_never_overspend() -> None:
    """Twenty concurrent requests of 100 tokens against a 1,000-token budget: exactly ten are
    reserved, the rest are refused with the reason."""
    budgets = _budgets(global_max_tokens=1_000)
    results = await asyncio.gather(*(budgets.reserve(None, Usage(100, 0.0)) for _ in range(20)))
    reserved = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, str)]
    assert len(reserved) == 10
    assert all("global token budget" in r for r in refused)


async def test_settling_returns_what_was_not_used() -> None:
    """A reservation settled to its real usage frees the difference for the next request; one
    settled to nothing (no model answered) frees all of it."""
    budgets = _budgets(actor_max_cost_usd=1.0, global_max_tokens=1_000)
    first = await budgets.reserve("alice", Usage(600, 0.6))
    assert isinstance(first, Reservation)
    assert isinstance(await budgets.reserve("alice", Usage(600, 0.6)), str)
    await budgets.settle(first, Usage(100, 0.1))
    second = await budgets.reserve("alice", Usage(600, 0.6))
    assert isinstance(second, Reservation)
    await budgets.settle(second, Usage(0, 0.0))
    refused = await budgets.reserve("alice", Usage(100, 0.95))
    assert isinstance(refused, str)
    assert "actor cost budget" in refused


async def test_no_limits_reserves_nothing() -> None:
    """Without limits a reservation touches no key and settling is a no-op."""
    budgets = _budgets()
    reservation = await budgets.reserve("bob", Usage(10**9, 10**6))
    assert reservation == Reservation((), 0, 0)
    await budgets.settle(reservation, Usage(5, 0.5))


async def test_a_requester_with_an_actor_budget_is_indexed_for_its_window() -> None:
    """A reservation against an actor budget names the requester in the window's index (what the
    console lists); a refused one and a global-only one add nobody."""
    budgets = _budgets(actor_max_tokens=1_000)
    assert isinstance(await budgets.reserve("actor:alice", Usage(10, 0.0)), Reservation)
    assert isinstance(await budgets.reserve("actor:bob", Usage(5_000, 0.0)), str)
    store = budgets._store
    index = keys.budget_index(store, int(1_000_000.0 // 86_400))
    members = await store.execute(lambda r: r.smembers(index))
    assert members == {b"actor:alice"}
    global_only = _budgets(global_max_tokens=1_000)
    assert isinstance(await global_only.reserve("actor:carol", Usage(10, 0.0)), Reservation)
    index = keys.budget_index(global_only._store, int(1_000_000.0 // 86_400))
    assert await global_only._store.execute(lambda r: r.exists(index)) == 0
