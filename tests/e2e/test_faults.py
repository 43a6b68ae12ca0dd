"""The fleet end to end, with faults: nothing lost, nothing done twice.

Smoke scenarios (marked ``smoke``) run in ``make test``; the rest in ``make e2e``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.bus.amqp import AmqpBroker
from tests.e2e.conftest import WorkerProcess
from workers.ai_fallback.simulator import ProviderSimulator, Step
from workers.load import LoadGenerator, Report, completion_request

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def _start(
    worker: str, env: dict[str, str], tmp_path: Path, started: list[WorkerProcess]
) -> WorkerProcess:
    process = WorkerProcess(worker, env, tmp_path / f"{worker}-{len(started)}.log")
    started.append(process)
    process.start()
    await process.ready()
    return process


async def _rabbitmqctl(*args: str) -> None:
    """The broker's own admin tool: the fault injection."""
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        pytest.skip("rabbitmqctl is not installed")
    process = await asyncio.create_subprocess_exec(
        tool, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    assert await process.wait() == 0


async def _acked(port: int, event_type: str) -> float:
    """How many ``event_type`` messages the worker on ``port`` acked (from its /metrics)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "eventguard_messages_consumed_total"
                and labels.get("type") == event_type
                and labels.get("outcome") == "ack"
            ):
                return float(sample.value)
    return 0.0


def _assert_clean(report: Report) -> None:
    assert report.lost == [], report.text()
    assert report.duplicated == [], report.text()
    assert report.handled + report.quarantined == report.published


@pytest.mark.smoke
async def test_sigterm_drains_under_load_and_a_new_process_carries_on(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: in-flight work finishes or is redelivered; nothing lost or doubled."""
    first = await _start("quarantine", fleet_env, tmp_path, workers)
    load = LoadGenerator(producer, user_id="guest", poison_share=0.2)
    await load.start_observing()
    publishing = asyncio.create_task(load.publish(300, rate=150))
    await asyncio.sleep(1.0)
    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.wait, 30) == 0  # drained and exited cleanly
    await _start("quarantine", fleet_env, tmp_path, workers)
    await publishing
    report = await load.wait(60)
    _assert_clean(report)
    assert report.quarantined > 0


@pytest.mark.smoke
async def test_sigkill_mid_stream_then_restart_loses_nothing(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """SIGKILL mid-stream: the broker redelivers; leases expire; each request has one effect."""
    first = await _start("quarantine", fleet_env, tmp_path, workers)
    load = LoadGenerator(producer, user_id="guest", poison_share=0.2, seed=2)
    await load.start_observing()
    publishing = asyncio.create_task(load.publish(300, rate=150))
    await asyncio.sleep(1.0)
    first.signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait, 10)
    started = time.monotonic()
    await _start("quarantine", fleet_env, tmp_path, workers)
    await publishing
    report = await load.wait(90)
    _assert_clean(report)
    print(f"sigkill recovery: {time.monotonic() - started:.1f}s to settle")


async def test_server_closing_every_connection_loses_nothing(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """`rabbitmqctl close_all_connections` mid-stream: everyone reconnects; nothing lost."""
    await _start("quarantine", fleet_env, tmp_path, workers)
    load = LoadGenerator(producer, user_id="guest", poison_share=0.2, seed=3)
    await load.start_observing()
    publishing = asyncio.create_task(load.publish(300, rate=100))
    await asyncio.sleep(1.0)
    await _rabbitmqctl("close_all_connections", "e2e fault injection")
    await publishing
    report = await load.wait(90)
    _assert_clean(report)


async def test_rabbitmq_restart_mid_stream_recovers_within_ten_seconds(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """stop_app/start_app mid-stream: quorum queues keep everything; the worker is back < 10 s."""
    process = await _start("quarantine", fleet_env, tmp_path, workers)
    load = LoadGenerator(producer, user_id="guest", poison_share=0.2, seed=4)
    await load.start_observing()
    publishing = asyncio.create_task(load.publish(200, rate=100))
    await asyncio.sleep(0.5)
    await _rabbitmqctl("stop_app")
    await _rabbitmqctl("start_app")
    restarted = time.monotonic()
    await process.ready(timeout_s=30)
    recovery = time.monotonic() - restarted
    await publishing
    report = await load.wait(90)
    _assert_clean(report)
    print(f"rabbitmq restart: worker ready again {recovery:.1f}s after start_app; {report.text()}")
    assert recovery < 10, f"recovery took {recovery:.1f}s"


async def test_two_replicas_share_the_queue_and_nothing_runs_twice(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """Two replicas are competing consumers: both take work, each request has one effect."""
    first = await _start("quarantine", fleet_env, tmp_path, workers)
    second = await _start("quarantine", fleet_env, tmp_path, workers)
    load = LoadGenerator(producer, user_id="guest", poison_share=0.0, seed=5)
    await load.start_observing()
    await load.publish(400)
    report = await load.wait(60)
    _assert_clean(report)
    handled = [await _acked(p.port, "quarantine.requested") for p in (first, second)]
    assert all(count > 0 for count in handled), handled
    assert sum(handled) == report.handled


async def test_redis_restart_mid_stream_loses_nothing(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """A Redis with AOF restarted mid-stream: calls fail, retry, then recover; nothing lost."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = WorkerProcess("x", {}, tmp_path / "x").port
    args = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(tmp_path),
        "--save",
        "",
    ]

    async def start_redis() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(0.5)
        return process

    redis = await start_redis()
    env = {**fleet_env, "EVENTGUARD_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    try:
        await _start("quarantine", env, tmp_path, workers)
        load = LoadGenerator(producer, user_id="guest", poison_share=0.2, seed=6)
        await load.start_observing()
        publishing = asyncio.create_task(load.publish(300, rate=100))
        await asyncio.sleep(1.0)
        redis.terminate()
        await redis.wait()
        await asyncio.sleep(1.0)
        redis = await start_redis()
        await publishing
        report = await load.wait(120)
        _assert_clean(report)
    finally:
        redis.terminate()
        await redis.wait()


async def test_llm_provider_failing_for_a_while_then_recovering(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """The provider fails for a while: requests are answered (failed), the breaker opens, and
    once the provider recovers answers succeed again; nothing lost, nothing answered twice."""
    simulator = ProviderSimulator()
    url = await simulator.start()
    simulator.set_default("m1", Step("ok"))
    model = {
        "name": "m1",
        "provider": "openai",
        "endpoint": url,
        "key_ref": "sim",
        "context_window": 8000,
        "max_output": 256,
        "timeout_s": 1,
    }
    env = {
        **fleet_env,
        "EVENTGUARD_AI_FALLBACK__MODELS": json.dumps([model]),
        "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS": json.dumps({"sim": secrets.token_hex(8)}),
        "EVENTGUARD_AI_FALLBACK__BREAKER_OPEN_S": "1",
        "EVENTGUARD_AI_FALLBACK__BREAKER_MINIMUM_CALLS": "3",
    }
    try:
        await _start("ai_fallback", env, tmp_path, workers)
        load = LoadGenerator(producer, user_id="guest", poison_share=0.0, make=completion_request)
        await load.start_observing()
        publishing = asyncio.create_task(load.publish(120, rate=30))
        await asyncio.sleep(1.0)
        simulator.set_default("m1", Step("error", status=503))
        await asyncio.sleep(1.5)
        simulator.set_default("m1", Step("ok"))
        await publishing
        report = await load.wait(60)
        _assert_clean(report)
        outcomes = list(load.ledger.result_types.values())
        assert {"ai.completion.failed"} in outcomes  # the outage was real
        await asyncio.sleep(4.5)  # the breaker's (grown) open period passes; half-open next
        before = set(load.ledger.kind)
        await load.publish(10, rate=5)
        report = await load.wait(60)
        _assert_clean(report)
        after = [i for i in load.ledger.kind if i not in before]
        succeeded = [i for i in after if load.ledger.result_types[i] == {"ai.completion.succeeded"}]
        assert len(succeeded) >= 9, [load.ledger.result_types[i] for i in after]  # closed again
    finally:
        await simulator.close()
