"""The fleet as worker processes over the real RabbitMQ and Redis, for the fault suite.

Each test gets its own Redis key prefix (fresh idempotency and quarantine state), throwaway
secrets generated here, short retry delays and a short handler timeout (so a crashed handler's
lease expires in seconds), and starts workers as separate ``eventguard run`` processes. At the
end the workers stop and the queues the test used are purged, so nothing leaks into the next.
Figures of each scenario are written to ``$EVENTGUARD_E2E_RESULTS`` when set (``make e2e``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError

from common.bus.amqp import AmqpBroker
from common.config import RuntimeSettings, Settings
from common.metrics import Metrics
from common.store import Store, connect_redis
from common.testing import forget_prefix
from eventguard.load import LoadGenerator, Mix, consumers_of, fleet_topologies, operator_for
from eventguard.load_ledger import Report
from tests.integration.conftest import rabbit_url, redis_url
from workers.registry import consumed_types

__all__ = [
    "FLEET",
    "MIB",
    "TOPOLOGIES",
    "Fleet",
    "LoadFactory",
    "Recorder",
    "WorkerProcess",
    "fleet",
    "fleet_env",
    "load",
    "producer",
    "rabbit_url",
    "recorder",
    "redis_url",
]

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
FLEET = ("health_monitor", "quarantine", "ai_fallback", "opportunity_discovery")
RETRY_DELAYS_S = (0.5, 2.0, 8.0, 16.0)
CONSUMES = consumed_types()
TOPOLOGIES = fleet_topologies(
    CONSUMES, FLEET, Settings(runtime=RuntimeSettings(retry_delays_s=RETRY_DELAYS_S))
)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """One ``eventguard run WORKER`` process."""

    def __init__(self, worker: str, env: dict[str, str], log: Path) -> None:
        self.worker = worker
        self.port = free_port()
        self.env = {
            **env,
            "EVENTGUARD_OPS_PORT": str(self.port),
            "EVENTGUARD_INSTANCE": f"{worker}-{self.port}",
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Launch the process."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-m", "eventguard.cli", "run", self.worker],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Wait for /readyz to answer 200."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.worker} exited: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.worker} not ready: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the process's log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig``."""
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for the exit code."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, timeout_s)

    def rss(self) -> int:
        """Resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples matching ``labels`` on this process's /metrics."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics") as response,
        ):
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Fleet:
    """The worker processes of one test."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: list[WorkerProcess] = []

    async def start(self, *workers: str, **env: str) -> list[WorkerProcess]:
        """Start ``workers`` (each its own process) and wait until all are ready."""
        started = []
        for worker in workers:
            log = self.logs / f"{worker}-{len(self.processes)}.log"
            process = WorkerProcess(worker, {**self.env, **env}, log)
            self.processes.append(process)
            started.append(process)
            process.start()
        await asyncio.gather(*(p.ready() for p in started))
        return started

    def get(self, worker: str) -> WorkerProcess:
        """The latest process of ``worker``."""
        return [p for p in self.processes if p.worker == worker][-1]

    def stop(self) -> None:
        """Stop every process that still runs."""
        for process in self.processes:
            process.stop()


@pytest.fixture
def fleet_env(rabbit_url: str, redis_url: str) -> dict[str, str]:
    """Environment for worker processes of one test (own key prefix, throwaway secrets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGUARD_")}
    env.update(
        {
            "EVENTGUARD_BROKER_URL": rabbit_url,
            "EVENTGUARD_REDIS_URL": redis_url,
            "EVENTGUARD_REDIS_KEY_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}:",
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            # Tests publish as RabbitMQ's guest; a dev-only allowance, never in deploy/.
            "EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS": json.dumps(["guest"]),
            "EVENTGUARD_RUNTIME__RETRY_DELAYS_S": json.dumps(RETRY_DELAYS_S),
            "EVENTGUARD_RUNTIME__HANDLER_TIMEOUT_S": "2",
            "EVENTGUARD_RUNTIME__HEARTBEAT_INTERVAL_S": "1",
            "EVENTGUARD_RUNTIME__DRAIN_TIMEOUT_S": "10",
            "EVENTGUARD_RUNTIME__RECONNECT_MAX_DELAY_S": "2",
            "EVENTGUARD_QUARANTINE__TICK_S": "0.2",
            "EVENTGUARD_QUARANTINE__FLOOD_PRODUCER_THRESHOLD": "100000",
            "EVENTGUARD_QUARANTINE__FLOOD_TYPE_THRESHOLD": "100000",
            "EVENTGUARD_OPPORTUNITY_DISCOVERY__MARKET_SOURCE": "simulator",
            "EVENTGUARD_LOG_FORMAT": "json",
            "EVENTGUARD_LOG_LEVEL": "WARNING",
        }
    )
    return env


async def _purge(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for topology in TOPOLOGIES:
            for queue in topology.queues:
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    declared = await channel.declare_queue(queue.name, passive=True)
                    await declared.purge()


async def _forget(url: str, prefix: str) -> None:
    """Delete the test's keys (an own Redis the test has already stopped is skipped)."""
    client = connect_redis(url)
    try:
        await forget_prefix(client, prefix)
    except (OSError, RedisError):
        pass
    finally:
        await client.aclose()


@pytest.fixture
async def fleet(fleet_env: dict[str, str], tmp_path: Path, rabbit_url: str) -> AsyncIterator[Fleet]:
    """Started worker processes are stopped and their queues purged at the end of the test."""
    running = Fleet(fleet_env, tmp_path)
    yield running
    await asyncio.to_thread(running.stop)
    await _purge(rabbit_url)
    await _forget(running.env["EVENTGUARD_REDIS_URL"], running.env["EVENTGUARD_REDIS_KEY_PREFIX"])


@pytest.fixture
async def producer(rabbit_url: str) -> AsyncIterator[AmqpBroker]:
    """The test's own connection, publishing as guest."""
    broker = AmqpBroker(
        rabbit_url,
        metrics=Metrics(CollectorRegistry()),
        name=f"e2e-{uuid.uuid4().hex[:6]}",
        reconnect_max_delay_s=1.0,
    )
    await broker.start()
    yield broker
    await broker.close()


LoadFactory = Callable[..., LoadGenerator]


@pytest.fixture
async def load(
    producer: AmqpBroker, fleet_env: dict[str, str], redis_url: str
) -> AsyncIterator[LoadFactory]:
    """Make load generators over the test's key prefix: ``load(workers, poison_share=...)``."""
    stores: list[Store] = []
    generators: list[LoadGenerator] = []

    def make(
        workers: tuple[str, ...] = FLEET,
        *,
        poison_share: float = 0.2,
        duplicate_share: float = 0.05,
        seed: int = 1,
        redis: str | None = None,
        types: tuple[str, ...] | None = None,
        scan_user: str | None = None,
    ) -> LoadGenerator:
        # The load publishes as guest, which the fleet lets assert actors (any-type producer).
        any_type = json.loads(fleet_env["EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS"])
        settings = Settings.model_validate({"security": {"any_type_producers": any_type}})
        consumers = consumers_of(CONSUMES, workers)
        if types is not None:
            consumers = {t: w for t, w in consumers.items() if t in types}
        mix = Mix(
            consumers,
            poison_share=poison_share,
            duplicate_share=duplicate_share,
            operator=operator_for(settings),
            seed=seed,
            scan_user=scan_user,
        )
        store = Store(
            connect_redis(redis or redis_url), prefix=fleet_env["EVENTGUARD_REDIS_KEY_PREFIX"]
        )
        stores.append(store)
        generator = LoadGenerator(producer, mix, store=store, user_id="guest")
        generators.append(generator)
        return generator

    yield make
    for generator in generators:
        await generator.stop()
    for store in stores:
        await store.close()


class Recorder:
    """Figures per scenario, merged into ``$EVENTGUARD_E2E_RESULTS`` at the end of the run."""

    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def record(self, scenario: str, **figures: Any) -> None:
        """Keep ``figures`` for ``scenario`` and print them."""
        self.scenarios[scenario] = figures
        print(f"\n[{scenario}] " + json.dumps(figures, default=str))


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    """The run's figures, written where ``EVENTGUARD_E2E_RESULTS`` points (if set)."""
    figures = Recorder()
    yield figures
    target = os.environ.get("EVENTGUARD_E2E_RESULTS")
    if target and figures.scenarios:
        path = Path(target)
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(figures.scenarios)
        path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")


def assert_clean(report: Report, generator: LoadGenerator) -> None:
    """Nothing lost, nothing doubled, every poison message quarantined, nothing valid refused."""
    ledger = generator.ledger
    detail = report.text() + "\n" + "\n".join(ledger.explain(i) for i in report.lost[:5])
    assert report.lost == [], detail
    dup = "\n".join(ledger.explain(i) for i in report.duplicated[:5])
    assert report.duplicated == [], report.text() + "\n" + dup
    assert report.unexpected_quarantine == [], report.text()
    poison = [i for i, s in ledger.sent.items() if s.kind != "valid"]
    assert all(i in ledger.quarantined for i in poison)
    assert report.handled + report.quarantined == report.published
