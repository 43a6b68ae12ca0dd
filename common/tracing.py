"""OpenTelemetry spans for the bus and for guarded calls; off unless a tracer is installed.

Off (the default) every hook costs one module attribute check (``tracing.tracer is None``):
the callers test it inline and nothing else runs. :func:`install` (called by
:mod:`common.telemetry` when the ``OTEL_*`` variables turn tracing on, or by a test or a
benchmark) sets the tracer; from then on:

* every message a broker publishes gets a ``<destination> publish`` span (PRODUCER) and the
  W3C ``traceparent``/``tracestate`` of that span in its headers (:func:`publish`);
* every delivery a pipeline handles runs under a ``<queue> process`` span (CONSUMER), child of
  the context in its headers (:func:`process_span`); the handler, its guarded calls and the
  events it publishes are children of that span, and the message's fate (ack, duplicate,
  retry, dead letter) is recorded on it (:func:`record_fate`);
* a quarantine release carries the dead message's context in ``x-eventguard-origin-traceparent``
  and its spans link to it;
* every guarded external call runs under a CLIENT span named after its dependency
  (:func:`client_span`); retries and breaker transitions are events on it (:func:`add_event`);
* log lines carry ``trace_id`` and ``span_id`` (:func:`add_trace_ids`) and histograms take an
  exemplar (:func:`exemplar`).

An unsampled trace costs little: when :func:`install` is given the provider's sampling
(:class:`Sampling`, as :mod:`common.telemetry` does), a ``process`` span asks the sampler
first and, when it says no, only puts a non-recording span context in place (so the events the
handler publishes carry the trace, unsampled) without going through the SDK's span machinery;
``publish`` and guarded calls inside an unsampled trace inject or keep that context and start
no span. A sampled one goes through the SDK as before, with the trace id the sampler saw.

Only the OpenTelemetry API is used here; the SDK is set up in :mod:`common.telemetry`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from common.bus import headers as h
from common.bus.message import HeaderValue, IncomingMessage, OutgoingMessage

__all__ = [
    "SYSTEM",
    "Sampling",
    "add_event",
    "add_trace_ids",
    "client_span",
    "exemplar",
    "install",
    "process_span",
    "publish",
    "record_fate",
    "tracer",
]

SYSTEM = "rabbitmq"
tracer: Tracer | None = None  # None: tracing is off and every hook is skipped by its caller


class Sampling(Protocol):
    """The provider's sampling, asked before a span is started (see the module's docstring)."""

    def sampled(self, parent: Context, trace_id: int, name: str, kind: SpanKind) -> bool:
        """Whether the provider's sampler records a span ``name`` in trace ``trace_id`` (a
        span it drops is replaced by a non-recording one without the SDK)."""

    def use_trace_id(self, trace_id: int) -> None:
        """Make the next root span the provider starts take ``trace_id``."""


_sampling: Sampling | None = None

_PROPAGATOR = TraceContextTextMapPropagator()
_CONTEXT_HEADERS = (h.TRACEPARENT, h.TRACESTATE)
_REPLICA = ".replica."


def install(new: Tracer | None, sampling: Sampling | None = None) -> None:
    """Turn tracing on with ``new`` (a tracer of a configured provider), or off with None;
    with ``sampling`` (the provider's), unsampled traces skip the SDK's span machinery."""
    global tracer, _sampling  # noqa: PLW0603 - the one switch every hook reads
    tracer = new
    _sampling = sampling if new is not None else None


class _HeaderGetter(Getter[Mapping[str, HeaderValue]]):
    """Reads W3C headers from AMQP headers, whose strings may arrive as bytes."""

    def get(self, carrier: Mapping[str, HeaderValue], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, HeaderValue]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def _tracer() -> Tracer:
    if tracer is None:  # the callers check first: that check is the off switch
        raise RuntimeError("tracing is off")
    return tracer


def _extract(headers: Mapping[str, HeaderValue]) -> Context:
    return _PROPAGATOR.extract(headers, getter=_GETTER)


def _origin_links(headers: Mapping[str, HeaderValue]) -> list[Link]:
    """A link to the trace a released dead letter came from (its origin header), if any."""
    origin = headers.get(h.ORIGIN_TRACEPARENT)
    if origin is None:
        return []
    context = trace.get_current_span(_extract({h.TRACEPARENT: origin})).get_span_context()
    if not context.is_valid:
        return []
    return [Link(context, {"eventguard.link": "released_from"})]


def _attributes(
    message: IncomingMessage | OutgoingMessage,
    operation: str,
    kind: str,
    destination: str,
    extra: Mapping[str, str | int | bool] | None = None,
) -> dict[str, Any]:
    """A message span's attributes, all given at its start (one pass through the SDK's
    attribute checks; an unsampled span never gets here when the sampling is known)."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.destination.name": destination,
        "messaging.rabbitmq.destination.routing_key": message.routing_key,
        "messaging.message.body.size": len(message.body),
    }
    if extra:
        attributes.update(extra)
    if message.message_id:
        attributes["messaging.message.id"] = message.message_id
    if message.correlation_id:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    if message.type:
        attributes["eventguard.event.type"] = message.type
    return attributes


async def publish(
    send: Callable[[OutgoingMessage], Awaitable[None]], message: OutgoingMessage
) -> None:
    """``send(message)`` under a PRODUCER span, with that span's context in the headers.

    A context the message already carries (a retry copy, a release) is replaced by the new
    span's: a retry copy is published inside the failed delivery's ``process`` span, so its
    trace goes on; a release links to the dead message's trace by its origin header."""
    if _in_unsampled_trace():  # the message carries the trace on, unsampled
        await send(_with_current_context(message))
        return
    destination = message.exchange or message.routing_key  # "" is the default exchange
    with _tracer().start_as_current_span(
        f"{destination} publish",
        kind=SpanKind.PRODUCER,
        attributes=_attributes(message, "publish", "send", destination),
        links=_origin_links(message.headers),
    ):
        await send(_with_current_context(message))


def _with_current_context(message: OutgoingMessage) -> OutgoingMessage:
    """``message`` carrying the current span's context in place of any it had."""
    headers = {k: v for k, v in message.headers.items() if k not in _CONTEXT_HEADERS}
    _PROPAGATOR.inject(headers)
    return message.with_headers(headers)


@contextlib.contextmanager
def process_span(message: IncomingMessage, worker: str) -> Iterator[Span]:
    """The CONSUMER span of one delivery, child of the context its headers carry."""
    headers = message.headers
    # A replica's own queue is named after its instance: the span is named after the kind
    # (eventguard.<worker>.replica), so span names stay few; the attributes keep the queue.
    queue, replica, _ = message.queue.partition(_REPLICA)
    name = f"{queue}{replica.rstrip('.')} process"
    parent = _extract(headers) if h.TRACEPARENT in headers else Context()  # else: a root
    unsampled = _unsampled(parent, name, SpanKind.CONSUMER)
    if unsampled is not None:
        token = otel_context.attach(trace.set_span_in_context(unsampled))
        try:
            yield unsampled
        finally:
            otel_context.detach(token)
        return
    extra: dict[str, str | int | bool] = {
        "messaging.consumer.group.name": message.queue,
        "eventguard.worker": worker,
    }
    attempt = headers.get(h.ATTEMPT)
    if isinstance(attempt, int):
        extra["eventguard.attempt"] = attempt
    if message.redelivered:
        extra["eventguard.redelivered"] = True
    with _tracer().start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=_attributes(message, "process", "process", message.queue, extra),
        links=_origin_links(headers),
    ) as span:
        yield span


def _unsampled(parent: Context, name: str, kind: SpanKind) -> Span | None:
    """A non-recording span for a span the sampler would not record (None: start a real one,
    the root's trace id already chosen for the provider). Without the provider's sampling,
    always None: the SDK decides."""
    sampling = _sampling
    if sampling is None:
        return None
    above = trace.get_current_span(parent).get_span_context()
    root = not above.is_valid
    if root:
        trace_id = random.getrandbits(128) or 1
        flags, state = TraceFlags(TraceFlags.RANDOM_TRACE_ID), None
    else:
        trace_id, flags, state = above.trace_id, above.trace_flags, above.trace_state
    if sampling.sampled(parent, trace_id, name, kind):
        if root:
            sampling.use_trace_id(trace_id)
        return None
    unsampled = TraceFlags(flags & ~TraceFlags.SAMPLED)
    span_id = random.getrandbits(64) or 1
    return NonRecordingSpan(SpanContext(trace_id, span_id, False, unsampled, state))


def _in_unsampled_trace() -> bool:
    """Whether the current span is a trace's, not recorded (its children would not be)."""
    if _sampling is None:
        return False
    span = trace.get_current_span()
    return span is not INVALID_SPAN and not span.is_recording()


def record_fate(fate: str, **details: str | int | float) -> None:
    """Record a delivery's fate (ack, duplicate, retry, dead_letter, rejected) on the current
    ``process`` span as ``eventguard.outcome``; with ``details`` (a retry scheduled, a dead
    letter sent), also an event ``message.<fate>`` carrying them, and the span's status is an
    error with the reason."""
    span = trace.get_current_span()
    span.set_attribute("eventguard.outcome", fate)
    if details:
        span.add_event(f"message.{fate}", {k: v for k, v in details.items() if v != ""})
        span.set_status(Status(StatusCode.ERROR, str(details.get("reason", fate))[:200]))


@contextlib.contextmanager
def client_span(dependency: str, breaker_state: str) -> Iterator[Span]:
    """The CLIENT span of one guarded call (all its attempts), named after the dependency."""
    if _in_unsampled_trace():  # no span, and the call's own hooks see the unsampled one
        yield trace.get_current_span()
        return
    kind, _, target = dependency.partition(":")
    attributes: dict[str, Any] = {
        "eventguard.dependency": dependency,
        "eventguard.dependency.kind": kind,
        "eventguard.breaker.state": breaker_state,
    }
    if kind == "redis":
        attributes["db.system.name"] = "redis"
    elif kind == "llm" and target:  # llm:<provider>:<model>:<key ref>
        provider, _, rest = target.partition(":")
        attributes["gen_ai.system"] = provider
        attributes["gen_ai.request.model"] = rest.partition(":")[0] or provider
    elif target:
        attributes["eventguard.dependency.target"] = target
    client = _tracer().start_as_current_span(
        dependency, kind=SpanKind.CLIENT, attributes=attributes
    )
    with client as span:
        yield span


def add_event(name: str, attributes: Mapping[str, str | int | float | bool]) -> None:
    """An event on the current span (a retry, a breaker transition); nothing without one."""
    if tracer is not None:
        trace.get_current_span().add_event(name, dict(attributes))


def exemplar() -> dict[str, str] | None:
    """The exemplar of an observation made now: the current sampled span's trace and span id."""
    if tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def add_trace_ids(_logger: Any, _method: str, event: Any) -> Any:
    """A structlog processor: ``trace_id`` and ``span_id`` of the current span, when one is."""
    if tracer is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event.setdefault("span_id", format(context.span_id, "016x"))
    return event
