"""What the onboarding tests share: a fresh vhost made by ``eventguard setup local`` through the
management API (deleted afterwards, with the Redis keys of its prefix), worker processes
started from its env files, and shell or example code taken literally from the Markdown.

The management API is ``$EVENTGUARD_TEST_MGMT_URL`` (default http://127.0.0.1:15672), of the
broker ``$EVENTGUARD_TEST_AMQP_URL`` points at. ``setup local`` takes over the broker-wide users
of the fleet (``quarantine``, ``operator``...), as the producer-policy e2e test does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import pytest

from common.store import connect_redis
from common.testing import forget_prefix

__all__ = [
    "ROOT",
    "SetUp",
    "code_block",
    "free_port_run",
    "fresh_vhost",
    "read_env",
    "ready",
    "run",
]

ROOT = Path(__file__).resolve().parents[2]
MANAGEMENT = os.environ.get("EVENTGUARD_TEST_MGMT_URL", "http://127.0.0.1:15672")


def code_block(markdown: str, *, after: str) -> str:
    """The first fenced code block after the line ``after`` (a heading or a marker comment)."""
    start = markdown.index(after)
    match = re.compile(r"^```[a-z]*\n(.*?)^```", re.DOTALL | re.MULTILINE).search(markdown, start)
    assert match is not None, f"no code block after {after!r}"
    return match.group(1)


def read_env(path: Path) -> dict[str, str]:
    """The settings of an env file ``setup local`` wrote."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, raw = line.partition("=")
            values[key] = shlex.split(raw)[0]
    return values


def free_port_run(count: int, low: int = 18620, high: int = 18699) -> int:
    """The first of ``count`` consecutive free loopback ports in [low, high)."""
    for base in range(low, high - count):
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise AssertionError("no free ports")


@dataclass
class SetUp:
    """A vhost made by ``setup local``; its env files are in ``directory``."""

    vhost: str
    cwd: Path
    args: list[str]  # the options pointing setup local at the broker and Redis under test
    ops_base_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        """Where the env files are."""
        return self.cwd / ".eventguard" / self.vhost

    @staticmethod
    def env_base() -> dict[str, str]:
        """PATH (the venv's bin first, so ``eventguard`` is found) and HOME, nothing else."""
        return {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - node wants one
        }

    def env(self, user: str) -> dict[str, str]:
        """The process environment of ``user``: :meth:`env_base` plus its env file."""
        return {**self.env_base(), **read_env(self.directory / f"{user}.env")}

    def start(self, argv: list[str], *, env: dict[str, str], log: str) -> None:
        """Start ``argv`` in a session of its own (stopped, with its children, at the end)."""
        with (self.cwd / log).open("ab") as out:
            self.processes.append(
                subprocess.Popen(  # noqa: S603 - our own commands
                    argv,
                    env=env,
                    cwd=self.cwd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def stop(self) -> None:
        """SIGTERM every started session, then wait."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


async def _management(method: str, resource: str) -> int:
    auth = {"Authorization": aiohttp.encode_basic_auth("guest", "guest")}
    async with (
        aiohttp.ClientSession(headers=auth) as api,
        api.request(method, f"{MANAGEMENT}/api/{resource}") as response,
    ):
        return response.status


@contextlib.asynccontextmanager
async def fresh_vhost(
    tmp_path: Path, rabbit_url: str, redis_url: str, *, label: str
) -> AsyncIterator[SetUp]:
    """A fresh vhost name and the options for ``setup local``; afterwards its processes stop,
    the vhost is deleted and its Redis keys are forgotten."""
    try:
        await _management("GET", "overview")
    except aiohttp.ClientConnectionError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no RabbitMQ management API at {MANAGEMENT}")
        pytest.skip(f"E2E SKIPPED: no RabbitMQ management API at {MANAGEMENT}")
    vhost = f"eg-{label}-{uuid.uuid4().hex[:8]}"
    amqp = urlsplit(rabbit_url)
    base = free_port_run(4)
    setup = SetUp(
        vhost=vhost,
        cwd=tmp_path,
        args=[
            "--management-url",
            MANAGEMENT,
            "--amqp",
            f"{amqp.hostname}:{amqp.port or 5672}",
            "--redis-url",
            redis_url,
            "--ops-base-port",
            str(base),
        ],
        ops_base_port=base,
    )
    try:
        yield setup
    finally:
        setup.stop()
        await _management("DELETE", f"vhosts/{quote(vhost, safe='')}")
        client = connect_redis(redis_url)
        try:
            await forget_prefix(client, f"eg:{vhost}:")
        finally:
            await client.aclose()


async def ready(port: int, *, timeout_s: float = 60.0) -> bool:
    """Whether the ops server on ``port`` answers /readyz 200 within ``timeout_s``."""
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            return True
                await asyncio.sleep(0.2)


async def run(argv: list[str], *, env: dict[str, str], cwd: Path, timeout_s: float = 90) -> str:
    """Run ``argv`` to completion; its stdout (stderr is shown when it fails)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout_s):
        out, err = await process.communicate()
    assert process.returncode == 0, f"{argv[:3]} exited {process.returncode}: {err.decode()}"
    return out.decode()
