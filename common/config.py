"""Settings: read once from the environment (prefix ``EVENTGUARD_``), then frozen and passed down.

Nothing else in EventGuard reads ``os.environ`` (the ``OTEL_*`` variables of OpenTelemetry are
handed on from here by :func:`otel_environment`). Secrets are :class:`~pydantic.SecretStr` and
have no defaults: ``eventguard run`` refuses to start without them (see :func:`require_production`),
while ``eventguard demo`` fills them with throwaway values it generates and says so.

Nested sections are set with a double underscore, e.g. ``EVENTGUARD_RUNTIME__PREFETCH=64``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.errors import ConfigError

__all__ = [
    "AiFallbackSettings",
    "AiModelSettings",
    "ConsoleSettings",
    "HealthMonitorSettings",
    "OpportunitySettings",
    "QuarantineSettings",
    "ReliabilitySettings",
    "RuntimeSettings",
    "SecuritySettings",
    "Settings",
    "VerificationKey",
    "otel_environment",
    "require_production",
]


class _Section(BaseModel):
    # Each field's docstring is its description: the README's configuration reference is
    # generated from them (eventguard/config_reference.py).
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class RuntimeSettings(_Section):
    """How every worker consumes, retries and stops."""

    prefetch: int = Field(default=32, ge=1, le=10_000)
    """Unacknowledged deliveries per consumer (AMQP prefetch)."""
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    """Larger message bodies are dead-lettered as `too_large`."""
    handler_timeout_s: float = Field(default=30.0, gt=0)
    """Per-handler timeout (a route may set its own)."""
    max_attempts: int = Field(default=5, ge=1, le=100)
    """Handler runs before a message is dead-lettered as `max_attempts`."""
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
    """Delay tiers (seconds) of the retry queues; attempt n waits tier[min(n-1, len-1)]."""
    delivery_limit: int = Field(default=20, ge=1)
    """The quorum queues' `x-delivery-limit`: redeliveries before RabbitMQ dead-letters a message
    itself.
    """
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    """How long a handled event id is remembered (the dedup window)."""
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    """Seconds between `health.heartbeat` events."""
    drain_timeout_s: float = Field(default=20.0, gt=0)
    """How long SIGTERM waits for in-flight handlers."""
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)
    """Longest backoff between broker reconnection attempts."""
    relay_users: frozenset[str] = frozenset()
    """AMQP users trusted to relay a message for its original producer (named in
    `x-eventguard-producer`), e.g. quarantine re-publishing a release; a worker always trusts
    its own user for its retry copies.
    """
    claim_lease_s: float = Field(default=30.0, ge=1.0)
    """An idempotency claim lives this long unless its holder renews it (every third of it, while
    the handler runs); a crashed holder's event runs again after at most this.
    """
    replica_resync_s: float = Field(default=10.0, gt=0)
    """How often every replica re-reads shared state (quarantine list and producer blocks, model
    disables) from Redis: the bound on how long a replica that missed a broadcast keeps an old
    view.
    """


class AiModelSettings(_Section):
    """One model of the AI fallback chain (``ai_fallback.models`` or its YAML file)."""

    name: str = Field(min_length=1, max_length=200)
    """The name requests, quarantine entries and metrics use."""
    provider: Literal["openai", "anthropic"]
    """The API dialect: `openai` (Chat Completions) or `anthropic` (Messages)."""
    endpoint: str = Field(min_length=1, max_length=500)
    """Base URL ending in `/v1` for both dialects: `https://api.openai.com/v1` (or any
    OpenAI-compatible server's), `https://api.anthropic.com/v1`; the client appends
    `/chat/completions` or `/messages`.
    """
    model_id: str | None = Field(default=None, max_length=200)
    """The provider's name for the model (default: `name`)."""
    key_ref: str | None = Field(default=None, max_length=100)
    """The NAME of the entry in `ai_fallback.provider_keys` holding the API key, never the key
    itself.
    """
    context_window: int = Field(ge=1, le=10_000_000)
    """Prompt plus output tokens the model accepts."""
    max_output: int = Field(ge=1, le=1_000_000)
    """Most output tokens the model writes; a request's `max_tokens` is capped by it."""
    input_usd_per_mtok: float = Field(default=0.0, ge=0, le=10_000)
    """US dollars per million input tokens."""
    output_usd_per_mtok: float = Field(default=0.0, ge=0, le=10_000)
    """US dollars per million output tokens."""
    priority: int = Field(default=100, ge=0, le=1_000_000)
    """Chain order: lower is tried first (ties: faster healthy models first)."""
    tokenizer: Literal["cl100k", "o200k", "estimate"] | None = None
    """How prompt tokens are counted: `cl100k` or `o200k` (exact, bundled), or `estimate` (cl100k
    times a learnt ratio and the safety factor). Default: OpenAI models by tiktoken's model
    table (o200k for gpt-4o, gpt-4.1, the o-series and gpt-5; cl100k for gpt-4, gpt-3.5 and
    unknown names); Anthropic models `estimate`.
    """
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    """Per-call timeout (capped by what is left of the request's deadline)."""
    max_concurrency: int = Field(default=16, ge=1, le=10_000)
    """Calls in flight to this model at once (a bulkhead; 4x as many may wait)."""
    reasoning: bool | None = None
    """A reasoning model gets `max_completion_tokens` and no `temperature`/`top_p`. Default:
    OpenAI models whose name starts with o and a digit (o1, o3, o4-mini...) or gpt-5.
    """


class AiFallbackSettings(_Section):
    """The AI fallback worker: its model chain, cache, budgets and failure handling."""

    models: tuple[AiModelSettings, ...] = ()
    """The chain: a list of model entries (JSON in `EVENTGUARD_AI_FALLBACK__MODELS`; fields in the
    next table).
    """
    models_file: str | None = None
    """A YAML file `{"models": [...]}`; its models replace `models`."""
    provider_keys: dict[str, SecretStr] = {}
    """Secrets by name (`{"openai": "sk-..."}`), referenced by each model's `key_ref`."""
    cache_ttl_s: int = Field(default=3600, ge=1)
    """How long an answer stays cached. Cached are requests with temperature 0, unless the request
    sets `cache` (true or false); the key covers every parameter that changes the answer.
    """
    max_deadline_s: float = Field(default=120.0, gt=0, le=600)
    """Upper bound of a request's `deadline_s`."""
    retry_after_cap_s: float = Field(default=2.0, ge=0)
    """A 429/529 whose Retry-After is at most this long is waited for and the same model retried
    once (the retry-once rule); a longer one cools the model down for that long and the chain
    moves on.
    """
    default_cooldown_s: float = Field(default=5.0, ge=0)
    """Cool-down after a 429/529 without Retry-After."""
    context_headroom_tokens: int = Field(default=32, ge=0)
    """Tokens kept free in a model's window beyond prompt plus output allowance."""
    estimate_safety_factor: float = Field(default=1.15, ge=1.0, le=3.0)
    """Multiplier on estimated (non-exact) prompt counts."""
    on_content_policy: Literal["fail", "fallback"] = "fail"
    """On a content-policy refusal: `fail` the request, or `fallback` to the next model."""
    health_alpha: float = Field(default=0.2, gt=0, le=1)
    """Weight of the newest call in each model's latency and error-rate EWMA."""
    budget_window_s: int = Field(default=86_400, ge=60)
    """Length of the budget window (per actor and global)."""
    request_max_tokens: int | None = Field(default=None, ge=1)
    """Most tokens (prompt plus output allowance) one request may plan for."""
    request_max_cost_usd: float | None = Field(default=None, ge=0)
    """Most US dollars one request may cost (its own `max_cost_usd` may be lower)."""
    actor_max_tokens: int | None = Field(default=None, ge=1)
    """Tokens one actor may use per budget window."""
    actor_max_cost_usd: float | None = Field(default=None, ge=0)
    """US dollars one actor may spend per budget window."""
    global_max_tokens: int | None = Field(default=None, ge=1)
    """Tokens all requests may use per budget window."""
    global_max_cost_usd: float | None = Field(default=None, ge=0)
    """US dollars all requests may spend per budget window."""
    breaker_failure_threshold: float = Field(default=0.5, gt=0, le=1)
    """Failure rate (of the window) that opens a model's breaker; only failures of the model count
    (5xx, timeouts, broken or malformed answers), never 429, 401, context-length or
    content-policy refusals.
    """
    breaker_minimum_calls: int = Field(default=4, ge=1)
    """Calls in the window before the failure rate is judged."""
    breaker_window: int = Field(default=10, ge=1)
    """Calls in each model breaker's sliding window."""
    breaker_open_s: float = Field(default=30.0, gt=0)
    """How long an open breaker waits before letting a probe through (longer, up to 300 s, while
    probes fail).
    """


class QuarantineSettings(_Section):
    """The quarantine worker: entity TTLs, flood containment, background loops, paging."""

    default_ttl_s: int = Field(default=24 * 3600, ge=1)
    """How long an entity quarantined without `ttl_s` stays blocked (a permanent block needs an
    admin).
    """
    alert_ttl_s: int = Field(default=3600, ge=1)
    """How long an entity quarantined because of a critical health alert stays blocked."""
    flood_window_s: int = Field(default=60, ge=1)
    """The window of flood containment."""
    flood_producer_threshold: int = Field(default=100, ge=1)
    """Dead letters from one producer within a window that quarantine the producer for
    `flood_ttl_s`.
    """
    flood_type_threshold: int = Field(default=200, ge=1)
    """Dead letters of one event type within a window that quarantine the type for `flood_ttl_s`."""
    flood_ttl_s: int = Field(default=3600, ge=1)
    """How long a flooding producer or type stays quarantined."""
    tick_s: float = Field(default=1.0, gt=0)
    """Period of the background loop: expire blocks, finish stuck releases, refresh gauges,
    re-announce.
    """
    release_lease_s: float = Field(default=30.0, gt=0)
    """How long a release may stay in progress before the loop finishes it."""
    announce_interval_s: float = Field(default=300.0, gt=0)
    """How often active entries are re-announced to the other workers."""
    max_page: int = Field(default=500, ge=1, le=10_000)
    """Most records one page of the admin list returns."""
    secret_fields: frozenset[str] = frozenset(
        {
            "token", "password", "passwd", "pwd", "secret", "api_key", "apikey", "x_api_key",
            "authorization", "cookie", "set_cookie", "jwt", "bearer", "credential",
            "credentials", "private_key", "signing_key",
        }
    )  # fmt: skip
    """Field and header names whose values are redacted from a dead message before it is
    recorded (any case; a name matches a whole key or one word of it, so `token` covers
    `access_token` and `X-Token`). Setting it replaces the list.
    """
    audit_retention_s: int = Field(default=30 * 24 * 3600, ge=3600)
    """How long the admin audit trail (`ops.audit.recorded`) is kept."""
    retention_days: float = Field(default=30.0, gt=0)
    """Records and bodies older than this are deleted (active blocks and releases in progress
    excepted), checked every `purge_interval_s`.
    """
    purge_interval_s: float = Field(default=300.0, gt=0)
    """How often the retention purge runs."""
    purge_batch: int = Field(default=500, ge=1, le=10_000)
    """Records the purge deletes per round trip."""
    max_records: int = Field(default=1_000_000, ge=1)
    """The capacity the `EventGuardQuarantineNearCap` alert measures against (it fires at 80%)."""


class VerificationKey(_Section):
    """A key that verifies tokens signed under ``kid`` (old keys stay here during rotation)."""

    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]
    """The JWT algorithm this key verifies."""
    key: SecretStr
    """The HMAC secret, or a PEM public key for RS256/ES256/EdDSA."""


class SecuritySettings(_Section):
    """Tokens, API keys and event authorisation. No secret has a default."""

    jwt_signing_key: SecretStr | None = None
    """Signs tokens: an HMAC secret (at least 32/48/64 bytes for HS256/384/512) or a PEM private
    key. Required by `run`.
    """
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] = "HS256"
    """The algorithm of the signing key."""
    jwt_kid: str = Field(default="k1", min_length=1, max_length=64)
    """Key id stamped on issued tokens (rotation)."""
    jwt_verification_keys: dict[str, VerificationKey] = {}
    """Other keys that verify tokens, by kid (old keys during rotation)."""
    issuer: str = Field(default="eventguard", min_length=1)
    """The `iss` claim issued and required."""
    audience: str = Field(default="eventguard", min_length=1)
    """The `aud` claim issued and required."""
    access_ttl_s: int = Field(default=900, ge=10, le=24 * 3600)
    """Lifetime of an access token."""
    refresh_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    """Lifetime of a refresh token."""
    leeway_s: int = Field(default=10, ge=0, le=300)
    """Clock skew tolerated when checking `exp`, `nbf` and `iat`."""
    max_token_bytes: int = Field(default=4096, ge=512, le=65_536)
    """Longer tokens are refused unread (ours are about 500 bytes)."""
    api_key_ttl_s: int | None = Field(default=None, ge=60)
    """Lifetime of a new API key unless the CLI says otherwise (none: until revoked)."""
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    """Lifetime of a console session."""
    producers: dict[str, frozenset[str]] = {}
    """Event type -> AMQP users allowed to publish it, merged over the built-in table."""
    any_type_producers: frozenset[str] = frozenset()
    """Users allowed to publish every type (and assert any actor): local development and the
    demo only.
    """
    actor_asserters: dict[
        str, dict[str, Literal["guest", "user", "operator", "admin", "service"]]
    ] = {}
    """Event type -> {AMQP user: the highest role it may assert as an event's actor}, merged
    over the built-in table (docs/actors.md).
    """
    max_access_ttl_s: int = Field(default=24 * 3600, ge=60, le=24 * 3600)
    """No access token outlives this (the CLI refuses more)."""
    auth_failure_limit: int = Field(default=20, ge=0, le=100_000)
    """Failed authentications allowed per client address and per key id within the window
    (0 disables the limit).
    """
    auth_failure_window_s: int = Field(default=300, ge=1, le=86_400)
    """The window of the failed-authentication limit."""
    stream_recheck_s: float = Field(default=5.0, gt=0, le=300)
    """How often `/admin/stream` re-checks its token for revocation (it closes at expiry
    anyway).
    """


class HealthMonitorSettings(_Section):
    """The health monitor: evaluation cadence, rules, collectors and alert delivery."""

    interval_s: float = Field(default=15.0, gt=0)
    """Seconds between rule evaluations."""
    rules_file: str | None = None
    """A YAML rules file (default: the shipped `workers/health_monitor/rules.yaml`)."""
    collector_timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of each collector (RabbitMQ API, Redis INFO, readiness targets)."""
    sink_timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of each alert sink (events, webhook)."""
    repeat_interval_s: float = Field(default=4 * 3600.0, gt=0)
    """How often a still-firing alert is notified again."""
    stale_heartbeat_s: float = Field(default=60.0, gt=0)
    """A worker without a heartbeat for this long counts as down."""
    rabbitmq_api_url: str | None = None
    """The RabbitMQ management API, e.g. `http://rabbitmq:15672` (none: not collected)."""
    rabbitmq_api_user: str = "guest"
    """User of the management API."""
    rabbitmq_api_password: SecretStr | None = None
    """Password of the management API user."""
    collect_redis: bool = True
    """Collect Redis INFO."""
    ready_targets: dict[str, str] = {}
    """Name -> URL of a `/readyz` (or any health URL) to probe."""
    webhook_url: str | None = None
    """An Alertmanager-compatible receiver for alerts (none: events only)."""
    leader_lease_s: float = Field(default=5.0, gt=0)
    """One replica (the leader) evaluates and notifies under a Redis lease this long."""
    leader_renew_s: float = Field(default=1.0, gt=0)
    """How often the leader renews its lease; a standby takes over within about lease + renew of
    its death.
    """


class OpportunitySettings(_Section):
    """The opportunity discovery worker: venues, concurrency, budgets, caches, fees."""

    venues: tuple[str, ...] = ("bybit", "okx", "binance")
    """The venues scanned; with `market_source` `ccxt` each is a ccxt exchange id unless
    `exchanges` maps it to one (the simulator accepts any name).
    """
    quote: str = Field(default="USDT", pattern="^[A-Z0-9]{1,20}$")
    """Quote currency for bare assets (`BTC` means `BTC/USDT`)."""
    concurrency: int = Field(default=15, ge=1, le=1000)
    """Market-data fetches in flight at once."""
    default_budget_s: float = Field(default=10.0, gt=0, le=300)
    """Time budget of a scan that sets none."""
    market_cache_ttl_s: float = Field(default=2.0, ge=0)
    """How long fetched market data is reused."""
    result_cache_ttl_s: int = Field(default=30, ge=1)
    """How long a scan result is cached."""
    empty_result_ttl_s: int = Field(default=5, ge=1)
    """How long an empty scan result is cached."""
    max_symbols: int = Field(default=500, ge=1)
    """Most symbols one scan may ask for."""
    trade_size_usd: float = Field(default=1_000.0, gt=0)
    """Trade size the edges are computed for."""
    taker_fee: dict[str, float] = {}
    """Venue -> taker fee rate (default: the venue's published one)."""
    min_edge_bps: float = Field(default=1.0, ge=0)
    """Smallest edge, after fees and slippage, reported as an opportunity."""
    assumed_slippage_bps: float = Field(default=2.0, ge=0, le=100)
    """Per-fill slippage allowance where no order book is walked (all but spot arbitrage)."""
    funding_horizon_h: float = Field(default=24.0, gt=0, le=720)
    """How long a funding-arbitrage position is assumed held."""
    max_edge_bps: float = Field(default=1_000.0, gt=0)
    """Edges above this are taken as bad data and dropped."""
    max_staleness_s: float = Field(default=30.0, gt=0)
    """Market data older than this is not used."""
    market_source: Literal["simulator", "ccxt"] = "ccxt"
    """Where market data comes from: the venues' public APIs through `ccxt`, or the `simulator`."""
    exchanges: dict[str, str] = {}
    """Venue -> ccxt exchange id (default: the venue's name)."""
    exchange_urls: dict[str, str] = {}
    """Venue -> base URL replacing its API URLs (a proxy, tests)."""
    exchange_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Timeout of each exchange call."""
    simulator_latency_s: float = Field(default=0.0, ge=0)
    """Market simulator: latency of each call (demo and tests only)."""
    simulator_failing: tuple[str, ...] = ()
    """Market simulator: venues that fail (demo and tests only)."""
    simulator_seed: int = 7
    """Market simulator: random seed (demo and tests only)."""


class ReliabilitySettings(_Section):
    """Per-dependency overrides of the guard defaults (common.reliability.guard).

    Keys are dependency names (``redis``, ``llm:gpt-4o``) or kinds (``http``); values set
    GuardConfig fields (``timeout_s``, ``max_attempts``, ``deadline_s``, ``max_hold_s``,
    ``shared``...) or breaker fields prefixed ``breaker_`` (``breaker_open_s``), e.g.
    ``EVENTGUARD_RELIABILITY__DEPENDENCIES='{"redis": {"timeout_s": 0.5}}'``. Unknown field
    names stop start-up (``Guards(overrides=...)`` checks them).
    """

    dependencies: dict[str, dict[str, bool | int | float | str | None]] = {}
    """Per-dependency overrides of the guard defaults: dependency name (`redis`,
    `llm:openai:gpt-4o:openai`) or kind (`http`) -> GuardConfig fields (`timeout_s`,
    `max_attempts`, `deadline_s`, `max_hold_s`, `shared`...) or breaker fields prefixed
    `breaker_`, e.g. `{"redis": {"timeout_s": 0.5}}`; unknown names stop start-up.
    """


class ConsoleSettings(_Section):
    """`eventguard console`: the operators' web console (see docs/console.md)."""

    host: str = "127.0.0.1"
    """Address the console listens on."""
    port: int = Field(default=8090, ge=0, le=65535)
    """Port of the console (0: any free port)."""
    secure_cookie: bool = True
    """Mark the session cookie `Secure` (browsers keep Secure cookies on http://127.0.0.1 and
    localhost)."""
    scan_limit: int = Field(default=2_000, ge=100, le=100_000)
    """Quarantine records scanned to build failure groups."""
    base_url: str | None = None
    """Base of printed sign-in links (default `http://<host>:<port>`)."""
    answer_wait_s: float = Field(default=5.0, gt=0, le=60)
    """How long an action (a model switch, a silence) waits for the worker's answer before the
    page says "requested" (the request stands either way)."""


class Settings(BaseSettings):
    """Everything configurable, in one object."""

    model_config = SettingsConfigDict(
        env_prefix="EVENTGUARD_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )

    broker_url: SecretStr | None = None
    """AMQP URL with the worker's own user (secret). Required by `run`."""
    redis_url: SecretStr | None = None
    """Redis URL (secret). Required by `run`."""
    broker_user: str = "guest"
    """The AMQP user this process publishes as; RabbitMQ checks the `user_id` property against it.
    """
    redis_key_prefix: str = "eg:"
    """Namespace of every Redis key."""
    exchange: str = "eventguard.events"
    """The topic exchange of events."""
    instance: str = Field(default_factory=lambda: socket.gethostname()[:100] or "local")
    """This replica's name in heartbeats, logs and queue names: the pod name (deploy/k8s sets it
    from the downward API), else the host name.
    """
    ops_host: str = "127.0.0.1"
    """Address of the ops server (`/healthz`, `/readyz`, `/metrics`, `/admin/*`)."""
    ops_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the ops server (0: any free port)."""
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    """`json`, `console`, or `auto` (json when not on a TTY)."""
    log_level: str = "INFO"
    """Lowest level logged."""
    runtime: RuntimeSettings = RuntimeSettings()
    """How every worker consumes, retries and stops (table below)."""
    ai_fallback: AiFallbackSettings = AiFallbackSettings()
    """The AI fallback worker (table below)."""
    quarantine: QuarantineSettings = QuarantineSettings()
    """The quarantine worker (table below)."""
    security: SecuritySettings = SecuritySettings()
    """Tokens, API keys and event authorisation (table below)."""
    health_monitor: HealthMonitorSettings = HealthMonitorSettings()
    """The health monitor (table below)."""
    opportunity_discovery: OpportunitySettings = OpportunitySettings()
    """The opportunity discovery worker (table below)."""
    reliability: ReliabilitySettings = ReliabilitySettings()
    """Per-dependency guard overrides (table below)."""
    broker_urls: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    """A RabbitMQ cluster: every node's URL, tried in order, then round (comma-separated or a
    JSON list); `EVENTGUARD_BROKER_URL` stays the one-node form. See "Running on a cluster".
    """
    quorum_initial_group_size: int | None = Field(default=None, ge=1, le=99)
    """`x-quorum-initial-group-size` of every quorum queue; none: min(3, nodes) with
    `broker_urls`, left to the broker (the node count) with one URL.
    """
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = ()
    """Redis behind Sentinel: host:port of each Sentinel (instead of `EVENTGUARD_REDIS_URL`)."""
    redis_sentinel_master: str = Field(default="eventguard", min_length=1, max_length=200)
    """The master's name the Sentinels know."""
    redis_db: int = Field(default=0, ge=0, le=10_000)
    """The Redis database (with Sentinel)."""
    redis_password: SecretStr | None = None
    """The data nodes' password (with Sentinel)."""
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    """`WAIT` after the writes a message's ack depends on (idempotency outbox and done marks):
    this many replicas must have them within the timeout, else the write is retried. 0: off.
    """
    redis_wait_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    """The `WAIT` timeout."""

    @field_validator("broker_urls", "redis_sentinels", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """A comma-separated string or a JSON list, as the environment gives it."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    console: ConsoleSettings = ConsoleSettings()
    """`eventguard console`: the operators' web console (table below)."""


_MIN_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2


def require_production(settings: Settings) -> None:
    """Refuse to run for real without connection settings and secrets; name every variable."""
    problems = []
    if settings.broker_url is None and not settings.broker_urls:
        problems.append("EVENTGUARD_BROKER_URL is missing (or EVENTGUARD_BROKER_URLS)")
    if settings.redis_url is None and not settings.redis_sentinels:
        # state, API keys, sessions and token revocation live there
        problems.append(
            "EVENTGUARD_REDIS_URL is missing (the API-key and revocation store; "
            "or EVENTGUARD_REDIS_SENTINELS)"
        )
    if settings.broker_url is not None:
        parsed = urlsplit(settings.broker_url.get_secret_value())
        if not parsed.password:
            problems.append("EVENTGUARD_BROKER_URL has no password")
    if any(not urlsplit(url.get_secret_value()).password for url in settings.broker_urls):
        problems.append("EVENTGUARD_BROKER_URLS has a URL without a password")
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


def otel_environment() -> Mapping[str, str]:
    """The OpenTelemetry SDK's own ``OTEL_*`` variables (tracing: :mod:`common.telemetry`)."""
    return {name: value for name, value in os.environ.items() if name.startswith("OTEL_")}
