"""Which RabbitMQ nodes a process talks to, and how widely its quorum queues replicate.

``EVENTGUARD_BROKER_URLS`` (a cluster, every node) wins over ``EVENTGUARD_BROKER_URL`` (one
node). A cluster's quorum queues get ``x-quorum-initial-group-size`` = min(3, nodes) unless
``EVENTGUARD_QUORUM_INITIAL_GROUP_SIZE`` says otherwise; on one node it is left unset, as
before. Every process of a deployment must agree on it: RabbitMQ refuses a re-declaration with
different arguments.
"""

from __future__ import annotations

from common.config import Settings
from common.errors import ConfigError

__all__ = ["broker_urls", "quorum_group_size"]

_DEFAULT_REPLICAS = 3


def broker_urls(settings: Settings) -> list[str]:
    """Every node's URL, in the order to try them (``ConfigError`` when none is set)."""
    if settings.broker_urls:
        return [url.get_secret_value() for url in settings.broker_urls]
    if settings.broker_url is not None:
        return [settings.broker_url.get_secret_value()]
    raise ConfigError("EVENTGUARD_BROKER_URL is missing (or EVENTGUARD_BROKER_URLS)")


def quorum_group_size(settings: Settings) -> int | None:
    """The replicas of each quorum queue, or None for the broker's own default."""
    if settings.quorum_initial_group_size is not None:
        return settings.quorum_initial_group_size
    if len(settings.broker_urls) > 1:
        return min(_DEFAULT_REPLICAS, len(settings.broker_urls))
    return None
