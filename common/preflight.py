"""Start-up self-checks: what would make a worker start and then fail, refused before it starts,
each as one line naming the setting to change.

* the AMQP user in ``EVENTGUARD_BROKER_URL`` differs from ``EVENTGUARD_BROKER_USER`` (RabbitMQ
  closes the channel of every publish whose ``user_id`` is not the connection's user);
* ``EVENTGUARD_BROKER_USER`` may not publish a worker's outputs under the producer policy (every
  heartbeat and answer would be dead-lettered ``unauthorized`` while the worker says ready);
* the ops port is taken (a second worker on one host would consume, then die binding it).

Commands check only what they use: ``run`` needs everything (:func:`require_production`),
``publish`` and ``topology apply`` only the broker (:func:`require_broker`).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from common.config import Settings
from common.errors import ConfigError
from common.security.producers import DEFAULT_PRODUCERS, ProducerPolicy

__all__ = [
    "check_broker_user",
    "check_ops_port",
    "check_outputs",
    "require_broker",
    "url_user",
    "url_vhost",
    "worker_outputs",
]


def url_user(url: str) -> str:
    """The user an AMQP URL logs in as (RabbitMQ's default, ``guest``, when it names none)."""
    parsed = urlsplit(url)
    return unquote(parsed.username) if parsed.username else "guest"


def url_vhost(url: str) -> str:
    """The vhost an AMQP URL names (``/`` when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def require_broker(settings: Settings) -> str:
    """The broker URL, checked against ``EVENTGUARD_BROKER_USER``; for commands that only
    publish or declare (no Redis, no signing key)."""
    if settings.broker_url is None:
        raise ConfigError("EVENTGUARD_BROKER_URL is missing")
    check_broker_user(settings)
    return settings.broker_url.get_secret_value()


def check_broker_user(settings: Settings) -> None:
    """Refuse a URL whose user is not ``EVENTGUARD_BROKER_USER``."""
    if settings.broker_url is None:
        return
    user = url_user(settings.broker_url.get_secret_value())
    if user != settings.broker_user:
        raise ConfigError(
            f"EVENTGUARD_BROKER_USER is {settings.broker_user!r} but EVENTGUARD_BROKER_URL logs "
            f"in as {user!r}; RabbitMQ refuses a user_id that is not the connection's user: set "
            f"EVENTGUARD_BROKER_USER={user}"
        )


def worker_outputs(worker: str) -> list[str]:
    """The event types ``worker`` publishes (those the built-in producer table grants it)."""
    return sorted(t for t, users in DEFAULT_PRODUCERS.items() if worker in users)


def check_outputs(settings: Settings, workers: Iterable[str], policy: ProducerPolicy) -> None:
    """Refuse to run ``workers`` as a user the producer policy does not let publish their
    outputs."""
    user = settings.broker_user
    for worker in workers:
        refused = [t for t in worker_outputs(worker) if not policy.is_allowed(t, user)]
        if refused:
            raise ConfigError(
                f"EVENTGUARD_BROKER_USER {user!r} may not publish what {worker} publishes "
                f"({', '.join(refused)}); every such event would be dead-lettered as "
                f"unauthorized: run {worker} as its own RabbitMQ user "
                f"(EVENTGUARD_BROKER_USER={worker}, see `eventguard setup local`) or grant "
                f"{user!r} those types in EVENTGUARD_SECURITY__PRODUCERS"
            )


def check_ops_port(host: str, port: int) -> None:
    """Refuse an ops port another process listens on (port 0 always binds)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise ConfigError(f"EVENTGUARD_OPS_HOST {host!r}: {error.strerror}") from error
            raise ConfigError(
                f"EVENTGUARD_OPS_PORT {port} on {host} is in use (another worker on this "
                "host?): give each process its own EVENTGUARD_OPS_PORT, or --ops-port 0 to "
                "pick a free one"
            ) from error
