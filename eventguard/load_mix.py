"""What ``eventguard load`` publishes: a :class:`Mix` of every consumable event type, valid or
poison (malformed JSON, schema violations, unknown types, rejected by the handler), with a share
of deliberate duplicates, and the operator that release requests are published for."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.bus.message import OutgoingMessage
from common.bus.publisher import to_message
from common.bus.topology import (
    EVENTS_EXCHANGE,
)
from common.config import Settings
from common.errors import ConfigError
from common.security.actors import ActorPolicy
from common.security.roles import Role
from eventguard.load_ledger import Sent
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Actor, Envelope, Payload, new_event
from schemas.health import AlertRaised, Heartbeat
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import ScanRequested
from schemas.ops import AuditRecorded
from schemas.quarantine import (
    QuarantineDiscardRequested,
    QuarantineEntryAdded,
    QuarantineEntryReleased,
    QuarantineReleaseRequested,
    QuarantineRequested,
)

__all__ = ["ANSWERS", "POISON_KINDS", "Mix", "Operator", "operator_for"]

# Request type -> the event types that answer it (one of them, once, per request).
ANSWERS: dict[str, frozenset[str]] = {
    "quarantine.requested": frozenset({"quarantine.entry.added"}),
    "quarantine.release.requested": frozenset({"quarantine.release.refused"}),
    "quarantine.discard.requested": frozenset({"quarantine.release.refused"}),
    "health.alert.raised": frozenset({"quarantine.entry.added"}),
    "ai.completion.requested": frozenset({"ai.completion.succeeded", "ai.completion.failed"}),
    "opportunity.scan.requested": frozenset({"opportunity.scan.completed"}),
}
POISON_KINDS = ("invalid_json", "schema_violation", "unknown_type", "handler_rejected")
# Dead letters of these types are recorded by quarantine but not announced (an announcement
# could loop), so the ledger could not see them: poison is never made from them.
_UNANNOUNCED = frozenset({"quarantine.entry.added", "quarantine.entry.released"})
# Requests the quarantine worker acts on only for an operator's verified token.
_NEEDS_OPERATOR = frozenset({"quarantine.release.requested", "quarantine.discard.requested"})
# Operators' levers and their answers are never part of a load: they would switch models off or
# silence alerts on the very fleet being measured.
_LEVERS = frozenset(
    f"{domain}.{what}"
    for domain, whats in (
        ("ai.model", ("disable.requested", "enable.requested", "disabled", "enabled")),
        ("health.silence", ("requested", "expire.requested", "created", "expired")),
    )
    for what in whats
)


def _uid() -> str:
    return uuid.uuid4().hex


def _valid(event_type: str, operator: Actor | None, scan_user: str | None = None) -> Envelope[Any]:
    """A valid event of ``event_type`` that its worker handles cheaply (scans for
    ``scan_user``, when given, run for real; otherwise they are refused: nothing owned)."""
    now = datetime.now(UTC)
    actor: Actor | None = None
    data: Payload
    match event_type:
        case "health.heartbeat":
            data = Heartbeat(worker="load", instance="load", started_at=now, uptime_s=1.0)
        case "health.alert.raised":
            data = AlertRaised(
                fingerprint=_uid(),
                rule="LoadProbe",
                severity="critical",
                started_at=now,
                entity_kind="producer",
                entity_id=f"load-{_uid()}",
                quarantine=True,
            )
        case "quarantine.requested":
            data = QuarantineRequested(
                kind="producer",
                entity_id=f"load-{_uid()}",
                reason="load",
                requested_by="load",
                ttl_s=600,
            )
        case "quarantine.release.requested" | "quarantine.discard.requested":
            model = (
                QuarantineReleaseRequested
                if event_type == "quarantine.release.requested"
                else QuarantineDiscardRequested
            )
            data = model(record_id=f"load-{_uid()}")  # an unknown record: refused
            actor = operator
        case "quarantine.entry.added":
            data = QuarantineEntryAdded(
                record_id=_uid(), kind="producer", entity_id=f"load-{_uid()}", reason="load"
            )
        case "quarantine.entry.released":
            data = QuarantineEntryReleased(
                record_id=_uid(), kind="producer", entity_id=f"load-{_uid()}", released_by="load"
            )
        case "ai.completion.requested":
            data = CompletionRequested(
                messages=[Message(role="user", content=f"load {_uid()}")], max_tokens=16
            )
        case "opportunity.scan.requested":
            data = ScanRequested(user_id=scan_user or f"load-nobody-{_uid()[:8]}")
        case "marketplace.strategy.purchased":
            data = StrategyPurchased(user_id=f"load-{_uid()[:8]}", strategy="spot_arbitrage")
        case "marketplace.strategy.revoked":
            data = StrategyRevoked(user_id=f"load-{_uid()[:8]}", strategy="spot_arbitrage")
        case "ops.audit.recorded":
            data = AuditRecorded(
                subject="load",
                role="operator",
                auth="token",
                action="load.probe",
                method="POST",
                route="/admin/load",
                outcome="ok",
                status=200,
                at=now,
                worker="load",
            )
        case _:
            raise ValueError(f"the load generator cannot make {event_type}")
    return new_event(event_type, data, source="load", actor=actor)


@dataclass
class Mix:
    """Which types to publish and what share of poison and duplicates."""

    consumers: Mapping[str, str]  # event type -> the worker consuming it
    poison_share: float = 0.2
    duplicate_share: float = 0.05
    operator: Operator | None = None  # needed for valid release requests
    seed: int = 1
    scan_user: str | None = None  # scans for a user owning strategies reach the market source

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - a load mix, not cryptography
        self.types = sorted(
            t
            for t in self.consumers
            if (t not in _NEEDS_OPERATOR or self.operator is not None) and t not in _LEVERS
        )
        if not self.types:
            raise ConfigError("nothing to publish: no consumable type selected")
        self.poison_bases = [t for t in self.types if t not in _UNANNOUNCED]
        self.rejectable = [
            t
            for t in ("quarantine.requested", "quarantine.release.requested")
            if t in self.consumers
        ]

    def next(self) -> tuple[str, Sent, OutgoingMessage]:
        """One message: its id, what must come of it, and the message."""
        if self.poison_bases and self.rng.random() < self.poison_share:
            return self._poison(self.rng.choice(self.poison_bases))
        event_type = self.rng.choice(self.types)
        operator = self.operator.actor() if self.operator is not None else None
        event = _valid(event_type, operator, self.scan_user)
        answers = ANSWERS.get(event_type, frozenset())
        sent = (
            Sent(event_type, "valid", "result", answers=answers)
            if answers
            else Sent(event_type, "valid", "done", worker=self.consumers[event_type])
        )
        return event.id, sent, to_message(event, user_id=None)

    def _poison(self, base: str) -> tuple[str, Sent, OutgoingMessage]:
        kinds = [k for k in POISON_KINDS if k != "handler_rejected" or self.rejectable]
        kind = self.rng.choice(kinds)
        if kind == "handler_rejected":
            base = self.rng.choice(self.rejectable)
            event: Envelope[Any] = (
                new_event(  # valid, but a permanent block without an admin actor is refused
                    base,
                    QuarantineRequested(
                        kind="producer",
                        entity_id=_uid(),
                        reason="load",
                        requested_by="load",
                        permanent=True,
                    ),
                    source="load",
                )
                if base == "quarantine.requested"
                else new_event(  # no actor: refused as unauthorized
                    base, QuarantineReleaseRequested(record_id=_uid()), source="load"
                )
            )
            return event.id, Sent(base, kind, "quarantine"), to_message(event, user_id=None)
        event = _valid(base, None)
        body = event.model_dump_json()
        message_type = base
        event_id = event.id
        if kind == "invalid_json":
            event_id = _uid()  # the body carries no readable id
            raw = body[: len(body) // 2].encode()
        elif kind == "schema_violation":
            raw = body.replace('"data":{', '"data":{"surplus":1,', 1).encode()
        else:
            message_type = "load.unknown_type"  # routed as ``base``, typed as nothing known
            raw = body.replace(f'"type":"{base}"', f'"type":"{message_type}"', 1).encode()
        message = OutgoingMessage(
            body=raw,
            routing_key=base,
            exchange=EVENTS_EXCHANGE,
            message_id=event_id,
            type=message_type,
        )
        return event_id, Sent(base, kind, "quarantine"), message


class Operator:
    """The operator on whose behalf release requests are published: an identity that the load
    generator's AMQP user asserts (the actor policy must let it), never a credential."""

    def actor(self) -> Actor:
        """The load operator."""
        return Actor(subject="load-operator", role="operator")


def operator_for(settings: Settings) -> Operator | None:
    """The load operator, when the actor policy lets ``broker_user`` assert an operator on
    release requests (otherwise those would be dead-lettered as unauthorized)."""
    policy = ActorPolicy.from_settings(settings)
    if not policy.may_assert("quarantine.release.requested", settings.broker_user, Role.OPERATOR):
        return None
    return Operator()
