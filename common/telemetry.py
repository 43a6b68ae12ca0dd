"""The OpenTelemetry SDK behind :mod:`common.tracing`: set up from the ``OTEL_*`` variables.

Tracing is off unless ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``: OTLP over
HTTP/protobuf; ``console``: span JSON on stdout) and ``OTEL_SDK_DISABLED`` is not ``true``.
The variables are the SDK's standard ones:

* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus
  ``/v1/traces``); default ``http://localhost:4318/v1/traces``. ``OTEL_EXPORTER_OTLP_PROTOCOL``
  (and its ``_TRACES_`` form) must be ``http/protobuf`` when set: gRPC is not shipped.
  Headers, timeout, compression and TLS come from the exporter's own ``OTEL_EXPORTER_OTLP_*``.
* ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: ``parentbased_always_on`` (default),
  ``parentbased_traceidratio``, ``traceidratio``, ``always_on``, ``always_off``,
  ``parentbased_always_off``.
* ``OTEL_SERVICE_NAME`` (default: the worker names joined by ``+``), ``OTEL_RESOURCE_ATTRIBUTES``;
  ``service.instance.id`` is the replica's instance name.
* ``OTEL_BSP_*``: the batch span processor's queue, batch size and delays.

Turned on, it also instruments aiohttp's client (HTTP to LLM providers and exchanges: a CLIENT
span per request inside the guard's span, and ``traceparent`` on the request).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from common import tracing
from common.errors import ConfigError

__all__ = [
    "Telemetry",
    "enable",
    "enabled",
    "from_environment",
    "otlp_exporter",
    "sampler_from",
]

_DEFAULT_ENDPOINT = "http://localhost:4318"
_TRACES_PATH = "/v1/traces"
_SCOPE = "eventguard"


class _Sampling(RandomIdGenerator):
    """The provider's sampler, asked by :mod:`common.tracing` before it starts a span, and its
    id generator, which gives the next root span the trace id that sampler was asked about."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self._next_trace_id = 0

    def sampled(self, parent: Context, trace_id: int, name: str, kind: SpanKind) -> bool:
        decision = self.sampler.should_sample(parent, trace_id, name, kind).decision
        return decision is not Decision.DROP  # recorded (sampled or only recorded)

    def use_trace_id(self, trace_id: int) -> None:
        self._next_trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id, self._next_trace_id = self._next_trace_id, 0
        return trace_id or super().generate_trace_id()


class Telemetry:
    """A configured tracer provider; :meth:`shutdown` flushes and turns tracing off."""

    def __init__(self, provider: TracerProvider, *, instrumented_http: bool) -> None:
        self.provider = provider
        self._instrumented_http = instrumented_http

    def force_flush(self, timeout_ms: int = 5_000) -> bool:
        """Export every ended span now."""
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flush, stop exporting and turn the hooks off."""
        tracing.install(None)
        if self._instrumented_http:
            AioHttpClientInstrumentor().uninstrument()
        self.provider.shutdown()


def enable(
    exporter: SpanExporter,
    *,
    sampler: Sampler | None = None,
    service_name: str = "eventguard",
    instance: str = "",
    batch: bool = True,
    instrument_http: bool = True,
    max_queue_size: int | None = None,
) -> Telemetry:
    """Turn tracing on in this process, exporting to ``exporter`` (tests, benchmarks, and
    :func:`from_environment`). ``batch`` False exports each span as it ends (tests);
    ``max_queue_size`` replaces the batch processor's (``OTEL_BSP_MAX_QUEUE_SIZE``, 2,048)."""
    attributes = {"service.name": service_name}
    if instance:
        attributes["service.instance.id"] = instance
    sampling = _Sampling(sampler if sampler is not None else ParentBased(ALWAYS_ON))
    provider = TracerProvider(
        sampler=sampling.sampler, resource=Resource.create(attributes), id_generator=sampling
    )
    processor: SpanProcessor = (
        BatchSpanProcessor(exporter, max_queue_size=max_queue_size)
        if batch
        else SimpleSpanProcessor(exporter)
    )
    provider.add_span_processor(processor)
    if instrument_http:
        AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    tracing.install(provider.get_tracer(_SCOPE), sampling)
    return Telemetry(provider, instrumented_http=instrument_http)


@contextlib.contextmanager
def enabled(
    exporter: SpanExporter,
    *,
    sampler: Sampler | None = None,
    service_name: str = "eventguard",
    instrument_http: bool = False,
    max_queue_size: int | None = None,
) -> Iterator[Telemetry]:
    """Tracing on for the block, exporting to ``exporter`` (benchmarks: the traced contender);
    flushed and off again after it."""
    telemetry = enable(
        exporter,
        sampler=sampler,
        service_name=service_name,
        instrument_http=instrument_http,
        max_queue_size=max_queue_size,
    )
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def from_environment(
    environ: Mapping[str, str], *, service_name: str, instance: str = ""
) -> Telemetry | None:
    """Tracing as the ``OTEL_*`` variables in ``environ`` say (None: off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    names = [n for n in names if n and n != "none"]
    if not names:
        return None
    if len(names) > 1 or names[0] not in {"otlp", "console"}:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']!r}: "
            "EventGuard ships the otlp (HTTP/protobuf) and console exporters"
        )
    exporter = otlp_exporter(environ) if names[0] == "otlp" else ConsoleSpanExporter()
    return enable(
        exporter,
        sampler=sampler_from(environ),
        service_name=environ.get("OTEL_SERVICE_NAME", "").strip() or service_name,
        instance=instance,
    )


def otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    """The OTLP HTTP/protobuf exporter for the endpoint the standard variables name."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ConfigError(f"{name}={protocol!r}: only http/protobuf is supported")
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _DEFAULT_ENDPOINT
        endpoint = base.rstrip("/") + _TRACES_PATH
    return OTLPSpanExporter(endpoint=endpoint)


def sampler_from(environ: Mapping[str, str]) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` name."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
    try:
        ratio = float(raw)
    except ValueError:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a number") from None
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not within [0, 1]")
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise ConfigError(f"OTEL_TRACES_SAMPLER={name!r} is not one of {sorted(samplers)}")
    return samplers[name]
