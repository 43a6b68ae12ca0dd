"""Spans of the bus on the in-memory broker, seen by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common import tracing
from common.bus import headers as h
from common.bus.router import Emit
from common.errors import Reject, RetryLater
from common.service import BaseService, WorkerContext
from common.testing import run_workers
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested


class Relay(BaseService):
    """Answers quarantine.requested with one event; fails on command through the reason."""

    name = "relay"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.failures_left = 0
        self.router.add(QuarantineRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        if event.data.reason == "poison":
            raise Reject("cannot ever work")
        if event.data.reason == "flaky" and self.failures_left > 0:
            self.failures_left -= 1
            raise RetryLater("not yet")
        data = QuarantineReleaseRequested(record_id=event.data.entity_id)
        return [new_event("quarantine.release.requested", data, source=self.name, causation=event)]


relays: dict[str, Relay] = {}


def _factory(ctx: WorkerContext) -> Relay:
    relays["relay"] = Relay(ctx)
    return relays["relay"]


def _request(reason: str) -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id="m1", reason=reason, requested_by="t")


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The spans called ``name``, heartbeats left out."""
    return [
        s
        for s in exporter.get_finished_spans()
        if s.name == name
        and (s.attributes or {}).get("eventguard.event.type") != "health.heartbeat"
    ]


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_publish_process_and_output_form_one_tree(spans: InMemorySpanExporter) -> None:
    """producer publish -> process (CONSUMER) -> the handler's output publish (PRODUCER)."""
    async with run_workers([("relay", _factory)]) as harness:
        sent = await harness.publish("quarantine.requested", _request("ok"))
        await harness.wait_for("quarantine.release.requested")
        await harness.settle()
    first, output = _named(spans, "eventguard.events publish")
    (process,) = _named(spans, "eventguard.relay process")
    assert first.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert first.context is not None
    assert process.context is not None
    assert _parent_id(process) == first.context.span_id
    assert _parent_id(output) == process.context.span_id
    assert {first.context.trace_id} == {s.context.trace_id for s in (process, output) if s.context}
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == "eventguard.relay"
    assert process.attributes["messaging.message.id"] == sent.id
    assert process.attributes["eventguard.outcome"] == "ack"
    assert first.attributes is not None
    assert first.attributes["messaging.rabbitmq.destination.routing_key"] == "quarantine.requested"


async def test_the_context_travels_in_the_headers(spans: InMemorySpanExporter) -> None:
    """The published message carries the traceparent of its publish span."""
    async with run_workers([("relay", _factory)]) as harness:
        await harness.publish("quarantine.requested", _request("ok"))
        await harness.settle()
        (message,) = [m for m in harness.broker.published if m.type == "quarantine.requested"]
    (publish, _output) = _named(spans, "eventguard.events publish")
    assert publish.context is not None
    trace_id = format(publish.context.trace_id, "032x")
    span_id = format(publish.context.span_id, "016x")
    assert str(message.headers[h.TRACEPARENT]).startswith(f"00-{trace_id}-{span_id}-")


async def test_a_retried_message_keeps_its_trace(spans: InMemorySpanExporter) -> None:
    """Two process spans in one trace; the first records the retry decision."""
    async with run_workers([("relay", _factory)]) as harness:
        relays["relay"].failures_left = 1
        await harness.publish("quarantine.requested", _request("flaky"))
        await harness.wait_for("quarantine.release.requested")
        await harness.settle()
    processed = _named(spans, "eventguard.relay process")
    failed, succeeded = sorted(processed, key=lambda s: s.start_time or 0)
    assert failed.context is not None
    assert succeeded.context is not None
    assert failed.context.trace_id == succeeded.context.trace_id
    assert failed.attributes is not None
    assert failed.attributes["eventguard.outcome"] == "retry"
    assert failed.status.status_code is StatusCode.ERROR
    (event,) = [e for e in failed.events if e.name == "message.retry"]
    assert event.attributes is not None
    assert event.attributes["attempt"] == 1
    assert succeeded.attributes is not None
    assert succeeded.attributes["eventguard.attempt"] == 1


async def test_a_dead_letter_is_recorded_on_the_process_span(spans: InMemorySpanExporter) -> None:
    """The dead-letter decision is an event and an error status; the dead letter goes on the
    same trace (its traceparent is the dead-letter publish span's)."""
    async with run_workers([("relay", _factory)]) as harness:
        await harness.publish("quarantine.requested", _request("poison"))
        await harness.settle()
        (dead,) = harness.dead()
    (process,) = _named(spans, "eventguard.relay process")
    assert process.attributes is not None
    assert process.attributes["eventguard.outcome"] == "dead_letter"
    (event,) = [e for e in process.events if e.name == "message.dead_letter"]
    assert event.attributes is not None
    assert event.attributes["reason"] == "handler_rejected"
    assert process.context is not None
    assert format(process.context.trace_id, "032x") in str(dead.headers[h.TRACEPARENT])


async def test_a_release_links_to_the_dead_message_trace(spans: InMemorySpanExporter) -> None:
    """A message with an origin traceparent (a quarantine release) is processed in a new trace
    whose process span links to the origin."""
    origin = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with run_workers([("relay", _factory)]) as harness:
        event = new_event("quarantine.requested", _request("ok"), source="test")
        await harness.producer.publish(event, headers={h.ORIGIN_TRACEPARENT: origin})
        await harness.settle()
    (process,) = _named(spans, "eventguard.relay process")
    (link,) = process.links
    assert format(link.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(link.context.span_id, "016x") == "b7ad6b7169203331"
    assert process.context is not None
    assert process.context.trace_id != link.context.trace_id


async def test_an_incoming_traceparent_is_the_parent(spans: InMemorySpanExporter) -> None:
    """A producer outside EventGuard that sets traceparent gets its trace continued."""
    async with run_workers([("relay", _factory)]) as harness:
        saved = tracing.tracer, tracing._sampling
        tracing.install(None)  # the producer does not trace: its header arrives untouched
        event = new_event("quarantine.requested", _request("ok"), source="test")
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await harness.producer.publish(event, headers={h.TRACEPARENT: parent.encode()})
        tracing.install(*saved)  # before the delivery runs (no await in between)
        await harness.settle()
    (process,) = _named(spans, "eventguard.relay process")
    assert process.context is not None
    assert process.parent is not None
    assert format(process.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(process.parent.span_id, "016x") == "00f067aa0ba902b7"


async def test_off_adds_no_header_and_no_span() -> None:
    """Without a tracer nothing is written to the headers and nothing is recorded."""
    assert tracing.tracer is None
    async with run_workers([("relay", _factory)]) as harness:
        await harness.publish("quarantine.requested", _request("ok"))
        await harness.wait_for("quarantine.release.requested")
        await harness.settle()
        assert all(h.TRACEPARENT not in m.headers for m in harness.broker.published)
    assert tracing.exemplar() is None
    assert tracing.add_trace_ids(None, "info", {}) == {}
