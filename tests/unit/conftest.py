"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common.telemetry import enable


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, every span exported as it ends to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    telemetry = enable(exporter, batch=False, instrument_http=False, service_name="test")
    try:
        yield exporter
    finally:
        telemetry.shutdown()
