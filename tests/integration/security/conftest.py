"""A live worker process (``eventguard run quarantine health_monitor``) on the real RabbitMQ and
Redis, with a signing key minted for the test module, JSON logs captured line by line."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.config.sections import SecuritySettings
from common.security.tokens import TokenService

ROOT = Path(__file__).resolve().parents[3]


class LiveWorker:
    """One worker process; every line it writes (stdout and stderr) is kept in ``lines``."""

    def __init__(self, env: dict[str, str], workers: tuple[str, ...]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.port = 0
        self._process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "eventguard.cli", "run", *workers],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait for the ops server's port (from its ``ops.listening`` line), then /readyz."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.port:
            if self._process.poll() is not None:
                raise AssertionError("worker exited:\n" + "\n".join(self.lines[-30:]))
            for line in list(self.lines):
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == "ops.listening":
                        self.port = int(entry["port"])
            time.sleep(0.05)
        while time.monotonic() < deadline:
            url = f"{self.url}/readyz"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - our own http URL
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("worker not ready:\n" + "\n".join(self.lines[-30:]))

    @property
    def url(self) -> str:
        """The ops server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 20 s); the output is complete afterwards."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=5)


def live_env(rabbit_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a live worker: fresh key and Redis prefix, JSON logs, port 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGUARD_")}
    env.update(
        {
            "EVENTGUARD_BROKER_URL": rabbit_url,
            "EVENTGUARD_REDIS_URL": redis_url,
            "EVENTGUARD_REDIS_KEY_PREFIX": f"sec-{uuid.uuid4().hex[:8]}:",
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS": json.dumps(["guest"]),
            "EVENTGUARD_RUNTIME__HEARTBEAT_INTERVAL_S": "3600",
            "EVENTGUARD_OPS_PORT": "0",
            "EVENTGUARD_INSTANCE": f"sec-{uuid.uuid4().hex[:6]}",
            "EVENTGUARD_LOG_FORMAT": "json",
            "EVENTGUARD_LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


def tokens_for(env: dict[str, str]) -> TokenService:
    """A token service signing with the live worker's key (issue only)."""
    settings = SecuritySettings(jwt_signing_key=env["EVENTGUARD_SECURITY__JWT_SIGNING_KEY"])
    return TokenService(settings, store=None)


def forget(redis_url: str, prefix: str) -> None:
    """Delete the worker's Redis keys."""
    client: Any = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=10_000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@contextlib.contextmanager
def running(env: dict[str, str], workers: tuple[str, ...]) -> Iterator[LiveWorker]:
    """A ready live worker, stopped and its keys deleted afterwards."""
    worker = LiveWorker(env, workers)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        forget(env["EVENTGUARD_REDIS_URL"], env["EVENTGUARD_REDIS_KEY_PREFIX"])


@pytest.fixture
def live_env_factory(rabbit_url: str, redis_url: str) -> Any:
    """Build live-worker environments on the servers under test."""

    def build(**extra: str) -> dict[str, str]:
        return live_env(rabbit_url, redis_url, **extra)

    return build
