"""``eventguard token`` and ``eventguard apikey``: operators mint tokens and manage API keys."""

from __future__ import annotations

import argparse
import json
from typing import Any

from common.config import SecuritySettings, Settings
from common.errors import ConfigError
from common.security.apikeys import ApiKeyStore
from common.security.roles import Role
from common.security.tokens import TokenService
from common.store import Store, connect_redis

__all__ = ["add_commands"]

_ROLES = [role.value for role in Role]


def add_commands(sub: Any) -> None:
    """Register the ``token`` and ``apikey`` command groups."""
    token = sub.add_parser("token", help="JWT access and refresh tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    issue = token_sub.add_parser("issue", help="print a signed token")
    issue.add_argument("--sub", required=True, help="the subject (who the token is for)")
    issue.add_argument("--role", required=True, choices=_ROLES)
    issue.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    issue.add_argument("--refresh", action="store_true", help="issue a refresh token")
    issue.set_defaults(func=_issue)

    apikey = sub.add_parser("apikey", help="API keys for services")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=_ROLES)
    create.set_defaults(func=_create)
    revoke = apikey_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_revoke)
    listing = apikey_sub.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(func=_list)


def _signing(settings: SecuritySettings) -> TokenService:
    if settings.jwt_signing_key is None:
        raise ConfigError("EVENTGUARD_SECURITY__JWT_SIGNING_KEY is missing")
    return TokenService(settings, store=None)


def _store(settings: Settings) -> Store:
    if settings.redis_url is None:
        raise ConfigError("EVENTGUARD_REDIS_URL is missing (the API-key store)")
    client = connect_redis(settings.redis_url.get_secret_value())
    return Store(client, prefix=settings.redis_key_prefix)


async def _issue(args: argparse.Namespace, settings: Settings) -> int:
    tokens = _signing(settings.security)
    kind = "refresh" if args.refresh else "access"
    print(tokens.issue(args.sub, args.role, kind=kind, ttl_s=args.ttl))
    return 0


async def _create(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        key, secret = await ApiKeyStore(store).create(args.name, args.role)
    finally:
        await store.close()
    print(json.dumps({"key_id": key.key_id, "name": key.name, "role": key.role.value}))
    print(secret)
    return 0


async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        found = await ApiKeyStore(store).revoke(args.key_id)
    finally:
        await store.close()
    print("revoked" if found else f"no key {args.key_id}")
    return 0 if found else 1


async def _list(_args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        keys = await ApiKeyStore(store).list()
    finally:
        await store.close()
    for key in keys:
        print(json.dumps({"key_id": key.key_id, "name": key.name, "role": key.role.value}))
    return 0
