"""deploy/rabbitmq/definitions.json against the topology the code declares, and its users."""

from __future__ import annotations

import json
import re
from typing import Any

from common.bus.topology import EVENTS_EXCHANGE, UNROUTED_EXCHANGE, worker_topology
from common.config import RuntimeSettings, Settings
from common.security.producers import DEFAULT_PRODUCERS
from eventguard.definitions import rabbitmq_definitions
from tests.deploy._tools import DEPLOY
from workers.registry import consumed_types

DEFINITIONS: dict[str, Any] = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())


def _declared() -> tuple[dict[str, Any], dict[str, dict[str, Any]], set[tuple[str, str, str]]]:
    """Exchanges, queues and bindings `eventguard topology apply` declares, worker by worker."""
    exchanges: dict[str, Any] = {}
    queues: dict[str, dict[str, Any]] = {}
    bindings: set[tuple[str, str, str]] = set()
    for worker, types in consumed_types().items():
        topology = worker_topology(worker, types, Settings())
        for exchange in topology.exchanges:
            exchanges[exchange.name] = (exchange.type, exchange.alternate)
        for queue in topology.queues:
            assert queues.get(queue.name, queue.arguments) == queue.arguments, queue.name
            queues[queue.name] = dict(queue.arguments)
            bindings |= {(source, queue.name, key) for source, key in queue.bindings}
    return exchanges, queues, bindings


def test_definitions_file_is_what_the_generator_prints() -> None:
    """definitions.json is `eventguard topology definitions` output (regenerate it if not)."""
    assert json.loads(json.dumps(rabbitmq_definitions(Settings()))) == DEFINITIONS


def test_queues_and_arguments_equal_every_workers_topology() -> None:
    """Every queue each worker declares is defined with the same arguments, and nothing else."""
    _, queues, _ = _declared()
    defined = {q["name"]: q for q in DEFINITIONS["queues"]}
    assert set(defined) == set(queues)
    for name, arguments in queues.items():
        assert defined[name]["arguments"] == arguments, name
        assert defined[name]["durable"] is True
        assert defined[name]["auto_delete"] is False
        assert arguments["x-queue-type"] == "quorum"


def test_work_queues_carry_the_dead_letter_and_overflow_policy() -> None:
    """Work queues dead-letter at least once to eventguard.dlx, reject publishes when full and
    stop a poison message at the configured delivery limit."""
    runtime = RuntimeSettings()
    for worker in consumed_types():
        queue = next(q for q in DEFINITIONS["queues"] if q["name"] == f"eventguard.{worker}")
        assert queue["arguments"] | {"x-max-length": 0} == {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "eventguard.dlx",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": runtime.delivery_limit,
            "x-max-length": 0,
        }
        tiers = [q for q in DEFINITIONS["queues"] if q["name"].startswith(f"eventguard.{worker}.")]
        assert sorted(q["arguments"]["x-message-ttl"] for q in tiers) == sorted(
            round(d * 1000) for d in runtime.retry_delays_s
        )


def test_bindings_equal_every_workers_topology() -> None:
    """Each work queue is bound to exactly the event types its worker consumes."""
    _, _, bindings = _declared()
    defined = {(b["source"], b["destination"], b["routing_key"]) for b in DEFINITIONS["bindings"]}
    assert defined == bindings
    assert all(b["destination_type"] == "queue" for b in DEFINITIONS["bindings"])


def test_exchanges_and_the_alternate_exchange() -> None:
    """The events exchange is a topic exchange whose alternate catches what nothing is bound to."""
    exchanges, _, _ = _declared()
    defined = {e["name"]: e for e in DEFINITIONS["exchanges"]}
    assert set(defined) == set(exchanges)
    for name, (kind, alternate) in exchanges.items():
        assert defined[name]["type"] == kind
        assert defined[name]["durable"] is True
        assert defined[name]["arguments"].get("alternate-exchange") == alternate
    assert defined[EVENTS_EXCHANGE]["arguments"] == {"alternate-exchange": UNROUTED_EXCHANGE}
    assert defined[UNROUTED_EXCHANGE]["type"] == "fanout"


def test_every_publisher_has_a_user_and_no_password_is_committed() -> None:
    """Every producer the event policy names is a RabbitMQ user with permissions; no hashes."""
    users = {u["name"]: u for u in DEFINITIONS["users"]}
    producers = {p for allowed in DEFAULT_PRODUCERS.values() for p in allowed}
    assert producers <= set(users)
    assert set(consumed_types()) <= set(users)
    assert {p["user"] for p in DEFINITIONS["permissions"]} == set(users)
    assert all(u["password_hash"] == "" for u in users.values())
    assert "guest" not in users


def _permissions() -> dict[str, dict[str, str]]:
    return {p["user"]: p for p in DEFINITIONS["permissions"]}


def test_workers_touch_only_their_own_queues() -> None:
    """A worker may configure and read its own queues and the shared ones, never a peer's."""
    permissions = _permissions()
    workers = sorted(consumed_types())
    for worker in workers:
        allowed = permissions[worker]
        for own in (f"eventguard.{worker}", f"eventguard.{worker}.retry.5000ms"):
            assert re.match(allowed["configure"], own)
            assert re.match(allowed["read"], own)
        for peer in (w for w in workers if w != worker):
            for kind in ("configure", "write", "read"):
                assert not re.match(allowed[kind], f"eventguard.{peer}"), (worker, kind, peer)
        assert re.match(allowed["write"], EVENTS_EXCHANGE)
        assert not re.match(allowed["configure"], "amq.default")


def test_outside_producers_may_only_publish_events() -> None:
    """marketplace, chat and operator publish to eventguard.events and declare nothing."""
    permissions = _permissions()
    workers = set(consumed_types())
    for user in set(permissions) - workers - {"console"}:
        allowed = permissions[user]
        assert allowed["configure"] == "^$"
        assert re.match(allowed["write"], EVENTS_EXCHANGE)
        for name in ("eventguard.dlx", "eventguard.dead", "eventguard.quarantine"):
            assert not re.match(allowed["write"], name)
            assert not re.match(allowed["read"], name)


def test_the_console_declares_and_reads_only_its_own_view_queues() -> None:
    """`console` publishes events and owns eventguard.console.*; nothing of the workers'."""
    allowed = _permissions()["console"]
    own = "eventguard.console.console-7d9f-abcde"
    for kind in ("configure", "write", "read"):
        assert re.match(allowed[kind], own), kind
    assert re.match(allowed["write"], EVENTS_EXCHANGE)
    assert re.match(allowed["read"], EVENTS_EXCHANGE)  # to bind its queue
    assert not re.match(allowed["configure"], EVENTS_EXCHANGE)
    others = ("eventguard.dlx", "eventguard.dead", "eventguard.quarantine", "eventguard.console")
    for name in others:
        for kind in ("configure", "write", "read"):
            assert not re.match(allowed[kind], name), (kind, name)


def test_compose_init_sets_a_password_for_every_user() -> None:
    """deploy/rabbitmq/init.sh sets each defined user's password from the env file."""
    script = (DEPLOY / "rabbitmq" / "init.sh").read_text()
    listed = re.search(r"for user in ([\w ]+); do", script)
    assert listed is not None
    assert set(listed.group(1).split()) == {u["name"] for u in DEFINITIONS["users"]}
