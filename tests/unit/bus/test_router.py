"""Router: a handler is registered by its payload model; the type comes from the catalogue."""

from __future__ import annotations

import pytest

from common.bus.router import Emit, Router
from schemas.envelope import Envelope, Payload
from schemas.quarantine import QuarantineRequested
from schemas.registry import CATALOGUE, event_type_of


async def _handle(_event: Envelope[QuarantineRequested]) -> Emit:
    return []


class _NotInTheCatalogue(Payload):
    pass


def test_a_model_binds_its_catalogue_type() -> None:
    """router.add(QuarantineRequested, ...) routes ``quarantine.requested``."""
    router = Router()
    router.add(QuarantineRequested, _handle, reply=True)
    assert router.event_types == ["quarantine.requested"]
    assert router.routes["quarantine.requested"].handler is _handle


def test_every_catalogue_model_names_its_own_type() -> None:
    """event_type_of inverts the catalogue: each payload model is the data of one type."""
    assert {event_type_of(model): model for model in CATALOGUE.values()} == CATALOGUE


def test_a_model_outside_the_catalogue_is_refused() -> None:
    """A payload model that no catalogue type carries cannot be routed."""
    with pytest.raises(ValueError, match="_NotInTheCatalogue"):
        Router().add(_NotInTheCatalogue, _handle)  # type: ignore[arg-type]


def test_a_type_has_one_handler() -> None:
    """Registering a second handler for the same model is an error."""
    router = Router()
    router.add(QuarantineRequested, _handle)
    with pytest.raises(ValueError, match="already has a handler"):
        router.add(QuarantineRequested, _handle)
