"""The worker lifecycle, in one lifespan.

Open Redis, then the broker (declaring each worker's topology), then the ops server; start the
services' background tasks and consumers and publish a ``health.heartbeat`` every N seconds.
On stop (SIGTERM/SIGINT): cancel consumers, let in-flight handlers finish up to the drain
deadline, stop the services, flush and close in reverse order. Whatever is unfinished stays
unacked and the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from common.bus.broker import Broker
from common.bus.idempotency import Idempotency
from common.bus.pipeline import Authorizer, Pipeline
from common.bus.publisher import Publisher
from common.bus.raw import RawPipeline
from common.bus.replica import ReplicaPipeline
from common.bus.topology import Topology, base_exchanges, replica_queue_spec, worker_topology
from common.config import Settings
from common.errors import EventGuardError
from common.logging import get_logger
from common.metrics import Metrics
from common.reliability.breaker import CircuitBreaker, State
from common.reliability.guard import Guard, Guards
from common.security.admission import admit_unblocked
from common.service import Service, ServiceFactory, WorkerContext
from common.store import Store
from schemas.envelope import new_event
from schemas.health import Heartbeat

__all__ = ["RunningWorker", "Runtime", "install_signal_handlers"]

_log = get_logger("eventguard.worker")


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


class Runtime:
    """Runs one or more workers in this process over one broker and one Redis."""

    def __init__(
        self,
        *,
        settings: Settings,
        factories: Sequence[tuple[str, ServiceFactory]],
        broker: Broker,
        store: Store,
        metrics: Metrics,
        authorize: Authorizer,
        guards: Guards | None = None,
    ) -> None:
        self.settings = settings
        self.guards = guards if guards is not None else Guards(metrics=metrics)
        self.factories = list(factories)
        self.broker = broker
        self.store = store
        self.metrics = metrics
        self.authorize = authorize
        self.workers: dict[str, RunningWorker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._token = uuid.uuid4().hex[:8]  # tells two replicas with one instance name apart
        self.stopping = False

    @classmethod
    def assemble(
        cls,
        settings: Settings,
        factories: Sequence[tuple[str, ServiceFactory]],
        *,
        broker: Broker,
        store: Callable[[Guard], Store],
        metrics: Metrics,
        authorize: Authorizer,
        guards: Guards | None = None,
    ) -> Runtime:
        """The one wiring of a runtime (``eventguard run``, the demo and the tests): guards from
        the settings' overrides, the store behind their ``redis`` guard (``store`` builds it),
        and shared breakers bound to that store."""
        if guards is None:
            guards = Guards(metrics=metrics, overrides=settings.reliability.dependencies)
        built = store(guards.guard("redis"))
        guards.bind_store(built)
        return cls(
            settings=settings,
            factories=factories,
            broker=broker,
            store=built,
            metrics=metrics,
            authorize=authorize,
            guards=guards,
        )

    # -- lifespan -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Runtime]:
        """Start everything, yield, then drain and close in reverse order."""
        await self.broker.start()
        self.metrics.runtime.broker_connected.set(1)
        await self.guards.start()
        try:
            for name, factory in self.factories:
                await self._start_worker(name, factory)
            self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="heartbeats")
            self._resync_task = asyncio.create_task(self._resyncs(), name="resyncs")
            yield self
        finally:
            await self._shutdown()

    async def _start_worker(self, name: str, factory: ServiceFactory) -> None:
        runtime = self.settings.runtime
        publisher = Publisher(
            self.broker, worker=name, user_id=self.settings.broker_user, metrics=self.metrics
        )
        ctx = WorkerContext(
            name=name,
            settings=self.settings,
            store=self.store,
            broker=self.broker,
            publisher=publisher,
            metrics=self.metrics,
            guards=self.guards,
        )
        service = factory(ctx)
        await self._load_view(name, service)
        # The work queue takes every type, broadcast ones included: that copy is durable (it
        # waits while no replica runs) and is handled once under the idempotency claim; each
        # replica also gets its own copy of the broadcast types on its own queue.
        topology = worker_topology(name, service.router.event_types, self.settings)
        await self.broker.declare(topology)
        idempotency = Idempotency(
            self.store,
            worker=name,
            lease_s=runtime.claim_lease_s,
            done_ttl_s=runtime.idempotency_ttl_s,
        )

        def build(kind: type[Pipeline], claims: Idempotency | None) -> Pipeline:
            return kind(
                worker=name,
                router=service.router,
                broker=self.broker,
                publisher=publisher,
                idempotency=claims,
                settings=runtime,
                metrics=self.metrics,
                authorize=admit_unblocked(self.authorize, _blocked_in(service)),
                retry_queues=topology.retry_queues,
            )

        pipeline = build(Pipeline, idempotency)
        queues = [topology.work_queue] if service.router.routes else []
        running = RunningWorker(service, publisher, pipeline, queues)
        if service.router.broadcast_types:
            replica = replica_queue_spec(
                name, self.settings.instance, self._token, service.router.broadcast_types
            )
            await self.broker.declare(Topology(exchanges=base_exchanges(), queues=(replica,)))
            running.queues.append(replica.name)
            running.replica_queue = replica.name
            running.replica_pipeline = build(ReplicaPipeline, None)
        self.workers[name] = running
        await service.start()
        # Every message needs Redis (its idempotency claim): while the Redis breaker is open
        # the consumer pauses, so messages wait in the queue instead of spending their attempts
        # in delay queues and ending dead-lettered. A service adds its own critical dependencies.
        critical = [self.store.guard.breaker]
        for dependency in service.critical_dependencies():
            breaker = self.guards.guard(dependency).breaker
            if breaker not in critical:
                critical.append(breaker)
        self._pause_while_open(name, critical)
        await self._consume(running)
        for queue, handler in service.raw_consumers().items():
            raw = RawPipeline(
                worker=name,
                handler=handler,
                publisher=publisher,
                metrics=self.metrics,
                timeout_s=runtime.handler_timeout_s,
            )
            running.raw.append(raw)
            running.raw_tags.append(
                await self.broker.consume(queue, raw, prefetch=runtime.prefetch)
            )
        _log.info("worker.started", worker=name, queues=queues, types=service.router.event_types)

    async def _load_view(self, name: str, service: Service) -> None:
        """The quarantine blocks announced while this process was away. Redis down at start
        is not fatal (the consumer pauses until it answers): the view then learns from the
        broadcasts and the quarantine worker's periodic re-announcements."""
        try:
            await service.quarantine.load()
        except (EventGuardError, OSError, TimeoutError, RedisError) as error:
            _log.warning("quarantine_view.load_failed", worker=name, error=repr(error))

    async def _consume(self, running: RunningWorker) -> None:
        for queue in running.queues:
            pipeline = running.pipeline
            if queue == running.replica_queue and running.replica_pipeline is not None:
                pipeline = running.replica_pipeline
            prefetch = self.settings.runtime.prefetch
            tag = await self.broker.consume(queue, pipeline, prefetch=prefetch)
            running.tags.append(tag)
            self.metrics.runtime.consumers.labels(queue).set(self.broker.active_consumers(queue))

    def _pause_while_open(self, name: str, breakers: list[CircuitBreaker]) -> None:
        """Pause ``name``'s consumer while any of ``breakers`` is open; resume when none is.

        A paused worker makes no calls, so nothing would read a breaker's state: a timer reads
        it when the open period ends, which moves it to half-open and resumes the consumer;
        the next message is the probe."""
        loop = asyncio.get_running_loop()
        refusing = {State.OPEN, State.FORCED_OPEN}

        def check(breaker: CircuitBreaker) -> None:
            if breaker.state in refusing:
                loop.call_later(max(0.05, breaker.remaining_open_s()), check, breaker)

        def on_change(breaker: CircuitBreaker, _old: State, new: State) -> None:
            if new in refusing:
                self._spawn(self.pause(name, f"breaker {breaker.name} is {new.value}"))
                if new is State.OPEN:
                    loop.call_later(breaker.remaining_open_s(), check, breaker)
            elif not any(b.state in refusing for b in breakers):
                self._spawn(self.resume(name))

        for breaker in breakers:
            breaker.add_listener(on_change)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def pause(self, name: str, reason: str) -> None:
        """Stop taking messages for ``name`` (a critical dependency is down)."""
        running = self.workers[name]
        if running.paused:
            return
        running.paused = True
        self.metrics.runtime.consumer_paused.labels(name).set(1)
        for tag in running.tags:
            await self.broker.cancel(tag)
        running.tags.clear()
        for queue in running.queues:
            self.metrics.runtime.consumers.labels(queue).set(self.broker.active_consumers(queue))
        _log.warning("consumer.paused", worker=name, reason=reason)

    async def resume(self, name: str) -> None:
        """Take messages for ``name`` again."""
        running = self.workers[name]
        if not running.paused or self.stopping:
            return
        running.paused = False
        self.metrics.runtime.consumer_paused.labels(name).set(0)
        await self._consume(running)
        _log.info("consumer.resumed", worker=name)

    async def _shutdown(self) -> None:
        self.stopping = True
        deadline = self.settings.runtime.drain_timeout_s
        for running in self.workers.values():
            for tag in [*running.tags, *running.raw_tags]:
                with contextlib.suppress(EventGuardError, OSError):
                    await self.broker.cancel(tag)
            running.tags.clear()
            running.raw_tags.clear()
        try:
            async with asyncio.timeout(deadline):
                for running in self.workers.values():
                    await running.pipeline.drained()
                    if running.replica_pipeline is not None:
                        await running.replica_pipeline.drained()
                    for raw in running.raw:
                        await raw.drained()
        except TimeoutError:
            _log.warning("worker.drain_timeout", deadline_s=deadline)
        for task in list(self._tasks):
            task.cancel()
        for loop_task in (self._heartbeat_task, self._resync_task):
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        for running in reversed(list(self.workers.values())):
            try:
                await running.service.stop()
            except Exception:  # noqa: BLE001 - one failing stop must not keep the rest open
                _log.exception("worker.stop_failed", worker=running.service.name)
        await self.guards.stop()
        await self.broker.close()
        self.metrics.runtime.broker_connected.set(0)
        _log.info("worker.stopped", workers=list(self.workers))

    # -- probes and heartbeats ---------------------------------------------------------------

    def alive(self) -> bool:
        """Liveness: the runtime's loops have not died (a dependency outage is not death)."""
        return not any(
            task is not None and task.done() for task in (self._heartbeat_task, self._resync_task)
        )

    def consumers_attached(self) -> bool:
        """Every worker that is not paused has its consumers registered."""
        return all(
            running.paused or all(self.broker.active_consumers(q) > 0 for q in running.queues)
            for running in self.workers.values()
        )

    async def ready(self) -> dict[str, bool]:
        """The readiness checks: broker connected, consumers active, Redis answers."""
        return {
            "broker": self.broker.connected,
            "consumers": self.consumers_attached()
            and not self.stopping
            and not any(w.paused for w in self.workers.values()),
            "redis": await self.store.ping(),
        }

    async def _heartbeats(self) -> None:
        interval = self.settings.runtime.heartbeat_interval_s
        last: dict[str, tuple[float, int, int]] = {}
        while True:
            for name, running in self.workers.items():
                try:
                    await self._heartbeat(name, running, last)
                except (EventGuardError, OSError, TimeoutError) as error:
                    _log.warning("heartbeat.failed", worker=name, error=repr(error))
            await asyncio.sleep(interval)

    async def _resyncs(self) -> None:
        """Every ``replica_resync_s``, each service re-reads the state every replica must share
        (the quarantine list, model disables): what a replica missed while its own queue was
        gone (a reconnect) is caught up within one period."""
        interval = self.settings.runtime.replica_resync_s
        while True:
            await asyncio.sleep(interval)
            for name, running in self.workers.items():
                try:
                    await running.service.resync()
                except (EventGuardError, OSError, TimeoutError) as error:
                    _log.warning("replica.resync_failed", worker=name, error=repr(error)[:300])

    def _breaker_states(self) -> dict[str, str]:
        return {name[:200]: b.state.value for name, b in self.guards.breakers().items()}

    async def _heartbeat(
        self, name: str, running: RunningWorker, last: dict[str, tuple[float, int, int]]
    ) -> None:
        now = time.monotonic()
        stats = running.pipeline.stats
        then, handled, failed = last.get(name, (now, 0, 0))
        last[name] = (now, stats.handled, stats.failed)
        elapsed = max(now - then, 1e-9)
        done = stats.handled - handled
        errors = stats.failed - failed
        latencies = sorted(stats.latencies)
        uptime = (datetime.now(UTC) - running.started_at).total_seconds()
        beat = Heartbeat(
            worker=name,
            instance=self.settings.instance,
            started_at=running.started_at,
            uptime_s=uptime,
            messages_per_s=(done + errors) / elapsed if then != now else 0.0,
            error_rate=errors / (done + errors) if done + errors else 0.0,
            latency_p50_s=_percentile(latencies, 0.5),
            latency_p99_s=_percentile(latencies, 0.99),
            in_flight=running.pipeline.in_flight,
            consumers=sum(self.broker.active_consumers(q) for q in running.queues),
            paused=running.paused,
            breakers=dict(list(self._breaker_states().items())[:200]),
            entity_error_rates=dict(list(running.service.entity_error_rates().items())[:500]),
        )
        await running.publisher.publish(new_event("health.heartbeat", beat, source=name))
        self.metrics.runtime.heartbeats.labels(name).inc()


def _blocked_in(service: Service) -> Callable[[str], bool]:
    view = service.quarantine
    return lambda producer: view.is_quarantined("producer", producer)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def install_signal_handlers(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
