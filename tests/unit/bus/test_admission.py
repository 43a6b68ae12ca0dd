"""The wire contract as the pipeline enforces it: strict JSON, AMQP properties, routing key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from common.bus import headers as h
from common.bus.admission import DeadLetter, admit
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.router import Emit
from common.bus.topology import EVENTS_EXCHANGE
from common.service import BaseService, WorkerContext
from common.testing import Harness, run_workers
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Envelope, new_event

TYPE = "ai.completion.requested"


def _body(**data: Any) -> dict[str, Any]:
    event = new_event(
        TYPE, CompletionRequested(messages=[Message(role="user", content="hi")]), source="t"
    )
    envelope: dict[str, Any] = json.loads(event.model_dump_json())
    envelope["data"].update(data)
    return envelope


def _incoming(body: bytes, **kw: Any) -> IncomingMessage:
    values: dict[str, Any] = {
        "routing_key": TYPE,
        "exchange": EVENTS_EXCHANGE,
        "queue": "eventguard.w",
        "headers": {},
        "message_id": None,
        "type": TYPE,
        "correlation_id": None,
        "reply_to": None,
        "user_id": "chat",
        "app_id": None,
        "timestamp": None,
        "content_type": "application/json",
        "redelivered": False,
        **kw,
    }
    return IncomingMessage(body=body, _ack=_noop, _reject=_noop, **values)


async def _noop(*_args: object) -> None:
    return None


def _reason(body: bytes, *, relayed: bool = False, **kw: Any) -> str | None:
    try:
        admit(_incoming(body, **kw), max_body_bytes=1_000_000, relayed=relayed)
    except DeadLetter as dead:
        return dead.reason
    return None


VALID = json.dumps(_body()).encode()
UNKNOWN = json.dumps({**_body(), "type": "no.such.type"}).encode()

# (case, body, properties, expected reason): one reason per way of breaking the contract.
CASES: list[tuple[str, bytes, dict[str, Any], str | None]] = [
    ("valid", VALID, {}, None),
    ("no content_type means JSON", VALID, {"content_type": None}, None),
    ("charset utf-8", VALID, {"content_type": "application/json; charset=utf-8"}, None),
    ("identity encoding", VALID, {"content_encoding": "identity"}, None),
    ("no type property", VALID, {"type": None}, None),
    ("string for integer", json.dumps(_body(max_tokens="64")).encode(), {}, "schema_violation"),
    ("string for number", json.dumps(_body(temperature="0.5")).encode(), {}, "schema_violation"),
    ("string for boolean", json.dumps(_body(cache="true")).encode(), {}, "schema_violation"),
    ("epoch time", json.dumps({**_body(), "time": 1764621000}).encode(), {}, "schema_violation"),
    (
        "epoch time as a string",
        json.dumps({**_body(), "time": "1764621000"}).encode(),
        {},
        "schema_violation",
    ),
    (
        "time without seconds",
        json.dumps({**_body(), "time": "2026-12-01T20:30+00:00"}).encode(),
        {},
        "schema_violation",
    ),
    (
        "time without offset",
        json.dumps({**_body(), "time": "2026-12-01T20:30:00"}).encode(),
        {},
        "schema_violation",
    ),
    ("text/plain", VALID, {"content_type": "text/plain"}, "bad_content_type"),
    ("octet-stream", VALID, {"content_type": "application/octet-stream"}, "bad_content_type"),
    ("latin-1", VALID, {"content_type": "application/json; charset=latin-1"}, "bad_content_type"),
    ("gzip", VALID, {"content_encoding": "gzip"}, "bad_content_encoding"),
    ("other known type", VALID, {"type": "opportunity.scan.requested"}, "type_mismatch"),
    ("unknown type property", VALID, {"type": "no.such.type"}, "type_mismatch"),
    ("routing key differs", VALID, {"routing_key": "ai.completion.other"}, "routing_key_mismatch"),
    ("straight to the queue", VALID, {"exchange": "", "routing_key": "q"}, "routing_key_mismatch"),
    ("not JSON", b"{nope", {}, "invalid_json"),
    ("unknown type", UNKNOWN, {"type": None}, "unknown_type"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "props", "reason"), CASES, ids=[c[0] for c in CASES])
def test_each_breach_has_its_reason(
    case: str, body: bytes, props: dict[str, Any], reason: str | None
) -> None:
    """Every way of breaking the wire contract is refused with its own documented reason."""
    assert _reason(body, **props) == reason, case


def test_a_relayed_copy_keeps_its_original_routing_key() -> None:
    """A retry copy arrives on the queue's name; its relay's header names the real key."""
    props = {"exchange": "", "routing_key": "eventguard.w"}
    relayed = {**props, "headers": {h.ORIGINAL_ROUTING_KEY: TYPE}}
    assert _reason(VALID, relayed=True, **relayed) is None
    assert _reason(VALID, relayed=False, **relayed) == "routing_key_mismatch"


def test_a_relayed_legacy_copy_passes_as_json() -> None:
    """Copies older runtimes stamped octet-stream are JSON from a relay, refused from others."""
    legacy = {"content_type": "application/octet-stream"}
    assert _reason(VALID, relayed=True, **legacy) is None
    assert _reason(VALID, relayed=False, **legacy) == "bad_content_type"


def test_python_construction_stays_convenient() -> None:
    """Models built in Python still convert (strictness is for wire JSON only)."""
    data = CompletionRequested.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": "64", "cache": "true"}
    )
    assert data.max_tokens == 64
    assert data.cache is True


class Sink(BaseService):
    """Accepts completion requests and counts them."""

    name = "sink"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.handled: list[str] = []
        self.router.add(CompletionRequested, self.handle)

    async def handle(self, event: Envelope[CompletionRequested]) -> Emit:
        self.handled.append(event.id)
        return []


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def _publish(env: Harness, body: bytes, **props: Any) -> None:
    values: dict[str, Any] = {"routing_key": TYPE, "type": TYPE, "user_id": "chat", **props}
    await env.broker.publish(OutgoingMessage(body=body, exchange=EVENTS_EXCHANGE, **values))


def _dead_reasons(env: Harness) -> list[str]:
    return [str(m.headers[h.REASON]) for m in env.dead()]


async def test_lax_values_are_dead_lettered_not_coerced() -> None:
    """`"max_tokens": "64"` and friends reach the dead-letter queue, never the handler."""
    services: dict[str, Sink] = {}

    def factory(ctx: WorkerContext) -> Sink:
        services["sink"] = Sink(ctx)
        return services["sink"]

    async with run_workers([("sink", factory)]) as env:
        for lax in ({"max_tokens": "64"}, {"temperature": "0.5"}, {"cache": "true"}):
            await _publish(env, json.dumps(_body(**lax)).encode())
        await _publish(env, json.dumps({**_body(), "time": 1764621000}).encode())
        await _until(lambda: len(env.dead()) == 4)
        await _publish(env, VALID)
        await _until(lambda: len(services["sink"].handled) == 1)
        assert _dead_reasons(env) == ["schema_violation"] * 4


async def test_properties_breaches_are_dead_lettered_with_their_reason() -> None:
    """Bad content type or encoding, a lying type property, a wrong routing key: one reason each."""
    services: dict[str, Sink] = {}

    def factory(ctx: WorkerContext) -> Sink:
        services["sink"] = Sink(ctx)
        return services["sink"]

    async with run_workers([("sink", factory)]) as env:
        await _publish(env, VALID, content_type="text/plain")
        await _publish(env, VALID, content_encoding="gzip")
        await _publish(env, VALID, type="no.such.type")
        env.broker.bind("eventguard.sink", EVENTS_EXCHANGE, "ai.completion.other")
        await _publish(env, VALID, routing_key="ai.completion.other")
        await _until(lambda: len(env.dead()) == 4)
        assert _dead_reasons(env) == [
            "bad_content_type",
            "bad_content_encoding",
            "type_mismatch",
            "routing_key_mismatch",
        ]
        assert services["sink"].handled == []
