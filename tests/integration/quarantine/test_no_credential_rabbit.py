"""Issue 14, finding 1 on the real RabbitMQ and Redis: an admin token in an event is refused
by the schema and never reaches Redis, from the body or from a header."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from common.bus.message import OutgoingMessage
from common.config.sections import SecuritySettings
from common.security.tokens import TokenService
from schemas.envelope import new_event
from schemas.marketplace import StrategyRevoked
from tests.integration.bus.conftest import PRODUCER
from tests.integration.quarantine.conftest import POISON_TYPE, QuarantineRig


async def test_an_admin_token_in_actor_is_dead_lettered_and_stored_redacted(
    qrig: QuarantineRig,
) -> None:
    """``actor.token`` is a schema violation; the record holds neither the token (body or
    Authorization header) nor its signature, and keeps the original's digest and size."""
    service = await qrig.start_quarantine()
    token = TokenService(
        SecuritySettings(jwt_signing_key=secrets.token_urlsafe(48)), store=None
    ).issue("root", "admin")
    event = new_event(POISON_TYPE, StrategyRevoked(user_id="u1", strategy="s"), source="it")
    body = event.model_dump(mode="json")
    body["actor"] = {"subject": "root", "role": "admin", "token": token}
    raw = json.dumps(body).encode()
    await qrig.broker.publish(
        OutgoingMessage(
            body=raw,
            routing_key=POISON_TYPE,
            exchange=qrig.rig.events,
            type=POISON_TYPE,
            user_id=PRODUCER,
            headers={"Authorization": f"Bearer {token}"},
        )
    )

    async with asyncio.timeout(10):
        while (await service.repo.search(reason="schema_violation"))[0] != 1:
            await asyncio.sleep(0.02)
    _, (row,) = await service.repo.search(reason="schema_violation")
    record = await service.repo.get(row["id"])
    assert record is not None
    assert record["redacted"] == "1"
    assert int(record["body_size"]) == len(raw)
    assert qrig.poison.calls == []  # refused before the handler
    signature = token.rsplit(".", 1)[1].encode()
    client: Any = qrig.rig.redis
    async for key in client.scan_iter(match=qrig.rig.prefix + "*", count=10_000):
        kind = await client.type(key)
        if kind == b"hash":
            for field, value in (await client.hgetall(key)).items():
                assert signature not in field + value, key
        elif kind == b"string":
            assert signature not in (await client.get(key) or b""), key
        elif kind == b"list":
            assert not [v for v in await client.lrange(key, 0, -1) if signature in v], key
        elif kind == b"zset":
            assert not [v for v in await client.zrange(key, 0, -1) if signature in v], key
