"""Handlers: typed async functions registered per event type.

A handler takes the validated envelope and returns the events it wants published (or
nothing). It never acks: the pipeline publishes its output, waits for the confirms, then acks.
To say "retry later" it raises :class:`~common.errors.RetryLater`; for poison,
:class:`~common.errors.Reject`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from common.bus.message import IncomingMessage
from schemas.envelope import Envelope
from schemas.registry import is_known

__all__ = ["Emit", "Handler", "RawHandler", "Route", "Router"]

Emit = Sequence[Envelope[Any]]
Handler = Callable[[Envelope[Any]], Awaitable[Emit | None]]
RawHandler = Callable[[IncomingMessage], Awaitable[Emit | None]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Route:
    """How one event type is handled."""

    event_type: str
    handler: Handler
    timeout_s: float | None = None
    # Send the output events to the request's reply_to as well (request/reply): all of them
    # (True) or only these types (e.g. the one summary of a stream of results).
    reply: bool | frozenset[str] = False
    # Every replica must see it (its own queue), not one of them (the shared work queue).
    broadcast: bool = False

    def replies_with(self, event_type: str) -> bool:
        """Whether an output of ``event_type`` also goes to the requester's reply_to."""
        return self.reply is True or (
            isinstance(self.reply, frozenset) and event_type in self.reply
        )


class Router:
    """The event types a worker consumes, each with its handler."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    def add(
        self,
        event_type: str,
        handler: Handler,
        *,
        timeout_s: float | None = None,
        reply: bool | frozenset[str] = False,
        broadcast: bool = False,
    ) -> None:
        """Register ``handler`` for ``event_type`` (a catalogue type, once). A ``broadcast``
        type reaches every replica of the worker (its per-replica queue), not just one."""
        if not is_known(event_type):
            raise ValueError(f"{event_type!r} is not in the event catalogue")
        if event_type in self.routes:
            raise ValueError(f"{event_type!r} already has a handler")
        self.routes[event_type] = Route(event_type, handler, timeout_s, reply, broadcast)

    @property
    def event_types(self) -> list[str]:
        """The event types this router handles, sorted."""
        return sorted(self.routes)

    @property
    def broadcast_types(self) -> list[str]:
        """The types every replica handles (bound to each replica's own queue), sorted."""
        return sorted(t for t, route in self.routes.items() if route.broadcast)
