"""The load generator's operator: an asserted identity, never a token."""

from __future__ import annotations

from common.config import Settings
from common.config.sections import SecuritySettings
from eventguard.load_mix import Mix, operator_for


def test_release_requests_carry_the_operator_without_a_credential() -> None:
    """Valid release requests name the load operator; the body carries no token field."""
    operator = operator_for(Settings(broker_user="operator"))
    assert operator is not None
    mix = Mix(
        {"quarantine.release.requested": "quarantine"},
        poison_share=0.0,
        duplicate_share=0.0,
        operator=operator,
    )
    _, sent, message = mix.next()
    assert sent.kind == "valid"
    assert b'"subject":"load-operator"' in message.body
    assert b"token" not in message.body


def test_only_a_user_allowed_to_assert_operators_gets_an_operator() -> None:
    """A broker user the actor policy does not trust leaves release requests out of the mix."""
    assert operator_for(Settings(broker_user="chat")) is None
    dev = Settings(
        broker_user="dev", security=SecuritySettings(any_type_producers=frozenset({"dev"}))
    )
    assert operator_for(dev) is not None


def test_discard_requests_carry_the_operator_and_expect_a_refusal() -> None:
    """A valid discard request names an unknown record, carries the operator, and is answered."""
    operator = operator_for(Settings(broker_user="operator"))
    mix = Mix(
        {"quarantine.discard.requested": "quarantine"},
        poison_share=0.0,
        duplicate_share=0.0,
        operator=operator,
    )
    _, sent, message = mix.next()
    assert sent.kind == "valid"
    assert sent.answers == frozenset({"quarantine.release.refused"})
    assert operator is not None
    assert b'"subject":"load-operator"' in message.body


def test_the_load_never_pulls_operators_levers() -> None:
    """Model switches and silences (and their answers) are left out of every load mix."""
    operator = operator_for(Settings(broker_user="operator"))
    mix = Mix(
        {"ai.model.disable.requested": "ai_fallback", "ai.model.enabled": "ai_fallback",
         "health.silence.requested": "health_monitor", "ops.audit.recorded": "quarantine"},
        poison_share=0.0, duplicate_share=0.0, operator=operator,
    )  # fmt: skip
    assert mix.types == ["ops.audit.recorded"]
