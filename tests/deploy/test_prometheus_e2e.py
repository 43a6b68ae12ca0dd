"""A real Prometheus server with the shipped rules scrapes a running worker and alerts when it
stops."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.config import Settings
from common.ops import EventStream, OpsServer, build_app
from common.security import AdminAuth, demo_settings
from common.testing import fast_runtime_settings, run_workers
from workers.registry import WORKERS

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _query(session: aiohttp.ClientSession, base: str, path: str) -> Any:
    async with session.get(base + path) as response:
        return (await response.json())["data"]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (make deploy-check)")
async def test_prometheus_scrapes_a_worker_and_fires_worker_down(tmp_path: Path) -> None:
    """Prometheus sees the worker's metrics, then EventGuardWorkerDown fires once it stops."""
    assert PROMETHEUS is not None
    ops_port, prom_port = _free_port(), _free_port()
    rules = (DEPLOY / "prometheus" / "rules" / "eventguard.yml").read_text()
    # The shipped rules, with the worker-down delay shortened so the test takes seconds.
    (tmp_path / "rules.yml").write_text(rules.replace("for: 1m", "for: 2s", 1))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "eventguard",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{ops_port}"], "labels": {"worker": "quarantine"}}
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    server = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{prom_port}/api/v1"
    settings = Settings(runtime=fast_runtime_settings(), security=demo_settings())
    try:
        async with aiohttp.ClientSession() as session:
            async with run_workers(
                [("quarantine", WORKERS["quarantine"])], settings=settings
            ) as fleet:
                auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
                app = build_app(fleet.runtime, auth=auth, stream=EventStream())
                async with OpsServer(app, host="127.0.0.1", port=ops_port).serving():
                    async with asyncio.timeout(30):
                        while True:
                            try:
                                found = await _query(
                                    session, base, "/query?query=eventguard_broker_connected"
                                )
                            except aiohttp.ClientError:
                                found = {"result": []}
                            if found["result"]:
                                break
                            await asyncio.sleep(0.5)
                    assert found["result"][0]["value"][1] == "1"
            async with asyncio.timeout(30):
                while True:
                    alerts = await _query(session, base, "/alerts")
                    firing = [
                        a
                        for a in alerts["alerts"]
                        if a["labels"]["alertname"] == "EventGuardWorkerDown"
                        and a["state"] == "firing"
                    ]
                    if firing:
                        break
                    await asyncio.sleep(0.5)
            assert firing[0]["labels"]["worker"] == "quarantine"
            assert "runbook_url" in firing[0]["annotations"]
    finally:
        server.terminate()
        async with asyncio.timeout(10):
            await server.wait()
