"""The settings sections every process shares: the runtime, reliability overrides, security and
the console (:class:`common.config.Settings` holds one of each)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "ConsoleSettings",
    "ReliabilitySettings",
    "RuntimeSettings",
    "Section",
    "SecuritySettings",
    "VerificationKey",
]


class Section(BaseModel):
    """A frozen settings section. Each field's docstring is its description: the README's
    configuration reference is generated from them (eventguard/config_reference.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class RuntimeSettings(Section):
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


class ReliabilitySettings(Section):
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


class ConsoleSettings(Section):
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


class VerificationKey(Section):
    """A key that verifies tokens signed under ``kid`` (old keys stay here during rotation)."""

    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]
    """The JWT algorithm this key verifies."""
    key: SecretStr
    """The HMAC secret, or a PEM public key for RS256/ES256/EdDSA."""


class SecuritySettings(Section):
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
