"""Every Prometheus metric EventGuard exports, declared in one place.

Names follow Prometheus conventions (prefix ``eventguard_``, ``_total`` for counters, base units
such as ``_seconds``) and labels are bounded: worker, event type, outcome, dependency, reason,
never an id. Tests pass their own :class:`~prometheus_client.CollectorRegistry`.

Each concern owns one section class below; :class:`Metrics` holds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "AiFallbackMetrics",
    "HealthMonitorMetrics",
    "Metrics",
    "OpportunityMetrics",
    "QuarantineMetrics",
    "ReliabilityMetrics",
    "RuntimeMetrics",
    "SecurityMetrics",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
            buckets=_LATENCY_BUCKETS,
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
            buckets=_LATENCY_BUCKETS,
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


class AiFallbackMetrics:
    """The AI fallback worker: requests, attempts, fallbacks, tokens, cost, cache, model state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "eventguard_ai_requests_total",
            "Completion requests answered, by outcome (succeeded, cached, failed) and reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        self.attempts = Counter(
            "eventguard_ai_attempts_total",
            "Models tried or skipped, by model and outcome.",
            ["model", "outcome"],
            registry=registry,
        )
        self.attempt_latency = Histogram(
            "eventguard_ai_attempt_seconds",
            "Provider call time, by model and outcome.",
            ["model", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "eventguard_ai_fallbacks_total",
            "Moves to the next model after a failure, by from_model, to_model and reason.",
            ["from_model", "to_model", "reason"],
            registry=registry,
        )
        self.tokens = Counter(
            "eventguard_ai_tokens_total",
            "Tokens used, by model and direction (input, output).",
            ["model", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "eventguard_ai_cost_usd_total",
            "Money spent on completions in US dollars, by model.",
            ["model"],
            registry=registry,
        )
        self.cache = Counter(
            "eventguard_ai_cache_lookups_total",
            "Completion cache lookups, by result (hit, miss, shared, bypass).",
            ["result"],
            registry=registry,
        )
        self.model_state = Gauge(
            "eventguard_ai_model_state",
            "Model state: 0 healthy, 1 degraded, 2 cooling down, 3 breaker open, 4 disabled, "
            "5 quarantined.",
            ["model"],
            registry=registry,
        )
        self.usage_impossible = Counter(
            "eventguard_ai_usage_impossible_total",
            "Provider-reported usage impossible for the request (billed as counted instead), "
            "by model and field (input, output).",
            ["model", "field"],
            registry=registry,
        )


class QuarantineMetrics:
    """The quarantine worker: records, blacklist, releases and discards."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.entries = Gauge(
            "eventguard_quarantine_entries",
            "Quarantine records by kind, reason code and status (refreshed every tick).",
            ["kind", "reason", "status"],
            registry=registry,
        )
        self.added = Counter(
            "eventguard_quarantine_records_added_total",
            "Quarantine records created, by kind and reason code.",
            ["kind", "reason"],
            registry=registry,
        )
        self.releases = Counter(
            "eventguard_quarantine_releases_total",
            "Records released, by kind and trigger (reviewer, expiry, recovery).",
            ["kind", "trigger"],
            registry=registry,
        )
        self.discards = Counter(
            "eventguard_quarantine_discards_total",
            "Records discarded by a reviewer, by kind.",
            ["kind"],
            registry=registry,
        )
        self.floods = Counter(
            "eventguard_quarantine_floods_contained_total",
            "Producers or event types quarantined for flooding the dead-letter queue, by kind.",
            ["kind"],
            registry=registry,
        )
        self.blacklist_size = Gauge(
            "eventguard_quarantine_blacklist_size",
            "Entities blocked now.",
            registry=registry,
        )
        self.oldest_unreviewed = Gauge(
            "eventguard_quarantine_oldest_unreviewed_age_seconds",
            "Age of the oldest record still in status quarantined (0 when none).",
            registry=registry,
        )
        self.records = Gauge(
            "eventguard_quarantine_records",
            "Records held in Redis, any status (refreshed at each retention pass).",
            registry=registry,
        )
        self.records_cap = Gauge(
            "eventguard_quarantine_records_cap",
            "The record capacity configured (EVENTGUARD_QUARANTINE__MAX_RECORDS).",
            registry=registry,
        )
        self.purged = Counter(
            "eventguard_quarantine_purged_total",
            "Records deleted by the retention.",
            registry=registry,
        )


class HealthMonitorMetrics:
    """The health monitor: alerts, rule evaluation, collectors, deliveries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.alerts_active = Gauge(
            "eventguard_alerts_active",
            "Firing alerts by severity (silenced and inhibited ones included).",
            ["severity"],
            registry=registry,
        )
        self.rule_evaluation = Histogram(
            "eventguard_rule_evaluation_seconds",
            "Time to evaluate every rule once.",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
            registry=registry,
        )
        self.collector_failures = Counter(
            "eventguard_collector_failures_total",
            "Collections that failed or returned garbage, by collector.",
            ["collector"],
            registry=registry,
        )
        self.notifications = Counter(
            "eventguard_alert_notifications_total",
            "Alert notifications by sink and outcome (sent, failed, silenced, inhibited).",
            ["sink", "outcome"],
            registry=registry,
        )
        self.leader = Gauge(
            "eventguard_health_monitor_leader",
            "1 on the replica that evaluates and notifies (holds the lease), 0 on standbys.",
            registry=registry,
        )
        self.outbox = Gauge(
            "eventguard_alert_outbox",
            "Notifications decided but not yet accepted by every sink.",
            registry=registry,
        )


class OpportunityMetrics:
    """The opportunity discovery worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.scans = Counter(
            "eventguard_opportunity_scans_total",
            "Scans by outcome (completed, partial, refused, failed).",
            ["outcome"],
            registry=registry,
        )
        self.scan_time = Histogram(
            "eventguard_opportunity_scan_seconds",
            "Scan duration.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.found = Counter(
            "eventguard_opportunities_found_total",
            "Opportunities found, by strategy.",
            ["strategy"],
            registry=registry,
        )
        self.data_calls = Counter(
            "eventguard_market_data_calls_total",
            "Market data calls by exchange and outcome (ok, error, breaker_open, timeout).",
            ["exchange", "outcome"],
            registry=registry,
        )
        self.discarded = Counter(
            "eventguard_market_data_discarded_total",
            "Market data discarded as invalid (NaN, negative, crossed), by exchange.",
            ["exchange"],
            registry=registry,
        )
        self.cache = Counter(
            "eventguard_opportunity_cache_total",
            "Cache lookups by cache (market, results) and result (hit, miss).",
            ["cache", "result"],
            registry=registry,
        )


class Metrics:
    """All sections over one registry; pass ``registry`` in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.runtime = RuntimeMetrics(self.registry)
        self.reliability = ReliabilityMetrics(self.registry)
        self.security = SecurityMetrics(self.registry)
        self.health_monitor = HealthMonitorMetrics(self.registry)
        self.opportunity = OpportunityMetrics(self.registry)
        self.ai_fallback = AiFallbackMetrics(self.registry)
        self.quarantine = QuarantineMetrics(self.registry)
