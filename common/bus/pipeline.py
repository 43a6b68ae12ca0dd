"""The consumer pipeline: the one place that decides each message's fate.

size limit -> JSON decode -> envelope validation -> known type -> payload validation ->
admission (producer blocks, producer and actor authorisation) -> idempotency claim ->
handler under a timeout -> output events published and confirmed -> ack.

Failures that may pass (timeouts, :class:`RetryLater`, external errors, handler bugs) are
re-published to a delay queue with the attempt count in a header, then acked; after the last
attempt, and at once for failures that cannot pass, the message is published to the
dead-letter exchange with its reason in headers, then acked. If even that publish fails, the
message is rejected so the queue's own dead-lettering (at-least-once) keeps it. No exception
escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from common import tracing as _tracing
from common.bus import headers as h
from common.bus.admission import DeadLetter, admit
from common.bus.broker import Broker
from common.bus.fates import Fates
from common.bus.idempotency import ClaimState, Idempotency, body_digest
from common.bus.message import IncomingMessage
from common.bus.publisher import Publisher
from common.bus.router import Emit, Route, Router
from common.bus.topology import DEAD_LETTER_EXCHANGE
from common.config.sections import RuntimeSettings
from common.errors import DeliveryError, EventGuardError, Reject, RetryLater
from common.logging import bind_message, get_logger
from common.metrics import Metrics
from common.reliability.errors import CircuitOpen
from common.security.producers import ANONYMOUS
from schemas.envelope import Envelope
from schemas.registry import envelope_model, is_known

__all__ = ["Authorizer", "Pipeline", "PipelineStats", "allow_all"]

# (event, producer) -> None when admitted, else (dead-letter reason, detail); the fleet's is
# common.security.admission (producer blocks, producer policy, actor assertion, event rules).
Authorizer = Callable[[Envelope[Any], str], tuple[h.DeadReason, str] | None]
_log = get_logger("eventguard.pipeline")
_MAX_ERROR_CHARS = 1_000
# What a Redis or broker call may raise when its server is away: the message is retried later.
# redis-py's own errors (ConnectionError included) are not OSErrors and reach here unwrapped.
_UNAVAILABLE = (EventGuardError, OSError, TimeoutError, RedisError)


def allow_all(event: Envelope[Any], producer: str) -> None:
    """An authorizer for tests that exercise other parts of the pipeline."""
    return


@dataclass
class PipelineStats:
    """Counters the heartbeat reports: totals since start and recent latencies."""

    handled: int = 0
    failed: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=1024))


class Pipeline:
    """Decides the fate of every message delivered to one worker's queue."""

    fates_class: type[Fates] = Fates  # how retries and dead letters go (a replica drops them)

    def __init__(
        self,
        *,
        worker: str,
        router: Router,
        broker: Broker,
        publisher: Publisher,
        idempotency: Idempotency | None,
        settings: RuntimeSettings,
        metrics: Metrics,
        authorize: Authorizer,
        retry_queues: Mapping[float, str],
        dead_letter_exchange: str = DEAD_LETTER_EXCHANGE,
    ) -> None:
        self.worker = worker
        self.router = router
        self.broker = broker
        self.publisher = publisher
        self.idempotency = idempotency
        self.settings = settings
        self.authorize = authorize
        self.fates = self.fates_class(
            worker=worker,
            broker=broker,
            user_id=publisher.user_id,
            max_attempts=settings.max_attempts,
            metrics=metrics,
            retry_queues=retry_queues,
            dead_letter_exchange=dead_letter_exchange,  # injectable for isolated tests
            producer_of=self._producer_of,
        )
        self.stats = PipelineStats()
        self._m = metrics.runtime
        self._in_flight = self._m.in_flight.labels(worker)
        self._idle = asyncio.Event()
        self._idle.set()
        self._active = 0
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    @property
    def in_flight(self) -> int:
        """Messages being handled now."""
        return self._active

    async def drained(self) -> None:
        """Wait until no message is being handled."""
        await self._idle.wait()

    async def __call__(self, message: IncomingMessage) -> None:
        """Handle one delivery; never raises."""
        if _tracing.tracer is None:
            await self._deliver(message)
            return
        with _tracing.process_span(message, self.worker):
            await self._deliver(message)

    async def _deliver(self, message: IncomingMessage) -> None:
        self._active += 1
        self._idle.clear()
        self._in_flight.inc()
        started = time.perf_counter()
        event_type = message.type or "unknown"
        try:
            event_type, outcome = await self._process(message)
        except Exception:  # noqa: BLE001 - last line of defence: the message must not be lost
            _log.exception("pipeline.crashed", queue=message.queue)
            outcome = "retry"
            await self._settle_crashed(message)
        finally:
            self._active -= 1
            self._in_flight.dec()
            if self._active == 0:
                self._idle.set()
        elapsed = time.perf_counter() - started
        counter, histogram = self._series(event_type, outcome)
        counter.inc()
        if _tracing.tracer is None:
            histogram.observe(elapsed)
        else:
            _tracing.record_fate(outcome)
            histogram.observe(elapsed, _tracing.exemplar())
        self.stats.latencies.append(elapsed)
        if outcome in {"ack", "duplicate"}:
            self.stats.handled += 1
        else:
            self.stats.failed += 1

    def _series(self, event_type: str, outcome: str) -> tuple[Counter, Histogram]:
        """The labelled metric children for (type, outcome), looked up once and kept."""
        key = (event_type, outcome)
        series = self._children.get(key)
        if series is None:
            label = event_type if is_known(event_type) else "unknown"
            series = (
                self._m.messages.labels(self.worker, label, outcome),
                self._m.processing.labels(self.worker, label),
            )
            if len(self._children) < 1_000:  # types are bounded by the catalogue anyway
                self._children[key] = series
        return series

    async def _settle_crashed(self, message: IncomingMessage) -> None:
        try:
            await message.reject(requeue=True)
        except Exception:  # noqa: BLE001 - the broker will redeliver when the channel dies
            _log.warning("pipeline.settle_failed", queue=message.queue)

    # -- stages ------------------------------------------------------------------------------

    async def _process(self, message: IncomingMessage) -> tuple[str, str]:
        try:
            event, route = self._decode(message)
        except DeadLetter as dead:
            await self.fates.dead_letter(
                message, dead.reason, dead.detail, dead.exception, attempt=0
            )
            return message.type or "unknown", "rejected"
        with bind_message(
            worker=self.worker,
            event_id=event.id,
            correlation_id=event.correlation_id,
            event_type=event.type,
        ):
            refused = self.authorize(event, self._producer_of(message))
            if refused is not None:
                await self.fates.dead_letter(message, *refused, "", attempt=0)
                return event.type, "rejected"
            return event.type, await self._handle(message, event, route)

    def _producer_of(self, message: IncomingMessage) -> str:
        """The AMQP user that published the event (``anonymous`` without one); for relayed
        copies (our own retries, a quarantine release), the original producer in the header."""
        if self._relayed(message) and h.PRODUCER in message.headers:
            return str(message.headers[h.PRODUCER]) or ANONYMOUS
        return message.user_id or ANONYMOUS

    def _relayed(self, message: IncomingMessage) -> bool:
        """Published by this worker's own user or a configured relay (its headers are trusted)."""
        return message.user_id == self.publisher.user_id or (
            message.user_id in self.settings.relay_users
        )

    def _decode(self, message: IncomingMessage) -> tuple[Envelope[Any], Route]:
        event = admit(
            message, max_body_bytes=self.settings.max_body_bytes, relayed=self._relayed(message)
        )
        route = self.router.routes.get(event.type)
        if route is None:
            raise DeadLetter("unknown_type", f"{self.worker} has no handler for {event.type}")
        return event, route

    async def _handle(self, message: IncomingMessage, event: Envelope[Any], route: Route) -> str:
        attempt = _attempt_of(message) + 1
        idem = self.idempotency
        digest = b""  # the body's, kept with the claim (an id reused for another body shows)
        if idem is not None:
            digest = body_digest(message.body)
            try:
                claim = await idem.claim(event.id, digest)
            except _UNAVAILABLE as error:
                return await self.fates.retry(
                    message, attempt, f"idempotency claim failed: {error!r}"
                )
            if claim.state is ClaimState.DONE:
                await message.ack()
                return "duplicate"
            if claim.state is ClaimState.REUSED:  # the claim is the first event's: keep it
                detail = f"id {event.id!r} was handled before for a different body"
                await self.fates.dead_letter(message, "id_reused", detail, "", attempt)
                return "dead_letter"
            if claim.state is ClaimState.BUSY:  # a live lease: wait without spending an attempt
                return await self.fates.retry(
                    message, attempt - 1, "event is being handled elsewhere", idem.lease_s / 3
                )
            if claim.state is ClaimState.OUTBOX:
                outbox = claim.outbox
                return await self._republish(message, event, route, outbox, attempt, digest=digest)
        try:
            timeout = route.timeout_s or self.settings.handler_timeout_s
            hold: contextlib.AbstractAsyncContextManager[None] = (
                idem.hold(event.id) if idem is not None else contextlib.nullcontext()
            )
            async with hold, asyncio.timeout(timeout):  # the claim is renewed while it runs
                output = list(await route.handler(event) or ())
        except Reject as rejected:
            await self._release(event.id)
            await self.fates.dead_letter(
                message, rejected.reason, rejected.detail, type(rejected).__name__, attempt
            )
            return "dead_letter"
        except RetryLater as later:
            await self._release(event.id)
            return await self.fates.retry(message, attempt, later.reason, later.delay)
        except Exception as error:  # noqa: BLE001 - a failing handler is retried, then dead-lettered
            await self._release(event.id)
            _log.warning("handler.failed", error=repr(error)[:_MAX_ERROR_CHARS], attempt=attempt)
            # An open breaker says when it lets a probe through: wait at least that long.
            hint = error.retry_after_s if isinstance(error, CircuitOpen) else None
            return await self.fates.retry(
                message, attempt, repr(error), hint, exception=type(error).__name__
            )
        return await self._publish_and_ack(message, event, route, output, attempt, digest=digest)

    async def _publish_and_ack(
        self,
        message: IncomingMessage,
        event: Envelope[Any],
        route: Route,
        output: Emit,
        attempt: int,
        *,
        digest: bytes,
    ) -> str:
        idem = self.idempotency
        try:
            # A reply to the requester (direct reply-to: never stored, never redelivered) goes
            # out beside the outbox write instead of after it; the durable topic copies wait
            # for the outbox, and the ack for every confirm.
            first: list[Awaitable[None]] = []
            if output and idem is not None:
                bodies = [e.model_dump_json() for e in output]
                first.append(idem.save_outbox(event.id, bodies, digest))
            first += [
                self._reply(out, message.reply_to, message.correlation_id)
                for out in output
                if message.reply_to and route.replies_with(out.type)
            ]
            if first:
                await _all_of(*first)
            for out in output:  # in order
                await self.publisher.publish(out)
            if idem is not None:
                await idem.done(event.id, digest)
        except _UNAVAILABLE as error:
            return await self.fates.retry(message, attempt, f"publishing output failed: {error!r}")
        await message.ack()
        return "ack"

    async def _republish(
        self,
        message: IncomingMessage,
        event: Envelope[Any],
        route: Route,
        bodies: list[str],
        attempt: int,
        *,
        digest: bytes,
    ) -> str:
        output = [
            envelope_model(e.type).model_validate_json(body)
            for body in bodies
            for e in [Envelope[dict[str, Any]].model_validate_json(body)]  # type: ignore[type-var]
        ]
        return await self._publish_and_ack(message, event, route, output, attempt, digest=digest)

    async def _reply(self, out: Envelope[Any], reply_to: str, correlation_id: str | None) -> None:
        try:
            await self.publisher.reply(out, reply_to=reply_to, correlation_id=correlation_id)
        except DeliveryError as error:  # the requester left; the topic copy stands
            _log.info("reply.undeliverable", reply_to=reply_to, error=str(error))

    async def _release(self, event_id: str) -> None:
        if self.idempotency is None:
            return
        try:
            await self.idempotency.release(event_id)
        except _UNAVAILABLE as error:
            # The lease expires on its own; the retry then runs.
            _log.warning("idempotency.release_failed", error=repr(error))


async def _all_of(*sends: Awaitable[None]) -> None:
    """Await every send, even when one fails; then raise the first failure."""
    results = await asyncio.gather(*sends, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _attempt_of(message: IncomingMessage) -> int:
    value = message.headers.get(h.ATTEMPT, 0)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
