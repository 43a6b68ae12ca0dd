"""Opportunity events: scan requests, opportunities found, scan summaries."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload, Timestamp

__all__ = ["EVENTS", "MissingPart", "OpportunityFound", "ScanCompleted", "ScanRequested"]

Symbol = Annotated[str, StringConstraints(min_length=1, max_length=64)]
StrategyId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Venue = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Side = Literal["buy", "sell", "long", "short"]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class ScanRequested(Payload):
    """Scan the market for ``user_id`` with the strategies they own."""

    user_id: Name
    strategies: Annotated[list[StrategyId], Field(max_length=50)] | None = None
    # Bad filters (empty, absurd) are answered in the summary, so bounds are loose here.
    symbols: Annotated[list[Symbol], Field(max_length=5_000)] | None = None
    venues: Annotated[list[Venue], Field(max_length=50)] | None = None
    max_results: Annotated[int, Field(ge=1, le=1_000)] = 50
    budget_s: Annotated[float, Field(gt=0, le=300)] = 10.0


class OpportunityFound(Payload):
    """One opportunity, in the shape every scanner shares."""

    scan_id: Name
    user_id: Name
    strategy: StrategyId
    symbol: Symbol
    venues: Annotated[list[Venue], Field(min_length=1, max_length=5)]
    sides: Annotated[list[Side], Field(min_length=1, max_length=5)]
    entry: Finite
    exit: Finite | None = None
    target: Finite | None = None
    stop: Finite | None = None
    edge_bps: Finite
    required_capital: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    risk: Literal["low", "medium", "high"]
    expected_value: Finite
    data_time: Timestamp
    staleness_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class MissingPart(Payload):
    """A part of a scan that did not run, and why."""

    strategy: StrategyId | None = None
    venue: Venue | None = None
    symbol: Symbol | None = None
    reason: Annotated[str, StringConstraints(max_length=200)]


class ScanCompleted(Payload):
    """The summary of one scan; ``partial`` is true when parts are missing."""

    scan_id: Name
    user_id: Name
    status: Literal["completed", "partial", "refused", "failed"]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""
    found: Annotated[int, Field(ge=0)] = 0
    top: Annotated[list[OpportunityFound], Field(max_length=1_000)] = []
    missing: Annotated[list[MissingPart], Field(max_length=10_000)] = []
    partial: bool = False
    duration_s: Annotated[float, Field(ge=0)] = 0.0


EVENTS: dict[str, type[Payload]] = {
    "opportunity.scan.requested": ScanRequested,
    "opportunity.found": OpportunityFound,
    "opportunity.scan.completed": ScanCompleted,
}
