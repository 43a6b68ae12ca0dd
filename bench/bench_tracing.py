"""Tracing cost: CPU per message of the consumer pipeline with tracing off and on, in-process.

The pipeline over the in-memory broker (no network: what is measured is the process's own
work), a handler that publishes one event per message (so each message makes a ``process``
and a ``publish`` span), messages arriving with a producer's ``traceparent``. Contenders,
alternating round by round, the best round counts:

  off            tracing off (the default)
  on_sampled     tracing on, every trace sampled, spans encoded to OTLP protobuf on the batch
                 processor's thread (as the OTLP exporter does) and discarded
  on_unsampled   tracing on, the producer's trace not sampled (parent-based sampler): context
                 propagated, nothing recorded

CPU is the process's (every thread's) CPU time per message, the final flush included; no span
is dropped (the batch processor's queue is made large enough). Writes
bench/results/tracing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from common.bus import headers as h
from common.bus.memory import MemoryBroker
from common.bus.message import OutgoingMessage
from common.bus.pipeline import Pipeline, allow_all
from common.bus.publisher import Publisher, to_message
from common.bus.router import Emit, Router
from common.bus.topology import worker_topology
from common.config import Settings
from common.config.sections import RuntimeSettings
from common.metrics import Metrics
from common.telemetry import Telemetry, enabled
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested

RESULTS = Path(__file__).parent / "results" / "tracing.json"
# Every span is kept, here and in bench_runtime's traced contenders: with the SDK's default
# queue (2,048 spans) a pipeline that outruns the exporter thread drops the spans not yet
# encoded, and the figures would leave their cost out (spans_per_message_sampled says).
KEEP_EVERY_SPAN = 1_000_000
IN_TYPE, OUT_TYPE = "quarantine.requested", "quarantine.release.requested"
_SETTINGS = Settings(runtime=RuntimeSettings(retry_delays_s=(1.0,), delivery_limit=5))


class EncodingExporter(SpanExporter):
    """Encodes each batch as the OTLP exporter would, then drops it (no network)."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def _messages(n: int, *, sampled: bool) -> list[OutgoingMessage]:
    flags = "01" if sampled else "00"
    out = []
    for i in range(n):
        data = QuarantineRequested(
            kind="producer", entity_id=f"p{i}", reason="bench", requested_by="b"
        )
        event = new_event(IN_TYPE, data, source="bench")
        parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{flags}"
        out.append(to_message(event, user_id=None, headers={h.TRACEPARENT: parent}))
    return out


async def _run(
    messages: list[OutgoingMessage], prefetch: int, exporter: SpanExporter | None
) -> float:
    """CPU seconds to handle ``messages``, published (untraced) before the consumer starts;
    with ``exporter``, tracing is on while they are consumed (the final flush counted)."""
    broker = MemoryBroker()
    await broker.start()
    for worker, event_type in (("bench", IN_TYPE), ("sink", OUT_TYPE)):
        await broker.declare(
            worker_topology(worker, [event_type], _SETTINGS)
        )
    metrics = Metrics(CollectorRegistry())

    async def handle(event: Envelope[QuarantineRequested]) -> Emit:
        out = QuarantineReleaseRequested(record_id=event.data.entity_id)
        return [new_event(OUT_TYPE, out, source="bench", causation=event)]

    router = Router()
    router.add(QuarantineRequested, handle)
    pipeline = Pipeline(
        worker="bench",
        router=router,
        broker=broker,
        publisher=Publisher(broker, worker="bench", user_id=None, metrics=metrics),
        idempotency=None,
        settings=RuntimeSettings(prefetch=prefetch),
        metrics=metrics,
        authorize=allow_all,
        retry_queues={},
    )
    for message in messages:
        await broker.publish(message)
    tracing: contextlib.AbstractContextManager[Telemetry | None] = (
        enabled(exporter, service_name="bench", max_queue_size=KEEP_EVERY_SPAN)
        if exporter is not None
        else contextlib.nullcontext()
    )
    with tracing as telemetry:
        started = time.process_time()
        await broker.consume("eventguard.bench", pipeline, prefetch=prefetch)
        await broker.idle()
        await pipeline.drained()
        if telemetry is not None:
            telemetry.force_flush()  # the spans still queued are encoded now
        elapsed = time.process_time() - started
    await broker.close()
    return elapsed


async def main(n: int, rounds: int, prefetch: int) -> dict[str, Any]:
    """Every contender ``rounds`` times, alternating; CPU microseconds per message."""
    best: dict[str, float] = {}
    spans = 0
    for round_ in range(1, rounds + 1):
        print(f"round {round_}/{rounds}")
        for name in ("off", "on_sampled", "on_unsampled"):
            messages = _messages(n, sampled=name != "on_unsampled")
            exporter = EncodingExporter() if name != "off" else None
            cpu = await _run(messages, prefetch, exporter)
            if exporter is not None and name == "on_sampled":
                spans = max(spans, exporter.spans)
            us = cpu / n * 1e6
            best[name] = min(best.get(name, us), us)
            print(f"  {name:<14} {us:8.1f} us/msg")
    return {
        "messages": n,
        "rounds": rounds,
        "prefetch": prefetch,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "spans_per_message_sampled": round(spans / n, 2),
        **{f"cpu_us_per_msg_{name}": round(us, 1) for name, us in best.items()},
        "tracing_cpu_us_per_msg_sampled": round(best["on_sampled"] - best["off"], 1),
        "tracing_cpu_us_per_msg_unsampled": round(best["on_unsampled"] - best["off"], 1),
        "ratio_cpu_sampled_vs_off": round(best["on_sampled"] / best["off"], 3),
        "ratio_cpu_unsampled_vs_off": round(best["on_unsampled"] / best["off"], 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    figures = asyncio.run(main(args.messages, args.rounds, args.prefetch))
    print(json.dumps(figures, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS}")
