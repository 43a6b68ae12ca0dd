"""``eventguard demo``: the whole fleet in one process, on the in-memory broker and fakeredis.

Each worker contributes a story (``workers/<name>/demo.py``: ``prepare`` starts its simulator,
``scenario`` drives it). Security keys are generated at start and thrown away at exit. Nothing
here pretends to be production: ``eventguard run`` is the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from common.config import Settings
from common.ops import EventStream, OpsServer, build_app
from common.runtime import install_signal_handlers
from common.security import demo_settings
from common.security.admission import Admission
from common.security.http import AdminAuth
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.envelope import Envelope
from workers.ai_fallback import demo as ai_demo
from workers.health_monitor import demo as health_demo
from workers.opportunity_discovery import demo as opportunity_demo
from workers.quarantine import demo as quarantine_demo
from workers.registry import WORKERS

__all__ = ["run_demo"]

Say = Callable[[str], None]


class _Story(Protocol):
    async def prepare(self, stack: contextlib.AsyncExitStack) -> dict[str, Any]: ...

    async def scenario(self, env: Harness, say: Say) -> None: ...


STORIES: dict[str, _Story] = {
    "quarantine": quarantine_demo,
    "health_monitor": health_demo,
    "ai_fallback": ai_demo,
    "opportunity_discovery": opportunity_demo,
}
# Every process of the demo publishes as this user; the producer policy lets it (and the
# stories' sample producer) publish every type, which only a demo may do.
DEMO_USER = "eventguard-demo"


def _say(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"{stamp}  {text}", flush=True)


def _watch(worker: str) -> Callable[[Envelope[Any]], None]:
    def show(event: Envelope[Any]) -> None:
        if event.type != "health.heartbeat":
            _say(f"  [{worker}] published {event.type} ({event.id[:8]})")

    return show


async def run_demo(base: Settings, *, forever: bool, port: int) -> int:
    """Run every worker's story on one in-memory fleet; print what flows."""
    async with contextlib.AsyncExitStack() as stack:
        overrides: dict[str, Any] = {}
        for story in STORIES.values():
            overrides.update(await story.prepare(stack))
        security = demo_settings(any_type_producers=frozenset({DEMO_USER, "test"}))
        _say("demo: generated throwaway signing keys for this run (never reused, never stored)")
        settings = base.model_copy(
            update={
                "broker_user": DEMO_USER,
                "runtime": fast_runtime_settings(heartbeat_interval_s=2.0, max_attempts=3),
                "security": security,
                **{k: type(getattr(base, k)).model_validate(v) for k, v in overrides.items()},
            }
        )
        admission = Admission.from_settings(settings)
        async with run_workers(
            list(WORKERS.items()), settings=settings, authorize=admission
        ) as fleet:
            stream = EventStream()
            for name, running in fleet.runtime.workers.items():
                running.publisher.add_listener(_watch(name))
                running.publisher.add_listener(stream.publish)
            auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
            app = build_app(fleet.runtime, auth=auth, stream=stream)
            async with OpsServer(app, host="127.0.0.1", port=port).serving() as ops:
                _say(
                    f"demo: fleet up ({', '.join(WORKERS)}); ops on http://127.0.0.1:{ops.port} "
                    "(/healthz /readyz /metrics)"
                )
                for name, story in STORIES.items():
                    _say(f"--- {name} ---")
                    await story.scenario(fleet, _say)
                _say("demo: every story ran")
                if forever:
                    stop = asyncio.Event()
                    install_signal_handlers(stop)
                    _say("demo: running until Ctrl-C")
                    await stop.wait()
    return 0
