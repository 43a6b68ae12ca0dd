"""Traces across worker processes: three ``eventguard run`` processes export OTLP/HTTP to a
receiver in the test, which decodes the protobuf and checks the trees.

One test, three stories over the same fleet (health_monitor, quarantine, ai_fallback):

* an alert (from a heartbeat reporting a failing model) becomes a quarantine entry, which
  ai_fallback takes: one trace, publish -> process -> publish -> process;
* a request delivered twice at once: the copy that finds the claim busy is retried, then
  acked without running the handler: two or more ``process`` spans, one trace;
* a dead letter released by an operator is processed again in the release's trace, with a
  link to the trace it died in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from common.bus import headers as h
from common.bus.amqp import AmqpBroker
from common.bus.message import OutgoingMessage
from common.bus.publisher import to_message
from common.bus.topology import EVENTS_EXCHANGE
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Actor, new_event
from schemas.health import Heartbeat
from schemas.quarantine import QuarantineReleaseRequested
from tests.e2e.conftest import TOPOLOGIES, Fleet, free_port
from workers.ai_fallback.simulator import ProviderSimulator, Step

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.smoke]

RULES = """
rules:
  - name: ModelFailing
    metric: entity_error_rate
    labels: {entity_kind: ai_model}
    comparison: ">"
    critical: 0.5
    quarantine: true
    summary: "the test's model fails"
"""
_PRODUCER, _CONSUMER = 4, 5  # Span.SpanKind values of the OTLP protobuf


@dataclass
class Span:
    """One exported span, flattened."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]
    links: list[tuple[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Receiver:
    """An OTLP/HTTP traces endpoint that keeps every span it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[Span] = []

    async def export(self, request: web.Request) -> web.Response:
        decoded = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in decoded.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Span(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=[(k.trace_id.hex(), k.span_id.hex()) for k in span.links],
                            events=[e.name for e in span.events],
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Receiver]:
        app = web.Application()
        app.router.add_post("/v1/traces", self.export)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()

    def find(self, **wanted: object) -> list[Span]:
        """Spans whose fields (name, service, parent_id...) or attributes match ``wanted``."""
        return [
            s
            for s in self.spans
            if all(
                getattr(s, k, s.attributes.get(k.replace("_", "."))) == v for k, v in wanted.items()
            )
        ]

    async def until(self, what: str, found: Callable[[], list[Span]], within: float = 20) -> Span:
        """The first span ``found`` returns, polling until ``within`` seconds have passed."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            spans = found()
            if spans:
                return spans[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no span: {what}; seen {sorted({s.name for s in self.spans})}")


def _typed(
    receiver: Receiver, service: str, name: str, event_type: str
) -> Callable[[], list[Span]]:
    return lambda: [
        s
        for s in receiver.find(service=service, name=name)
        if s.attributes.get("eventguard.event.type") == event_type
    ]


def _children(receiver: Receiver, parent: Span, name: str) -> Callable[[], list[Span]]:
    return lambda: receiver.find(name=name, parent_id=parent.span_id, trace_id=parent.trace_id)


def _configure(fleet: Fleet, receiver: Receiver, simulator_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    model = {
        "name": "m1",
        "provider": "openai",
        "endpoint": simulator_url,
        "key_ref": "sim",
        "context_window": 8000,
        "max_output": 256,
        "timeout_s": 10,
    }
    fleet.env.update(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "EVENTGUARD_AI_FALLBACK__MODELS": json.dumps([model]),
            "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS": json.dumps({"sim": secrets.token_hex(8)}),
            "EVENTGUARD_HEALTH_MONITOR__RULES_FILE": str(rules),
            "EVENTGUARD_HEALTH_MONITOR__INTERVAL_S": "0.3",
            "EVENTGUARD_HEALTH_MONITOR__COLLECT_REDIS": "false",
            "EVENTGUARD_RUNTIME__CLAIM_LEASE_S": "1.5",  # a busy claim is retried in 0.5 s
        }
    )


async def _story(receiver: Receiver, producer: AmqpBroker) -> None:
    """A heartbeat says the model ``ghost`` fails: health_monitor raises an alert, quarantine
    blocks the model, ai_fallback takes the entry; one trace from the alert on."""
    beat = Heartbeat(
        worker="probe",
        instance=f"probe-{uuid.uuid4().hex[:6]}",
        started_at=datetime.now(UTC),
        uptime_s=1.0,
        entity_error_rates={"ai_model:ghost": 0.9},
    )
    await producer.publish(
        to_message(new_event("health.heartbeat", beat, source="e2e"), user_id="guest")
    )
    alert = await receiver.until(
        "health_monitor publishes the alert",
        _typed(receiver, "health_monitor", "eventguard.events publish", "health.alert.raised"),
    )
    assert alert.kind == _PRODUCER
    handled = await receiver.until(
        "quarantine processes the alert",
        _children(receiver, alert, "eventguard.quarantine process"),
    )
    assert handled.service == "quarantine"
    assert handled.kind == _CONSUMER
    assert handled.attributes["messaging.system"] == "rabbitmq"
    assert handled.attributes["eventguard.outcome"] == "ack"
    entry = await receiver.until(
        "quarantine publishes the entry", _children(receiver, handled, "eventguard.events publish")
    )
    assert entry.attributes["eventguard.event.type"] == "quarantine.entry.added"
    await receiver.until(
        "quarantine's Redis calls are children of its process span",
        _children(receiver, handled, "redis"),
    )
    taken = await receiver.until(
        "ai_fallback processes the entry",
        lambda: receiver.find(service="ai_fallback", kind=_CONSUMER, parent_id=entry.span_id),
    )
    assert taken.kind == _CONSUMER
    assert taken.trace_id == alert.trace_id
    await receiver.until(  # a broadcast type: the replica's own copy too, named by its kind
        "ai_fallback's replica processes its copy",
        lambda: receiver.find(
            name="eventguard.ai_fallback.replica process", parent_id=entry.span_id
        ),
    )


_SETTLED = frozenset({"duplicate", "ack"})  # how a busy copy ends: see _retried


async def _retried(receiver: Receiver, producer: AmqpBroker, simulator: ProviderSimulator) -> None:
    """The same request delivered twice at once: the copy that finds the other's claim busy
    is retried, then acked without running the handler (a duplicate; or, when it comes while
    the other copy is still publishing, the saved outbox published again, same ids): two or
    more process spans in one trace (its own), and one model call in all."""
    simulator.script("m1", Step("ok", latency_s=1.0))
    request = CompletionRequested(messages=[Message(role="user", content="traced")], max_tokens=8)
    event = new_event("ai.completion.requested", request, source="e2e")
    await asyncio.gather(*(producer.publish(to_message(event, user_id="guest")) for _ in "ab"))

    def by_trace() -> dict[str, list[Span]]:
        traces: dict[str, list[Span]] = {}
        for span in receiver.find(service="ai_fallback", kind=_CONSUMER):
            if span.attributes.get("messaging.message.id") == event.id:
                traces.setdefault(span.trace_id, []).append(span)
        return traces

    def ended(spans: list[Span], outcomes: frozenset[str]) -> bool:
        return any(s.attributes.get("eventguard.outcome") in outcomes for s in spans)

    def finished() -> list[Span]:  # the busy copy's trace, once it was retried and settled
        return [
            spans[0]
            for spans in by_trace().values()
            if ended(spans, _SETTLED) and ended(spans, frozenset({"retry"}))
        ]

    try:
        busy = await receiver.until("the busy copy's last process span", finished)
    except AssertionError:
        raise AssertionError(repr(by_trace())) from None
    outcomes = [str(s.attributes["eventguard.outcome"]) for s in by_trace()[busy.trace_id]]
    assert len(outcomes) >= 2, by_trace()
    last = [o for o in outcomes if o != "retry"]
    assert len(last) == 1, outcomes
    assert last[0] in _SETTLED, outcomes
    (handled,) = [spans[0] for trace, spans in by_trace().items() if trace != busy.trace_id]
    assert handled.attributes["eventguard.outcome"] == "ack"
    for span in by_trace()[busy.trace_id]:  # the busy copy never called the model
        assert not receiver.find(name="llm:openai:m1:sim", parent_id=span.span_id), outcomes
    llm = await receiver.until("the model call", _children(receiver, handled, "llm:openai:m1:sim"))
    await receiver.until(
        "aiohttp's span under the guard's", lambda: receiver.find(parent_id=llm.span_id)
    )


async def _released(receiver: Receiver, producer: AmqpBroker, rabbit_url: str) -> None:
    """Poison dies in trace P; an operator releases it; the released copy's process span is in
    the release's trace and links to P."""
    origin_trace = secrets.token_hex(16)
    poison_id = uuid.uuid4().hex
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await queue.bind(exchange, "quarantine.entry.added")
        await producer.publish(
            OutgoingMessage(
                body=b'{"truncated": ',
                routing_key="quarantine.requested",
                exchange=EVENTS_EXCHANGE,
                type="quarantine.requested",
                message_id=poison_id,
                user_id="guest",
                headers={h.TRACEPARENT: f"00-{origin_trace}-{secrets.token_hex(8)}-01"},
            )
        )
        record_id = ""
        async with asyncio.timeout(20), queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                data = json.loads(message.body)["data"]
                if data["kind"] == "message" and data["reason"].startswith("invalid_json"):
                    record_id = data["record_id"]
                    break
    release = QuarantineReleaseRequested(record_id=record_id, note="traced")
    actor = Actor(subject="e2e-operator", role="operator")
    event = new_event("quarantine.release.requested", release, source="e2e", actor=actor)
    await producer.publish(to_message(event, user_id="guest"))

    def linked() -> list[Span]:
        return [
            s
            for s in receiver.find(
                name="eventguard.quarantine process", messaging_message_id=poison_id
            )
            if any(trace == origin_trace for trace, _ in s.links)
        ]

    again = await receiver.until("the released copy's process span links to the origin", linked)
    assert again.trace_id != origin_trace


async def test_traces_cross_three_worker_processes(
    fleet: Fleet, producer: AmqpBroker, tmp_path: Path, rabbit_url: str
) -> None:
    """health -> quarantine -> ai_fallback is one trace; a retry keeps its trace; a release
    links to the trace its message died in."""
    simulator = ProviderSimulator()
    url = await simulator.start()
    simulator.set_default("m1", Step("ok"))
    receiver = Receiver()
    _configure(fleet, receiver, url, tmp_path)
    try:
        async with receiver.serving():
            for topology in TOPOLOGIES:  # every queue the fixture purges at the end exists
                await producer.declare(topology)
            try:
                for worker in ("health_monitor", "quarantine", "ai_fallback"):
                    await fleet.start(worker)  # one cold start at a time on a busy machine
                await _story(receiver, producer)
                await _retried(receiver, producer, simulator)
                await _released(receiver, producer, rabbit_url)
            finally:  # stopped while the receiver still takes their last spans
                await asyncio.to_thread(fleet.stop)
    finally:
        await simulator.close()
