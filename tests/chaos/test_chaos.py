"""Node kills under load: the real fleet on three RabbitMQ nodes and Redis with Sentinel.

The workers are ``eventguard run`` processes given every node (``EVENTGUARD_BROKER_URLS``) and
the Sentinels (``EVENTGUARD_REDIS_SENTINELS``, ``WAIT`` for one replica). Each scenario runs
``eventguard load`` at a steady rate, injects its fault a few seconds in, and reads the load's
ledger (lost, duplicated effects) and timeline (when confirms and outcomes stopped and
resumed). The fault is undone after the load ends (the node restarted and rejoined, the old
Redis primary back as a replica), so every scenario starts from a whole cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.chaos.conftest import RESULTS, ROOT, Cluster
from tests.e2e.conftest import Fleet
from workers.ai_fallback.simulator import ProviderSimulator, Step

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(420)]

WORKERS = ("ai_fallback", "quarantine")
# Messages per second, steady. Below what the fleet sustains on two cores shared with the
# cluster and other work (25-40 msg/s at a load average of 9): at 50 a backlog built up before
# any fault, outcomes came up to 40 s after the last publish, and the run neared its timeout.
RATE = 30
SECONDS = 16  # of load per scenario
FAULT_AT_S = 5.0  # into the load
PAUSE_S = 0.3  # a gap between confirms (or outcomes) longer than this is an outage
FAULT_EFFECT_S = 3.0  # an outage beginning this long after the fault is the fault's
RESUME_TARGET_S = 5.0
WORK_QUEUE = "eventguard.ai_fallback"


@dataclass
class Rig:
    """The cluster, the fleet and what the scenarios share."""

    cluster: Cluster
    fleet: Fleet
    env: dict[str, str]
    logs: Path


def _env(cluster: Cluster, urls: list[str], sentinels: str, model_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGUARD_")}
    model = {
        "name": "m1",
        "provider": "openai",
        "endpoint": model_url,
        "key_ref": "sim",
        "context_window": 8000,
        "max_output": 256,
        "timeout_s": 2,
    }
    env.update(
        {
            "EVENTGUARD_BROKER_URLS": ",".join(urls),
            "EVENTGUARD_REDIS_SENTINELS": sentinels,
            "EVENTGUARD_REDIS_SENTINEL_MASTER": "eventguard",
            "EVENTGUARD_REDIS_WAIT_REPLICAS": "1",
            "EVENTGUARD_REDIS_KEY_PREFIX": f"chaos-{uuid.uuid4().hex[:8]}:",
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            # The load publishes as RabbitMQ's guest; a dev-only allowance, never in deploy/.
            "EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS": json.dumps(["guest"]),
            "EVENTGUARD_RUNTIME__RETRY_DELAYS_S": json.dumps([0.5, 2.0, 8.0, 16.0]),
            "EVENTGUARD_RUNTIME__HANDLER_TIMEOUT_S": "5",
            "EVENTGUARD_RUNTIME__HEARTBEAT_INTERVAL_S": "2",
            "EVENTGUARD_RUNTIME__RECONNECT_MAX_DELAY_S": "1",
            "EVENTGUARD_QUARANTINE__TICK_S": "0.2",
            "EVENTGUARD_QUARANTINE__FLOOD_PRODUCER_THRESHOLD": "100000",
            "EVENTGUARD_QUARANTINE__FLOOD_TYPE_THRESHOLD": "100000",
            "EVENTGUARD_AI_FALLBACK__MODELS": json.dumps([model]),
            "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS": json.dumps({"sim": secrets.token_hex(8)}),
            "EVENTGUARD_LOG_FORMAT": "json",
            "EVENTGUARD_LOG_LEVEL": "INFO",  # which node each connection uses, for a post-mortem
        }
    )
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """The fleet on the cluster, each worker starting on a different node."""
    simulator = ProviderSimulator()
    model_url = await simulator.start()
    simulator.set_default("m1", Step("ok"))
    urls = (await cluster.arabbit("urls")).split(",")
    env = _env(cluster, urls, await cluster.aredis("sentinels"), model_url)
    logs = tmp_path_factory.mktemp("chaos")
    fleet = Fleet(env, logs)
    pids = cluster.state_dir / "fleet.pids"
    try:
        for n, worker in enumerate(WORKERS):
            rotated = urls[n % len(urls) :] + urls[: n % len(urls)]
            started = await fleet.start(worker, EVENTGUARD_BROKER_URLS=",".join(rotated))
            with pids.open("a") as out:  # make chaos's trap kills these if pytest is killed
                out.write(f"{started[0].pid}\n")
        yield Rig(cluster, fleet, env, logs)
    finally:
        await asyncio.to_thread(fleet.stop)
        await simulator.close()


# -- measuring -------------------------------------------------------------------------------


def resumed_after(times: list[float], fault_at: float) -> tuple[float, float]:
    """(seconds from the fault until the flow resumed, the longest pause within 10 s of it) of
    a sorted list of event times. The fault's own pause is the gap longer than PAUSE_S that
    begins within FAULT_EFFECT_S of it (ending last, if several); none: the flow never
    stopped (0). Later pauses of a busy machine are only reported, in the second figure."""
    resumed, longest = 0.0, 0.0
    for before, after in itertools.pairwise(times):
        if after <= fault_at or before > fault_at + 10:
            continue
        longest = max(longest, after - before)
        if after - before > PAUSE_S and before <= fault_at + FAULT_EFFECT_S:
            resumed = max(resumed, after - fault_at)
    return round(resumed, 2), round(longest, 2)


async def fleet_republished(rig: Rig) -> dict[str, float]:
    """The workers' republished publishes, by reason."""
    totals: dict[str, float] = {}
    for process in rig.fleet.processes:
        for reason in ("connection", "nack"):
            value = await process.metric("eventguard_publish_republished_total", reason=reason)
            totals[reason] = totals.get(reason, 0.0) + value
    return totals


async def primary_promoted(
    cluster: Cluster, old: str, since: float, limit_s: float = 20.0
) -> float | None:
    """Seconds from ``since`` until the Sentinels name a primary other than ``old`` (None: not
    within ``limit_s``)."""
    started = since
    sentinels = [s.rsplit(":", 1) for s in (await cluster.aredis("sentinels")).split(",")]
    clients = [Redis(host=h, port=int(p), socket_timeout=0.5) for h, p in sentinels]
    try:
        while time.monotonic() - started < limit_s:
            for client in clients:
                try:
                    addr = await client.execute_command(  # type: ignore[no-untyped-call]
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "eventguard"
                    )
                except (OSError, RedisError):
                    continue
                if addr and addr[1].decode() != old:
                    return round(time.monotonic() - started, 2)
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.aclose()
    return None


Fault = Callable[[dict[str, Any]], Awaitable[None]]
Recover = Callable[[], Awaitable[None]]


async def scenario(rig: Rig, name: str, fault: Fault, recover: Recover) -> dict[str, Any]:
    """Run the load, inject ``fault`` FAULT_AT_S in, undo it afterwards; the figures."""
    before = await fleet_republished(rig)
    timeline = rig.logs / f"{name}.timeline.json"
    started = time.monotonic()
    load = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventguard.cli",
        "load",
        "--count",
        str(RATE * SECONDS),
        "--rate",
        str(RATE),
        "--poison-share",
        "0.1",
        "--duplicate-share",
        "0.02",
        "--workers",
        *WORKERS,
        "--timeout",
        "120",
        "--json",
        "--timeline",
        str(timeline),
        "--i-know-this-is-synthetic",  # the private cluster's vhost "/" holds nothing else
        env={**rig.env, "EVENTGUARD_LOG_LEVEL": "ERROR"},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    with (rig.cluster.state_dir / "fleet.pids").open("a") as pids:  # for make chaos's trap
        pids.write(f"{load.pid}\n")
    figures: dict[str, Any] = {}
    try:
        assert load.stderr is not None
        head = b""
        async with asyncio.timeout(90):  # imports and declarations first, on a busy machine
            while b"load: publishing" not in head:
                line = await load.stderr.readline()
                if not line:  # it exited before publishing (a refusal, a crash)
                    raise AssertionError(f"eventguard load ended early: {head.decode()[-2000:]}")
                head += line
        await asyncio.sleep(FAULT_AT_S)
        fault_at = time.monotonic()
        await fault(figures)
        out, err = await load.communicate()
    finally:
        if load.returncode is None:
            load.kill()
            await load.wait()
    await recover()
    (rig.logs / f"{name}.load.log").write_bytes(head + err)
    assert out, f"eventguard load printed nothing: {err.decode()[-2000:]}"
    report = json.loads(out[out.index(b"{") :])
    times = json.loads(timeline.read_text())
    after = await fleet_republished(rig)
    publish_resume_s, publish_pause_s = resumed_after(times["confirmed"], fault_at)
    consume_resume_s, consume_pause_s = resumed_after(times["outcomes"], fault_at)
    figures.update(
        {
            "published": report["published"],
            "handled": report["handled"],
            "quarantined": report["quarantined"],
            "lost": report["lost"],
            "duplicated": report["duplicated"],
            "unexpected_quarantine": report["unexpected_quarantine"],
            "unsettled_by_type": {
                label: row["published"] - row["settled"]
                for label, row in report["per_type"].items()
                if row["published"] != row["settled"]
            },
            "republished_by_load": report["republished"],
            "republished_by_workers": {k: after[k] - before.get(k, 0.0) for k in after},
            "publish_resumed_s": publish_resume_s,
            "publish_longest_pause_s": publish_pause_s,
            "consume_resumed_s": consume_resume_s,
            "consume_longest_pause_s": consume_pause_s,
            "fault_after_first_confirm_s": round(fault_at - times["confirmed"][0], 2),
            "scenario_wall_s": round(time.monotonic() - started, 1),
        }
    )
    RESULTS.setdefault("scenarios", {})[name] = figures
    print(f"\n[{name}] {json.dumps(figures)}")
    return figures


def assert_clean(figures: dict[str, Any], *, resume_within_s: float | None) -> None:
    """Nothing lost, nothing done twice, every valid message handled; resumed in time."""
    assert figures["lost"] == 0, figures
    assert figures["duplicated"] == 0, figures
    assert figures["unexpected_quarantine"] == 0, figures
    if resume_within_s is not None:
        assert figures["publish_resumed_s"] <= resume_within_s, figures
        assert figures["consume_resumed_s"] <= resume_within_s, figures


# -- the faults ------------------------------------------------------------------------------


async def _restart_rabbit(rig: Rig, node: str) -> None:
    await rig.cluster.arabbit("restart", node)


async def _redis_kill(rig: Rig, figures: dict[str, Any]) -> str:
    old = await rig.cluster.aredis("port", "primary")
    killed = time.monotonic()
    await rig.cluster.aredis("kill", "primary")
    figures["redis_primary_killed"] = int(old)
    figures["redis_promotion_s"] = await primary_promoted(rig.cluster, old, killed)
    return old


async def test_killing_the_leader_of_the_ai_fallback_queue(rig: Rig) -> None:
    """SIGKILL of the node leading eventguard.ai_fallback's quorum: nothing lost or doubled,
    publishing and consuming resume within 5 s."""
    node = await rig.cluster.arabbit("node", f"leader:{WORK_QUEUE}")

    async def fault(figures: dict[str, Any]) -> None:
        await rig.cluster.arabbit("kill", node)
        figures["rabbit_node_killed"] = f"eg{node}"

    figures = await scenario(rig, "leader_kill", fault, lambda: _restart_rabbit(rig, node))
    assert_clean(figures, resume_within_s=RESUME_TARGET_S)


async def test_killing_the_node_holding_a_workers_connection(rig: Rig) -> None:
    """SIGKILL of the node holding ai_fallback's consume connection: the worker moves to the
    next node; nothing lost or doubled, resumed within 5 s."""
    process = rig.fleet.get("ai_fallback")
    name = f"ai_fallback-{process.port}.consume"
    node = await rig.cluster.arabbit("node", f"connection:{name}")
    assert node, f"no node holds {name}"

    async def fault(figures: dict[str, Any]) -> None:
        await rig.cluster.arabbit("kill", node)
        figures["rabbit_node_killed"] = f"eg{node}"

    figures = await scenario(rig, "connection_kill", fault, lambda: _restart_rabbit(rig, node))
    assert_clean(figures, resume_within_s=RESUME_TARGET_S)


async def test_a_node_stalled_ten_seconds(rig: Rig) -> None:
    """SIGSTOP of the ai_fallback queue's leader for 10 s, then SIGCONT: nothing lost or
    doubled (the stall's own length is reported, not held to 5 s)."""
    node = await rig.cluster.arabbit("node", f"leader:{WORK_QUEUE}")

    async def fault(figures: dict[str, Any]) -> None:
        await rig.cluster.arabbit("kill", node, "STOP")
        figures["rabbit_node_stalled"] = f"eg{node}"
        try:
            await asyncio.sleep(10)
        finally:
            await rig.cluster.arabbit("kill", node, "CONT")

    async def nothing() -> None:
        return

    figures = await scenario(rig, "node_stall_10s", fault, nothing)
    assert_clean(figures, resume_within_s=None)


async def test_killing_the_redis_primary(rig: Rig) -> None:
    """SIGKILL of the Redis primary: Sentinel promotes a replica; nothing lost or doubled,
    publishing and consuming resume within 5 s."""
    old: list[str] = []

    async def fault(figures: dict[str, Any]) -> None:
        old.append(await _redis_kill(rig, figures))

    async def recover() -> None:
        await rig.cluster.aredis("restart", old[0])
        await rig.cluster.aredis("await")

    figures = await scenario(rig, "redis_primary_kill", fault, recover)
    assert figures["redis_promotion_s"] is not None, figures
    assert_clean(figures, resume_within_s=RESUME_TARGET_S)


async def test_killing_a_broker_node_and_the_redis_primary_at_once(rig: Rig) -> None:
    """Both at once: the ai_fallback queue's leader and the Redis primary, SIGKILLed together."""
    node = await rig.cluster.arabbit("node", f"leader:{WORK_QUEUE}")
    old: list[str] = []

    async def fault(figures: dict[str, Any]) -> None:
        figures["rabbit_node_killed"] = f"eg{node}"
        _, primary = await asyncio.gather(
            rig.cluster.arabbit("kill", node), _redis_kill(rig, figures)
        )
        old.append(primary)

    async def recover() -> None:
        await asyncio.gather(_restart_rabbit(rig, node), rig.cluster.aredis("restart", old[0]))
        await rig.cluster.aredis("await")

    figures = await scenario(rig, "broker_and_redis_kill", fault, recover)
    assert figures["redis_promotion_s"] is not None, figures
    assert_clean(figures, resume_within_s=RESUME_TARGET_S)
