"""Names and arguments of every exchange and queue EventGuard declares.

* ``eventguard.events``: topic exchange, routing key = event type.
* ``eventguard.<worker>``: a worker's durable quorum queue, bound to the types it consumes;
  dead-letters (at-least-once) to ``eventguard.dlx``; overflow rejects publishes; an explicit
  delivery limit stops a message that crashes its consumer from looping forever.
* ``eventguard.<worker>.retry.<ms>``: delay tiers; a message waits there for its TTL without
  being held by any consumer, then dead-letters back to the work queue.
* ``eventguard.dlx`` (fanout) -> ``eventguard.dead``: where dead messages wait for quarantine.
* ``eventguard.unrouted`` (fanout, the events exchange's alternate) -> ``eventguard.unrouted``:
  events no queue is bound for yet, so a mandatory publish never fails for lack of a subscriber.
* ``eventguard.<worker>.replica.<instance>.<token>``: one per replica, exclusive and
  auto-delete (it lives as long as the replica's consumer), bound to the types every replica
  must see (quarantine entries, heartbeats for health_monitor) besides the work queue; bounded,
  oldest dropped first, since a replica that misses events resyncs from Redis anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_QUEUE",
    "EVENTS_EXCHANGE",
    "UNROUTED_EXCHANGE",
    "UNROUTED_QUEUE",
    "ExchangeSpec",
    "QueueSpec",
    "Topology",
    "base_exchanges",
    "dead_queue_spec",
    "replica_queue_spec",
    "retry_queue_name",
    "topic_matches",
    "unrouted_queue_spec",
    "work_queue_name",
    "worker_topology",
]

EVENTS_EXCHANGE = "eventguard.events"
DEAD_LETTER_EXCHANGE = "eventguard.dlx"
DEAD_QUEUE = "eventguard.dead"
UNROUTED_EXCHANGE = "eventguard.unrouted"
UNROUTED_QUEUE = "eventguard.unrouted"


def work_queue_name(worker: str) -> str:
    """The work queue of ``worker``."""
    return f"eventguard.{worker}"


def retry_queue_name(worker: str, delay_s: float) -> str:
    """The delay queue of ``worker`` for ``delay_s``."""
    return f"eventguard.{worker}.retry.{round(delay_s * 1000)}ms"


@dataclass(frozen=True)
class ExchangeSpec:
    """One exchange; ``alternate`` receives what no binding matches (so nothing is dropped)."""

    name: str
    type: str
    alternate: str | None = None


@dataclass(frozen=True)
class QueueSpec:
    """One queue: its arguments and its bindings (exchange, routing key)."""

    name: str
    arguments: dict[str, str | int]
    bindings: tuple[tuple[str, str], ...] = ()
    # A per-replica queue: declared by its consumer on its own channel, gone with it.
    exclusive: bool = False


@dataclass(frozen=True)
class Topology:
    """Everything a worker needs declared before it consumes."""

    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    work_queue: str = ""
    retry_queues: dict[float, str] = field(default_factory=dict)


def _quorum(extra: dict[str, str | int]) -> dict[str, str | int]:
    return {"x-queue-type": "quorum", **extra}


def dead_queue_spec(max_length: int = 1_000_000) -> QueueSpec:
    """The queue where dead messages wait for the quarantine worker."""
    return QueueSpec(
        name=DEAD_QUEUE,
        arguments=_quorum({"x-max-length": max_length, "x-overflow": "reject-publish"}),
        bindings=((DEAD_LETTER_EXCHANGE, ""),),
    )


def base_exchanges() -> tuple[ExchangeSpec, ...]:
    """The exchanges every worker needs, in declaration order (alternates first)."""
    return (
        ExchangeSpec(UNROUTED_EXCHANGE, "fanout"),
        ExchangeSpec(EVENTS_EXCHANGE, "topic", alternate=UNROUTED_EXCHANGE),
        ExchangeSpec(DEAD_LETTER_EXCHANGE, "fanout"),
    )


def unrouted_queue_spec(max_length: int = 100_000) -> QueueSpec:
    """Events nobody subscribes to yet: kept (bounded, oldest dropped first) for inspection."""
    return QueueSpec(
        name=UNROUTED_QUEUE,
        arguments=_quorum({"x-max-length": max_length, "x-overflow": "drop-head"}),
        bindings=((UNROUTED_EXCHANGE, ""),),
    )


def worker_topology(
    worker: str,
    event_types: Sequence[str],
    *,
    retry_delays_s: Sequence[float],
    delivery_limit: int,
    max_length: int = 1_000_000,
) -> Topology:
    """The exchanges and queues ``worker`` consumes from, declared idempotently at start."""
    queue = work_queue_name(worker)
    work = QueueSpec(
        name=queue,
        arguments=_quorum(
            {
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
                "x-delivery-limit": delivery_limit,
                "x-max-length": max_length,
            }
        ),
        bindings=tuple((EVENTS_EXCHANGE, t) for t in sorted(set(event_types))),
    )
    retries: dict[float, str] = {}
    retry_specs = []
    for delay in sorted(set(retry_delays_s)):
        name = retry_queue_name(worker, delay)
        retries[delay] = name
        retry_specs.append(
            QueueSpec(
                name=name,
                arguments=_quorum(
                    {
                        "x-message-ttl": round(delay * 1000),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    }
                ),
            )
        )
    return Topology(
        exchanges=base_exchanges(),
        queues=(work, *retry_specs, dead_queue_spec(), unrouted_queue_spec()),
        work_queue=queue,
        retry_queues=retries,
    )


def replica_queue_spec(
    worker: str,
    instance: str,
    token: str,
    event_types: Sequence[str],
    *,
    exchange: str = EVENTS_EXCHANGE,
    max_length: int = 10_000,
) -> QueueSpec:
    """The queue of one replica of ``worker``: every replica gets its own copy of
    ``event_types`` (competing consumers on the work queue would split them)."""
    return QueueSpec(
        name=f"eventguard.{worker}.replica.{instance[:100]}.{token}",
        arguments={"x-max-length": max_length, "x-overflow": "drop-head"},
        bindings=tuple((exchange, t) for t in sorted(set(event_types))),
        exclusive=True,
    )


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more words."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in {"*", words[0]}) and _match(rest, words[1:])
