"""The commands about the fleet's shape: ``topology apply`` and ``topology definitions`` (the
broker side), ``schema export`` (the contracts), ``workers`` (who consumes what)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TypeAlias

from common.bus.amqp import AmqpBroker
from common.bus.nodes import broker_urls
from common.bus.topology import worker_topology
from common.clitools import TOOL_START_S, VERSION, add_json_flag, print_rows, progress_bar
from common.config import Settings
from common.metrics import Metrics
from eventguard.admin_api import admin_openapi
from eventguard.contract import contract_from
from eventguard.definitions import rabbitmq_definitions
from schemas.export import write_all
from workers.registry import consumed_types

__all__ = ["add_commands"]

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_commands(sub: Subparsers) -> None:
    """Add ``topology``, ``schema`` and ``workers`` to the ``eventguard`` command."""
    _add_topology(sub)
    _add_schema(sub)
    _add_workers(sub)


def _add_topology(sub: Subparsers) -> None:
    topology = sub.add_parser("topology", help="broker topology")
    topology_sub = topology.add_subparsers(dest="topology_command", required=True)
    apply = topology_sub.add_parser("apply", help="declare every worker's exchanges and queues")
    apply.set_defaults(func=_topology_apply)
    definitions = topology_sub.add_parser(
        "definitions", help="print RabbitMQ definitions (JSON) for the whole fleet"
    )
    definitions.set_defaults(func=_topology_definitions)


def _add_schema(sub: Subparsers) -> None:
    schema = sub.add_parser("schema", help="event schemas")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_sub.add_parser(
        "export", help="write JSON Schema and AsyncAPI 3.1 (events), OpenAPI 3.1 (admin API)"
    )
    export.add_argument(
        "--out", type=Path, default=Path("schema-out"), help="directory to write into"
    )
    export.set_defaults(func=_schema_export)


def _add_workers(sub: Subparsers) -> None:
    workers = sub.add_parser("workers", help="list the workers and what they consume")
    add_json_flag(workers)
    workers.set_defaults(func=_workers)


async def _topology_apply(_args: argparse.Namespace, settings: Settings) -> int:
    broker = AmqpBroker(
        broker_urls(settings),
        metrics=Metrics(),
        name="eventguard-cli",
        start_timeout_s=TOOL_START_S,
    )
    await broker.start()
    try:
        catalogue = consumed_types()
        with progress_bar("declaring", len(catalogue)) as advance:
            for name, types in catalogue.items():
                await broker.declare(worker_topology(name, types, settings))
                advance(1)
                print(f"declared eventguard.{name} ({len(types)} bindings)")
    finally:
        await broker.close()
    return 0


async def _topology_definitions(_args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(rabbitmq_definitions(settings), indent=2))
    return 0


async def _schema_export(args: argparse.Namespace, settings: Settings) -> int:
    contract = contract_from(settings)
    written = write_all(args.out, consumed_types(), version=VERSION, contract=contract)
    openapi = args.out / "openapi.json"
    openapi.write_text(json.dumps(admin_openapi(), indent=2) + "\n")
    written.append(openapi)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


async def _workers(args: argparse.Namespace, _settings: Settings) -> int:
    rows = [{"worker": name, "consumes": types} for name, types in consumed_types().items()]
    print_rows(rows, ["worker", "consumes"], as_json=args.json)
    return 0
