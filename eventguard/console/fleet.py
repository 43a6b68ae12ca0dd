"""The Fleet page's facts: workers from their heartbeats, queues from the broker.

* Workers and replicas: the last ``health.heartbeat`` of each (worker, instance) the tap heard;
  an instance silent for longer than ``stale_after_s`` is shown as not heard from. Ready means
  heard recently, consumers attached and not paused; a paused consumer names the breakers
  that are open (the runtime pauses a worker while its Redis breaker is open).
* Queues: with the RabbitMQ management API configured (``health_monitor.rabbitmq_api_url``,
  the same setting the health monitor reads) every ``eventguard.*`` queue with its depth,
  consumers and in/out rates; without it, the depth of each worker's work queue and of the dead
  queue from the broker itself (no rates).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from common.bus.broker import Broker
from common.bus.topology import DEAD_QUEUE, work_queue_name
from common.config.workers import HealthMonitorSettings
from common.logging import get_logger
from eventguard.console.tap import Tap

__all__ = ["FleetSnapshot", "FleetView", "QueueRow", "WorkerRow"]

_log = get_logger("eventguard.console.fleet")
_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


@dataclass(frozen=True)
class WorkerRow:
    """One worker instance as its last heartbeat describes it."""

    worker: str
    instance: str
    age_s: float
    ready: bool
    why: str
    paused: bool
    consumers: int
    in_flight: int
    messages_per_s: float
    error_rate: float
    breakers: dict[str, str]


@dataclass(frozen=True)
class QueueRow:
    """One queue: depth, consumers, rates (None when unknown)."""

    name: str
    depth: int
    consumers: int | None
    rate_in: float | None
    rate_out: float | None


@dataclass(frozen=True)
class FleetSnapshot:
    """Workers and queues at one moment."""

    workers: list[WorkerRow]
    queues: list[QueueRow]
    queue_source: str


class FleetView:
    """Builds :class:`FleetSnapshot` from the tap and the broker."""

    def __init__(
        self,
        tap: Tap,
        broker: Broker,
        *,
        workers: Sequence[str],
        management: HealthMonitorSettings | None = None,
        stale_after_s: float = 60.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.tap = tap
        self.broker = broker
        self.worker_names = list(workers)
        self.management = management if management and management.rabbitmq_api_url else None
        self.stale_after_s = stale_after_s
        self.now = now

    async def snapshot(self) -> FleetSnapshot:
        """Workers from heartbeats, queues from the management API or the broker."""
        now = self.now()
        rows = [
            self._row(worker, instance, now - at, data)
            for (worker, instance), (at, data) in self.tap.heartbeats.items()
        ]
        heard = {row.worker for row in rows}
        for name in self.worker_names:
            if name not in heard:
                rows.append(_silent(name))
        rows.sort(key=lambda r: (r.worker, r.instance))
        if self.management is not None:
            try:
                queues = await self._managed_queues(self.management)
                return FleetSnapshot(rows, queues, "management API")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as error:
                _log.warning("console.management_unavailable", error=type(error).__name__)
        return FleetSnapshot(rows, await self._broker_queues(), "broker (no rates)")

    def _row(self, worker: str, instance: str, age: float, data: dict[str, Any]) -> WorkerRow:
        breakers = {str(k): str(v) for k, v in dict(data.get("breakers") or {}).items()}
        paused = bool(data.get("paused"))
        consumers = int(data.get("consumers") or 0)
        why = ""
        if age > self.stale_after_s:
            why = f"no heartbeat for {age:.0f}s"
        elif paused:
            opened = [name for name, state in breakers.items() if state != "closed"]
            why = "paused by breaker " + (", ".join(opened) or "(closed since)")
        elif consumers == 0:
            why = "no consumers attached"
        return WorkerRow(
            worker, instance, age, not why, why, paused, consumers,
            int(data.get("in_flight") or 0), float(data.get("messages_per_s") or 0.0),
            float(data.get("error_rate") or 0.0), breakers,
        )  # fmt: skip

    async def _broker_queues(self) -> list[QueueRow]:
        out = []
        for name in [*(work_queue_name(w) for w in self.worker_names), DEAD_QUEUE]:
            try:
                depth = await self.broker.queue_depth(name)
            except Exception as error:  # noqa: BLE001  # a missing queue is shown, never fatal
                _log.info("console.queue_unknown", queue=name, error=type(error).__name__)
                continue
            consumers = self.broker.active_consumers(name) or None
            out.append(QueueRow(name, depth, consumers, None, None))
        return out

    @staticmethod
    async def _managed_queues(settings: HealthMonitorSettings) -> list[QueueRow]:
        password = settings.rabbitmq_api_password
        auth = aiohttp.BasicAuth(
            settings.rabbitmq_api_user, password.get_secret_value() if password else ""
        )
        url = (settings.rabbitmq_api_url or "").rstrip("/") + "/api/queues"
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.get(url, auth=auth) as response,
        ):
            response.raise_for_status()
            queues = await response.json(content_type=None)
        out = []
        for queue in queues:
            name = str(queue["name"])
            if not name.startswith("eventguard.") or name.startswith("eventguard.console."):
                continue
            stats = queue.get("message_stats") or {}
            rate_in = float((stats.get("publish_details") or {}).get("rate", 0.0))
            rate_out = float((stats.get("deliver_get_details") or {}).get("rate", 0.0))
            depth, consumers = int(queue.get("messages") or 0), int(queue.get("consumers") or 0)
            out.append(QueueRow(name, depth, consumers, rate_in, rate_out))
        return sorted(out, key=lambda q: q.name)


def _silent(name: str) -> WorkerRow:
    return WorkerRow(name, "-", float("inf"), False, "no heartbeat heard yet", False, 0, 0, 0.0,
                     0.0, {})  # fmt: skip
