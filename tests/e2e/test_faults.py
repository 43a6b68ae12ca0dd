"""The fleet end to end, with faults: nothing lost, nothing done twice.

Each scenario runs the four workers as processes, publishes a mix of every consumable type
(20% malformed or poison, 5% deliberate duplicates) through ``eventguard load``'s generator,
injects one fault mid-stream and checks the ledger: every id ends with exactly one effect or
a quarantine record of it. Recovery is measured from the end of the fault: ``resumed_s`` until
the affected worker's first new outcome, ``settled_s`` until everything published before then
has its outcome. Smoke scenarios (marked ``smoke``) also run in ``make test``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from common.bus.amqp import AmqpBroker
from common.bus.publisher import to_message
from eventguard.load import LoadGenerator
from eventguard.load_ledger import Report
from schemas.envelope import new_event
from schemas.marketplace import StrategyPurchased
from schemas.opportunity import ScanRequested
from tests.e2e.conftest import (
    CONSUMES,
    FLEET,
    TOPOLOGIES,
    Fleet,
    LoadFactory,
    Recorder,
    assert_clean,
    free_port,
)
from tests.unit.opportunity_discovery.bybit_server import BybitServer, Pair
from workers.ai_fallback.simulator import ProviderSimulator, Step

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

COUNT, RATE = 400, 80.0


async def _rabbitmqctl(*args: str) -> None:
    """The broker's own admin tool: the fault injection."""
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        pytest.skip("rabbitmqctl is not installed")
    process = await asyncio.create_subprocess_exec(
        tool, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    assert await process.wait() == 0, f"rabbitmqctl {args} failed"


def _recovery(
    generator: LoadGenerator, restored: float, workers: tuple[str, ...]
) -> dict[str, Any]:
    """Seconds from ``restored`` to the affected workers' first outcome, and until everything
    published before it had its outcome."""
    ledger = generator.ledger
    types = {t for w in workers for t in CONSUMES[w]}
    resumed = [
        at
        for i, at in ledger.outcome_at.items()
        if at >= restored and ledger.sent[i].event_type in types
    ]
    before = [ledger.outcome_at[i] for i, t in ledger.sent_at.items() if t < restored]
    return {
        "resumed_s": round(min(resumed) - restored, 2) if resumed else None,
        "settled_s": round(max(max(before) - restored, 0.0), 2) if before else None,
    }


async def _run(
    fleet: Fleet,
    load: LoadFactory,
    recorder: Recorder,
    scenario: str,
    fault: Callable[[], Awaitable[tuple[float, tuple[str, ...]]]],
    *,
    count: int = COUNT,
    rate: float = RATE,
    seed: int = 1,
    timeout_s: float = 90.0,
    load_options: dict[str, Any] | None = None,
    **extra: Any,
) -> tuple[Report, LoadGenerator]:
    """Start the fleet, publish, inject ``fault`` after a second, check and record the ledger.

    ``fault`` returns when the fault is over: the moment and the workers it hit."""
    await fleet.start(*FLEET)
    generator = load(seed=seed, **(load_options or {}))
    await generator.start(TOPOLOGIES)
    publishing = asyncio.create_task(generator.publish(count, rate=rate))
    await asyncio.sleep(1.0)
    started = time.monotonic()
    restored, hit = await fault()
    await publishing
    report = await generator.wait(timeout_s)
    assert_clean(report, generator)
    recorder.record(
        scenario,
        **report.as_dict(),
        fault_s=round(restored - started, 2),
        **_recovery(generator, restored, hit),
        **extra,
    )
    return report, generator


@pytest.mark.smoke
async def test_sigterm_drains_under_load_and_a_new_process_carries_on(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """SIGTERM mid-stream: in-flight work finishes or is redelivered; nothing lost or doubled."""
    exit_codes: list[int] = []

    async def sigterm() -> tuple[float, tuple[str, ...]]:
        old = fleet.get("quarantine")
        old.signal(signal.SIGTERM)
        exit_codes.append(await old.wait(30))
        await fleet.start("quarantine")
        return time.monotonic(), ("quarantine",)

    await _run(fleet, load, recorder, "sigterm_drain", sigterm, count=300)
    assert exit_codes == [0]  # drained and exited cleanly


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """SIGKILL mid-stream: the broker redelivers; leases expire; each request has one effect."""

    async def sigkill() -> tuple[float, tuple[str, ...]]:
        old = fleet.get("quarantine")
        old.signal(signal.SIGKILL)
        await old.wait(10)
        await fleet.start("quarantine")
        return time.monotonic(), ("quarantine",)

    await _run(fleet, load, recorder, "sigkill_restart", sigkill, seed=2)


@pytest.mark.smoke
async def test_server_closing_every_connection_loses_nothing(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """`rabbitmqctl close_all_connections` mid-stream: everyone reconnects; nothing lost."""

    async def close_all() -> tuple[float, tuple[str, ...]]:
        await _rabbitmqctl("close_all_connections", "e2e fault injection")
        return time.monotonic(), FLEET

    await _run(fleet, load, recorder, "connections_closed", close_all, count=300, seed=3)


async def test_rabbitmq_restart_mid_stream_recovers_within_ten_seconds(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """stop_app/start_app mid-stream: quorum queues keep everything; the fleet is back < 10 s."""
    ready: list[float] = []

    async def restart() -> tuple[float, tuple[str, ...]]:
        await _rabbitmqctl("stop_app")
        await _rabbitmqctl("start_app")
        restarted = time.monotonic()
        await asyncio.gather(*(p.ready(timeout_s=30) for p in fleet.processes))
        ready.append(time.monotonic() - restarted)
        return restarted, FLEET

    await _run(fleet, load, recorder, "rabbitmq_restart", restart, seed=4, timeout_s=120)
    figures = recorder.scenarios["rabbitmq_restart"]
    figures["ready_s"] = round(ready[0], 2)
    assert ready[0] < 10, f"the fleet was ready again only after {ready[0]:.1f}s"
    assert figures["resumed_s"] is not None, figures
    assert figures["resumed_s"] < 10, figures


async def test_redis_restart_mid_stream_loses_nothing(
    fleet: Fleet, load: LoadFactory, recorder: Recorder, tmp_path: Path
) -> None:
    """Our own Redis (AOF, fsync always) down for 3 s mid-stream: claims fail, the Redis
    breakers open and the consumers pause until they let calls through again; nothing lost."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)]

    async def start_redis() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
            else:
                writer.close()
                return process
        raise AssertionError("redis-server did not start")

    redis = [await start_redis()]
    fleet.env["EVENTGUARD_REDIS_URL"] = url

    original = load

    def load_on_own_redis(**kwargs: Any) -> LoadGenerator:
        return original(redis=url, **kwargs)

    async def restart() -> tuple[float, tuple[str, ...]]:
        redis[0].terminate()
        await redis[0].wait()
        await asyncio.sleep(3.0)
        redis[0] = await start_redis()
        return time.monotonic(), FLEET

    try:
        await _run(fleet, load_on_own_redis, recorder, "redis_restart", restart, seed=5)
        opened = [
            await fleet.get(w).metric(
                "eventguard_breaker_transitions_total", dependency="redis", to_state="open"
            )
            for w in FLEET
        ]
        assert sum(opened) > 0, "no Redis breaker opened: the consumers never paused"
    finally:
        redis[0].terminate()
        await redis[0].wait()


async def test_twenty_percent_poison_is_all_quarantined_with_its_reason(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """20% malformed or rejected messages: each recorded in quarantine with the right reason."""

    async def nothing() -> tuple[float, tuple[str, ...]]:
        return time.monotonic(), FLEET

    _, generator = await _run(fleet, load, recorder, "poison_20pct", nothing, seed=6)
    ledger = generator.ledger
    expected = {
        "invalid_json": {"invalid_json"},
        "schema_violation": {"schema_violation"},
        "unknown_type": {"unknown_type"},
        "handler_rejected": {"schema_violation", "unauthorized"},
    }
    for event_id, reason in ledger.quarantined.items():
        assert reason in expected[ledger.sent[event_id].kind], ledger.explain(event_id)


async def _simulated_model(
    fleet: Fleet, *, timeout_s: float, latency_s: float = 0.0
) -> ProviderSimulator:
    """Start a provider simulator answering ``ok`` and point ai_fallback's one model, m1, at
    it (the caller closes the simulator)."""
    simulator = ProviderSimulator(latency_s=latency_s)
    url = await simulator.start()
    simulator.set_default("m1", Step("ok"))
    model = {
        "name": "m1",
        "provider": "openai",
        "endpoint": url,
        "key_ref": "sim",
        "context_window": 8000,
        "max_output": 256,
        "timeout_s": timeout_s,
    }
    fleet.env.update(
        {
            "EVENTGUARD_AI_FALLBACK__MODELS": json.dumps([model]),
            "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS": json.dumps({"sim": secrets.token_hex(8)}),
        }
    )
    return simulator


async def test_llm_provider_failing_for_a_while_then_recovering(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """The provider fails for a while: the breaker opens, every request is still answered once,
    and after recovery the breaker closes and answers succeed again."""
    simulator = await _simulated_model(fleet, timeout_s=1)
    fleet.env.update(
        {
            "EVENTGUARD_AI_FALLBACK__BREAKER_OPEN_S": "1",
            "EVENTGUARD_AI_FALLBACK__BREAKER_MINIMUM_CALLS": "3",
        }
    )
    opened: list[float] = []

    async def outage() -> tuple[float, tuple[str, ...]]:
        ai = fleet.get("ai_fallback")
        simulator.set_default("m1", Step("error", status=503))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until the breaker has opened at least once
            opened.append(await ai.metric("eventguard_breaker_transitions_total", to_state="open"))
            if opened[-1] > 0:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        simulator.set_default("m1", Step("ok"))
        return time.monotonic(), ("ai_fallback",)

    try:
        _, generator = await _run(
            fleet, load, recorder, "llm_provider_outage", outage, count=300, rate=60, seed=7
        )
        assert opened, "the breaker was never read"
        assert opened[-1] > 0, "the breaker never opened"
        ai = fleet.get("ai_fallback")
        deadline = time.monotonic() + 20
        closed = 0.0
        while time.monotonic() < deadline:  # later requests probe it closed again
            await generator.publish(5, rate=10)
            closed = await ai.metric("eventguard_breaker_transitions_total", to_state="closed")
            if closed > 0:
                break
        assert closed > 0, "the breaker never closed again"
        report = await generator.wait(30)
        assert_clean(report, generator)
        ai_ids = [i for i, s in generator.ledger.sent.items() if s.event_type.startswith("ai.")]
        last = ai_ids[-1]  # published after the breaker closed again
        assert generator.ledger.result_types[last] == {"ai.completion.succeeded"}, (
            generator.ledger.explain(last)
        )
    finally:
        await simulator.close()


async def test_exchange_failing_for_a_while_then_recovering(
    fleet: Fleet, load: LoadFactory, recorder: Recorder, producer: AmqpBroker
) -> None:
    """Both venues (ccxt against two Bybit stand-ins) answer 503 until their breakers open,
    then recover. Every scan is still answered exactly once: partial, naming what is missing,
    while they are down; complete, with the cross-venue spread, after; the breakers close.

    The exchange is not a critical dependency of opportunity_discovery (its consumer does not
    pause): purchases and revocations need no venue, and a scan says what it could not read
    (honest partial results) instead of waiting for the venue."""
    cheap = BybitServer([Pair("BTC", asks=[(100.1, 50.0)], bids=[(100.0, 50.0)])])
    dear = BybitServer([Pair("BTC", asks=[(101.1, 50.0)], bids=[(101.0, 50.0)])])
    await cheap.start()
    await dear.start()
    prefix = "EVENTGUARD_OPPORTUNITY_DISCOVERY__"
    fleet.env.update(
        {
            f"{prefix}MARKET_SOURCE": "ccxt",
            f"{prefix}VENUES": json.dumps(["left", "right"]),
            f"{prefix}EXCHANGES": json.dumps({"left": "bybit", "right": "bybit"}),
            f"{prefix}EXCHANGE_URLS": json.dumps({"left": cheap.url, "right": dear.url}),
            f"{prefix}EXCHANGE_TIMEOUT_S": "2",
            f"{prefix}MARKET_CACHE_TTL_S": "0.1",
            f"{prefix}RESULT_CACHE_TTL_S": "1",
            "EVENTGUARD_RELIABILITY__DEPENDENCIES": json.dumps(
                {
                    "exchange": {
                        "max_attempts": 1,
                        "breaker_minimum_calls": 3,
                        "breaker_window_size": 5,
                        "breaker_open_s": 1,
                    }
                }
            ),
        }
    )
    user = f"load-trader-{secrets.token_hex(4)}"
    purchase = new_event(
        "marketplace.strategy.purchased",
        StrategyPurchased(user_id=user, strategy="spot_arbitrage", asset_filter=["BTC/USDT"]),
        source="e2e",
    )

    async def scans(outcome: str) -> float:
        opportunity = fleet.get("opportunity_discovery")
        return await opportunity.metric("eventguard_opportunity_scans_total", outcome=outcome)

    async def breakers(to_state: str) -> float:
        opportunity = fleet.get("opportunity_discovery")
        return sum(
            [
                await opportunity.metric(
                    "eventguard_breaker_transitions_total",
                    dependency=f"exchange:{v}",
                    to_state=to_state,
                )
                for v in ("left", "right")
            ]
        )

    async def outage() -> tuple[float, tuple[str, ...]]:
        cheap.down = dear.down = True
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and await breakers("open") < 2:
            await asyncio.sleep(0.2)
        assert await breakers("open") >= 2, "the venues' breakers never opened"
        await asyncio.sleep(1.0)
        cheap.down = dear.down = False
        return time.monotonic(), ("opportunity_discovery",)

    for topology in TOPOLOGIES:  # the purchase waits in the queue for the worker
        await producer.declare(topology)
    await producer.publish(to_message(purchase, user_id="guest"))
    try:
        _, generator = await _run(
            fleet,
            load,
            recorder,
            "exchange_outage",
            outage,
            count=300,
            rate=60,
            seed=11,
            load_options={"scan_user": user},
        )
        partial = await scans("partial")
        assert partial > 0, "no scan reported the venues missing"
        found = await fleet.get("opportunity_discovery").metric(
            "eventguard_opportunities_found_total", strategy="spot_arbitrage"
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and await breakers("closed") < 2:
            await generator.publish(5, rate=10)  # later scans probe the venues again
        assert await breakers("closed") >= 2, "the venues' breakers never closed again"
        report = await generator.wait(30)
        assert_clean(report, generator)
        scan = new_event("opportunity.scan.requested", ScanRequested(user_id=user), source="e2e")
        await producer.publish(to_message(scan, user_id="guest"))  # one more, after recovery
        later, deadline = found, time.monotonic() + 10
        while later <= found and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            later = await fleet.get("opportunity_discovery").metric(
                "eventguard_opportunities_found_total", strategy="spot_arbitrage"
            )
        assert later > found, "a scan after the recovery did not find the spread again"
        recorder.record(
            "exchange_outage_scans",
            partial=partial,
            completed=await scans("completed"),
            found_after_recovery=later - found,
        )
    finally:
        await cheap.stop()
        await dear.stop()


async def test_replicas_share_the_queue_grow_throughput_and_nothing_runs_twice(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """Replicas are competing consumers: throughput grows with them and each request is
    answered once. The worker is ai_fallback, whose requests wait on the provider (100 ms here)
    with at most PREFETCH in flight per replica: the case replicas are for. (A CPU-bound worker
    cannot grow on two cores that the broker, Redis and the generator share: 1.03x measured.)"""
    simulator = await _simulated_model(fleet, timeout_s=2, latency_s=0.1)
    fleet.env["EVENTGUARD_RUNTIME__PREFETCH"] = "8"
    count, rates = 400, []
    try:
        for replicas in (1, 2, 3):
            # No deliberate duplicates: a copy arriving between outbox and done re-publishes
            # the same answer and is acked, which would blur the one-ack-per-request count.
            generator = load(
                ("ai_fallback",),
                poison_share=0.0,
                duplicate_share=0.0,
                types=("ai.completion.requested",),
            )
            await generator.start(TOPOLOGIES)
            await generator.publish(count)  # a backlog, before the replicas start
            processes = await fleet.start(*["ai_fallback"] * replicas)
            report = await generator.wait(60, settle_s=0.0)
            outcomes = sorted(generator.ledger.outcome_at.values())
            rates.append((count - 1) / (outcomes[-1] - outcomes[0]))  # the drain, start-up aside
            await asyncio.sleep(1.0)
            report = generator.ledger.report()
            assert_clean(report, generator)
            answers = generator.ledger.result_types
            assert all(answers[i] == {"ai.completion.succeeded"} for i in generator.ledger.sent)
            handled = [
                await p.metric(
                    "eventguard_messages_consumed_total",
                    type="ai.completion.requested",
                    outcome="ack",
                )
                for p in processes
            ]
            assert all(n > 0 for n in handled), handled
            assert sum(handled) == count  # acked once each, across the replicas
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))
    finally:
        await simulator.close()
    assert sum(simulator.calls.values()) == count * 3  # one provider call per request
    recorder.record(
        "replicas",
        worker="ai_fallback",
        provider_latency_s=0.1,
        prefetch=8,
        msg_per_s={str(n): round(r, 1) for n, r in zip((1, 2, 3), rates, strict=True)},
        speedup_2=round(rates[1] / rates[0], 2),
        speedup_3=round(rates[2] / rates[0], 2),
    )
    # Two replicas near double; three still beat 1.5x, though on two cores the third's CPU
    # (with the broker's, Redis's and the generator's) caps its gain (2.0-2.5x seen).
    assert rates[1] > rates[0] * 1.5, rates
    assert rates[2] > rates[0] * 1.5, rates
