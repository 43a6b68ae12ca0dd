"""Which market source a worker reads: the venues through ccxt, or the simulator."""

from __future__ import annotations

from collections.abc import Callable

from common.config import OpportunitySettings
from common.errors import ConfigError
from workers.opportunity_discovery.market import MarketSource
from workers.opportunity_discovery.simulator import MarketSimulator

__all__ = ["build_source"]


def build_source(settings: OpportunitySettings, *, now: Callable[[], float]) -> MarketSource:
    """The configured source (no I/O: clients connect on first use)."""
    if settings.market_source == "simulator":
        return MarketSimulator(
            seed=settings.simulator_seed,
            latency_s=settings.simulator_latency_s,
            failing=set(settings.simulator_failing),
            now=now,
        )
    # ccxt costs most of a second and tens of MiB to import: only a worker reading venues
    # through it pays that (the other workers, the demo and the simulator never do).
    from workers.opportunity_discovery.exchange import (  # noqa: PLC0415
        CcxtSource,
        build_client,
    )

    clients = {}
    for venue in settings.venues:
        exchange_id = settings.exchanges.get(venue, venue)
        try:
            clients[venue] = build_client(
                exchange_id,
                timeout_s=settings.exchange_timeout_s,
                base_url=settings.exchange_urls.get(venue),
            )
        except ValueError as error:
            raise ConfigError(
                f"EVENTGUARD_OPPORTUNITY_DISCOVERY__VENUES / __EXCHANGES: {error}"
            ) from error
    return CcxtSource(clients, now=now)
