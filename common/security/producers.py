"""Event authorisation: which producers may publish each event type.

The producer is the AMQP ``user_id`` property, which RabbitMQ validates against the user of
the publishing connection, so it cannot be forged by a client. Each worker and each outside
producer has its own RabbitMQ user, named as below. A type with no entry is denied to
everyone; settings add producers per type (and, for local development only, users allowed
every type).

A message without a ``user_id`` is attributed to :data:`ANONYMOUS` (never to the consuming
worker's own user), and the anonymous producer may publish nothing: whatever the settings
say, it is refused every type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from common.config import Settings

__all__ = ["ANONYMOUS", "CONSOLE_USER", "DEFAULT_PRODUCERS", "WORKER_USERS", "ProducerPolicy"]

ANONYMOUS = "anonymous"  # the producer of a message without an AMQP user_id

WORKER_USERS = frozenset({"health_monitor", "quarantine", "ai_fallback", "opportunity_discovery"})
_OPERATORS = frozenset({"operator"})
CONSOLE_USER = "console"  # `eventguard console` publishes requests for its operators

DEFAULT_PRODUCERS: Mapping[str, frozenset[str]] = {
    "health.heartbeat": WORKER_USERS,
    # ai_fallback raises an alert itself when a provider refuses its credentials.
    "health.alert.raised": frozenset({"health_monitor", "ai_fallback"}),
    "health.alert.resolved": frozenset({"health_monitor", "ai_fallback"}),
    "health.silence.requested": _OPERATORS | {CONSOLE_USER},
    "health.silence.expire.requested": _OPERATORS | {CONSOLE_USER},
    "health.silence.created": frozenset({"health_monitor"}),
    "health.silence.expired": frozenset({"health_monitor"}),
    "quarantine.requested": WORKER_USERS | _OPERATORS | {CONSOLE_USER},
    "quarantine.release.requested": _OPERATORS | {CONSOLE_USER},
    "quarantine.discard.requested": _OPERATORS | {CONSOLE_USER},
    "quarantine.entry.added": frozenset({"quarantine"}),
    "quarantine.entry.released": frozenset({"quarantine"}),
    "quarantine.entry.discarded": frozenset({"quarantine"}),
    "quarantine.release.refused": frozenset({"quarantine"}),
    "ai.completion.requested": frozenset({"chat", "marketplace"}) | _OPERATORS,
    "ai.completion.succeeded": frozenset({"ai_fallback"}),
    "ai.completion.failed": frozenset({"ai_fallback"}),
    # Operators (the CLI, the console) switch a model off and on; ai_fallback answers.
    "ai.model.disable.requested": _OPERATORS | {CONSOLE_USER},
    "ai.model.enable.requested": _OPERATORS | {CONSOLE_USER},
    "ai.model.disabled": frozenset({"ai_fallback"}),
    "ai.model.enabled": frozenset({"ai_fallback"}),
    "opportunity.scan.requested": frozenset({"marketplace", "chat"}) | _OPERATORS,
    "opportunity.found": frozenset({"opportunity_discovery"}),
    "opportunity.scan.completed": frozenset({"opportunity_discovery"}),
    "marketplace.strategy.purchased": frozenset({"marketplace"}),
    "marketplace.strategy.revoked": frozenset({"marketplace"}) | _OPERATORS,
    # The audit trail: published by whichever worker served an admin call, and by the console
    # for what it asked on a signed-in person's behalf.
    "ops.audit.recorded": WORKER_USERS | {CONSOLE_USER},
}


class ProducerPolicy:
    """Decides whether a producer may publish an event type. Default deny."""

    def __init__(
        self,
        table: Mapping[str, Iterable[str]],
        *,
        any_type: Iterable[str] = (),
    ) -> None:
        self._table = {event_type: frozenset(users) for event_type, users in table.items()}
        self._any_type = frozenset(any_type)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProducerPolicy:
        """The built-in table with the settings' additions."""
        table = {t: set(users) for t, users in DEFAULT_PRODUCERS.items()}
        for event_type, users in settings.security.producers.items():
            table.setdefault(event_type, set()).update(users)
        return cls(table, any_type=settings.security.any_type_producers)

    def is_allowed(self, event_type: str, user_id: str | None) -> bool:
        """True when the AMQP user ``user_id`` may publish ``event_type`` (default deny)."""
        if not user_id or user_id == ANONYMOUS:
            return False
        if user_id in self._any_type:
            return True
        return user_id in self._table.get(event_type, frozenset())

    def producers(self, event_type: str) -> frozenset[str]:
        """The users allowed to publish ``event_type`` (besides any-type users)."""
        return self._table.get(event_type, frozenset())

    def types(self) -> frozenset[str]:
        """The event types that have a rule."""
        return frozenset(self._table)
