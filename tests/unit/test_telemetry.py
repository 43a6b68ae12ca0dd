"""Tracing beyond the bus: guarded calls, logs, exemplars on /metrics, the OTEL_* switch."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from common import tracing
from common.config import Settings
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.metrics import Metrics
from common.ops import EventStream, build_app
from common.reliability.errors import CircuitOpen
from common.reliability.guard import Guards
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.telemetry import Telemetry, from_environment, otlp_exporter, sampler_from
from common.testing import fast_runtime_settings, run_workers


async def test_a_guarded_call_is_a_client_span_with_its_retries(
    spans: InMemorySpanExporter,
) -> None:
    """One CLIENT span per call, named after the dependency; each retry is an event on it."""
    guards = Guards(metrics=Metrics(CollectorRegistry()))
    guards.instant()
    failures = [OSError("reset")]

    async def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert await guards.guard("http:prices").call(flaky) == "ok"
    (span,) = spans.get_finished_spans()
    assert span.name == "http:prices"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes["eventguard.dependency.kind"] == "http"
    assert span.attributes["eventguard.breaker.state"] == "closed"
    assert [e.name for e in span.events] == ["retry.scheduled"]


async def test_an_open_breaker_refusal_is_an_event(spans: InMemorySpanExporter) -> None:
    """The breaker's decision to refuse is recorded on the call's span, with the error."""
    guards = Guards(
        metrics=Metrics(CollectorRegistry()),
        overrides={"llm:openai:m1:key": {"max_attempts": 1, "breaker_minimum_calls": 1}},
    )
    guard = guards.guard("llm:openai:m1:key", config=None)
    guard.breaker.force_open()

    async def never() -> None:
        raise AssertionError("the breaker let it through")

    with pytest.raises(CircuitOpen):
        await guard.call(never)
    (span,) = spans.get_finished_spans()
    assert "breaker.rejected" in [e.name for e in span.events]
    assert span.attributes is not None
    assert span.attributes["gen_ai.request.model"] == "m1"
    assert span.attributes["gen_ai.system"] == "openai"
    assert not span.status.is_ok


def test_log_lines_carry_the_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    """Under a span, the structlog processor adds trace_id and span_id; outside, nothing."""
    assert tracing.tracer is not None
    with tracing.tracer.start_as_current_span("work") as span:
        event = tracing.add_trace_ids(None, "info", {"event": "x"})
        context = span.get_span_context()
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")
    assert tracing.add_trace_ids(None, "info", {}) == {}
    with capture_logs() as logs:
        get_logger("t").info("outside.span")
    assert "trace_id" not in logs[0]


def test_configured_json_logs_carry_the_ids(spans: InMemorySpanExporter) -> None:
    """With the fleet's logging configuration, a JSON line written under a span has its ids."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging(fmt="json", stream=stream)
        assert tracing.tracer is not None
        with tracing.tracer.start_as_current_span("work") as span:
            get_logger("t").warning("inside.span")
        line = json.loads(stream.getvalue().splitlines()[-1])
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    assert line["event"] == "inside.span"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


async def test_openmetrics_scrape_shows_exemplars(spans: InMemorySpanExporter) -> None:
    """/metrics answers OpenMetrics when asked, with the trace id of a processed message as
    the exemplar of the processing histogram; the plain text format stays the default."""
    settings = Settings(runtime=fast_runtime_settings(), security=demo_settings())
    async with run_workers([], settings=settings) as fleet:
        histogram = fleet.metrics.runtime.processing.labels("w", "quarantine.requested")
        assert tracing.tracer is not None
        with tracing.tracer.start_as_current_span("process") as span:
            histogram.observe(0.2, tracing.exemplar())
            trace_id = format(span.get_span_context().trace_id, "032x")
        auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
        app = build_app(fleet.runtime, auth=auth, stream=EventStream())
        async with TestClient(TestServer(app)) as client:
            plain = await client.get("/metrics")
            open_metrics = await client.get(
                "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert plain.content_type == "text/plain"
            assert trace_id not in await plain.text()
            assert open_metrics.content_type == "application/openmetrics-text"
            assert f'trace_id="{trace_id}"' in await open_metrics.text()


def test_off_without_an_exporter_variable() -> None:
    """No OTEL_TRACES_EXPORTER (or none, or the SDK disabled): no telemetry, hooks stay off."""
    assert from_environment({}, service_name="w") is None
    assert from_environment({"OTEL_TRACES_EXPORTER": "none"}, service_name="w") is None
    disabled = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
    assert from_environment(disabled, service_name="w") is None
    assert tracing.tracer is None


def test_otlp_on_names_the_service_after_the_workers() -> None:
    """otlp turns tracing on; the service name defaults to the workers, OTEL_SERVICE_NAME wins."""
    telemetry = from_environment({"OTEL_TRACES_EXPORTER": "otlp"}, service_name="quarantine")
    assert isinstance(telemetry, Telemetry)
    try:
        assert tracing.tracer is not None
        assert telemetry.provider.resource.attributes["service.name"] == "quarantine"
    finally:
        telemetry.shutdown()
    assert tracing.tracer is None
    named = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "eg-q"}
    telemetry = from_environment(named, service_name="quarantine", instance="pod-1")
    assert telemetry is not None
    try:
        attributes = telemetry.provider.resource.attributes
        assert (attributes["service.name"], attributes["service.instance.id"]) == ("eg-q", "pod-1")
    finally:
        telemetry.shutdown()


def test_the_otlp_endpoint_follows_the_standard_variables() -> None:
    """The traces endpoint is used as is; the base endpoint gets /v1/traces appended."""
    base = otlp_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    exact = otlp_exporter({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9/x"})
    default = otlp_exporter({})
    assert isinstance(base, OTLPSpanExporter)
    assert isinstance(exact, OTLPSpanExporter)
    assert isinstance(default, OTLPSpanExporter)
    assert base._endpoint == "http://collector:4318/v1/traces"
    assert exact._endpoint == "http://c:9/x"
    assert default._endpoint == "http://localhost:4318/v1/traces"


def test_grpc_and_unknown_exporters_are_refused() -> None:
    """Only OTLP over HTTP/protobuf ships: asking for gRPC or another exporter is an error."""
    with pytest.raises(ConfigError, match="http/protobuf"):
        otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ConfigError, match="otlp"):
        from_environment({"OTEL_TRACES_EXPORTER": "jaeger"}, service_name="w")


def test_samplers_from_the_standard_variables() -> None:
    """The default is parent-based always-on; ratios and names follow the OTEL spec."""
    default = sampler_from({})
    assert isinstance(default, ParentBased)
    assert default._root is ALWAYS_ON
    ratio = sampler_from({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    assert isinstance(ratio, TraceIdRatioBased)
    assert ratio.rate == 0.1
    assert sampler_from({"OTEL_TRACES_SAMPLER": "always_off"}) is ALWAYS_OFF
    with pytest.raises(ConfigError):
        sampler_from({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"})
    with pytest.raises(ConfigError):
        sampler_from({"OTEL_TRACES_SAMPLER": "sometimes"})
