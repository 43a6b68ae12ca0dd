"""Settings: read once from the environment (prefix ``EVENTGUARD_``), then frozen and passed down.

Nothing else in EventGuard reads ``os.environ``. Secrets are :class:`~pydantic.SecretStr` and
have no defaults: ``eventguard run`` refuses to start without them (see :func:`require_production`),
while ``eventguard demo`` fills them with throwaway values it generates and says so.

Nested sections are set with a double underscore, e.g. ``EVENTGUARD_RUNTIME__PREFETCH=64``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError

__all__ = ["RuntimeSettings", "Settings", "require_production"]


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
    idempotency_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    drain_timeout_s: float = Field(default=20.0, gt=0)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)


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
    instance: str = "local"
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=8080, ge=0, le=65535)
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
    runtime: RuntimeSettings = RuntimeSettings()


def require_production(settings: Settings) -> None:
    """Refuse to run for real without the connection settings; name every missing variable."""
    missing = [
        f"EVENTGUARD_{name.upper()}"
        for name in ("broker_url", "redis_url")
        if getattr(settings, name) is None
    ]
    if missing:
        raise ConfigError(f"missing required settings: {', '.join(missing)}")
