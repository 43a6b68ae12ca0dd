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
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.config.sections import (
    ConsoleSettings,
    ReliabilitySettings,
    RuntimeSettings,
    SecuritySettings,
)
from common.config.workers import (
    AiFallbackSettings,
    HealthMonitorSettings,
    OpportunitySettings,
    QuarantineSettings,
)
from common.errors import ConfigError

__all__ = ["Settings", "otel_environment", "require_production"]


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
