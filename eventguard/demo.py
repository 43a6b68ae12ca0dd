"""``eventguard demo``: the whole fleet in one process, on the in-memory broker and fakeredis.

Each worker contributes a story (``workers/<name>/demo.py``: ``prepare`` starts its simulator,
``scenario`` drives it). ``--once`` runs the four stories and exits (the tests use it). Without
it the demo also serves the console, prints one line with its URL and a one-time sign-in link,
and keeps a steady load moving (:mod:`eventguard.demo_steady`) until Ctrl-C. Security keys are
generated at start and thrown away at exit. Nothing here pretends to be production:
``eventguard run`` is the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from common.config import Settings
from common.errors import ConfigError
from common.ops import EventStream, OpsServer, build_app
from common.runtime import install_signal_handlers
from common.security.admission import Admission
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.security.roles import Role
from common.testing import Harness, fast_runtime_settings, run_workers
from eventguard.console import console_serving
from eventguard.demo_steady import SteadyProducer
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


def _watch(worker: str, quiet: asyncio.Event) -> Callable[[Envelope[Any]], None]:
    def show(event: Envelope[Any]) -> None:
        if event.type != "health.heartbeat" and not quiet.is_set():
            _say(f"  [{worker}] published {event.type} ({event.id[:8]})")

    return show


async def run_demo(base: Settings, *, once: bool, port: int, console_port: int = 8090) -> int:
    """Run every worker's story on one in-memory fleet; unless ``once``, stay up with the
    console and a steady load until Ctrl-C."""
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
            stream, quiet = EventStream(), asyncio.Event()
            for name, running in fleet.runtime.workers.items():
                running.publisher.add_listener(_watch(name, quiet))
                running.publisher.add_listener(stream.publish)
            auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
            app = build_app(fleet.runtime, auth=auth, stream=stream)
            async with _ops_serving(app, port) as ops:
                _say(
                    f"demo: fleet up ({', '.join(WORKERS)}); ops on http://127.0.0.1:{ops.port} "
                    "(/healthz /readyz /metrics)"
                )
                if once:
                    await _stories(fleet)
                    return 0
                stop = asyncio.Event()
                install_signal_handlers(stop)
                async with console_serving(
                    settings, store=fleet.store, broker=fleet.broker, metrics=fleet.metrics,
                    host="127.0.0.1", port=console_port,
                ) as console:  # fmt: skip
                    code = await console.console.auth.mint_link("demo-admin", Role.ADMIN)
                    await _stories(fleet)
                    quiet.set()  # the steady load would flood the terminal; the console shows it
                    _say(
                        f"demo: console on {console.url} ; sign in once with "
                        f"{console.url}/signin/link?code={code} ; Ctrl-C stops"
                    )
                    steady = asyncio.create_task(SteadyProducer(fleet, _say).run())
                    try:
                        await stop.wait()
                    finally:
                        steady.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await steady
                    _say("demo: stopping")
    return 0


@contextlib.asynccontextmanager
async def _ops_serving(app: web.Application, port: int) -> AsyncIterator[OpsServer]:
    """The ops server; a busy port is a one-line ConfigError naming the flag."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            serving = await stack.enter_async_context(
                OpsServer(app, host="127.0.0.1", port=port).serving()
            )
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"demo ops port {port} is busy: pass --port with a free port (0 picks one)"
                ) from None
            raise
        yield serving


async def _stories(fleet: Harness) -> None:
    for name, story in STORIES.items():
        _say(f"--- {name} ---")
        await story.scenario(fleet, _say)
    _say("demo: every story ran")
