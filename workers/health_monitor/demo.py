"""The health monitor's demo story: a worker's error rate climbs, an alert goes pending,
fires, and resolves."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.testing import Harness
from schemas.health import Heartbeat
from workers.health_monitor.service import HealthMonitorService

__all__ = ["prepare", "scenario"]


_DEMO_RULES = """
rules:
  - name: WorkerErrorRateHigh
    metric: worker_error_rate
    labels: {worker: checkout}
    comparison: ">"
    warning: 0.05
    critical: 0.25
    for: 2m
    keep_firing_for: 3m
    hysteresis: 0.2
    summary: "the checkout worker fails more than it should"
"""


async def prepare(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
    """One rule about the story's 'checkout' worker; the story drives evaluation rounds itself
    on a simulated now (a minute per round), so the background loop is slowed right down."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eventguard-demo-")))
    rules = folder / "rules.yaml"
    rules.write_text(_DEMO_RULES)
    return {"health_monitor": {"interval_s": 3600.0, "rules_file": str(rules)}}


async def scenario(env: Harness, say: Callable[[str], None]) -> None:
    """Publish heartbeats of a failing 'checkout' worker and watch the alert's life."""
    monitor = env.runtime.workers["health_monitor"].service
    if not isinstance(monitor, HealthMonitorService):
        return
    started = datetime.now(UTC)
    clock = [time.time()]
    monitor.now = lambda: clock[0]
    say(
        "health_monitor: rule WorkerErrorRateHigh: warning > 5%, critical > 25%, for 2m, "
        "keep_firing_for 3m, 20% hysteresis (one round = one simulated minute)"
    )
    for minute, rate in enumerate([0.01, 0.10, 0.12, 0.14, 0.30, 0.35, 0.40, 0.02, 0.01, 0.0, 0.0]):
        beat = Heartbeat(
            worker="checkout",
            instance="demo-1",
            started_at=started,
            uptime_s=60.0 * minute,
            error_rate=rate,
        )
        await env.publish("health.heartbeat", beat)
        await env.settle()
        sent = await monitor.tick()
        state = next(
            (a for a in monitor.evaluator.alerts.values() if a.rule == "WorkerErrorRateHigh"), None
        )
        phase = f"{state.phase} ({state.severity or state.wanted})" if state else "inactive"
        notes = ", ".join(f"{n.kind}:{n.alert.severity}" for n in sent) or "-"
        say(f"health_monitor: t={minute}m error_rate={rate:.0%} -> {phase}; sent {notes}")
        clock[0] += 60.0
