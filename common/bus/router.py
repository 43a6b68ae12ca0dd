"""Handlers: typed async functions registered by their payload model.

``router.add(QuarantineRequested, handler)``: the event type comes from the catalogue
(:func:`schemas.registry.event_type_of`), so the handler's annotation
(``Envelope[QuarantineRequested]``) and the type it is bound to cannot disagree.

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
from schemas.envelope import Envelope, Payload
from schemas.registry import event_type_of

__all__ = ["Emit", "Handler", "RawHandler", "Route", "Router"]

Emit = Sequence[Envelope[Any]]
Handler = Callable[[Envelope[Any]], Awaitable[Emit | None]]
RawHandler = Callable[[IncomingMessage], Awaitable[Emit | None]]
P = TypeVar("P", bound=Payload)


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
        model: type[P],
        handler: Callable[[Envelope[P]], Awaitable[Emit | None]],
        *,
        timeout_s: float | None = None,
        reply: bool | frozenset[str] = False,
        broadcast: bool = False,
    ) -> None:
        """Register ``handler`` for the catalogue type whose payload is ``model`` (once). A
        ``broadcast`` type reaches every replica of the worker (its per-replica queue), not
        just one."""
        event_type = event_type_of(model)
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
