"""The bus: broker protocol and its two implementations, topology, pipeline, publishing."""

from common.bus.amqp import AmqpBroker
from common.bus.broker import Broker, MessageHandler
from common.bus.idempotency import Idempotency
from common.bus.memory import MemoryBroker
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.pipeline import Authorizer, Pipeline, allow_all
from common.bus.publisher import Publisher, to_message
from common.bus.raw import RawPipeline
from common.bus.router import Emit, Handler, RawHandler, Route, Router
from common.bus.rpc import request
from common.bus.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    UNROUTED_EXCHANGE,
    UNROUTED_QUEUE,
    ExchangeSpec,
    QueueSpec,
    Topology,
    base_exchanges,
    dead_queue_spec,
    retry_queue_name,
    unrouted_queue_spec,
    work_queue_name,
    worker_topology,
)

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_QUEUE",
    "EVENTS_EXCHANGE",
    "UNROUTED_EXCHANGE",
    "UNROUTED_QUEUE",
    "AmqpBroker",
    "Authorizer",
    "Broker",
    "Emit",
    "ExchangeSpec",
    "Handler",
    "Idempotency",
    "IncomingMessage",
    "MemoryBroker",
    "MessageHandler",
    "OutgoingMessage",
    "Pipeline",
    "Publisher",
    "QueueSpec",
    "RawHandler",
    "RawPipeline",
    "Route",
    "Router",
    "Topology",
    "allow_all",
    "base_exchanges",
    "dead_queue_spec",
    "request",
    "retry_queue_name",
    "to_message",
    "unrouted_queue_spec",
    "work_queue_name",
    "worker_topology",
]
