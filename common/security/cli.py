"""``eventguard token`` and ``eventguard apikey``: operators mint tokens and manage API keys.

``add_commands(subparsers)`` registers the groups; each handler is
``async def (args, settings) -> int`` (the exit code), set as ``func`` on the parser:

* ``token issue --sub NAME --role ROLE [--ttl 15m] [--refresh]`` prints one signed token
  (needs the signing key only); a ``--ttl`` above the configured maximum (access: 24 h) is
  refused, saying what the maximum is;
* ``token revoke --jti ID | --sub NAME`` revokes one token, or every token issued to a subject
  until now (needs Redis);
* ``keys generate [--algorithm HS256]`` prints a fresh signing key;
* ``apikey create --name NAME --role ROLE [--ttl 90d]`` prints the key's facts as JSON, then
  the key on its own line: shown once, never stored;
* ``apikey revoke KEY_ID`` and ``apikey list`` (facts only, never a secret).

Secrets go to stdout only, so ``... | tail -1`` captures them; nothing here logs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from common.clitools import parse_duration
from common.config import Settings
from common.security.apikeys import ApiKey, ApiKeyStore
from common.security.keys import SIGNING_VARIABLE, generate_key
from common.security.roles import Role
from common.security.tokens import TokenKind, TokenService
from common.store import Store

__all__ = ["add_commands", "parse_duration"]

_ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]
_TOKEN_ROLES = [role.value for role in Role if role is not Role.GUEST]


def add_commands(sub: Any) -> None:
    """Register the ``token``, ``keys`` and ``apikey`` command groups on ``sub`` (argparse
    subparsers)."""
    token = sub.add_parser("token", help="JWT access and refresh tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    issue = token_sub.add_parser("issue", help="print a signed token")
    issue.add_argument("--sub", required=True, help="the subject (who the token is for)")
    issue.add_argument("--role", required=True, choices=_TOKEN_ROLES, help="the role granted")
    issue.add_argument(
        "--ttl",
        type=parse_duration,
        default=None,
        help="lifetime: 900, 15m, 12h, 30d (default: the configured one)",
    )
    issue.add_argument("--refresh", action="store_true", help="issue a refresh token")
    issue.set_defaults(func=issue_token)
    revoke_token = token_sub.add_parser(
        "revoke", help="revoke one token (--jti) or every token issued to a subject (--sub)"
    )
    which = revoke_token.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the token id (its jti claim)")
    which.add_argument("--sub", help="the subject: every token issued to it until now")
    revoke_token.set_defaults(func=revoke_tokens)

    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="print a fresh signing key")
    generate.add_argument(
        "--algorithm", default="HS256", choices=_ALGORITHMS, help="the signing algorithm"
    )
    generate.set_defaults(func=generate_signing_key)

    apikey = sub.add_parser("apikey", help="API keys for services")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", required=True, help="who the key is for (a label)")
    create.add_argument("--role", required=True, choices=_TOKEN_ROLES, help="the role granted")
    create.add_argument(
        "--ttl",
        type=parse_duration,
        default=None,
        help="lifetime, e.g. 90d (default: until revoked)",
    )
    create.set_defaults(func=create_api_key)
    revoke = apikey_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", help="the key_id that `apikey create` printed")
    revoke.set_defaults(func=revoke_api_key)
    listing = apikey_sub.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(func=list_api_keys)


def _store(settings: Settings) -> Store:
    return Store.from_settings(settings, needed_for="the API-key store")


def _facts(key: ApiKey) -> str:
    """One JSON line per key; times in ISO 8601 UTC (``expires_at`` null: never expires)."""
    return json.dumps(
        {
            "key_id": key.key_id,
            "name": key.name,
            "role": key.role.value,
            "created_at": _iso(key.created_at),
            "expires_at": None if key.expires_at is None else _iso(key.expires_at),
        }
    )


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


async def issue_token(args: argparse.Namespace, settings: Settings) -> int:
    """``token issue``: print one token signed with the configured key."""
    tokens = TokenService(settings.security, store=None)  # ConfigError names a missing key
    kind: TokenKind = "refresh" if args.refresh else "access"
    try:
        token = tokens.issue(args.sub, args.role, kind=kind, ttl_s=args.ttl)
    except ValueError as error:
        print(f"eventguard: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


async def revoke_tokens(args: argparse.Namespace, settings: Settings) -> int:
    """``token revoke``: refuse one jti, or every token of a subject issued until now."""
    store = _store(settings)
    try:
        tokens = TokenService(settings.security, store=store)
        if args.jti is not None:
            await tokens.revoke_jti(args.jti)
            print(json.dumps({"revoked": "jti", "jti": args.jti}))
        else:
            since = await tokens.revoke_subject(args.sub)
            until = since.isoformat()
            print(json.dumps({"revoked": "sub", "sub": args.sub, "issued_until": until}))
    except ValueError as error:
        print(f"eventguard: {error}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    return 0


async def generate_signing_key(args: argparse.Namespace, _settings: Settings) -> int:
    """``keys generate``: print a fresh key (an HMAC secret, or a PEM private key with its
    public half on stderr)."""
    secret, public = generate_key(args.algorithm)
    print(secret)
    if public is not None:
        print(f"eventguard: the public key (for verification keys):\n{public}", file=sys.stderr)
    print(
        f"eventguard: set it as {SIGNING_VARIABLE} (algorithm {args.algorithm}); "
        "it is shown once and stored nowhere",
        file=sys.stderr,
    )
    return 0


async def create_api_key(args: argparse.Namespace, settings: Settings) -> int:
    """``apikey create``: print the new key's facts, then the key (shown once)."""
    store = _store(settings)
    try:
        keys = ApiKeyStore(store, default_ttl_s=settings.security.api_key_ttl_s)
        key, secret = await keys.create(args.name, args.role, ttl_s=args.ttl)
    except ValueError as error:
        print(f"eventguard: {error}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    print(_facts(key))
    print(secret)
    print("eventguard: the key above is shown once; store it now", file=sys.stderr)
    return 0


async def revoke_api_key(args: argparse.Namespace, settings: Settings) -> int:
    """``apikey revoke``: delete a key; exit 1 when there was none."""
    store = _store(settings)
    try:
        found = await ApiKeyStore(store).revoke(args.key_id)
    finally:
        await store.close()
    print(json.dumps({"key_id": args.key_id, "revoked": found}))
    return 0 if found else 1


async def list_api_keys(_args: argparse.Namespace, settings: Settings) -> int:
    """``apikey list``: one JSON line of facts per live key."""
    store = _store(settings)
    try:
        keys = await ApiKeyStore(store).list()
    finally:
        await store.close()
    for key in keys:
        print(_facts(key))
    return 0
