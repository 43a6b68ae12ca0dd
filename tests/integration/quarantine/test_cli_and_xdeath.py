"""The quarantine CLI and RabbitMQ's own dead-lettering, against the real servers."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest
from pydantic import SecretStr

from common.bus import headers as h
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import DEAD_LETTER_EXCHANGE, QueueSpec, Topology
from common.config import Settings
from tests.integration.bus.conftest import until
from tests.integration.quarantine.conftest import QuarantineRig
from tests.integration.quarantine.test_quarantine_rabbit import _poison, _record_for
from workers.quarantine import cli


def _settings(q: QuarantineRig, redis_url: str, rabbit_url: str) -> Settings:
    return Settings(
        broker_url=SecretStr(rabbit_url),
        redis_url=SecretStr(redis_url),
        redis_key_prefix=q.rig.prefix,
        exchange=q.rig.events,
    )


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["quarantine", *argv])


async def test_cli_list_show_release_discard(
    qrig: QuarantineRig, redis_url: str, rabbit_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """list and show read the record; release re-publishes once; a second release and a
    discard of the released record exit 1 with the reason."""
    await qrig.start_quarantine()
    event_id = await _poison(qrig)
    record = await _record_for(qrig, event_id)
    settings = _settings(qrig, redis_url, rabbit_url)
    capsys.readouterr()

    args = _parse("list", "--kind", "message", "--json")
    assert await args.func(args, settings) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 1
    assert listed["records"][0]["id"] == record["id"]

    args = _parse("show", record["id"])
    assert await args.func(args, settings) == 0
    shown = json.loads(capsys.readouterr().out)
    assert json.loads(shown["body_text"])["id"] == event_id

    qrig.poison.accept = True
    args = _parse("release", record["id"], "--by", "alice", "--note", "fixed upstream")
    assert await args.func(args, settings) == 0
    args = _parse("release", record["id"], "--by", "bob")
    assert await args.func(args, settings) == 1
    assert "already_released" in capsys.readouterr().err
    args = _parse("discard", record["id"], "--by", "bob")
    assert await args.func(args, settings) == 1
    await until(lambda: qrig.poison.calls.count(event_id) == 2)
    assert len(qrig.released_copies()) == 1

    args = _parse("show", "no-such-record")
    assert await args.func(args, settings) == 1


async def test_native_dead_letter_is_recorded_and_released(qrig: QuarantineRig) -> None:
    """A message RabbitMQ dead-letters itself (rejected, x-death only) is recorded with the
    x-death reason and released to the exchange and routing key x-death names."""
    service = await qrig.start_quarantine()
    rejecting = f"eventguard.{qrig.rig.worker}.rejecting"
    topology = Topology(
        exchanges=(),
        queues=(
            QueueSpec(
                rejecting,
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": qrig.rig.names()[DEAD_LETTER_EXCHANGE],
                },
                ((qrig.rig.events, "native.#"),),
            ),
        ),
    )
    await qrig.broker.declare(topology)
    qrig.rig.topologies.append(topology)

    async def reject(message: IncomingMessage) -> None:
        await message.reject(requeue=False)

    tag = await qrig.broker.consume(rejecting, reject, prefetch=5)
    await qrig.broker.publish(
        OutgoingMessage(
            body=b"\xff not utf-8",
            routing_key="native.thing",
            exchange=qrig.rig.events,
            headers={h.PRODUCER: "svc"},
            user_id="guest",
        )
    )

    async def recorded() -> list[dict[str, str]]:
        _, rows = await service.repo.search(reason="rejected")
        return rows

    async with asyncio.timeout(10):
        while not await recorded():
            await asyncio.sleep(0.02)
    await qrig.broker.cancel(tag)
    (row,) = await recorded()
    record = await service.repo.get(row["id"])
    assert record is not None
    assert record["body"] == b"\xff not utf-8"
    assert record["exchange"] == qrig.rig.events
    assert record["routing_key"] == "native.thing"
    outcome = await service.releaser.release(row["id"], by="alice")
    assert outcome.changed
    await until(lambda: any(m.routing_key == "native.thing" for m in qrig.released_copies()))
    (copy,) = [m for m in qrig.released_copies() if m.routing_key == "native.thing"]
    assert copy.body == b"\xff not utf-8"
    assert "x-death" not in copy.headers
    assert copy.headers[h.PRODUCER] == "svc"


async def test_cli_releases_a_group_and_names_each_refusal(
    qrig: QuarantineRig, redis_url: str, rabbit_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`quarantine release A B` acts on each record; one refusal makes the exit 1 and names
    its record."""
    await qrig.start_quarantine()
    event_id = await _poison(qrig)
    record = await _record_for(qrig, event_id)
    settings = _settings(qrig, redis_url, rabbit_url)
    capsys.readouterr()
    qrig.poison.accept = True
    args = _parse("release", record["id"], "no-such-record", "--by", "alice")
    assert await args.func(args, settings) == 1
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "released"
    assert "no-such-record: nothing changed" in err
    assert record["id"] not in err
    await until(lambda: qrig.poison.calls.count(event_id) == 2)
