"""Each worker's own metrics (quarantine entries, active alerts, AI tokens, cost and fallbacks,
opportunities found). Names and label rules: :mod:`common.metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics.shared import LATENCY_BUCKETS

__all__ = ["AiFallbackMetrics", "HealthMonitorMetrics", "OpportunityMetrics", "QuarantineMetrics"]


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
            buckets=LATENCY_BUCKETS,
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
