"""Unsampled traces skip the SDK: the context goes on in the headers, unsampled, and no span is
started; sampled roots keep the trace id the sampler decided on (so a ratio is the ratio)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from common import tracing
from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.telemetry import enable
from common.testing import Harness, run_workers
from schemas.envelope import new_event
from tests.unit.bus.test_tracing import _factory, _named, _request

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # pragma: allowlist secret (a W3C example id)
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def half() -> Iterator[InMemorySpanExporter]:
    """Tracing on with one trace in two sampled by trace id (no parent-based rule)."""
    exporter = InMemorySpanExporter()
    telemetry = enable(
        exporter, sampler=TraceIdRatioBased(0.5), batch=False, instrument_http=False
    )
    try:
        yield exporter
    finally:
        telemetry.shutdown()


async def _publish_untraced(harness: Harness, reason: str, headers: dict[str, str]) -> None:
    """Publish as a producer that does not trace (its headers arrive as given)."""
    saved = tracing.tracer, tracing._sampling  # put back exactly as it was
    tracing.install(None)
    try:
        event = new_event("quarantine.requested", _request(reason), source="test")
        await harness.producer.publish(event, headers=dict(headers))
    finally:
        tracing.install(*saved)  # before the delivery runs (no await in between)


def _outputs(harness: Harness) -> list[OutgoingMessage]:
    return [m for m in harness.broker.published if m.type == "quarantine.release.requested"]


async def test_an_unsampled_parent_goes_on_in_the_headers_without_spans(
    spans: InMemorySpanExporter,
) -> None:
    """A delivery whose producer did not sample its trace starts no span (parent-based, the
    default), and its output carries the same trace on, unsampled, under a span id of its own."""
    async with run_workers([("relay", _factory)]) as harness:
        parent = f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"
        await _publish_untraced(harness, "ok", {h.TRACEPARENT: parent})
        await harness.wait_for("quarantine.release.requested")
        await harness.settle()
        (output,) = _outputs(harness)
    assert _named(spans, "eventguard.relay process") == []
    assert _named(spans, "eventguard.events publish") == []
    version, trace_id, span_id, flags = str(output.headers[h.TRACEPARENT]).split("-")
    assert (version, trace_id, flags) == ("00", PARENT_TRACE, "00")
    assert span_id not in {PARENT_SPAN, "0" * 16}


async def test_roots_are_sampled_at_the_ratio_under_the_trace_id_the_sampler_saw(
    half: InMemorySpanExporter,
) -> None:
    """Deliveries without a context are roots: about half are recorded (a second decision on
    another id would record a quarter), each recorded one under the trace id its output
    carries, sampled; the others' outputs carry their own trace, unsampled (the flags' low
    bit; the SDK sets the random-trace-id bit too)."""
    count = 400
    async with run_workers([("relay", _factory)]) as harness:
        for _ in range(count):
            await _publish_untraced(harness, "ok", {})
        await harness.wait_for(
            "quarantine.release.requested", lambda _e: len(_outputs(harness)) == count
        )
        await harness.settle()
        outputs = _outputs(harness)
    recorded = _named(half, "eventguard.relay process")
    assert 150 <= len(recorded) <= 250, len(recorded)
    parents = [str(m.headers[h.TRACEPARENT]).split("-") for m in outputs]
    sampled = {trace for _v, trace, _s, flags in parents if int(flags, 16) & 1}
    unsampled = {trace for _v, trace, _s, flags in parents if not int(flags, 16) & 1}
    assert len(sampled) + len(unsampled) == count
    assert {format(s.context.trace_id, "032x") for s in recorded if s.context} == sampled
