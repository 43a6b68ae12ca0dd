"""Worker processes over the real RabbitMQ and Redis, for the fault suite.

Each test gets its own Redis key prefix (fresh idempotency and quarantine state), throwaway
keys, short retry delays and a short handler timeout (so a crashed handler's lease expires in
seconds), and starts workers as separate ``eventguard run`` processes.
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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.metrics import Metrics
from tests.integration.conftest import rabbit_url, redis_url

__all__ = ["WorkerProcess", "fleet_env", "producer", "rabbit_url", "redis_url", "workers"]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """One ``eventguard run WORKER`` process."""

    def __init__(self, worker: str, env: dict[str, str], log: Path) -> None:
        self.worker = worker
        self.port = _free_port()
        self.env = {
            **env,
            "EVENTGUARD_OPS_PORT": str(self.port),
            "EVENTGUARD_INSTANCE": f"{worker}-{self.port}",
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch the process."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-m", "workers.cli", "run", self.worker],
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
                    raise AssertionError(f"{self.worker} exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.worker} not ready: {self.log.read_text()[-2000:]}")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig``."""
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for the exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

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
            "EVENTGUARD_RUNTIME__RETRY_DELAYS_S": json.dumps([0.5, 2, 8, 16]),
            "EVENTGUARD_RUNTIME__HANDLER_TIMEOUT_S": "2",
            "EVENTGUARD_RUNTIME__HEARTBEAT_INTERVAL_S": "1",
            "EVENTGUARD_RUNTIME__DRAIN_TIMEOUT_S": "10",
            "EVENTGUARD_QUARANTINE__TICK_S": "0.2",
            "EVENTGUARD_QUARANTINE__FLOOD_PRODUCER_THRESHOLD": "100000",
            "EVENTGUARD_QUARANTINE__FLOOD_TYPE_THRESHOLD": "100000",
            "EVENTGUARD_LOG_FORMAT": "json",
        }
    )
    return env


@pytest.fixture
def workers(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started worker processes are stopped at the end of the test."""
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
async def producer(rabbit_url: str) -> AsyncIterator[AmqpBroker]:
    """The test's own connection, publishing as guest."""
    broker = AmqpBroker(
        rabbit_url, metrics=Metrics(CollectorRegistry()), name=f"e2e-{uuid.uuid4().hex[:6]}"
    )
    await broker.start()
    yield broker
    await broker.close()
