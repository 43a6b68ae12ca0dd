"""Admission: whether an event may reach its handler, decided by the pipeline (after the
payload is validated, before the idempotency claim).

In order, the first refusal wins and the event is dead-lettered with its reason:

1. ``producer_blocked``: the quarantine blocks the producer (the worker's
   :class:`~common.quarantine_view.QuarantineView`, kind ``producer``), for as long as the
   block lasts (the block broadcasts themselves excepted);
2. ``unauthorized``: the producer may not publish the type (:class:`ProducerPolicy`); the
   ``anonymous`` producer (a message without an AMQP ``user_id``) never may;
3. ``unauthorized``: the event's actor is not one this producer may assert, or lacks the role
   the type's ``act`` rule requires (:func:`~common.security.actors.authorize_actor`).

The admitted producer is kept for the handler: :func:`requester` answers who asked, from
the verified actor, or else the producer itself. Handlers use it, never a payload's word.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.bus.headers import DeadReason
from common.bus.pipeline import Authorizer
from common.config import Settings
from common.security.actors import ActorPolicy, authorize_actor
from common.security.producers import ANONYMOUS, ProducerPolicy
from common.security.roles import Role, parse_role
from common.security.rules import AccessRules
from schemas.envelope import Envelope

__all__ = ["ANONYMOUS", "Admission", "Requester", "admit_unblocked", "requester"]

_producer: contextvars.ContextVar[str] = contextvars.ContextVar("eventguard_producer")
# The broadcasts that carry the blocks are never refused as blocked: a block of the quarantine
# worker's own user must not stop its release from reaching the workers.
_BLOCK_CHANNEL = frozenset({"quarantine.entry.added", "quarantine.entry.released"})


@dataclass(frozen=True)
class Requester:
    """Who asked for an event: the verified actor, or else the producer acting for itself."""

    subject: str
    role: Role
    producer: str
    tenant: str | None = None
    person: bool = False  # True when an actor was asserted, False for the producer itself

    @property
    def key(self) -> str:
        """A stable name for budgets: ``actor:<subject>``, ``actor:<tenant>/<subject>`` or
        ``producer:<user>``."""
        if not self.person:
            return f"producer:{self.subject}"
        return f"actor:{self.tenant}/{self.subject}" if self.tenant else f"actor:{self.subject}"


def requester(event: Envelope[Any]) -> Requester:
    """Who asked for ``event``, as the pipeline admitted it (call it inside a handler)."""
    producer = _producer.get(ANONYMOUS)
    if event.actor is not None:
        actor = event.actor
        return Requester(actor.subject, parse_role(actor.role), producer, actor.tenant, True)
    return Requester(producer, Role.SERVICE, producer)


class Admission:
    """The producer policy, the actor-assertion policy and the event rules, as an Authorizer."""

    def __init__(
        self,
        producers: ProducerPolicy,
        actors: ActorPolicy,
        rules: AccessRules | None = None,
    ) -> None:
        self.producers = producers
        self.actors = actors
        self.rules = rules if rules is not None else AccessRules()

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        """The built-in policies with the settings' additions."""
        return cls(ProducerPolicy.from_settings(settings), ActorPolicy.from_settings(settings))

    def __call__(self, event: Envelope[Any], producer: str) -> tuple[DeadReason, str] | None:
        """None when admitted, else ``("unauthorized", why)``."""
        if not self.producers.is_allowed(event.type, producer):
            return "unauthorized", f"producer {producer!r} may not publish {event.type}"
        decision = authorize_actor(event.type, event.actor, producer, self.actors, self.rules)
        if not decision.allowed:
            role = event.actor.role if event.actor is not None else ""
            return "unauthorized", (
                f"actor {role!r} refused on {event.type} from {producer!r}: {decision.reason}"
            )
        return None


def admit_unblocked(authorize: Authorizer, blocked: Callable[[str], bool]) -> Authorizer:
    """``authorize`` behind the quarantine's producer blocks; remembers the admitted producer
    for :func:`requester`."""

    def admit(event: Envelope[Any], producer: str) -> tuple[DeadReason, str] | None:
        if event.type not in _BLOCK_CHANNEL and blocked(producer):
            return "producer_blocked", f"producer {producer!r} is blocked by the quarantine"
        refused = authorize(event, producer)
        if refused is None:
            _producer.set(producer)
        return refused

    return admit
