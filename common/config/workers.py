"""The settings section of each worker (:class:`common.config.Settings` holds one of each)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from common.config.sections import Section

__all__ = [
    "AiFallbackSettings",
    "AiModelSettings",
    "HealthMonitorSettings",
    "OpportunitySettings",
    "QuarantineSettings",
]


class AiModelSettings(Section):
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


class AiFallbackSettings(Section):
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


class QuarantineSettings(Section):
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


class HealthMonitorSettings(Section):
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


class OpportunitySettings(Section):
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
