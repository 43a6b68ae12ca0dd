"""`topology apply` and `publish` against the real RabbitMQ with nothing but the broker URL
(finding 5 of issue 19): no JWT signing key and no Redis URL are demanded."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

import aio_pika
import pytest
from pydantic import SecretStr

from common.config import Settings
from eventguard import cli, fleet_cli


def _settings(rabbit_url: str) -> Settings:
    settings = Settings(broker_url=SecretStr(rabbit_url), broker_user="guest")
    assert settings.redis_url is None
    assert settings.security.jwt_signing_key is None
    return settings


async def test_topology_apply_and_publish_need_only_the_broker(
    rabbit_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both commands succeed with the broker URL alone; the heartbeat reaches its queue."""
    settings = _settings(rabbit_url)
    assert await fleet_cli._topology_apply(argparse.Namespace(), settings) == 0
    assert "declared eventguard.health_monitor" in capsys.readouterr().out
    heartbeat = {
        "worker": "cli-test",
        "instance": "it",
        "started_at": datetime.now(UTC).isoformat(),
        "uptime_s": 1.0,
    }
    args = argparse.Namespace(
        type="health.heartbeat", data=json.dumps(heartbeat), source="it", wait=None, actor=None
    )
    assert await cli._publish(args, settings) == 0
    published = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["published"]
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue("eventguard.health_monitor", ensure=True)
        ids = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            ids.append(message.message_id)
        assert published in ids
