"""Actor assertion: who may say, in an event, on whose behalf it runs.

An event never carries a credential. Its ``actor`` (subject, role, optional tenant) is an
identity *asserted by the producer*: an ingress that verified the person's token itself. A
consumer trusts it because RabbitMQ validated the producer's AMQP ``user_id`` and this policy
lets that producer assert actors for the event type, up to a highest role. On top, the type's
``act`` rule (:data:`common.security.rules.EVENT_RULES`) names the least role the actor must
hold for a worker to act on its behalf.

The built-in table (:data:`DEFAULT_ACTOR_ASSERTERS`):

* the operators' tool user ``operator`` may assert any role up to ``admin`` on the types
  operators publish (the CLI authenticates the person first);
* the console's user ``console`` may assert any role up to ``admin`` on the operator requests
  it publishes: quarantine, AI model switches, silences (it signs the person in first:
  docs/console.md);
* each worker may relay, on the result and notification types it produces, the actor of the
  event that caused them (``new_event(causation=...)`` copies it), up to ``admin``;
* nobody else: an outside producer asserts actors only once the settings name it
  (``EVENTGUARD_SECURITY__ACTOR_ASSERTERS``), and users in ``any_type_producers`` (the demo)
  may assert anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from common.config import Settings
from common.errors import Reject
from common.security.producers import CONSOLE_USER, DEFAULT_PRODUCERS, WORKER_USERS
from common.security.roles import Role, parse_role, satisfies
from common.security.rules import EVENT_RULES, AccessRules, Decision
from schemas.envelope import Actor

__all__ = ["DEFAULT_ACTOR_ASSERTERS", "ActorPolicy", "authorize_actor", "require_role"]

_OPERATOR_REQUESTS = (
    "quarantine.requested",
    "quarantine.release.requested",
    "quarantine.discard.requested",
    "ai.model.disable.requested",
    "ai.model.enable.requested",
    "health.silence.requested",
    "health.silence.expire.requested",
)
_OPERATOR_TYPES = (
    *_OPERATOR_REQUESTS,
    "ai.completion.requested",
    "opportunity.scan.requested",
    "marketplace.strategy.revoked",
)
_CONSOLE_TYPES = _OPERATOR_REQUESTS


def _defaults() -> dict[str, dict[str, Role]]:
    table: dict[str, dict[str, Role]] = {t: {"operator": Role.ADMIN} for t in _OPERATOR_TYPES}
    for event_type in _CONSOLE_TYPES:
        table[event_type][CONSOLE_USER] = Role.ADMIN
    for event_type, users in DEFAULT_PRODUCERS.items():
        if (event_type, "act") in EVENT_RULES:
            continue  # a request type: workers never assert a person on one
        for user in sorted(users & WORKER_USERS):
            table.setdefault(event_type, {})[user] = Role.ADMIN
    return table


DEFAULT_ACTOR_ASSERTERS: Mapping[str, Mapping[str, Role]] = _defaults()


class ActorPolicy:
    """Decides whether a producer may assert an actor of some role on an event type."""

    def __init__(
        self, table: Mapping[str, Mapping[str, Role]], *, any_type: Iterable[str] = ()
    ) -> None:
        self._table = {t: dict(users) for t, users in table.items()}
        self._any_type = frozenset(any_type)

    @classmethod
    def from_settings(cls, settings: Settings) -> ActorPolicy:
        """The built-in table with the settings' additions (a setting replaces a built-in cap)."""
        table = {t: dict(users) for t, users in DEFAULT_ACTOR_ASSERTERS.items()}
        for event_type, users in settings.security.actor_asserters.items():
            for user, role in users.items():
                table.setdefault(event_type, {})[user] = parse_role(role)
        return cls(table, any_type=settings.security.any_type_producers)

    def highest(self, event_type: str, producer: str) -> Role | None:
        """The highest role ``producer`` may assert on ``event_type``, or None (may not)."""
        if producer in self._any_type:
            return Role.ADMIN
        return self._table.get(event_type, {}).get(producer)

    def may_assert(self, event_type: str, producer: str, role: Role) -> bool:
        """True when ``producer`` may state an actor of ``role`` on ``event_type``."""
        highest = self.highest(event_type, producer)
        return highest is not None and satisfies(highest, role)


def authorize_actor(
    event_type: str, actor: Actor | None, producer: str, asserters: ActorPolicy, rules: AccessRules
) -> Decision:
    """Whether a worker may act for ``actor`` on ``event_type`` published by ``producer``.

    No actor: allowed (the producer acts for itself; the producer policy already admitted it).
    Otherwise refused with reason ``actor_not_allowed`` (the producer may not assert actors on
    this type), ``actor_role_too_high`` (not that role) or ``insufficient_role`` (the type's
    ``act`` rule wants more). A type without an ``act`` rule (results, notifications) only
    carries the actor along: the assertion policy alone decides.
    """
    if actor is None:
        return Decision(True)
    role = parse_role(actor.role)
    highest = asserters.highest(event_type, producer)
    if highest is None:
        return Decision(False, "actor_not_allowed")
    if not satisfies(highest, role):
        return Decision(False, "actor_role_too_high", highest)
    decision = rules.check_event(event_type, "act", role)
    return Decision(True) if decision.reason == "no_rule" else decision


def require_role(actor: Actor | None, allowed: frozenset[str], *, action: str) -> str:
    """The acting subject when ``actor`` holds one of ``allowed``; else Reject (unauthorized).

    A handler of a request type calls it: admission let an event without an actor through (the
    producer acts for itself), but an operator's request must name the operator."""
    if actor is None:
        raise Reject(f"{action} needs an actor with role {sorted(allowed)}", reason="unauthorized")
    if actor.role not in allowed:
        raise Reject(
            f"{action} needs role {' or '.join(sorted(allowed))}, got {actor.role!r}",
            reason="unauthorized",
        )
    return actor.subject
