"""``eventguard setup local`` on a fresh vhost: users that log in, the fleet's queues declared,
a producer rule in every env file, a valid operator token, and a second run that changes no
password or key (idempotent)."""

from __future__ import annotations

from pathlib import Path

import aio_pika
import jwt
import pytest

from common.config import Settings
from eventguard.setup_local import Plan, parse_producer, setup_local
from tests.e2e.onboarding import MANAGEMENT, fresh_vhost, read_env

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.smoke]


async def test_setup_local_is_complete_and_idempotent(
    tmp_path: Path, rabbit_url: str, redis_url: str
) -> None:
    """Twice on one vhost: same passwords and key; every user logs in; queues exist."""
    async with fresh_vhost(tmp_path, rabbit_url, redis_url, label="setup") as fresh:
        amqp = fresh.args[fresh.args.index("--amqp") + 1]
        plan = Plan(
            vhost=fresh.vhost,
            amqp=amqp,
            redis_url=redis_url,
            ops_base_port=fresh.ops_base_port,
            management_url=MANAGEMENT,
            producers=dict([parse_producer("billing=ai.completion.requested")]),
            out=tmp_path / ".eventguard",
        )
        first, token = await setup_local(
            plan, admin_user="guest", admin_password="guest", settings=Settings()
        )
        again, _ = await setup_local(
            plan, admin_user="guest", admin_password="guest", settings=Settings()
        )
        assert again == first
        assert {read_env(plan.directory / f"{u}.env")["EVENTGUARD_BROKER_USER"] for u in first} == {
            "ai_fallback",
            "health_monitor",
            "opportunity_discovery",
            "quarantine",
            "billing",
            "chat",
            "console",
            "marketplace",
            "operator",
        }
        ports = sorted(
            int(env["EVENTGUARD_OPS_PORT"])
            for env in first.values()
            if "EVENTGUARD_OPS_PORT" in env
        )
        assert ports == list(range(fresh.ops_base_port, fresh.ops_base_port + 4))
        assert all(
            env["EVENTGUARD_SECURITY__PRODUCERS"] == '{"ai.completion.requested": ["billing"]}'
            for env in first.values()
        )
        key = first["quarantine"]["EVENTGUARD_SECURITY__JWT_SIGNING_KEY"]
        claims = jwt.decode(token, key, algorithms=["HS256"], audience="eventguard")
        assert (claims["sub"], claims["role"]) == ("operator", "operator")
        for user in ("quarantine", "billing"):
            connection = await aio_pika.connect(first[user]["EVENTGUARD_BROKER_URL"])
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue("eventguard.quarantine", passive=True)
                assert queue.name == "eventguard.quarantine"
