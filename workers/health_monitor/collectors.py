"""Collectors: what the health monitor looks at, turned into samples.

Heartbeats arrive as events; the RabbitMQ management API, Redis INFO and HTTP health targets
are polled, each under its own guard (timeout, retry, breaker). A collector that fails, hangs
or returns garbage yields ``target_up = 0`` for its target and is counted: it never hangs the
evaluation and never raises out of :func:`collect_all`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from common.bus.topology import DEAD_QUEUE, UNRECORDED_QUEUE, UNROUTED_QUEUE, work_queue_name
from common.config.workers import HealthMonitorSettings
from common.logging import get_logger
from common.metrics import Metrics
from common.reliability.guard import Guards
from common.security.producers import WORKER_USERS
from common.store import Store
from schemas.health import Heartbeat
from workers.health_monitor.evaluator import Sample

__all__ = [
    "Collector",
    "HeartbeatBook",
    "collect_all",
    "fleet_queue_kind",
    "rabbitmq_collector",
    "redis_collector",
]

_SPECIAL_QUEUES = frozenset({DEAD_QUEUE, UNRECORDED_QUEUE, UNROUTED_QUEUE})

_log = get_logger("eventguard.health_monitor")
Collector = Callable[[], Awaitable[list[Sample]]]


@dataclass
class _Seen:
    beat: Heartbeat
    at: float


class HeartbeatBook:
    """The last heartbeat of every worker instance, turned into samples. An instance silent
    for ``forget_after_s`` is forgotten (its alerts then clear as absent series)."""

    def __init__(self, *, forget_after_s: float = 3600.0) -> None:
        self._seen: dict[tuple[str, str], _Seen] = {}
        self.forget_after_s = forget_after_s

    def record(self, beat: Heartbeat, now: float) -> None:
        """Remember ``beat`` as seen at ``now``."""
        self._seen[(beat.worker, beat.instance)] = _Seen(beat, now)

    def samples(self, now: float) -> list[Sample]:
        """One sample per metric and worker instance; entity rates per entity."""
        out: list[Sample] = []
        for key in [k for k, v in self._seen.items() if now - v.at > self.forget_after_s]:
            del self._seen[key]
        for (worker, instance), seen in self._seen.items():
            beat = seen.beat
            labels = {"worker": worker, "instance": instance, "depends_on": "broker"}
            out += [
                Sample.of("worker_error_rate", beat.error_rate, **labels),
                Sample.of("worker_messages_per_s", beat.messages_per_s, **labels),
                Sample.of("worker_latency_p99_s", beat.latency_p99_s, **labels),
                Sample.of("worker_in_flight", beat.in_flight, **labels),
                Sample.of("worker_consumers", beat.consumers, **labels),
                Sample.of("worker_paused", 1.0 if beat.paused else 0.0, **labels),
                Sample.of(
                    "worker_heartbeat_age_s",
                    max(0.0, now - seen.at),
                    worker=worker,
                    instance=instance,
                ),
            ]
            for dependency, state in beat.breakers.items():
                out.append(
                    Sample.of(
                        "worker_breaker_open",
                        1.0 if state in {"open", "forced_open"} else 0.0,
                        dependency=dependency,
                        **labels,
                    )
                )
            for entity, rate in beat.entity_error_rates.items():
                kind, _, entity_id = entity.partition(":")
                out.append(
                    Sample.of(
                        "entity_error_rate",
                        rate,
                        entity_kind=kind,
                        entity_id=entity_id or kind,
                        worker=worker,
                        depends_on="broker",
                    )
                )
        return out


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a count: {value!r}")
    return number


def fleet_queue_kind(name: str, workers: Iterable[str]) -> str | None:
    """``work``, ``retry``, ``dead``, ``unrecorded`` or ``unrouted`` for a queue of the fleet;
    None for any other queue (a load generator's observer, another application's)."""
    if name in _SPECIAL_QUEUES:  # consumed by quarantine, or by nobody on purpose
        return name.rsplit(".", 1)[1]
    for worker in workers:
        own = work_queue_name(worker)
        if name == own:
            return "work"
        if name.startswith(f"{own}.retry."):
            return "retry"
    return None


def rabbitmq_collector(
    settings: HealthMonitorSettings,
    guards: Guards,
    session: aiohttp.ClientSession,
    *,
    vhost: str = "/",
    workers: Iterable[str] = WORKER_USERS,
) -> Collector:
    """Queue depth, consumers and unacked counts of the fleet's queues in ``vhost`` (the
    worker's own), from the management API; other vhosts and other queues are not looked at."""
    base = (settings.rabbitmq_api_url or "").rstrip("/")
    url = f"{base}/api/queues/{quote(vhost, safe='')}"
    fleet = tuple(workers)
    password = settings.rabbitmq_api_password
    headers = {
        "Authorization": aiohttp.encode_basic_auth(
            settings.rabbitmq_api_user, password.get_secret_value() if password else ""
        )
    }

    async def fetch() -> Any:
        async with session.get(url, headers=headers) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def collect() -> list[Sample]:
        queues = await guards.guard("http:rabbitmq-management").call(fetch)
        if not isinstance(queues, list):
            raise TypeError("management API did not return a list of queues")
        out = [Sample.of("target_up", 1.0, target="rabbitmq")]
        for queue in queues:
            name = str(queue["name"])
            kind = fleet_queue_kind(name, fleet)
            if kind is None or queue.get("vhost", vhost) != vhost:
                continue
            labels = {"queue": name, "queue_kind": kind, "depends_on": "broker", "vhost": vhost}
            out += [
                Sample.of("queue_depth", _number(queue.get("messages_ready", 0)), **labels),
                Sample.of("queue_consumers", _number(queue.get("consumers", 0)), **labels),
                Sample.of(
                    "queue_unacked", _number(queue.get("messages_unacknowledged", 0)), **labels
                ),
            ]
        return out

    return collect


def redis_collector(store: Store) -> Collector:
    """Memory, clients and persistence status from Redis INFO."""

    async def collect() -> list[Sample]:
        info: Any = await store.execute(lambda r: r.info())
        if not isinstance(info, dict):
            raise TypeError("INFO did not return a mapping")
        labels = {"depends_on": "redis"}
        maxmemory = _number(info.get("maxmemory", 0))
        ratio = (
            [Sample.of("redis_memory_used_ratio", _number(info["used_memory"]) / maxmemory)]
            if maxmemory > 0
            else []
        )
        return [
            *ratio,
            Sample.of("target_up", 1.0, target="redis"),
            Sample.of("redis_used_memory_bytes", _number(info["used_memory"]), **labels),
            Sample.of("redis_connected_clients", _number(info["connected_clients"]), **labels),
            Sample.of(
                "redis_rdb_last_save_failed",
                0.0 if info.get("rdb_last_bgsave_status", "ok") == "ok" else 1.0,
                **labels,
            ),
        ]

    return collect


def http_target_collector(
    name: str, url: str, guards: Guards, session: aiohttp.ClientSession
) -> Collector:
    """``target_up`` for one HTTP health URL (2xx is up)."""

    async def fetch() -> int:
        async with session.get(url) as response:
            await response.read()
            return response.status

    async def collect() -> list[Sample]:
        status = await guards.guard(f"http:target:{name}").call(fetch)
        return [Sample.of("target_up", 1.0 if 200 <= status < 300 else 0.0, target=name)]

    return collect


async def collect_all(
    collectors: dict[str, Collector], *, timeout_s: float, metrics: Metrics
) -> list[Sample]:
    """Run every collector concurrently, each cut at ``timeout_s``; failures become down."""

    async def one(name: str, collector: Collector) -> list[Sample]:
        try:
            async with asyncio.timeout(timeout_s):
                return await collector()
        except Exception as error:  # noqa: BLE001 - any failure of a target means "down"
            metrics.health_monitor.collector_failures.labels(name).inc()
            _log.warning("collector.failed", collector=name, error=repr(error)[:300])
            return [Sample.of("target_up", 0.0, target=name)]

    results = await asyncio.gather(*(one(n, c) for n, c in collectors.items()))
    return [sample for batch in results for sample in batch]
