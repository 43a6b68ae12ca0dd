"""Roles and access rules: a fixed ladder plus service, exact public routes, default deny."""

from __future__ import annotations

import pytest

from common.security.roles import Role, parse_role, satisfies
from common.security.rules import EVENT_RULES, PUBLIC_ROUTES, AccessRules
from schemas.registry import CATALOGUE


def test_role_ladder_and_service() -> None:
    """guest < user < operator < admin; service stands beside the ladder."""
    assert satisfies(Role.ADMIN, Role.OPERATOR)
    assert satisfies(Role.OPERATOR, Role.USER)
    assert not satisfies(Role.USER, Role.OPERATOR)
    assert not satisfies(Role.GUEST, Role.USER)
    assert not satisfies(Role.SERVICE, Role.USER)
    assert not satisfies(Role.OPERATOR, Role.SERVICE)
    assert satisfies(Role.SERVICE, Role.SERVICE)
    assert satisfies(Role.ADMIN, Role.SERVICE)


@pytest.mark.parametrize("name", ["root", "Admin", "ADMIN", "", " admin", "admin\x00", "x" * 500])
def test_unknown_role_is_rejected(name: str) -> None:
    """An unknown role is an error, never promoted or demoted; the message is bounded."""
    with pytest.raises(ValueError, match="unknown role") as caught:
        parse_role(name)
    assert len(str(caught.value)) < 64


def _rules() -> AccessRules:
    rules = AccessRules()
    rules.allow("GET", "/admin/workers", "operator")
    rules.allow("POST", "/admin/quarantine/{record_id}/release", "operator")
    rules.allow("DELETE", "/admin/quarantine/{record_id}", Role.ADMIN)
    return rules


def test_no_rule_means_deny_for_every_role() -> None:
    """A route without a rule is denied, whatever the role."""
    rules = _rules()
    for role in Role:
        decision = rules.check("GET", "/admin/secret-thing", role)
        assert (decision.allowed, decision.reason) == (False, "no_rule")
    assert not rules.check("POST", "/admin/workers", Role.ADMIN).allowed  # method matters


@pytest.mark.parametrize(
    "path",
    [
        "/admin/healthz",
        "/admin/workers/healthz",
        "/x/healthz",
        "/healthz/",
        "//healthz",
        "/healthz/../admin/workers",
        "/HEALTHZ",
        "/metrics.json",
    ],
)
def test_paths_that_merely_look_public_are_not(path: str) -> None:
    """Public routes are matched exactly, never by suffix, prefix or case."""
    assert not _rules().check("GET", path, Role.GUEST).allowed


def test_public_routes_are_exact_probes() -> None:
    """Exactly /healthz, /readyz, /metrics and the OpenAPI document (GET and HEAD) are public."""
    assert {path for _, path in PUBLIC_ROUTES} == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/openapi.json",
    }
    assert _rules().check("GET", "/healthz", Role.GUEST).allowed
    assert _rules().check("HEAD", "/metrics", Role.GUEST).allowed
    assert not _rules().check("POST", "/healthz", Role.GUEST).allowed


def test_placeholders_match_one_segment() -> None:
    """{placeholder} matches one non-empty segment, not a slash or nothing."""
    rules = _rules()
    assert rules.check("POST", "/admin/quarantine/r1/release", Role.OPERATOR).allowed
    assert not rules.check("POST", "/admin/quarantine/r1/x/release", Role.ADMIN).allowed
    assert not rules.check("POST", "/admin/quarantine//release", Role.ADMIN).allowed
    assert not rules.check("POST", "/admin/quarantine/r1/release/", Role.ADMIN).allowed


def test_roles_below_the_rule_are_refused() -> None:
    """The rule names the least role; lower ones and service are refused with the reason."""
    rules = _rules()
    decision = rules.check("DELETE", "/admin/quarantine/r1", Role.OPERATOR)
    assert (decision.allowed, decision.reason, decision.required) == (
        False,
        "insufficient_role",
        Role.ADMIN,
    )
    assert not rules.check("GET", "/admin/workers", Role.SERVICE).allowed
    assert rules.check("GET", "/admin/workers", Role.ADMIN).allowed


def test_conflicting_rules_are_refused_and_repeats_are_harmless() -> None:
    """The same rule twice is fine; the same route with another role is an error."""
    rules = _rules()
    rules.allow("GET", "/admin/workers", "operator")
    rules.allow("POST", "/admin/quarantine/{id}/release", "operator")
    with pytest.raises(ValueError, match="conflicting"):
        rules.allow("GET", "/admin/workers", "user")
    with pytest.raises(ValueError, match="conflicting"):
        rules.allow("POST", "/admin/quarantine/{other}/release", "admin")
    with pytest.raises(ValueError, match="unknown role"):
        rules.allow("GET", "/admin/x", "superuser")
    with pytest.raises(ValueError, match="start with /"):
        rules.allow("GET", "admin/x", "admin")


def test_event_rules_cover_the_request_types_and_deny_the_rest() -> None:
    """Acting for an actor needs the type's rule; result types have none, so it is denied."""
    rules = AccessRules()
    assert {event_type for event_type, _ in EVENT_RULES} <= set(CATALOGUE)
    assert rules.check_event("quarantine.release.requested", "act", Role.OPERATOR).allowed
    assert not rules.check_event("quarantine.release.requested", "act", Role.USER).allowed
    assert rules.check_event("ai.completion.requested", "act", Role.USER).allowed
    assert not rules.check_event("ai.completion.requested", "act", Role.GUEST).allowed
    assert rules.check_event("ai.completion.succeeded", "act", Role.ADMIN).reason == "no_rule"
    assert rules.check_event("no.such.type", "act", Role.ADMIN).reason == "no_rule"
    rules.allow_event("opportunity.found", "act", "admin")
    assert rules.check_event("opportunity.found", "act", Role.ADMIN).allowed
