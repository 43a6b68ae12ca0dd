"""The peers of the runtime benchmark (bench_runtime): what EventGuard's consumer and publisher
are compared with, on the same queues, bodies and prefetch, in the same process.

Every consumer returns a :class:`Window`: wall time from consume start to the N-th message
handled, and the CPU seconds the process used over that same window. Contenders run one after
another in one process, so ``time.process_time`` over the window is that contender's CPU alone
(the idle infrastructure connection costs nothing measurable), without the interpreter start-up,
imports and connection set-up that a subprocess's rusage would add to it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import aio_pika
from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue
from taskiq import AcknowledgeType, TaskiqMessage
from taskiq.api import run_receiver_task
from taskiq_aio_pika import AioPikaBroker, Exchange
from taskiq_aio_pika import Queue as TaskiqQueue

from schemas.envelope import Envelope
from schemas.quarantine import QuarantineRequested
from schemas.registry import envelope_model

__all__ = [
    "AMQP_URL",
    "EVENT_TYPE",
    "TASKIQ_TASK",
    "Done",
    "Window",
    "consume_faststream",
    "consume_raw",
    "consume_taskiq",
    "taskiq_bodies",
]

AMQP_URL = os.environ.get("EVENTGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
EVENT_TYPE = "quarantine.requested"
TASKIQ_TASK = "bench.handle"
Model = envelope_model(EVENT_TYPE)


@dataclass(frozen=True)
class Window:
    """One contender's run: wall seconds and process CPU seconds over the same window."""

    elapsed: float
    cpu_s: float


class Done:
    """Counts handled messages; the N-th closes the window (wall and CPU time)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.event = asyncio.Event()
        self._started = (0.0, 0.0)
        self._window = Window(0.0, 0.0)

    def start(self) -> None:
        """Open the window (just before consuming starts)."""
        self._started = (time.perf_counter(), time.process_time())

    def hit(self) -> None:
        """One more handled."""
        self.count += 1
        if self.count == self.target:
            wall, cpu = self._started
            self._window = Window(time.perf_counter() - wall, time.process_time() - cpu)
            self.event.set()

    async def wait(self) -> Window:
        """The window, once the target is reached."""
        await self.event.wait()
        return self._window


async def consume_raw(queue: str, n: int, prefetch: int) -> Window:
    """aio-pika consumer: validate with pydantic, ack."""
    done = Done(n)
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    amqp_queue = await channel.get_queue(queue, ensure=False)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        Model.model_validate_json(message.body)
        await message.ack()
        done.hit()

    done.start()
    await amqp_queue.consume(on_message)
    window = await done.wait()
    await connection.close()
    return window


async def consume_faststream(queue: str, n: int, prefetch: int) -> Window:
    """FastStream subscriber typed with the envelope model, logging off."""
    done = Done(n)
    broker = RabbitBroker(AMQP_URL, logger=None)

    @broker.subscriber(
        RabbitQueue(queue, queue_type=QueueType.QUORUM, durable=True, declare=False),
        channel=Channel(prefetch_count=prefetch),
    )
    async def handle(body: Envelope[QuarantineRequested]) -> None:
        done.hit()

    done.start()
    await broker.start()
    window = await done.wait()
    await broker.stop()
    return window


def taskiq_bodies(events: list[Envelope[QuarantineRequested]]) -> list[bytes]:
    """The events as Taskiq messages (what ``handle.kiq(event)`` sends): one call of the
    ``bench.handle`` task each, with the envelope as its argument."""
    return [
        TaskiqMessage(
            task_id=event.id,
            task_name=TASKIQ_TASK,
            labels={},
            args=[event.model_dump(mode="json")],
            kwargs={},
        )
        .model_dump_json()
        .encode()
        for event in events
    ]


async def consume_taskiq(queue: str, n: int, prefetch: int, exchange: str) -> Window:
    """Taskiq's worker over taskiq-aio-pika, as its documentation sets it up: a task typed with
    the envelope model (Taskiq validates the argument with pydantic), the receiver with the
    ``taskiq worker`` defaults (ack when the result is saved, at-least-once; no result backend),
    ``max_async_tasks`` and the channel's QoS both ``prefetch``. The queue exists already."""
    done = Done(n)
    broker = AioPikaBroker(
        AMQP_URL,
        qos=prefetch,
        exchange=Exchange(name=exchange),
        task_queues=[TaskiqQueue(name=queue, declare=False)],
        dead_letter_queue=TaskiqQueue(name=f"{queue}.dead"),
    )

    @broker.task(task_name=TASKIQ_TASK)
    async def handle(event: Envelope[QuarantineRequested]) -> None:
        done.hit()

    broker.is_worker_process = True
    await broker.startup()
    done.start()
    receiver = asyncio.create_task(
        run_receiver_task(broker, max_async_tasks=prefetch, ack_time=AcknowledgeType.WHEN_SAVED)
    )
    window = await done.wait()
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await _drop_taskiq(broker, f"{queue}.dead", exchange)
    await broker.shutdown()
    return window


async def _drop_taskiq(broker: Any, dead_queue: str, exchange: str) -> None:
    """Delete what Taskiq's start-up declared (its dead-letter queue and exchange)."""
    channel = broker.write_channel
    await channel.queue_delete(dead_queue)
    await channel.exchange_delete(exchange)
