"""The fleet as containers of the project image (``make containers-e2e``).

Each worker runs as its own container of ``localhost/eventguard:local`` (built by ``make image``)
on the host's network, with its own ops port on 127.0.0.1, read-only root filesystem and the
image's non-root user, against the host's RabbitMQ (the test's vhost) and Redis (the test's key
prefix). The e2e fixtures (load generator, ledger, purge and key cleanup) are reused as they are;
only the launcher differs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Fleet,
    WorkerProcess,
    _forget,
    _purge,
    fleet_env,
    load,
    producer,
    rabbit_url,
    recorder,
    redis_url,
)

__all__ = [
    "ContainerFleet",
    "WorkerContainer",
    "containers",
    "fleet_env",
    "load",
    "producer",
    "rabbit_url",
    "recorder",
    "redis_url",
]

IMAGE = os.environ.get("EVENTGUARD_IMAGE", "localhost/eventguard:local")
ENGINE = "podman"
STOP_GRACE_S = 30
LABEL = "io.eventguard.made-by=tests/containers"


def _engine(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one podman command and return its result (raises on a non-zero exit)."""
    return subprocess.run(  # noqa: S603 - podman with fixed arguments
        [ENGINE, *args], capture_output=True, text=True, check=True, timeout=timeout_s
    )


class WorkerContainer(WorkerProcess):
    """One worker as a container: ``podman run`` in the foreground, so its exit code is ours."""

    def __init__(self, worker: str, env: dict[str, str], log: Path) -> None:
        super().__init__(worker, env, log)
        self.name = f"eg-{worker.replace('_', '-')}-{self.port}"
        # Inside the container the ops server binds 127.0.0.1 of the host (host network).
        self.env["EVENTGUARD_OPS_HOST"] = "127.0.0.1"
        self.env["EVENTGUARD_INSTANCE"] = self.name

    def start(self) -> None:
        """``podman run`` the worker, read-only and as the image's user, on the host network."""
        passed = [f"--env={k}" for k in sorted(self.env) if k.startswith("EVENTGUARD_")]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - podman with fixed arguments
                [
                    ENGINE, "run", "--rm", "--name", self.name, "--label", LABEL,
                    "--network=host", "--read-only", "--tmpfs=/tmp", "--no-healthcheck",
                    f"--stop-timeout={STOP_GRACE_S}", *passed, IMAGE, "run", self.worker,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def signal(self, sig: signal.Signals) -> None:
        """Deliver ``sig`` to the worker inside the container."""
        _engine("kill", f"--signal={sig.name}", self.name)

    def podman_stop(self) -> None:
        """``podman stop``: SIGTERM, then SIGKILL after the grace period."""
        _engine("stop", f"--time={STOP_GRACE_S}", self.name, timeout_s=STOP_GRACE_S + 15)

    def user(self) -> str:
        """The uid:gid the worker runs as."""
        return _engine("exec", self.name, "id", "-u").stdout.strip()

    def root_is_read_only(self) -> bool:
        """Whether writing to / inside the container fails."""
        probe = subprocess.run(  # noqa: S603 - podman with fixed arguments
            [ENGINE, "exec", self.name, "touch", "/probe"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return probe.returncode != 0 and "Read-only file system" in probe.stderr

    def rss(self) -> int:
        """Not measured for containers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the container if it still runs, then reap ``podman run``."""
        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run(  # noqa: S603 - podman with fixed arguments
            [ENGINE, "stop", f"--time={STOP_GRACE_S}", self.name],
            capture_output=True,
            check=False,
            timeout=STOP_GRACE_S + 15,
        )
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ContainerFleet(Fleet):
    """The worker containers of one test."""

    async def start(self, *workers: str, **env: str) -> list[WorkerProcess]:
        """Start ``workers`` (each its own container) and wait until all are ready."""
        started: list[WorkerProcess] = []
        for worker in workers:
            log = self.logs / f"{worker}-{len(self.processes)}.log"
            container = WorkerContainer(worker, {**self.env, **env}, log)
            self.processes.append(container)
            started.append(container)
            container.start()
        await asyncio.gather(*(p.ready(timeout_s=60.0) for p in started))
        return started

    def container(self, worker: str) -> WorkerContainer:
        """The latest container of ``worker``."""
        found = self.get(worker)
        assert isinstance(found, WorkerContainer)
        return found


def _require_image() -> None:
    """Fail with the command to run when podman or the image is missing."""
    if shutil.which(ENGINE) is None:
        pytest.fail(f"{ENGINE} is not installed: run `make image` first")
    exists = subprocess.run(  # noqa: S603 - podman with fixed arguments
        [ENGINE, "image", "exists", IMAGE], check=False, timeout=30
    )
    if exists.returncode != 0:
        pytest.fail(f"no image {IMAGE}: run `make image` first")


def _remove_leftovers() -> None:
    """Remove any container of this suite that is still there."""
    leftover = _engine("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if leftover:
        _engine("rm", "-f", *leftover)


@pytest.fixture
async def containers(
    fleet_env: dict[str, str], tmp_path: Path, rabbit_url: str
) -> AsyncIterator[ContainerFleet]:
    """Worker containers are stopped and removed, their queues purged and keys deleted."""
    _require_image()
    running = ContainerFleet(fleet_env, tmp_path)
    yield running
    await asyncio.to_thread(running.stop)
    await asyncio.to_thread(_remove_leftovers)
    await _purge(rabbit_url)
    await _forget(running.env["EVENTGUARD_REDIS_URL"], running.env["EVENTGUARD_REDIS_KEY_PREFIX"])
