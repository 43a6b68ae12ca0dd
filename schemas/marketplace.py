"""Marketplace events: a user gained or lost a strategy."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload, Timestamp

__all__ = ["EVENTS", "STRATEGIES", "StrategyName", "StrategyPurchased", "StrategyRevoked"]

# The strategies the opportunity worker can run: a closed set, so a purchase of anything else is
# refused (dead-lettered schema_violation) instead of granted and failing every later scan.
StrategyName = Literal[
    "spot_arbitrage",
    "funding_arbitrage",
    "triangular_arbitrage",
    "momentum",
    "mean_reversion",
    "breakout",
]
STRATEGIES: tuple[str, ...] = get_args(StrategyName)
# A revocation names any string, so a grant made before the set was closed can be revoked.
StrategyId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Symbol = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class StrategyPurchased(Payload):
    """``user_id`` owns ``strategy`` (until ``expires_at`` for monthly access)."""

    user_id: Name
    strategy: StrategyName
    expires_at: Timestamp | None = None
    credits: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    asset_filter: Annotated[list[Symbol], Field(max_length=5_000)] | None = None


class StrategyRevoked(Payload):
    """``user_id`` no longer owns ``strategy``."""

    user_id: Name
    strategy: StrategyId
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


EVENTS: dict[str, type[Payload]] = {
    "marketplace.strategy.purchased": StrategyPurchased,
    "marketplace.strategy.revoked": StrategyRevoked,
}
