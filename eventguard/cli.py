"""The ``eventguard`` command line.

``run WORKER...`` runs workers for real (RabbitMQ and Redis from the environment, refusing to
start without them); ``demo`` runs the whole fleet in one process on in-memory parts;
``publish``, ``topology apply``, ``schema export`` and ``workers`` are tools for operators,
and each worker adds its own command group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.bus.amqp import AmqpBroker
from common.bus.publisher import Publisher
from common.bus.topology import worker_topology
from common.config import Settings, require_production
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.metrics import Metrics
from common.ops import EventStream, OpsServer, build_app
from common.reliability import Guards
from common.runtime import Runtime, install_signal_handlers
from common.security import cli as security_cli
from common.security.http import AdminAuth
from common.security.producers import ProducerPolicy
from common.service import ServiceFactory
from common.store import Store
from eventguard import demo as demo_module
from eventguard import load as load_cli
from eventguard.consumes import consumed_types
from eventguard.definitions import rabbitmq_definitions
from schemas.envelope import new_event
from schemas.export import write_all
from schemas.registry import CATALOGUE, payload_model
from workers.ai_fallback import cli as ai_cli
from workers.health_monitor import cli as health_cli
from workers.opportunity_discovery import cli as opportunity_cli
from workers.quarantine import cli as quarantine_cli
from workers.registry import WORKERS

__all__ = ["main", "serve"]

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
_log = get_logger("eventguard.cli")
_VERSION = "0.1.0"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run workers against RabbitMQ and Redis")
    run.add_argument("workers", nargs="+", choices=sorted(WORKERS))
    run.set_defaults(func=_run)

    demo = sub.add_parser("demo", help="the whole fleet in one process, on in-memory parts")
    demo.add_argument("--forever", action="store_true", help="keep running after the stories")
    demo.add_argument("--port", type=int, default=8080, help="ops port (0 picks a free one)")
    demo.set_defaults(func=_demo)

    publish = sub.add_parser("publish", help="validate and publish one event")
    publish.add_argument("type", choices=sorted(CATALOGUE))
    publish.add_argument("--data", required=True, help="the payload as JSON")
    publish.add_argument("--source", default="cli")
    publish.set_defaults(func=_publish)

    topology = sub.add_parser("topology", help="broker topology")
    topology_sub = topology.add_subparsers(dest="topology_command", required=True)
    apply = topology_sub.add_parser("apply", help="declare every worker's exchanges and queues")
    apply.set_defaults(func=_topology_apply)
    definitions = topology_sub.add_parser(
        "definitions", help="print RabbitMQ definitions (JSON) for the whole fleet"
    )
    definitions.set_defaults(func=_topology_definitions)

    schema = sub.add_parser("schema", help="event schemas")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_sub.add_parser("export", help="write JSON Schema and AsyncAPI 3.0")
    export.add_argument("--out", type=Path, default=Path("schema-out"))
    export.set_defaults(func=_schema_export)

    workers = sub.add_parser("workers", help="list the workers and what they consume")
    workers.set_defaults(func=_workers)

    for module in (security_cli, quarantine_cli, health_cli, ai_cli, opportunity_cli, load_cli):
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventguard`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"eventguard: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level, fmt=settings.log_format, instance=settings.instance)
    func: Command = args.func
    try:
        return asyncio.run(func(args, settings))
    except ConfigError as error:
        print(f"eventguard: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _secret(value: Any) -> str:
    return str(value.get_secret_value())


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    return await serve(settings, [(name, WORKERS[name]) for name in args.workers])


async def serve(settings: Settings, factories: Sequence[tuple[str, ServiceFactory]]) -> int:
    """Run ``factories``' workers in this process over the real broker and Redis, with the ops
    server, until SIGTERM or SIGINT (``eventguard run``; the fleet benchmark's noop workers)."""
    require_production(settings)
    metrics = Metrics()
    broker = AmqpBroker(
        _secret(settings.broker_url),
        metrics=metrics,
        name=f"eventguard-{'-'.join(name for name, _ in factories)}-{settings.instance}",
        reconnect_max_delay_s=settings.runtime.reconnect_max_delay_s,
    )
    guards = Guards(metrics=metrics, overrides=settings.reliability.dependencies)
    store = Store.from_settings(settings, guard=guards.guard("redis"))
    guards.bind_store(store)
    policy = ProducerPolicy.from_settings(settings)
    runtime = Runtime(
        settings=settings,
        factories=factories,
        broker=broker,
        store=store,
        metrics=metrics,
        authorize=policy.is_allowed,
        guards=guards,
    )
    stop = asyncio.Event()
    install_signal_handlers(stop)
    stream = EventStream()
    auth = AdminAuth.from_settings(settings, store=store, metrics=metrics)
    try:
        async with runtime.lifespan():
            for running in runtime.workers.values():
                running.publisher.add_listener(stream.publish)
            app = build_app(runtime, auth=auth, stream=stream)
            async with OpsServer(app, host=settings.ops_host, port=settings.ops_port).serving():
                await stop.wait()
                _log.info("worker.stopping", reason="signal")
    finally:
        await store.close()
    return 0


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    return await demo_module.run_demo(settings, forever=args.forever, port=args.port)


async def _publish(args: argparse.Namespace, settings: Settings) -> int:
    require_production(settings)
    try:
        payload = payload_model(args.type).model_validate_json(args.data)
    except ValidationError as error:
        print(f"eventguard: invalid {args.type} payload:\n{error}", file=sys.stderr)
        return 2
    metrics = Metrics()
    broker = AmqpBroker(_secret(settings.broker_url), metrics=metrics, name="eventguard-cli")
    await broker.start()
    try:
        publisher = Publisher(broker, worker="cli", user_id=settings.broker_user, metrics=metrics)
        event = new_event(args.type, payload, source=args.source)
        await publisher.publish(event)
    finally:
        await broker.close()
    print(json.dumps({"published": event.id, "type": event.type}))
    return 0


async def _topology_apply(_args: argparse.Namespace, settings: Settings) -> int:
    require_production(settings)
    broker = AmqpBroker(_secret(settings.broker_url), metrics=Metrics(), name="eventguard-cli")
    await broker.start()
    try:
        for name, types in consumed_types().items():
            await broker.declare(
                worker_topology(
                    name,
                    types,
                    retry_delays_s=settings.runtime.retry_delays_s,
                    delivery_limit=settings.runtime.delivery_limit,
                )
            )
            print(f"declared eventguard.{name} ({len(types)} bindings)")
    finally:
        await broker.close()
    return 0


async def _topology_definitions(_args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(rabbitmq_definitions(settings), indent=2))
    return 0


async def _schema_export(args: argparse.Namespace, _settings: Settings) -> int:
    written = write_all(args.out, consumed_types(), version=_VERSION)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


async def _workers(_args: argparse.Namespace, _settings: Settings) -> int:
    for name, types in consumed_types().items():
        print(f"{name}: {', '.join(types) or '(no events)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
