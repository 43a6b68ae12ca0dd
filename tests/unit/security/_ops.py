"""An ops server over the real quarantine and health_monitor services on in-memory parts, with
throwaway keys and an injectable token clock (for the security round-2 tests)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.config import SecuritySettings, Settings
from common.ops import EventStream, build_app
from common.security.apikeys import ApiKeyStore
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.security.throttle import AuthThrottle
from common.security.tokens import TokenService
from common.testing import Harness, fast_runtime_settings, run_workers
from workers.registry import WORKERS


class Clock:
    """A settable clock (Unix seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Ops:
    """The pieces of one test's ops server."""

    client: TestClient[web.Request, web.Application]
    tokens: TokenService
    fleet: Harness
    stream: EventStream
    auth: AdminAuth
    clock: Clock

    def bearer(self, role: str, sub: str = "op", **kwargs: Any) -> dict[str, str]:
        """An Authorization header with a fresh token."""
        return {"Authorization": f"Bearer {self.tokens.issue(sub, role, **kwargs)}"}


@contextlib.asynccontextmanager
async def ops_server(
    *, security: SecuritySettings | None = None, workers: tuple[str, ...] = ("quarantine",)
) -> AsyncIterator[Ops]:
    """An ops server over ``workers`` (real services, memory broker, fakeredis)."""
    security = security or demo_settings()
    settings = Settings(runtime=fast_runtime_settings(), security=security)
    clock = Clock()
    async with run_workers([(w, WORKERS[w]) for w in workers], settings=settings) as fleet:
        tokens = TokenService(security, store=fleet.store, now=clock)
        window = security.auth_failure_window_s
        auth = AdminAuth(
            tokens=tokens,
            api_keys=ApiKeyStore(fleet.store),
            metrics=fleet.metrics,
            throttle=AuthThrottle(
                fleet.store,
                limits={"addr": security.auth_failure_limit, "key": security.auth_failure_limit},
                window_s=window,
            ),
        )
        stream = EventStream()
        for running in fleet.runtime.workers.values():
            running.publisher.add_listener(stream.publish)
        app = build_app(fleet.runtime, auth=auth, stream=stream)
        async with TestClient(TestServer(app)) as client:
            yield Ops(client, tokens, fleet, stream, auth, clock)
