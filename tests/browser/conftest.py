"""The console in headless Chromium, over the real RabbitMQ and Redis.

One fleet per module (the quarantine worker, ai_fallback with one model nobody calls,
health_monitor that never evaluates on its own, a poison worker that rejects until told to
accept, and the console) on the test vhost and a per-run Redis key prefix; a spy queue on the
events exchange records what the broker really carried. Chromium is Debian's
(``/usr/bin/chromium``, installed by ``scripts/browser.sh``); axe-core comes from
``.cache/browser`` (the same script). Each test's page is screenshotted into ``test-output/``
(or ``$EVENTGUARD_TEST_OUTPUT``) when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiormq
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.bus.headers import DeadReason
from common.bus.message import IncomingMessage
from common.bus.publisher import Publisher
from common.bus.router import Emit
from common.bus.topology import (
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    QueueSpec,
    Topology,
    work_queue_name,
    worker_topology,
)
from common.config import (
    AiFallbackSettings,
    AiModelSettings,
    HealthMonitorSettings,
    QuarantineSettings,
    Settings,
)
from common.errors import Reject
from common.metrics import Metrics
from common.reliability.guard import Guards
from common.runtime import Runtime
from common.security.admission import Admission
from common.security.apikeys import ApiKeyStore
from common.security.keys import demo_settings
from common.service import BaseService, WorkerContext
from common.store import Store, connect_redis
from common.testing import fast_runtime_settings, forget_prefix
from eventguard.console import Serving, console_serving
from schemas.envelope import Envelope
from schemas.registry import payload_model
from tests.integration.conftest import rabbit_url, redis_url
from workers.ai_fallback import create as create_ai_fallback
from workers.health_monitor import create as create_health_monitor
from workers.quarantine import create as create_quarantine

__all__ = ["BULK_USER", "MODEL", "POISON_TYPE", "BrowserFleet", "rabbit_url", "redis_url"]

POISON_TYPE = "marketplace.strategy.revoked"
MODEL = "browser-model"
_WORKERS = ("quarantine", "ai_fallback", "health_monitor")
_SPY_KEYS = (POISON_TYPE, "quarantine.#", "ai.model.#", "health.silence.#")
BULK_USER = "bulk"
CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".cache" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
OUTPUT = Path(os.environ.get("EVENTGUARD_TEST_OUTPUT", ROOT / "test-output"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/browser as ``browser`` and ``integration``."""
    for item in items:
        if "tests/browser/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the page fixture knows a test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass
class Poison:
    """A worker that rejects every event until ``accept`` (its handled ids are kept)."""

    accept: bool = False
    handled: list[str] = field(default_factory=list)


class _PoisonService(BaseService):
    def __init__(self, ctx: WorkerContext, poison: Poison) -> None:
        super().__init__(ctx)
        self.poison = poison
        self.router.add(payload_model(POISON_TYPE), self.handle)

    async def handle(self, event: Envelope[Any]) -> Emit:
        if not self.poison.accept:
            # Bulk events die as schema_violation, the rest as handler_rejected: two groups.
            bulk = event.data.user_id == BULK_USER
            reason: DeadReason = "schema_violation" if bulk else "handler_rejected"
            raise Reject("this worker rejects everything in the browser tests", reason=reason)
        self.poison.handled.append(event.id)
        return []


@dataclass
class BrowserFleet:
    """The running fleet, console, spy and browser of one test module."""

    settings: Settings
    store: Store
    broker: AmqpBroker
    publisher: Publisher
    console: Serving
    browser: Browser
    poison: Poison
    poison_worker: str
    spy: list[IncomingMessage]
    operator_key: str
    viewer_key: str
    runtime: Runtime

    @property
    def url(self) -> str:
        """The console's base URL."""
        return self.console.url

    def released_records(self) -> list[str]:
        """The record id of every ``quarantine.entry.released`` the broker carried."""
        return [
            json.loads(m.body)["data"]["record_id"]
            for m in self.spy
            if m.type == "quarantine.entry.released"
        ]

    def carried(self, event_type: str) -> list[dict[str, Any]]:
        """Every ``event_type`` envelope the broker carried (decoded)."""
        return [json.loads(m.body) for m in self.spy if m.type == event_type]

    def released_copies(self, event_id: str) -> list[IncomingMessage]:
        """Copies of ``event_id`` the quarantine worker re-published (they carry a release id)."""
        return [
            m for m in self.spy
            if m.message_id == event_id and m.headers.get("x-eventguard-release-id")
        ]  # fmt: skip

    async def new_context(self, *, bypass_csp: bool = False) -> BrowserContext:
        """A fresh browser context (its own cookies)."""
        return await self.browser.new_context(
            base_url=self.url, bypass_csp=bypass_csp, viewport={"width": 1280, "height": 900}
        )

    async def signed_in(self, key: str, *, bypass_csp: bool = False) -> Page:
        """A page signed in with ``key``."""
        context = await self.new_context(bypass_csp=bypass_csp)
        page = await context.new_page()
        await page.goto("/signin")
        await page.fill("#credential", key)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/fleet")
        return page


def _chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(rabbit_url: str, redis_url: str) -> AsyncIterator[BrowserFleet]:
    """The quarantine worker, a poison worker and the console, with chromium; cleaned up."""
    executable = _chromium()
    if executable is None:
        problem = "chromium is not installed (run scripts/browser.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(f"BROWSER TESTS SKIPPED: {problem}")
    run = uuid.uuid4().hex[:8]
    poison_worker = f"browser-poison-{run}"
    prefix = f"egb-{run}:"
    user = rabbit_url.split("//", 1)[1].split(":", 1)[0]
    settings = Settings(
        redis_key_prefix=prefix,
        broker_user=user,
        instance=f"browser-{run}",
        runtime=fast_runtime_settings(
            heartbeat_interval_s=1.0, max_attempts=1, prefetch=64, handler_timeout_s=30.0
        ),
        # 1,000 dead letters from one producer would be a flood; here they are the test.
        quarantine=QuarantineSettings(flood_producer_threshold=10**6, flood_type_threshold=10**6),
        # A model nobody calls (the tests only switch it off and on).
        ai_fallback=AiFallbackSettings(
            models=(
                AiModelSettings(
                    name=MODEL,
                    provider="openai",
                    endpoint="http://127.0.0.1:9/v1",
                    context_window=8_000,
                    max_output=100,
                ),
            )
        ),
        # Silences only: the tests write alert states themselves, so no evaluation round.
        health_monitor=HealthMonitorSettings(interval_s=3600, collect_redis=False),
        security=demo_settings(any_type_producers=frozenset({user})),
    )
    await _purge(rabbit_url)  # what an earlier run left in the shared queues is not this run's
    metrics = Metrics(CollectorRegistry())
    guards = Guards(metrics=metrics)
    client = connect_redis(redis_url)
    store = Store(client, prefix=prefix, guard=guards.guard("redis"))
    broker = AmqpBroker(rabbit_url, metrics=metrics, name=f"eventguard-test.{poison_worker}")
    await broker.start()
    poison = Poison()
    runtime = Runtime(
        settings=settings,
        factories=[
            ("quarantine", create_quarantine),
            ("ai_fallback", create_ai_fallback),
            ("health_monitor", create_health_monitor),
            (poison_worker, lambda ctx: _PoisonService(ctx, poison)),
        ],
        broker=broker,
        store=store,
        metrics=metrics,
        authorize=Admission.from_settings(settings),
        guards=guards,
    )
    keys = ApiKeyStore(store)
    _, operator_key = await keys.create("browser-operator", "operator")
    _, viewer_key = await keys.create("browser-viewer", "user")
    publisher = Publisher(broker, worker="browser-test", user_id=user, metrics=metrics)
    try:
        async with (
            runtime.lifespan(),
            console_serving(
                settings, store=store, broker=broker, metrics=metrics, host="127.0.0.1", port=0
            ) as console,
            async_playwright() as playwright,
        ):
            spy_queue = f"eventguard.{poison_worker}.spy"
            await broker.declare(
                Topology(
                    exchanges=(),
                    queues=(
                        QueueSpec(
                            spy_queue,
                            {"x-expires": 600_000},
                            tuple((EVENTS_EXCHANGE, key) for key in _SPY_KEYS),
                        ),
                    ),
                )
            )
            spy: list[IncomingMessage] = []

            async def keep(message: IncomingMessage) -> None:
                spy.append(message)
                await message.ack()

            await broker.consume(spy_queue, keep, prefetch=500)
            browser = await playwright.chromium.launch(
                executable_path=executable,
                args=["--no-sandbox", "--disable-dev-shm-usage"],
            )
            try:
                yield BrowserFleet(
                    settings, store, broker, publisher, console, browser, poison, poison_worker,
                    spy, operator_key, viewer_key, runtime,
                )  # fmt: skip
            finally:
                await browser.close()
    finally:
        await broker.close()
        await _delete_queues(rabbit_url, poison_worker, settings)
        await _purge(rabbit_url)
        await forget_prefix(client, prefix)
        await client.aclose()


async def _purge(url: str) -> None:
    """Empty the workers' queues on the test vhost (absent ones are fine)."""
    async with aiormq.connect(url) as connection:
        for name in (*(work_queue_name(w) for w in _WORKERS), DEAD_QUEUE):
            channel = await connection.channel()
            try:
                await channel.queue_purge(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue  # a fresh vhost: nothing to purge
            await channel.close()


async def _delete_queues(url: str, worker: str, settings: Settings) -> None:
    topology = worker_topology(worker, [POISON_TYPE], settings)
    spy = f"eventguard.{worker}.spy"
    names = [q.name for q in topology.queues] + [spy, f"eventguard.console.{settings.instance}"]
    async with aiormq.connect(url) as connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


@pytest_asyncio.fixture(loop_scope="module")
async def shots(request: pytest.FixtureRequest) -> AsyncIterator[list[Page]]:
    """The test's pages: screenshotted into the test output folder if it fails, then closed."""
    pages: list[Page] = []
    yield pages
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for i, page in enumerate(pages):  # playwright creates the folder
            if not page.is_closed():
                await page.screenshot(path=OUTPUT / f"{request.node.name}-{i}.png", full_page=True)
    for page in pages:
        await page.context.close()
