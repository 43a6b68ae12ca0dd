"""RabbitMQ definitions (vhost, exchanges, quorum queues, bindings, users, permissions) for the
whole fleet, built from the same topology ``eventguard topology apply`` declares.

``deploy/rabbitmq/definitions.json`` is this output; a test keeps them equal. Users carry no
password hash: passwords are set at deploy time from secrets (see deploy/README.md).
"""

from __future__ import annotations

import re
from typing import Any

from common.bus.topology import worker_topology
from common.config import Settings
from common.security.producers import CONSOLE_USER, DEFAULT_PRODUCERS, WORKER_USERS
from workers.registry import consumed_types

__all__ = ["PRODUCER_USERS", "rabbitmq_definitions"]

VHOST = "/"
PRODUCER_USERS = sorted(
    {user for users in DEFAULT_PRODUCERS.values() for user in users} - WORKER_USERS
)
_SHARED = [
    "eventguard.events",
    "eventguard.dlx",
    "eventguard.unrouted",
    "eventguard.dead",
    "eventguard.dead.unrecorded",
]


def _any(names: list[str]) -> str:
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def _worker_permissions(worker: str) -> dict[str, str]:
    own = re.escape(f"eventguard.{worker}") + r"(\..*)?"
    shared = "|".join(re.escape(n) for n in _SHARED)
    return {
        "user": worker,
        "vhost": VHOST,
        # Declares its own queues and the shared exchanges and queues (idempotent).
        "configure": f"^({own}|{shared})$",
        # Publishes events, dead letters, and retry copies through the default exchange.
        "write": f"^({own}|{shared}|amq\\.default)$",
        # Consumes its own queues; binds from the shared exchanges; quarantine reads the dead.
        "read": f"^({own}|{shared}|amq\\.rabbitmq\\.reply-to)$",
    }


def _console_permissions() -> dict[str, str]:
    own = re.escape("eventguard.console.") + ".+"
    return {
        "user": CONSOLE_USER,
        "vhost": VHOST,
        # Declares only its own view queue, eventguard.console.<instance> (x-expires).
        "configure": f"^{own}$",
        # Publishes events; binds its queue (write on the queue, read on the exchange).
        "write": f"^(eventguard\\.events|{own})$",
        "read": f"^(eventguard\\.events|{own}|amq\\.rabbitmq\\.reply-to)$",
    }


def rabbitmq_definitions(settings: Settings | None = None) -> dict[str, Any]:
    """The definitions document RabbitMQ loads at boot."""
    settings = settings or Settings()
    exchanges: dict[str, dict[str, Any]] = {}
    queues: dict[str, dict[str, Any]] = {}
    bindings: list[dict[str, Any]] = []
    for worker, types in sorted(consumed_types().items()):
        topology = worker_topology(worker, types, settings)
        for exchange in topology.exchanges:
            exchanges[exchange.name] = {
                "name": exchange.name,
                "vhost": VHOST,
                "type": exchange.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {"alternate-exchange": exchange.alternate}
                if exchange.alternate
                else {},
            }
        for queue in topology.queues:
            queues[queue.name] = {
                "name": queue.name,
                "vhost": VHOST,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(queue.arguments),
            }
            for source, key in queue.bindings:
                binding = {
                    "source": source,
                    "vhost": VHOST,
                    "destination": queue.name,
                    "destination_type": "queue",
                    "routing_key": key,
                    "arguments": {},
                }
                if binding not in bindings:
                    bindings.append(binding)
    workers = sorted(consumed_types())
    users = [
        {
            "name": name,
            # No password is committed: each is set at deploy time from a secret.
            "password_hash": "",  # nosec B105
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }
        for name in [*workers, *PRODUCER_USERS]
    ]
    permissions = [_worker_permissions(w) for w in workers] + [
        _console_permissions() if name == CONSOLE_USER else {
            "user": name,
            "vhost": VHOST,
            "configure": "^$",
            "write": _any(["eventguard.events"]),
            "read": _any(["amq.rabbitmq.reply-to"]),
        }
        for name in PRODUCER_USERS
    ]
    return {
        "rabbit_version": "3.13.0",
        "vhosts": [{"name": VHOST}],
        "users": users,
        "permissions": permissions,
        "exchanges": sorted(exchanges.values(), key=lambda e: e["name"]),
        "queues": sorted(queues.values(), key=lambda q: q["name"]),
        "bindings": sorted(
            bindings, key=lambda b: (b["destination"], b["source"], b["routing_key"])
        ),
        "policies": [],
    }
