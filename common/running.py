"""One worker as the runtime runs it: its service, pipelines, queues and consumer tags, and the
``health.heartbeat`` it reports (rates since the previous beat)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.bus.pipeline import Pipeline
from common.bus.publisher import Publisher
from common.bus.raw import RawPipeline
from common.service import Service
from schemas.health import Heartbeat

__all__ = ["RunningWorker"]


@dataclass
class RunningWorker:
    """One service with its pipeline and consumer tags."""

    service: Service
    publisher: Publisher
    pipeline: Pipeline
    queues: list[str]
    raw: list[RawPipeline] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # work-queue consumers (paused with the worker)
    raw_tags: list[str] = field(default_factory=list)
    # The replica's own queue (types every replica must see) and its pipeline: no idempotency
    # claim, since each replica handles its copy; a failed copy is dropped (common/bus/replica).
    replica_queue: str = ""
    replica_pipeline: Pipeline | None = None
    paused: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # (monotonic time, handled, failed) at the previous heartbeat
    _last: tuple[float, int, int] | None = field(default=None, repr=False)

    def heartbeat(
        self, name: str, instance: str, *, consumers: int, breakers: dict[str, str]
    ) -> Heartbeat:
        """The ``health.heartbeat`` of this worker now: rates since the previous beat."""
        now = time.monotonic()
        stats = self.pipeline.stats
        then, handled, failed = self._last or (now, 0, 0)
        self._last = (now, stats.handled, stats.failed)
        elapsed = max(now - then, 1e-9)
        done = stats.handled - handled
        errors = stats.failed - failed
        latencies = sorted(stats.latencies)
        uptime = (datetime.now(UTC) - self.started_at).total_seconds()
        return Heartbeat(
            worker=name,
            instance=instance,
            started_at=self.started_at,
            uptime_s=uptime,
            messages_per_s=(done + errors) / elapsed if then != now else 0.0,
            error_rate=errors / (done + errors) if done + errors else 0.0,
            latency_p50_s=_percentile(latencies, 0.5),
            latency_p99_s=_percentile(latencies, 0.99),
            in_flight=self.pipeline.in_flight,
            consumers=consumers,
            paused=self.paused,
            breakers=dict(list(breakers.items())[:200]),
            entity_error_rates=dict(list(self.service.entity_error_rates().items())[:500]),
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]
