"""The steady load of ``make demo``: something moves on every console page until Ctrl-C.

Every ``period_s`` the producer asks for an AI completion and, every few rounds, a market scan;
every ``poison_every`` rounds it publishes a poison message (invalid JSON, dead-lettered and
quarantined at once). Every ``outage_every_s`` the primary AI provider of the local simulator
answers 503 for ``outage_s`` (its breaker opens, the fallback answers, it recovers), and the
failing venue of the market simulator takes turns (scans go partial, then recover).

The in-memory broker keeps every published message for tests; the producer trims that log to
the newest ``keep_published`` so a demo left running for days stays small.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from common.bus.message import OutgoingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.testing import Harness
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Actor
from schemas.opportunity import ScanRequested
from workers.ai_fallback.demo import PRIMARY, simulator
from workers.ai_fallback.simulator import Step
from workers.opportunity_discovery.simulator import MarketSimulator

__all__ = ["SteadyProducer"]

_QUESTIONS = (
    "What is an event bus?",
    "Why use a circuit breaker?",
    "What does a dead-letter queue hold?",
    "When should a retry give up?",
)
_POISON = '{{"id": "steady-poison-{n}", "type": "ai.completion.requested", "data": '  # not JSON


@dataclass
class SteadyProducer:
    """Publishes a steady mix into a running in-memory fleet."""

    fleet: Harness
    say: Callable[[str], None]
    period_s: float = 1.0
    poison_every: int = 7
    scan_every: int = 5
    outage_every_s: float = 180.0
    outage_s: float = 40.0
    keep_published: int = 5_000

    async def run(self) -> None:
        """Publish until cancelled."""
        loop = asyncio.get_running_loop()
        next_outage = loop.time() + min(60.0, self.outage_every_s)
        outage_ends: float | None = None
        venues = itertools.cycle(("gamma", "beta", "alpha", ""))
        for n in itertools.count(1):
            await self._ask(_QUESTIONS[n % len(_QUESTIONS)] + f" (#{n})")
            if n % self.scan_every == 0:
                await self.fleet.publish(
                    "opportunity.scan.requested",
                    ScanRequested(user_id="alice", max_results=5, budget_s=5.0),
                )
            if n % self.poison_every == 0:
                await self._poison(n)
            now = loop.time()
            if outage_ends is None and now >= next_outage:
                outage_ends = now + self.outage_s
                self._outage(True, next(venues))
            elif outage_ends is not None and now >= outage_ends:
                outage_ends, next_outage = None, now + self.outage_every_s
                self._outage(False, "")
            published = self.fleet.broker.published
            if len(published) > 2 * self.keep_published:
                del published[: len(published) - self.keep_published]
            await asyncio.sleep(self.period_s)

    async def _ask(self, text: str) -> None:
        request = CompletionRequested(
            messages=[Message(role="user", content=text)], max_tokens=32, temperature=0
        )
        actor = Actor(subject="steady-user", role="user")
        await self.fleet.publish("ai.completion.requested", request, actor=actor)

    async def _poison(self, n: int) -> None:
        await self.fleet.broker.publish(
            OutgoingMessage(
                body=_POISON.format(n=n).encode(),
                routing_key="ai.completion.requested",
                exchange=EVENTS_EXCHANGE,
                type="ai.completion.requested",
                user_id="steady-producer",
            )
        )

    def _outage(self, down: bool, venue: str) -> None:
        sim = simulator()
        if sim is not None:
            sim.set_default(PRIMARY, Step("error", status=503) if down else Step("ok"))
        market = self.fleet.runtime.workers["opportunity_discovery"].service
        source = getattr(market, "source", None)
        if isinstance(source, MarketSimulator):
            source.failing = {venue} if down and venue else set()
        what = "down" if down else "back"
        self.say(f"demo: provider {PRIMARY} {what}" + (f", venue {venue} down" if venue else ""))
