"""A real Prometheus with the shipped rules scrapes a running worker and alerts once it stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.deploy._fleet import serving_fleet
from tests.deploy._tools import DEPLOY, require_tool

pytestmark = pytest.mark.integration
_WORKER = "quarantine"
_ALERT = "EventGuardWorkerDown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(directory: Path, ops_port: int) -> Path:
    """The shipped rules with the worker-down delay cut to 2 s, and a 1 s scrape of one worker."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "eventguard.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == _ALERT:
                rule["for"] = "2s"
    (directory / "rules.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(directory / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "eventguard",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{ops_port}"], "labels": {"worker": _WORKER}}
                ],
            }
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config))
    return path


@contextlib.asynccontextmanager
async def _prometheus(config: Path, data: Path) -> AsyncIterator[str]:
    """A Prometheus server on 127.0.0.1; yields its API base URL."""
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        require_tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.terminate()
        async with asyncio.timeout(10):
            await server.wait()


async def _poll(session: aiohttp.ClientSession, url: str, within: float) -> AsyncIterator[Any]:
    """The `data` of ``url`` every 0.25 s until the caller stops or ``within`` runs out."""
    async with asyncio.timeout(within):
        while True:
            try:
                async with session.get(url) as response:
                    yield (await response.json())["data"]
            except aiohttp.ClientError:  # the server is still starting
                pass
            await asyncio.sleep(0.25)


async def test_prometheus_scrapes_a_worker_and_fires_worker_down(tmp_path: Path) -> None:
    """Prometheus sees the worker's metrics, then EventGuardWorkerDown fires once it stops."""
    ops_port = _free_port()
    config = _write_config(tmp_path, ops_port)
    async with _prometheus(config, tmp_path / "data") as api, aiohttp.ClientSession() as session:
        async with serving_fleet([_WORKER], port=ops_port):
            query = f"{api}/query?query=eventguard_active_consumers"
            async for data in _poll(session, query, within=30):
                if data["result"]:
                    break
            sample = data["result"][0]
            assert sample["metric"]["queue"] == f"eventguard.{_WORKER}"
            assert sample["metric"]["worker"] == _WORKER
            assert sample["value"][1] == "1"
        async for data in _poll(session, f"{api}/alerts", within=30):
            firing = [
                a
                for a in data["alerts"]
                if a["labels"]["alertname"] == _ALERT and a["state"] == "firing"
            ]
            if firing:
                break
        assert firing[0]["labels"]["worker"] == _WORKER
        assert firing[0]["labels"]["severity"] == "critical"
        assert firing[0]["annotations"]["runbook_url"].endswith("#worker-down")
