"""The ``eventguard`` command line.

``run WORKER...`` runs workers for real (RabbitMQ and Redis from the environment, refusing to
start without them); ``demo`` runs the whole fleet in one process on in-memory parts;
``publish``, ``topology apply``, ``schema export`` and ``workers`` are tools for operators,
and each worker adds its own command group.

Each command group is added by one function (``_add_run``, ``security_cli.add_commands``...)
listed in :func:`_parser`: a new group is one function and one line there. Each handler is
``async def (args, settings) -> int`` (the exit code), set as ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeAlias, cast

from pydantic import ValidationError
from redis.exceptions import RedisError

from common.bus.amqp import AmqpBroker
from common.bus.nodes import broker_urls
from common.bus.publisher import Publisher
from common.bus.rpc import request
from common.bus.topology import worker_topology
from common.clitools import (
    HelpFormatter,
    add_json_flag,
    parse_duration,
    print_rows,
    progress_bar,
)
from common.config import Settings, otel_environment, require_production
from common.errors import ConfigError, EventGuardError
from common.logging import configure_logging, get_logger
from common.metrics import Metrics
from common.ops import EventStream, OpsServer, build_app
from common.preflight import check_broker_user, check_ops_port, check_outputs
from common.runtime import Runtime, install_signal_handlers
from common.security import cli as security_cli
from common.security.admission import Admission
from common.security.http import AdminAuth
from common.security.producers import ProducerPolicy
from common.service import ServiceFactory
from common.store import Store
from common.telemetry import from_environment
from eventguard import load as load_cli
from eventguard import setup_local as setup_cli
from eventguard.admin_api import admin_openapi
from eventguard.console import serve_console
from eventguard.contract import contract_from
from eventguard.definitions import rabbitmq_definitions
from schemas.envelope import Actor, Envelope, new_event
from schemas.export import write_all
from schemas.registry import CATALOGUE, payload_model
from workers.ai_fallback import cli as ai_cli
from workers.health_monitor import cli as health_cli
from workers.opportunity_discovery import cli as opportunity_cli
from workers.quarantine import cli as quarantine_cli
from workers.registry import WORKERS, consumed_types

try:  # the `demo` extra (fakeredis, lupa): the containers install without it and never need it
    from eventguard.demo import run_demo
except ModuleNotFoundError as _missing:
    if _missing.name not in {"fakeredis", "lupa"}:
        raise
    _DEMO_MISSING: str | None = _missing.name
else:
    _DEMO_MISSING = None

__all__ = ["main", "serve"]

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
_log = get_logger("eventguard.cli")
_VERSION = "0.1.0"
_TOOL_START_S = 15.0  # a one-shot command gives the broker this long to accept the login


_DESCRIPTION = """\
EventGuard: run the workers, publish events, and inspect and operate a running fleet.

Settings come from EVENTGUARD_* environment variables (see the README's Configuration).
Durations are written 90s, 15m, 2h or 30d everywhere. Listings print tables; --json prints
JSON for scripts. Logs go to stderr at WARNING and above (run and demo: EVENTGUARD_LOG_LEVEL);
-v shows INFO, -vv DEBUG.
"""


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: help shows defaults (nested subparsers inherit the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eventguard", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"eventguard {_VERSION}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log INFO (-v) or DEBUG (-vv) to stderr; otherwise WARNING and above",
    )
    # Typed as plain ArgumentParser subparsers: the command groups need nothing of _Parser.
    sub = cast(
        "Subparsers", parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    )
    for add in (
        _add_run,
        _add_demo,
        _add_console,
        _add_publish,
        _add_topology,
        _add_schema,
        _add_workers,
        security_cli.add_commands,
        quarantine_cli.add_commands,
        health_cli.add_commands,
        ai_cli.add_commands,
        opportunity_cli.add_commands,
        load_cli.add_commands,
        setup_cli.add_commands,
    ):
        add(sub)
    return parser


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_run(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="run workers against RabbitMQ and Redis")
    run.add_argument(
        "workers",
        nargs="+",
        choices=sorted(WORKERS),
        metavar="WORKER",
        help=f"the workers to run in this process: {', '.join(sorted(WORKERS))}",
    )
    run.add_argument(
        "--ops-port",
        type=int,
        default=None,
        help="port of /healthz, /readyz, /metrics and /admin (default: EVENTGUARD_OPS_PORT; "
        "0 picks a free one and prints it)",
    )
    run.set_defaults(func=_run, service=True)


def _add_demo(sub: Subparsers) -> None:
    demo = sub.add_parser("demo", help="the whole fleet in one process, on in-memory parts")
    demo.add_argument("--once", action="store_true", help="run the four stories, then exit")
    demo.add_argument("--port", type=int, default=8080, help="ops port (0 picks a free one)")
    demo.set_defaults(func=_demo, service=True)


def _add_console(sub: Subparsers) -> None:
    console = sub.add_parser("console", help="the operators' web console (docs/console.md)")
    console.set_defaults(func=_console, service=True)


def _add_publish(sub: Subparsers) -> None:
    publish = sub.add_parser("publish", help="validate and publish one event")
    publish.add_argument(
        "type",
        choices=sorted(CATALOGUE),
        metavar="TYPE",
        help="the event type, e.g. "
        "opportunity.scan.requested (`eventguard workers` lists who consumes what)",
    )
    publish.add_argument("--data", required=True, help="the payload (the event's data) as JSON")
    publish.add_argument("--source", default="cli", help="the envelope's source")
    publish.add_argument(
        "--wait",
        type=parse_duration,
        nargs="?",
        const=30,
        default=None,
        metavar="DURATION",
        help="wait for the reply (ai.completion.requested, opportunity.scan.requested) and "
        "print it; alone, waits 30s",
    )
    publish.add_argument(
        "--actor",
        metavar="SUBJECT:ROLE[:TENANT]",
        help="who asked, as this AMQP user asserts it (never a token; see docs/actors.md)",
    )
    publish.set_defaults(func=_publish)


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


def _log_level(args: argparse.Namespace, settings: Settings) -> str:
    """WARNING for tools; the configured level for long-running services; -v and -vv raise it."""
    if args.verbose >= 2:
        return "DEBUG"
    if args.verbose == 1:
        return "INFO"
    return settings.log_level if getattr(args, "service", False) else "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventguard`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"eventguard: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(
        level=_log_level(args, settings), fmt=settings.log_format, instance=settings.instance
    )
    func: Command = args.func
    try:
        return asyncio.run(func(args, settings))
    except ConfigError as error:
        print(f"eventguard: {error}", file=sys.stderr)
        return 2
    except EventGuardError as error:  # e.g. the broker refused the login or never answered
        print(f"eventguard: {error} (EVENTGUARD_BROKER_URL)", file=sys.stderr)
        return 1
    except RedisError as error:
        print(f"eventguard: Redis: {error} (EVENTGUARD_REDIS_URL)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _secret(value: Any) -> str:
    return str(value.get_secret_value())


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.ops_port is not None:
        settings = settings.model_copy(update={"ops_port": args.ops_port})
    return await serve(settings, [(name, WORKERS[name]) for name in args.workers])


async def serve(settings: Settings, factories: Sequence[tuple[str, ServiceFactory]]) -> int:
    """Run ``factories``' workers in this process over the real broker and Redis, with the ops
    server, until SIGTERM or SIGINT (``eventguard run``; the fleet benchmark's noop workers)."""
    require_production(settings)
    policy = ProducerPolicy.from_settings(settings)
    check_broker_user(settings)
    check_outputs(settings, [name for name, _ in factories], policy)
    check_ops_port(settings.ops_host, settings.ops_port)
    metrics = Metrics()
    broker = AmqpBroker(
        broker_urls(settings),
        metrics=metrics,
        name=f"eventguard-{'-'.join(name for name, _ in factories)}-{settings.instance}",
        reconnect_max_delay_s=settings.runtime.reconnect_max_delay_s,
    )
    runtime = Runtime.assemble(
        settings,
        factories,
        broker=broker,
        store=lambda guard: Store.from_settings(settings, guard=guard),
        metrics=metrics,
        authorize=Admission.from_settings(settings),
    )
    store = runtime.store
    telemetry = from_environment(
        otel_environment(),
        service_name="+".join(name for name, _ in factories),
        instance=settings.instance,
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
            ops = OpsServer(app, host=settings.ops_host, port=settings.ops_port)
            async with ops.serving():
                if settings.ops_port == 0:  # WARNING: shown at every level
                    _log.warning(
                        "ops.port_picked",
                        url=f"http://{settings.ops_host}:{ops.port}/",
                        reason="--ops-port 0",
                    )
                await stop.wait()
                _log.info("worker.stopping", reason="signal")
    finally:
        await store.close()
        if telemetry is not None:
            telemetry.shutdown()  # flushes the spans still queued
    return 0


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if _DEMO_MISSING is not None:
        print(
            f"eventguard: the demo needs the demo extra ({_DEMO_MISSING} is not installed): "
            "pip install 'eventguard[demo]', or run `make demo`",
            file=sys.stderr,
        )
        return 2
    return await run_demo(
        settings, once=args.once, port=args.port, console_port=settings.console.port
    )


async def _console(_args: argparse.Namespace, settings: Settings) -> int:
    return await serve_console(settings)


async def _publish(args: argparse.Namespace, settings: Settings) -> int:
    try:
        payload = payload_model(args.type).model_validate_json(args.data)
    except ValidationError as error:
        print(f"eventguard: invalid {args.type} payload:\n{error}", file=sys.stderr)
        return 2
    try:
        actor = parse_actor(args.actor)
    except ValueError as error:
        print(f"eventguard: invalid --actor: {error}", file=sys.stderr)
        return 2
    metrics = Metrics()
    broker = AmqpBroker(
        broker_urls(settings), metrics=metrics, name="eventguard-cli", start_timeout_s=_TOOL_START_S
    )
    await broker.start()
    reply: Envelope[Any] | None = None
    try:
        publisher = Publisher(broker, worker="cli", user_id=settings.broker_user, metrics=metrics)
        event = new_event(args.type, payload, source=args.source, actor=actor)
        if args.wait is None:
            await publisher.publish(event)
        else:
            print(json.dumps({"published": event.id, "type": event.type}), flush=True)
            try:
                reply = await request(publisher, event, timeout_s=args.wait)
            except TimeoutError:
                print(
                    f"eventguard: no reply to {event.id} within {args.wait}s (is a worker "
                    f"consuming {args.type}, and does it answer by reply_to?)",
                    file=sys.stderr,
                )
                return 1
    finally:
        await broker.close()
    if reply is None:
        print(json.dumps({"published": event.id, "type": event.type}))
    else:
        print(reply.model_dump_json(indent=2))
    return 0


def parse_actor(text: str | None) -> Actor | None:
    """``SUBJECT:ROLE[:TENANT]`` as an actor (ValueError, pydantic's included, when bad)."""
    if text is None:
        return None
    subject, _, rest = text.partition(":")
    role, _, tenant = rest.partition(":")
    return Actor.model_validate({"subject": subject, "role": role, "tenant": tenant or None})


async def _topology_apply(_args: argparse.Namespace, settings: Settings) -> int:
    broker = AmqpBroker(
        broker_urls(settings),
        metrics=Metrics(),
        name="eventguard-cli",
        start_timeout_s=_TOOL_START_S,
    )
    await broker.start()
    try:
        catalogue = consumed_types()
        with progress_bar("declaring", len(catalogue)) as advance:
            for name, types in catalogue.items():
                await broker.declare(
                    worker_topology(name, types, settings)
                )
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
    written = write_all(args.out, consumed_types(), version=_VERSION, contract=contract)
    openapi = args.out / "openapi.json"
    openapi.write_text(json.dumps(admin_openapi(), indent=2) + "\n")
    written.append(openapi)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


async def _workers(args: argparse.Namespace, _settings: Settings) -> int:
    rows = [{"worker": name, "consumes": types} for name, types in consumed_types().items()]
    print_rows(rows, ["worker", "consumes"], as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
