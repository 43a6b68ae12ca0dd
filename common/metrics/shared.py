"""The metrics every worker exports: runtime (consume, publish, heartbeats), reliability (guards,
breakers, retries) and security. Names and label rules: :mod:`common.metrics`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "ReliabilityMetrics", "RuntimeMetrics", "SecurityMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RuntimeMetrics:
    """The consumer pipeline, the broker and the worker lifecycle."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "eventguard_messages_consumed_total",
            "Messages consumed, by worker, event type and outcome "
            "(ack, duplicate, retry, dead_letter, rejected).",
            ["worker", "type", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "eventguard_dead_letters_total",
            "Messages dead-lettered, by worker and reason.",
            ["worker", "reason"],
            registry=registry,
        )
        self.processing = Histogram(
            "eventguard_message_processing_seconds",
            "Time from delivery to the message's fate, by worker and event type.",
            ["worker", "type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "eventguard_messages_in_flight",
            "Messages being handled now, by worker.",
            ["worker"],
            registry=registry,
        )
        self.published = Counter(
            "eventguard_messages_published_total",
            "Messages published and confirmed, by worker and event type.",
            ["worker", "type"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "eventguard_publish_failures_total",
            "Publishes the broker did not confirm, by worker and reason.",
            ["worker", "reason"],
            registry=registry,
        )
        self.consumers = Gauge(
            "eventguard_active_consumers",
            "Consumers registered with the broker, by queue.",
            ["queue"],
            registry=registry,
        )
        self.broker_connected = Gauge(
            "eventguard_broker_connected",
            "1 while the broker connection is open.",
            registry=registry,
        )
        self.reconnects = Counter(
            "eventguard_broker_reconnects_total",
            "Broker connections re-established after a loss.",
            registry=registry,
        )
        self.stale_acks = Counter(
            "eventguard_stale_acks_total",
            "Acks or rejects dropped because their channel had died (the broker redelivers).",
            ["queue"],
            registry=registry,
        )
        self.consumer_paused = Gauge(
            "eventguard_consumer_paused",
            "1 while a worker's consumer is paused because a critical dependency is down.",
            ["worker"],
            registry=registry,
        )
        self.heartbeats = Counter(
            "eventguard_heartbeats_published_total",
            "health.heartbeat events published, by worker.",
            ["worker"],
            registry=registry,
        )
        self.republished = Counter(
            "eventguard_publish_republished_total",
            "Publishes sent again with the same message id after their confirm was lost "
            "(connection) or refused (nack, then a fresh channel), by connection and reason.",
            ["worker", "reason"],
            registry=registry,
        )


class ReliabilityMetrics:
    """Breakers, retries, bulkheads and external calls, per dependency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.breaker_state = Gauge(
            "eventguard_breaker_state",
            "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open, 3 forced open, "
            "4 disabled.",
            ["dependency"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "eventguard_breaker_transitions_total",
            "Breaker state changes per dependency.",
            ["dependency", "from_state", "to_state"],
            registry=registry,
        )
        # Breakers count outcomes in plain integers (no metric work on the call path); this
        # collector reads them at scrape time from every source registered here.
        self.breaker_call_sources: list[Callable[[], Iterable[tuple[str, str, int]]]] = []
        registry.register(_BreakerCalls(self.breaker_call_sources))
        self.breaker_shared_fallback = Counter(
            "eventguard_breaker_shared_fallback_total",
            "Times a shared breaker fell back to local state because Redis was unreachable.",
            ["dependency"],
            registry=registry,
        )
        self.external_call = Histogram(
            "eventguard_external_call_seconds",
            "External call time per dependency and outcome.",
            ["dependency", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "eventguard_retries_total",
            "Retries scheduled per dependency.",
            ["dependency"],
            registry=registry,
        )
        self.retry_budget_exhausted = Counter(
            "eventguard_retry_budget_exhausted_total",
            "Retries refused because the dependency's retry budget was spent.",
            ["dependency"],
            registry=registry,
        )
        self.bulkhead_rejected = Counter(
            "eventguard_bulkhead_rejected_total",
            "Calls rejected because a bulkhead and its wait queue were full.",
            ["dependency"],
            registry=registry,
        )


class _BreakerCalls(Collector):
    """``eventguard_breaker_calls_total{dependency, outcome}`` read from the breakers."""

    def __init__(self, sources: list[Callable[[], Iterable[tuple[str, str, int]]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "eventguard_breaker_calls",
            "Calls through a breaker by outcome (success, failure, slow, not_permitted, ignored).",
            labels=["dependency", "outcome"],
        )
        for source in self._sources:
            for dependency, outcome, count in source():
                family.add_metric([dependency, outcome], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


class SecurityMetrics:
    """Authentication and authorisation decisions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.denials = Counter(
            "eventguard_access_denied_total",
            "Requests or events refused, by surface (http, event) and reason.",
            ["surface", "reason"],
            registry=registry,
        )
