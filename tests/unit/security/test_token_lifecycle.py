"""Finding 5: access tokens are capped at the configured maximum; tokens can be revoked by jti
or by subject (CLI and admin route); refresh and logout routes use the family reuse detection."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import pytest

from common.config import Settings
from common.errors import ConfigError
from common.security import cli
from common.security.tokens import TokenError, TokenService
from tests.unit.security import _mint as m
from tests.unit.security._ops import Ops, ops_server


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eventguard")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    """An ops server with the token routes."""
    async with ops_server() as server:
        yield server


async def test_cli_refuses_an_access_token_longer_than_the_maximum(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`token issue --ttl 366d` mints nothing and names the maximum; 24h is fine."""
    settings = Settings(security=m.settings())
    args = _parse(["token", "issue", "--sub", "root", "--role", "admin", "--ttl", "366d"])
    assert await args.func(args, settings) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "at most 86400 s" in captured.err
    args = _parse(["token", "issue", "--sub", "root", "--role", "admin", "--ttl", "24h"])
    assert await args.func(args, settings) == 0


def test_the_library_caps_access_tokens_too() -> None:
    """TokenService.issue refuses an access TTL above max_access_ttl_s (services use API keys)."""
    service = m.service(m.settings(max_access_ttl_s=3600))
    with pytest.raises(ValueError, match="at most 3600 s"):
        service.issue("svc", "service", ttl_s=3601)
    assert service.issue("svc", "service", ttl_s=3600)


async def test_revoke_by_subject_refuses_every_earlier_token() -> None:
    """A subject's not-before refuses its tokens issued until now, not later ones, not others."""
    store = m.store()
    clock = [m.NOW]
    service = TokenService(m.settings(), store=store, now=lambda: clock[0])
    old, other = service.issue("alice", "admin"), service.issue("bob", "admin")
    clock[0] += 5
    await service.revoke_subject("alice")
    with pytest.raises(TokenError, match="revoked"):
        await service.verify(old)
    assert (await service.verify(other)).sub == "bob"
    clock[0] += 1
    assert (await service.verify(service.issue("alice", "admin"))).sub == "alice"


async def test_revoke_by_jti_without_the_token() -> None:
    """Revoking a jti refuses that token whatever its kind, knowing only its id."""
    service = m.service()
    token = service.issue("alice", "operator", kind="refresh")
    claims = await service.verify(token, expected_type="refresh")
    await service.revoke_jti(claims.jti)
    with pytest.raises(TokenError, match="revoked"):
        await service.verify(token, expected_type="refresh")


def test_cli_revoke_needs_exactly_one_of_jti_or_sub() -> None:
    """`token revoke` takes --jti or --sub, never both or neither."""
    with pytest.raises(SystemExit):
        _parse(["token", "revoke"])
    with pytest.raises(SystemExit):
        _parse(["token", "revoke", "--jti", "a", "--sub", "b"])
    assert _parse(["token", "revoke", "--sub", "alice"]).sub == "alice"


async def test_cli_revoke_without_redis_names_the_variable() -> None:
    """Without EVENTGUARD_REDIS_URL the revoke command stops with an error naming it."""
    args = _parse(["token", "revoke", "--sub", "alice"])
    with pytest.raises(ConfigError, match="EVENTGUARD_REDIS_URL"):
        await args.func(args, Settings(security=m.settings()))


async def test_admin_revokes_a_subject_over_http(ops: Ops) -> None:
    """POST /admin/tokens/revoke (admin only) ends every token of the subject."""
    victim = ops.bearer("operator", sub="mallory")
    assert (await ops.client.get("/admin/workers", headers=victim)).status == 200
    refused = await ops.client.post(
        "/admin/tokens/revoke", json={"sub": "mallory"}, headers=ops.bearer("operator")
    )
    assert refused.status == 403
    ops.clock.now += 1
    done = await ops.client.post(
        "/admin/tokens/revoke", json={"sub": "mallory"}, headers=ops.bearer("admin")
    )
    assert done.status == 200
    assert (await done.json())["revoked"] == "sub"
    assert (await ops.client.get("/admin/workers", headers=victim)).status == 401


async def test_refresh_route_rotates_and_detects_reuse(ops: Ops) -> None:
    """A refresh token works once; presented again, the whole family (the new pair too) dies."""
    _access, refresh = ops.tokens.issue_pair("alice", "operator")
    first = await ops.client.post("/admin/tokens/refresh", json={"refresh_token": refresh})
    assert first.status == 200
    assert ops.fleet.emitted("ops.audit.recorded")[-1].data.subject == "alice"  # audited as her
    pair = await first.json()
    assert pair["token_type"] == "Bearer"
    new_access = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await ops.client.get("/admin/workers", headers=new_access)).status == 200
    again = await ops.client.post("/admin/tokens/refresh", json={"refresh_token": refresh})
    assert again.status == 401
    assert (await again.json())["code"] == "invalid_token"
    assert (await ops.client.get("/admin/workers", headers=new_access)).status == 401


async def test_logout_revokes_the_access_token_and_its_refresh_token(ops: Ops) -> None:
    """After logout neither the access token nor the family's refresh token works."""
    access, refresh = ops.tokens.issue_pair("alice", "operator")
    headers = {"Authorization": f"Bearer {access}"}
    out = await ops.client.post("/admin/tokens/logout", headers=headers)
    assert out.status == 200
    assert (await ops.client.get("/admin/workers", headers=headers)).status == 401
    reuse = await ops.client.post("/admin/tokens/refresh", json={"refresh_token": refresh})
    assert reuse.status == 401
