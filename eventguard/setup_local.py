"""``eventguard setup local``: a vhost of a local RabbitMQ made ready for the fleet and its
producers, through the management API, and one env file per process.

From the generated definitions (:func:`eventguard.definitions.rabbitmq_definitions`, the same
document ``deploy/rabbitmq/definitions.json`` is): the vhost, the exchanges, quorum queues and
bindings, one RabbitMQ user per worker and per producer (``chat``, ``marketplace``,
``operator`` and every ``--producer``) with the deployed permissions. Then it writes
``DIR/<vhost>/<user>.env`` for each: the broker URL with that user's password, the user as
``EVENTGUARD_BROKER_USER``, Redis, the key prefix, a fresh JWT signing key shared by the fleet,
each worker's own ops port and, for the health monitor, the management API. It prints an
operator token (stdout, last line).

Idempotent: a second run keeps the passwords and the signing key it finds in the env files
and re-applies the rest. RabbitMQ users are broker-wide, so a run for another vhost re-uses the
passwords written for any vhost under the same ``--out`` (the earlier files stay valid).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from pydantic import SecretStr

from common.clitools import add_json_flag, print_rows
from common.config import Settings
from common.config.sections import SecuritySettings
from common.errors import ConfigError
from common.security.producers import WORKER_USERS
from common.security.tokens import TokenService
from eventguard.definitions import PRODUCER_USERS, rabbitmq_definitions
from schemas.registry import CATALOGUE

__all__ = ["Plan", "add_commands", "env_files", "parse_producer", "setup_local"]

_DESCRIPTION = """\
Make a vhost of a local RabbitMQ ready for the fleet, through the management API: the vhost,
exchanges, quorum queues and bindings, one user per worker and per producer (chat, marketplace,
operator and every --producer) with the deployed permissions. Then write DIR/VHOST/USER.env for
each (broker URL and user, Redis URL and key prefix, a fresh JWT signing key shared by the
fleet, the worker's own ops port) and print an operator token on the last line of stdout.

Idempotent: a re-run keeps the passwords and signing key found in the env files. Users are
broker-wide: a run for another vhost under the same --out re-uses their passwords.
"""
_LOCAL_ADMIN = "guest"  # RabbitMQ's own local-only default account  # pragma: allowlist secret


def parse_producer(text: str) -> tuple[str, list[str]]:
    """``billing=opportunity.scan.requested,ai.completion.requested`` (an argparse ``type``)."""
    name, sep, types = text.partition("=")
    wanted = [t.strip() for t in types.split(",") if t.strip()]
    if not sep or not name or not wanted:
        raise argparse.ArgumentTypeError(f"not NAME=TYPE[,TYPE...]: {text[:60]!r}")
    unknown = [t for t in wanted if t not in CATALOGUE]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown event type(s): {', '.join(unknown)}")
    return name, wanted


def add_commands(subparsers: Any) -> None:
    """Register ``eventguard setup local``."""
    setup = subparsers.add_parser("setup", help="prepare a local RabbitMQ for the fleet")
    sub = setup.add_subparsers(dest="setup_command", required=True)
    local = sub.add_parser(
        "local",
        help="vhost, queues, users, permissions and env files (idempotent)",
        description=_DESCRIPTION,
    )
    local.add_argument("--vhost", default="eventguard", help="the vhost to create and use")
    local.add_argument(
        "--management-url",
        default="http://127.0.0.1:15672",
        help="RabbitMQ management API (rabbitmq-plugins enable rabbitmq_management)",
    )
    local.add_argument("--admin-user", default=_LOCAL_ADMIN, help="management API user")
    local.add_argument(
        "--admin-password",
        default=_LOCAL_ADMIN,
        help="management API password (RabbitMQ's local default)",
    )
    local.add_argument(
        "--amqp", default="127.0.0.1:5672", help="HOST:PORT the processes connect to"
    )
    local.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/0", help="Redis the workers share"
    )
    local.add_argument(
        "--ops-base-port",
        type=int,
        default=8081,
        help="the first worker's ops port; the others follow in name order",
    )
    local.add_argument(
        "--producer",
        action="append",
        type=parse_producer,
        default=[],
        metavar="NAME=TYPE[,TYPE]",
        help="an outside producer to create and authorise for these types (repeatable)",
    )
    local.add_argument(
        "--out", type=Path, default=Path(".eventguard"), help="where DIR/<vhost>/*.env go"
    )
    add_json_flag(local)
    local.set_defaults(func=_setup_local)


@dataclass(frozen=True)
class Plan:
    """What one run sets up."""

    vhost: str
    amqp: str  # host:port
    redis_url: str
    ops_base_port: int
    management_url: str
    producers: Mapping[str, list[str]]  # extra producer -> the types it may publish
    out: Path

    @property
    def directory(self) -> Path:
        """Where the env files go."""
        return self.out / self.vhost.replace("/", "_")

    def workers(self) -> list[str]:
        """The fleet's users, in name order (their ops ports follow it)."""
        return sorted(WORKER_USERS)

    def users(self) -> list[str]:
        """Every user to create: workers, built-in producers, extra producers."""
        return [*self.workers(), *sorted(set(PRODUCER_USERS) | set(self.producers))]

    def url(self, user: str, password: str) -> str:
        """The AMQP URL of ``user`` on the vhost."""
        return (
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{self.amqp}/"
            f"{quote(self.vhost, safe='')}"
        )

    def producer_rules(self) -> dict[str, list[str]]:
        """EVENTGUARD_SECURITY__PRODUCERS: event type -> the extra producers allowed."""
        rules: dict[str, list[str]] = {}
        for name, types in sorted(self.producers.items()):
            for event_type in types:
                rules.setdefault(event_type, []).append(name)
        return rules


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[key.strip()] = parts[0] if parts else ""
    return values


def _known_secrets(plan: Plan) -> tuple[dict[str, str], str | None]:
    """Passwords and the signing key an earlier run wrote (so a re-run keeps them)."""
    passwords: dict[str, str] = {}
    signing_key: str | None = None
    # Users are broker-wide: their passwords are taken from any vhost's files; the signing key
    # belongs to this vhost's fleet.
    for path in sorted(plan.out.glob("*/*.env")):
        env = _read_env(path)
        url = env.get("EVENTGUARD_BROKER_URL")
        user = env.get("EVENTGUARD_BROKER_USER")
        if user in plan.users() and url and urlsplit(url).password:
            passwords.setdefault(user, unquote(urlsplit(url).password or ""))
        if path.parent == plan.directory:
            signing_key = signing_key or env.get("EVENTGUARD_SECURITY__JWT_SIGNING_KEY")
    return passwords, signing_key


def env_files(
    plan: Plan, passwords: Mapping[str, str], signing_key: str
) -> dict[str, dict[str, str]]:
    """User -> the settings of its env file."""
    common = {
        "EVENTGUARD_REDIS_URL": plan.redis_url,
        "EVENTGUARD_REDIS_KEY_PREFIX": f"eg:{plan.vhost}:",
        "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": signing_key,
        # quarantine re-publishes released messages on behalf of their original producer.
        "EVENTGUARD_RUNTIME__RELAY_USERS": json.dumps(["quarantine"]),
    }
    if plan.producers:
        common["EVENTGUARD_SECURITY__PRODUCERS"] = json.dumps(plan.producer_rules())
    files: dict[str, dict[str, str]] = {}
    for user in plan.users():
        env = {
            "EVENTGUARD_BROKER_URL": plan.url(user, passwords[user]),
            "EVENTGUARD_BROKER_USER": user,
            **common,
        }
        if user in WORKER_USERS:
            env["EVENTGUARD_OPS_PORT"] = str(plan.ops_base_port + plan.workers().index(user))
        if user == "health_monitor":
            env["EVENTGUARD_HEALTH_MONITOR__RABBITMQ_API_URL"] = plan.management_url
            env["EVENTGUARD_HEALTH_MONITOR__RABBITMQ_API_USER"] = user
            env["EVENTGUARD_HEALTH_MONITOR__RABBITMQ_API_PASSWORD"] = passwords[user]
        files[user] = env
    return files


def _write_env(path: Path, user: str, vhost: str, env: Mapping[str, str]) -> None:
    lines = [
        f"# eventguard setup local: the settings of {user!r} on vhost {vhost!r}.",
        f"# Load with: set -a; . {path}; set +a",
        *(f"{key}={shlex.quote(value)}" for key, value in env.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


class _Management:
    """The few management API calls the set-up makes."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base.rstrip("/") + "/api"

    async def call(self, method: str, resource: str, body: Any) -> None:
        url = f"{self.base}/{resource}"
        try:
            async with self.session.request(method, url, json=body) as response:
                if response.status == 401:
                    raise ConfigError(
                        f"the management API at {self.base} refused the admin user "
                        "(--admin-user/--admin-password)"
                    )
                if response.status >= 400:
                    text = (await response.text())[:300]
                    raise ConfigError(f"{method} {resource}: {response.status} {text}")
        except aiohttp.ClientConnectionError as error:
            raise ConfigError(
                f"no RabbitMQ management API at {self.base} ({error.__class__.__name__}): "
                "enable it with `rabbitmq-plugins enable rabbitmq_management`, or pass "
                "--management-url"
            ) from error


def _vhost_definitions(definitions: Mapping[str, Any]) -> dict[str, Any]:
    """The exchanges, queues and bindings of the definitions, without their vhost field (the
    shape ``POST /api/definitions/{vhost}`` takes)."""

    def strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k != "vhost"} for item in items]

    return {
        "exchanges": strip(definitions["exchanges"]),
        "queues": strip(definitions["queues"]),
        "bindings": strip(definitions["bindings"]),
        "policies": [],
    }


async def setup_local(
    plan: Plan, *, admin_user: str, admin_password: str, settings: Settings
) -> tuple[dict[str, dict[str, str]], str]:
    """Apply ``plan`` on the broker and write the env files; the files' settings and a fresh
    operator token."""
    known, signing_key = _known_secrets(plan)
    passwords = {user: known.get(user) or secrets.token_urlsafe(24) for user in plan.users()}
    signing_key = signing_key or secrets.token_urlsafe(48)
    definitions = rabbitmq_definitions(settings)
    permissions = {p["user"]: p for p in definitions["permissions"]}
    producer_rights = permissions[PRODUCER_USERS[0]]
    vhost = quote(plan.vhost, safe="")
    auth = {"Authorization": aiohttp.encode_basic_auth(admin_user, admin_password)}
    async with aiohttp.ClientSession(headers=auth) as session:
        api = _Management(session, plan.management_url)
        await api.call("PUT", f"vhosts/{vhost}", {})
        await api.call("POST", f"definitions/{vhost}", _vhost_definitions(definitions))
        for user in plan.users():
            tags = "monitoring" if user == "health_monitor" else ""
            await api.call(
                "PUT",
                f"users/{quote(user, safe='')}",
                {
                    "password": passwords[user],
                    "tags": tags,
                },
            )
            rights = permissions.get(user, producer_rights)
            await api.call(
                "PUT",
                f"permissions/{vhost}/{quote(user, safe='')}",
                {k: rights[k] for k in ("configure", "write", "read")},
            )
    files = env_files(plan, passwords, signing_key)
    plan.directory.mkdir(parents=True, exist_ok=True)
    for user, env in files.items():
        _write_env(plan.directory / f"{user}.env", user, plan.vhost, env)
    tokens = TokenService(SecuritySettings(jwt_signing_key=SecretStr(signing_key)), store=None)
    return files, tokens.issue("operator", "operator")


async def _setup_local(args: argparse.Namespace, settings: Settings) -> int:
    plan = Plan(
        vhost=args.vhost,
        amqp=args.amqp,
        redis_url=args.redis_url,
        ops_base_port=args.ops_base_port,
        management_url=args.management_url,
        producers=dict(args.producer),
        out=args.out,
    )
    files, token = await setup_local(
        plan, admin_user=args.admin_user, admin_password=args.admin_password, settings=settings
    )
    rows = [
        {
            "user": user,
            "role": "worker" if user in WORKER_USERS else "producer",
            "ops_port": env.get("EVENTGUARD_OPS_PORT"),
            "env_file": str(plan.directory / f"{user}.env"),
        }
        for user, env in files.items()
    ]
    if args.json:
        print(json.dumps({"vhost": plan.vhost, "users": rows, "operator_token": token}))
        return 0
    print(f"vhost {plan.vhost!r} ready: exchanges, queues, users and permissions applied")
    print_rows(rows, ["user", "role", "ops_port", "env_file"], as_json=False)
    print(
        f"run a worker:  (set -a; . {plan.directory}/quarantine.env; set +a; "
        "eventguard run quarantine)",
    )
    print("operator token (admin API, 15 minutes; `eventguard token issue` mints more):")
    sys.stdout.flush()
    print(token)
    return 0
