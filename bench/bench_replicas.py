"""Redis bytes per handled message at default settings (the figure the README's sizing uses).

A private ``redis-server`` (port 18379 by default, no persistence) so ``INFO memory`` sees
nothing but this run; the real runtime (pipeline, idempotency claim, auto-pipelining) on the
in-memory broker with a handler that returns at once, so what stays in Redis is what the
runtime itself keeps per message: the dedup marker, for ``idempotency_ttl_s`` (24 h default).
``used_memory`` is read before and after ``--count`` messages (100,000 by default).

Merges ``redis_bytes_per_message`` into bench/results/replicas.json. With ``--merge-e2e
PATH`` it instead copies the e2e figures of a ``make e2e`` run (``EVENTGUARD_E2E_RESULTS``)
into the same file: ``replicas`` (ai_fallback with 1, 2, 3 replicas against a 100 ms provider)
and ``replicas_fleet`` (three replicas of every worker, SIGKILLs: health_monitor takeover
seconds, QuarantineView convergence seconds).

    .venv/bin/python -m bench.bench_replicas [--count N] [--port P]
    .venv/bin/python -m bench.bench_replicas --merge-e2e bench/results/e2e.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.bus.message import OutgoingMessage
from common.bus.router import Emit
from common.bus.topology import EVENTS_EXCHANGE
from common.config import RuntimeSettings, Settings
from common.service import BaseService, WorkerContext
from common.store import connect_redis
from common.testing import run_workers
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested

RESULTS = Path(__file__).parent / "results" / "replicas.json"


class _Noop(BaseService):
    name = "noop"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.handled = 0
        self.router.add(QuarantineRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        self.handled += 1
        return []


@contextlib.asynccontextmanager
async def _private_redis(port: int) -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed for a private, unshared INFO memory")
    process = await asyncio.create_subprocess_exec(
        *(binary, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = connect_redis(url)
        for _ in range(100):
            with contextlib.suppress(Exception):  # not up yet
                if await client.ping():
                    break
            await asyncio.sleep(0.05)
        await client.aclose()
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def measure(count: int, port: int) -> dict[str, Any]:
    """Handle ``count`` messages; the Redis memory they leave behind."""
    runtime = RuntimeSettings(heartbeat_interval_s=3600.0)  # defaults otherwise
    settings = Settings(runtime=runtime, instance="bench")
    async with _private_redis(port) as url:
        client = connect_redis(url)
        async with run_workers([("noop", _Noop)], settings=settings, redis=client) as fleet:
            service = fleet.runtime.workers["noop"].service
            assert isinstance(service, _Noop)
            await fleet.settle()
            before = int((await client.info("memory"))["used_memory"])
            keys_before = int(await client.dbsize())
            started = time.perf_counter()
            request = QuarantineRequested(
                kind="producer", entity_id="p", reason="r", requested_by="bench"
            )
            for n in range(count):
                event = new_event("quarantine.requested", request, source="bench")
                await fleet.broker.publish(
                    OutgoingMessage(
                        body=event.model_dump_json().encode(),
                        routing_key=event.type,
                        exchange=EVENTS_EXCHANGE,
                        message_id=event.id,
                        type=event.type,
                        user_id="test",
                    )
                )
                if n % 1_000 == 999:
                    await fleet.broker.idle()  # no deadline: a busy machine is slow, not wrong
                    fleet.broker.published.clear()
            await fleet.settle()
            elapsed = time.perf_counter() - started
            after = int((await client.info("memory"))["used_memory"])
            keys_after = int(await client.dbsize())
            ttl = int(await client.ttl(f"{settings.redis_key_prefix}idem:noop:{event.id}"))
            handled = service.handled
        await client.aclose()
    return {
        "messages": count,
        "handled": handled,
        "used_memory_delta_bytes": after - before,
        "bytes_per_message": round((after - before) / count, 1),
        "keys_per_message": round((keys_after - keys_before) / count, 3),
        "marker_ttl_s": ttl,
        "idempotency_ttl_s": runtime.idempotency_ttl_s,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    """Run and merge the figure into bench/results/replicas.json."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=18379)
    parser.add_argument("--merge-e2e", type=Path, default=None)
    args = parser.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.merge_e2e is not None:
        e2e = json.loads(args.merge_e2e.read_text())
        for scenario in ("replicas", "replicas_fleet"):
            if scenario in e2e:
                old[scenario] = e2e[scenario]
        RESULTS.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
        return
    figures = asyncio.run(measure(args.count, args.port))
    print(json.dumps(figures, indent=2))
    old["redis_bytes_per_message"] = {
        **figures,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "private redis-server, in-memory broker, noop handler: the runtime's own state",
    }
    RESULTS.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
