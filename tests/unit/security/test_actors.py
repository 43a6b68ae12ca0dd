"""Actor assertion: an event's actor is an identity asserted by a producer allowed to."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from common.config import Settings
from common.config.sections import SecuritySettings
from common.security.actors import DEFAULT_ACTOR_ASSERTERS, ActorPolicy, authorize_actor
from common.security.admission import Admission
from common.security.roles import Role
from common.security.rules import AccessRules
from common.security.tokens import TokenService
from eventguard.cli import parse_actor
from schemas.envelope import Actor, Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested
from schemas.registry import envelope_model

_POLICY = ActorPolicy.from_settings(Settings())


def _release(actor: Actor | None) -> Envelope[Any]:
    return new_event(
        "quarantine.release.requested",
        QuarantineReleaseRequested(record_id="r1"),
        source="t",
        actor=actor,
    )


def test_actor_token_is_a_schema_violation() -> None:
    """A ``token`` inside ``actor`` is refused by the envelope model: events carry no credential."""
    body = _release(Actor(subject="alice", role="admin")).model_dump(mode="json")
    tokens = TokenService(SecuritySettings(jwt_signing_key=secrets.token_urlsafe(48)), store=None)
    body["actor"]["token"] = tokens.issue("alice", "admin")
    with pytest.raises(ValidationError, match=r"actor\.token"):
        envelope_model("quarantine.release.requested").model_validate(body)
    with pytest.raises(ValidationError):
        Actor.model_validate({"subject": "a", "role": "admin", "token": "x"})


def test_actor_role_must_be_a_known_role() -> None:
    """An unknown role in an actor is a schema violation, never promoted or demoted."""
    with pytest.raises(ValidationError):
        Actor.model_validate({"subject": "a", "role": "superuser"})
    assert Actor(subject="a", role="user", tenant="acme").tenant == "acme"


def test_the_operators_tool_may_assert_up_to_admin_on_operator_types() -> None:
    """The operators' tool user asserts operators and admins on the types operators publish."""
    admin = Actor(subject="root", role="admin")
    decision = authorize_actor(
        "quarantine.release.requested", admin, "operator", _POLICY, AccessRules()
    )
    assert decision.allowed


@pytest.mark.parametrize(
    ("event_type", "role", "producer", "reason"),
    [
        ("quarantine.release.requested", "operator", "chat", "actor_not_allowed"),
        ("quarantine.release.requested", "admin", "marketplace", "actor_not_allowed"),
        ("quarantine.release.requested", "user", "operator", "insufficient_role"),
        ("quarantine.requested", "operator", "ai_fallback", "actor_not_allowed"),
        ("ai.completion.requested", "user", "anonymous", "actor_not_allowed"),
    ],
)
def test_actor_refusals(event_type: str, role: str, producer: str, reason: str) -> None:
    """A producer not trusted to assert actors on the type, or a role below the type's rule."""
    actor = Actor.model_validate({"subject": "alice", "role": role})
    decision = authorize_actor(event_type, actor, producer, _POLICY, AccessRules())
    assert (decision.allowed, decision.reason) == (False, reason)


def test_workers_relay_actors_only_on_the_types_they_produce() -> None:
    """A worker carries the requester's actor on its results; request types are not its own."""
    assert _POLICY.highest("ai.completion.succeeded", "ai_fallback") is Role.ADMIN
    assert _POLICY.highest("quarantine.entry.added", "quarantine") is Role.ADMIN
    assert _POLICY.highest("ai.completion.succeeded", "quarantine") is None
    assert _POLICY.highest("ai.completion.requested", "ai_fallback") is None
    outside = {"chat", "marketplace", "anonymous", "guest"}
    assert not any(outside & set(users) for users in DEFAULT_ACTOR_ASSERTERS.values())


def test_settings_make_a_producer_an_ingress_with_a_role_cap() -> None:
    """A configured ingress asserts actors up to its cap; above it the actor is refused."""
    settings = Settings(
        security=SecuritySettings(actor_asserters={"ai.completion.requested": {"chat": "user"}})
    )
    policy = ActorPolicy.from_settings(settings)
    user = Actor(subject="alice", role="user")
    admin = Actor(subject="alice", role="admin")
    rules = AccessRules()
    assert authorize_actor("ai.completion.requested", user, "chat", policy, rules).allowed
    refused = authorize_actor("ai.completion.requested", admin, "chat", policy, rules)
    assert refused.reason == "actor_role_too_high"


def test_no_actor_is_the_producer_acting_for_itself() -> None:
    """Without an actor nothing is asserted: the producer policy alone decides."""
    assert authorize_actor("ai.completion.requested", None, "chat", _POLICY, AccessRules()).allowed


def test_admission_refuses_unauthorised_producers_and_actors_with_a_reason() -> None:
    """Admission answers (unauthorized, why) for a bad producer or a bad actor, None otherwise."""
    admission = Admission.from_settings(Settings())
    operator = Actor(subject="alice", role="operator")
    assert admission(_release(operator), "operator") is None
    refused = admission(_release(operator), "chat")
    assert refused is not None
    assert refused[0] == "unauthorized"
    assert "may not publish" in refused[1]
    settings = Settings(
        security=SecuritySettings(producers={"quarantine.release.requested": frozenset({"chat"})})
    )
    refused = Admission.from_settings(settings)(_release(operator), "chat")
    assert refused is not None
    assert "actor_not_allowed" in refused[1]
    assert admission(_release(None), "anonymous") is not None


def test_the_cli_asserts_an_actor_without_a_credential() -> None:
    """``eventguard publish --actor alice:operator[:acme]``: an identity, bad roles refused."""
    assert parse_actor("alice:operator:acme") == Actor(
        subject="alice", role="operator", tenant="acme"
    )
    assert parse_actor("bob:user") == Actor(subject="bob", role="user")
    assert parse_actor(None) is None
    with pytest.raises(ValueError, match="role"):
        parse_actor("mallory:root")


@pytest.mark.parametrize(
    "event_type",
    [
        "ai.model.disable.requested",
        "ai.model.enable.requested",
        "health.silence.requested",
        "health.silence.expire.requested",
    ],
)
def test_the_console_and_the_cli_ask_for_operator_levers_for_operators_only(
    event_type: str,
) -> None:
    """Model switches and silences: console and operator assert operators and admins; a viewer
    is refused by the operator act rule; no other producer may assert anyone on them."""
    rules = AccessRules()
    for producer in ("console", "operator"):
        for role, allowed in (("operator", True), ("admin", True), ("user", False)):
            actor = Actor.model_validate({"subject": "alice", "role": role})
            decision = authorize_actor(event_type, actor, producer, _POLICY, rules)
            assert decision.allowed is allowed, (producer, role)
    chat = authorize_actor(event_type, Actor(subject="a", role="operator"), "chat", _POLICY, rules)
    assert chat.reason == "actor_not_allowed"
