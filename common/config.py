"""Settings: read once from the environment (prefix ``EVENTGUARD_``), then frozen and passed down.

Nothing else in EventGuard reads ``os.environ``. Secrets are :class:`~pydantic.SecretStr` and
have no defaults: ``eventguard run`` refuses to start without them (see :func:`require_production`),
while ``eventguard demo`` fills them with throwaway values it generates and says so.

Nested sections are set with a double underscore, e.g. ``EVENTGUARD_RUNTIME__PREFETCH=64``.
"""

from __future__ import annotations

import socket
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError

__all__ = [
    "AiFallbackSettings",
    "AiModelSettings",
    "HealthMonitorSettings",
    "OpportunitySettings",
    "QuarantineSettings",
    "ReliabilitySettings",
    "RuntimeSettings",
    "SecuritySettings",
    "Settings",
    "VerificationKey",
    "require_production",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RuntimeSettings(_Section):
    """How every worker consumes, retries and stops."""

    prefetch: int = Field(default=32, ge=1, le=10_000)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    handler_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=100)
    # Delay tiers (seconds) of the retry queues; attempt n waits tier[min(n-1, len-1)].
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
    delivery_limit: int = Field(default=20, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)  # the dedup window
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    drain_timeout_s: float = Field(default=20.0, gt=0)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)
    # AMQP users trusted to relay a message on behalf of its original producer (named in the
    # x-eventguard-producer header): the workers' own users, e.g. quarantine re-publishing a
    # released message. A worker always trusts its own user for its retry copies.
    relay_users: frozenset[str] = frozenset()
    # Scale out: an idempotency claim lives this long unless its holder renews it (every third
    # of it, while the handler runs); a crashed holder's event runs again after at most this.
    claim_lease_s: float = Field(default=30.0, ge=1.0)
    # How often every replica re-reads shared state (quarantine list, model disables) from Redis:
    # the bound on how long a replica that missed a broadcast event keeps an old view.
    replica_resync_s: float = Field(default=10.0, gt=0)


class AiModelSettings(_Section):
    """One model of the AI fallback chain (``ai_fallback.models`` or its YAML file)."""

    name: str = Field(min_length=1, max_length=200)
    provider: Literal["openai", "anthropic"]
    # Base URL: ".../v1" for OpenAI-compatible servers, the API root for Anthropic.
    endpoint: str = Field(min_length=1, max_length=500)
    model_id: str | None = Field(default=None, max_length=200)  # the provider's name for it
    # The NAME of the entry in ai_fallback.provider_keys holding the secret, never the secret.
    key_ref: str | None = Field(default=None, max_length=100)
    context_window: int = Field(ge=1, le=10_000_000)
    max_output: int = Field(ge=1, le=1_000_000)
    input_usd_per_mtok: float = Field(default=0.0, ge=0, le=10_000)
    output_usd_per_mtok: float = Field(default=0.0, ge=0, le=10_000)
    priority: int = Field(default=100, ge=0, le=1_000_000)  # lower is tried first
    tokenizer: Literal["cl100k", "estimate"] | None = None  # default: cl100k for openai
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_concurrency: int = Field(default=16, ge=1, le=10_000)


class AiFallbackSettings(_Section):
    """The AI fallback worker: its model chain, cache, budgets and failure handling."""

    models: tuple[AiModelSettings, ...] = ()
    models_file: str | None = None  # YAML: {"models": [...]}; its models replace ``models``
    provider_keys: dict[str, SecretStr] = {}
    cache_ttl_s: int = Field(default=3600, ge=1)
    max_deadline_s: float = Field(default=120.0, gt=0, le=600)
    retry_after_cap_s: float = Field(default=2.0, ge=0)  # wait this long at most, else cool down
    default_cooldown_s: float = Field(default=5.0, ge=0)  # 429 without Retry-After
    context_headroom_tokens: int = Field(default=32, ge=0)
    estimate_safety_factor: float = Field(default=1.15, ge=1.0, le=3.0)
    on_content_policy: Literal["fail", "fallback"] = "fail"
    health_alpha: float = Field(default=0.2, gt=0, le=1)
    budget_window_s: int = Field(default=86_400, ge=60)
    request_max_tokens: int | None = Field(default=None, ge=1)
    request_max_cost_usd: float | None = Field(default=None, ge=0)
    actor_max_tokens: int | None = Field(default=None, ge=1)
    actor_max_cost_usd: float | None = Field(default=None, ge=0)
    global_max_tokens: int | None = Field(default=None, ge=1)
    global_max_cost_usd: float | None = Field(default=None, ge=0)
    breaker_failure_threshold: float = Field(default=0.5, gt=0, le=1)
    breaker_minimum_calls: int = Field(default=4, ge=1)
    breaker_window: int = Field(default=10, ge=1)
    breaker_open_s: float = Field(default=30.0, gt=0)


class QuarantineSettings(_Section):
    """The quarantine worker: entity TTLs, flood containment, background loops, paging."""

    # An entity quarantined without ``ttl_s`` is blocked this long (a permanent block needs an
    # admin); an entity quarantined because of a critical health alert, ``alert_ttl_s``.
    default_ttl_s: int = Field(default=24 * 3600, ge=1)
    alert_ttl_s: int = Field(default=3600, ge=1)
    # Flood containment: this many dead letters from one producer (or of one event type) within
    # one window quarantines the producer (the type) for ``flood_ttl_s``.
    flood_window_s: int = Field(default=60, ge=1)
    flood_producer_threshold: int = Field(default=100, ge=1)
    flood_type_threshold: int = Field(default=200, ge=1)
    flood_ttl_s: int = Field(default=3600, ge=1)
    # Background loop: expire blocks, finish stuck releases, refresh gauges, re-announce.
    tick_s: float = Field(default=1.0, gt=0)
    release_lease_s: float = Field(default=30.0, gt=0)
    announce_interval_s: float = Field(default=300.0, gt=0)
    max_page: int = Field(default=500, ge=1, le=10_000)
    # Retention: records and bodies older than this are deleted (active blocks and releases in
    # progress excepted), checked every ``purge_interval_s``; ``max_records`` is the capacity
    # the EventGuardQuarantineNearCap alert measures against (it fires at 80%).
    retention_days: float = Field(default=30.0, gt=0)
    purge_interval_s: float = Field(default=300.0, gt=0)
    purge_batch: int = Field(default=500, ge=1, le=10_000)
    max_records: int = Field(default=1_000_000, ge=1)


class VerificationKey(_Section):
    """A key that verifies tokens signed under ``kid`` (old keys stay here during rotation)."""

    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]
    key: SecretStr  # HMAC secret, or a PEM public key for RS256/ES256/EdDSA


class SecuritySettings(_Section):
    """Tokens, API keys and event authorisation. No secret has a default."""

    jwt_signing_key: SecretStr | None = None  # HMAC secret (>= 32 bytes) or PEM private key
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] = "HS256"
    jwt_kid: str = Field(default="k1", min_length=1, max_length=64)
    jwt_verification_keys: dict[str, VerificationKey] = {}  # kid -> key, for rotation
    issuer: str = Field(default="eventguard", min_length=1)
    audience: str = Field(default="eventguard", min_length=1)
    access_ttl_s: int = Field(default=900, ge=10, le=24 * 3600)
    refresh_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    leeway_s: int = Field(default=10, ge=0, le=300)
    max_token_bytes: int = Field(default=4096, ge=512, le=65_536)  # ours are ~500 bytes
    # API keys (stored in Redis as digests): lifetime of a new key unless the CLI says otherwise
    # (None: until revoked).
    api_key_ttl_s: int | None = Field(default=None, ge=60)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    # Event type -> AMQP users allowed to publish it, merged over the built-in table.
    producers: dict[str, frozenset[str]] = {}
    # Users allowed to publish every type: for local development and the demo only.
    any_type_producers: frozenset[str] = frozenset()


class HealthMonitorSettings(_Section):
    """The health monitor: evaluation cadence, rules, collectors and alert delivery."""

    interval_s: float = Field(default=15.0, gt=0)
    rules_file: str | None = None  # YAML; the shipped defaults when unset
    collector_timeout_s: float = Field(default=5.0, gt=0)
    sink_timeout_s: float = Field(default=5.0, gt=0)
    repeat_interval_s: float = Field(default=4 * 3600.0, gt=0)
    stale_heartbeat_s: float = Field(default=60.0, gt=0)
    rabbitmq_api_url: str | None = None  # e.g. http://rabbitmq:15672
    rabbitmq_api_user: str = "guest"
    rabbitmq_api_password: SecretStr | None = None
    collect_redis: bool = True
    ready_targets: dict[str, str] = {}  # name -> URL of a /readyz (or any health URL)
    webhook_url: str | None = None  # an Alertmanager-compatible receiver
    # Replicas: one leader evaluates and notifies under a Redis lease of this length, renewed
    # every ``leader_renew_s``; a standby takes over within about lease + renew of its death.
    leader_lease_s: float = Field(default=5.0, gt=0)
    leader_renew_s: float = Field(default=1.0, gt=0)


class OpportunitySettings(_Section):
    """The opportunity discovery worker: venues, concurrency, budgets, caches, fees."""

    # The venues scanned; with market_source "ccxt" each is a ccxt exchange id unless
    # ``exchanges`` maps it to one (the simulator accepts any name).
    venues: tuple[str, ...] = ("bybit", "okx", "binance")
    quote: str = Field(default="USDT", pattern="^[A-Z0-9]{1,20}$")  # for bare assets: BTC
    concurrency: int = Field(default=15, ge=1, le=1000)
    default_budget_s: float = Field(default=10.0, gt=0, le=300)
    market_cache_ttl_s: float = Field(default=2.0, ge=0)
    result_cache_ttl_s: int = Field(default=30, ge=1)
    empty_result_ttl_s: int = Field(default=5, ge=1)
    max_symbols: int = Field(default=500, ge=1)
    trade_size_usd: float = Field(default=1_000.0, gt=0)
    taker_fee: dict[str, float] = {}  # venue -> fee rate; the venue's published one otherwise
    min_edge_bps: float = Field(default=1.0, ge=0)
    # Per-fill slippage allowance where no order book is walked (all but spot arbitrage).
    assumed_slippage_bps: float = Field(default=2.0, ge=0, le=100)
    funding_horizon_h: float = Field(default=24.0, gt=0, le=720)  # funding arbitrage held
    max_edge_bps: float = Field(default=1_000.0, gt=0)  # above this the data is wrong
    max_staleness_s: float = Field(default=30.0, gt=0)
    # Where market data comes from: the venues' public APIs through ccxt, or the simulator.
    market_source: Literal["simulator", "ccxt"] = "ccxt"
    exchanges: dict[str, str] = {}  # venue -> ccxt exchange id (default: the venue's name)
    exchange_urls: dict[str, str] = {}  # venue -> base URL replacing its API URLs (proxy, tests)
    exchange_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Market simulator knobs (the demo and tests use the simulator; nothing else does).
    simulator_latency_s: float = Field(default=0.0, ge=0)
    simulator_failing: tuple[str, ...] = ()
    simulator_seed: int = 7


class ReliabilitySettings(_Section):
    """Per-dependency overrides of the guard defaults (common.reliability.guard).

    Keys are dependency names (``redis``, ``llm:gpt-4o``) or kinds (``http``); values set
    GuardConfig fields (``timeout_s``, ``max_attempts``, ``deadline_s``, ``max_hold_s``,
    ``shared``...) or breaker fields prefixed ``breaker_`` (``breaker_open_s``), e.g.
    ``EVENTGUARD_RELIABILITY__DEPENDENCIES='{"redis": {"timeout_s": 0.5}}'``. Unknown field
    names stop start-up (``Guards(overrides=...)`` checks them).
    """

    dependencies: dict[str, dict[str, bool | int | float | str | None]] = {}


class Settings(BaseSettings):
    """Everything configurable, in one object."""

    model_config = SettingsConfigDict(
        env_prefix="EVENTGUARD_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    broker_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    # The AMQP user this process publishes as; RabbitMQ validates the user_id property against it.
    broker_user: str = "guest"
    redis_key_prefix: str = "eg:"
    exchange: str = "eventguard.events"
    # This replica's name in heartbeats, logs and queue names: the pod name (deploy/k8s sets
    # EVENTGUARD_INSTANCE from the downward API), else the host name.
    instance: str = Field(default_factory=lambda: socket.gethostname()[:100] or "local")
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=8080, ge=0, le=65535)
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
    runtime: RuntimeSettings = RuntimeSettings()
    ai_fallback: AiFallbackSettings = AiFallbackSettings()
    quarantine: QuarantineSettings = QuarantineSettings()
    security: SecuritySettings = SecuritySettings()
    health_monitor: HealthMonitorSettings = HealthMonitorSettings()
    opportunity_discovery: OpportunitySettings = OpportunitySettings()
    reliability: ReliabilitySettings = ReliabilitySettings()


_MIN_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2


def require_production(settings: Settings) -> None:
    """Refuse to run for real without connection settings and secrets; name every variable."""
    problems = []
    if settings.broker_url is None:
        problems.append("EVENTGUARD_BROKER_URL is missing")
    if settings.redis_url is None:  # state, API keys, sessions and token revocation live there
        problems.append("EVENTGUARD_REDIS_URL is missing (the API-key and revocation store)")
    if settings.broker_url is not None:
        parsed = urlsplit(settings.broker_url.get_secret_value())
        if not parsed.password:
            problems.append("EVENTGUARD_BROKER_URL has no password")
    key, algorithm = settings.security.jwt_signing_key, settings.security.jwt_algorithm
    if key is None or not key.get_secret_value().strip():
        problems.append("EVENTGUARD_SECURITY__JWT_SIGNING_KEY is missing")
    elif len(key.get_secret_value().encode()) < _MIN_HMAC_KEY_BYTES.get(algorithm, 0):
        problems.append(
            f"EVENTGUARD_SECURITY__JWT_SIGNING_KEY is shorter than "
            f"{_MIN_HMAC_KEY_BYTES[algorithm]} bytes ({algorithm})"
        )
    for kid, entry in settings.security.jwt_verification_keys.items():
        if len(entry.key.get_secret_value().encode()) < _MIN_HMAC_KEY_BYTES.get(entry.algorithm, 0):
            problems.append(
                f"EVENTGUARD_SECURITY__JWT_VERIFICATION_KEYS: key {kid!r} is shorter than "
                f"{_MIN_HMAC_KEY_BYTES[entry.algorithm]} bytes ({entry.algorithm})"
            )
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))
