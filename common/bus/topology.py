"""Names and arguments of every exchange and queue EventGuard declares.

* ``eventguard.events``: topic exchange, routing key = event type.
* ``eventguard.<worker>``: a worker's durable quorum queue, bound to the types it consumes;
  dead-letters (at-least-once) to ``eventguard.dlx``; overflow rejects publishes; an explicit
  delivery limit stops a message that crashes its consumer from looping forever.
* ``eventguard.<worker>.retry.<ms>``: delay tiers; a message waits there for its TTL without
  being held by any consumer, then dead-letters back to the work queue.
* ``eventguard.dlx`` (fanout) -> ``eventguard.dead``: where dead messages wait for quarantine.
  Its delivery limit (:data:`DEAD_DELIVERY_LIMIT`) is the last resort for a dead message the
  quarantine worker fails to record again and again: RabbitMQ moves it (at-least-once) to
  ``eventguard.dead.unrecorded``, which nothing consumes, instead of requeueing it forever.
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

from common.bus.nodes import quorum_group_size
from common.config import Settings

__all__ = [
    "DEAD_DELIVERY_LIMIT",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_QUEUE",
    "EVENTS_EXCHANGE",
    "QUORUM_GROUP_SIZE",
    "UNRECORDED_QUEUE",
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
    "unrecorded_queue_spec",
    "unrouted_queue_spec",
    "work_queue_name",
    "worker_topology",
]

EVENTS_EXCHANGE = "eventguard.events"
DEAD_LETTER_EXCHANGE = "eventguard.dlx"
DEAD_QUEUE = "eventguard.dead"
UNRECORDED_QUEUE = "eventguard.dead.unrecorded"
# Deliveries of one dead message before it leaves for UNRECORDED_QUEUE. The raw consumer waits
# a second between failures and pauses while Redis' breaker is open, so this is a bug's budget.
DEAD_DELIVERY_LIMIT = 50
UNROUTED_EXCHANGE = "eventguard.unrouted"
UNROUTED_QUEUE = "eventguard.unrouted"
QUORUM_GROUP_SIZE = "x-quorum-initial-group-size"


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


def _quorum(extra: dict[str, str | int], group_size: int | None = None) -> dict[str, str | int]:
    """Quorum-queue arguments; ``group_size`` replicas (``x-quorum-initial-group-size``), or as
    many as the cluster has nodes when None."""
    sized: dict[str, str | int] = {} if group_size is None else {QUORUM_GROUP_SIZE: group_size}
    return {"x-queue-type": "quorum", **sized, **extra}


def dead_queue_spec(max_length: int = 1_000_000, *, group_size: int | None = None) -> QueueSpec:
    """The queue where dead messages wait for the quarantine worker."""
    return QueueSpec(
        name=DEAD_QUEUE,
        arguments=_quorum(
            {
                "x-max-length": max_length,
                "x-overflow": "reject-publish",
                "x-delivery-limit": DEAD_DELIVERY_LIMIT,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": UNRECORDED_QUEUE,
                "x-dead-letter-strategy": "at-least-once",
            },
            group_size,
        ),
        bindings=((DEAD_LETTER_EXCHANGE, ""),),
    )


def unrecorded_queue_spec(
    max_length: int = 1_000_000, *, group_size: int | None = None
) -> QueueSpec:
    """Dead messages quarantine could not record after DEAD_DELIVERY_LIMIT deliveries: kept,
    unconsumed, for an operator (docs/wire-contract.md says how to move them back)."""
    return QueueSpec(
        name=UNRECORDED_QUEUE,
        arguments=_quorum(
            {"x-max-length": max_length, "x-overflow": "reject-publish"}, group_size
        ),
    )


def base_exchanges() -> tuple[ExchangeSpec, ...]:
    """The exchanges every worker needs, in declaration order (alternates first)."""
    return (
        ExchangeSpec(UNROUTED_EXCHANGE, "fanout"),
        ExchangeSpec(EVENTS_EXCHANGE, "topic", alternate=UNROUTED_EXCHANGE),
        ExchangeSpec(DEAD_LETTER_EXCHANGE, "fanout"),
    )


def unrouted_queue_spec(
    max_length: int = 100_000, *, group_size: int | None = None
) -> QueueSpec:
    """Events nobody subscribes to yet: kept (bounded, oldest dropped first) for inspection."""
    return QueueSpec(
        name=UNROUTED_QUEUE,
        arguments=_quorum({"x-max-length": max_length, "x-overflow": "drop-head"}, group_size),
        bindings=((UNROUTED_EXCHANGE, ""),),
    )


def worker_topology(
    worker: str, event_types: Sequence[str], settings: Settings, *, max_length: int = 1_000_000
) -> Topology:
    """The exchanges and queues ``worker`` consumes from, declared idempotently at start, as
    ``settings`` shape them: the retry tiers and delivery limit of ``settings.runtime``, and the
    replicas of each quorum queue (:func:`~common.bus.nodes.quorum_group_size`)."""
    delivery_limit = settings.runtime.delivery_limit
    retry_delays_s = settings.runtime.retry_delays_s
    group_size = quorum_group_size(settings)
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
            },
            group_size,
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
                    },
                    group_size,
                ),
            )
        )
    return Topology(
        exchanges=base_exchanges(),
        queues=(
            work,
            *retry_specs,
            unrecorded_queue_spec(group_size=group_size),
            dead_queue_spec(group_size=group_size),
            unrouted_queue_spec(group_size=group_size),
        ),
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
