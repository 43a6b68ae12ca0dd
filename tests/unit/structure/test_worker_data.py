"""What each worker package declares it consumes and publishes is what it really does."""

from __future__ import annotations

from common.security.producers import DEFAULT_PRODUCERS
from tests.unit.inert import inert_services
from workers.registry import WORKERS, consumed_types, published_types


def test_consumes_is_what_the_running_service_registers() -> None:
    """A worker's CONSUMES names exactly the types its router handles (its queue bindings)."""
    routed = {name: service.router.event_types for name, service in inert_services().items()}
    assert routed == consumed_types()


def test_publishes_is_what_the_producer_policy_allows_the_worker() -> None:
    """A worker's PUBLISHES names exactly the types its AMQP user may publish by default."""
    allowed = {
        name: sorted(t for t, users in DEFAULT_PRODUCERS.items() if name in users)
        for name in WORKERS
    }
    assert allowed == published_types()


def test_every_worker_declares_both() -> None:
    """The tables cover the same workers as the registry."""
    assert set(consumed_types()) == set(published_types()) == set(WORKERS)
