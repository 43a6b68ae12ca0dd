"""The envelope and the catalogue: strict models, typed payloads, exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.ai import CompletionRequested, Message
from schemas.envelope import new_event
from schemas.export import asyncapi_document, event_schemas, write_all
from schemas.health import Heartbeat
from schemas.registry import CATALOGUE, envelope_model


def _heartbeat_json() -> dict[str, object]:
    beat = Heartbeat(worker="w", instance="i", started_at="2026-01-01T00:00:00Z", uptime_s=1.0)
    raw: dict[str, object] = json.loads(
        new_event("health.heartbeat", beat, source="w").model_dump_json()
    )
    return raw


def test_envelope_round_trips_with_typed_payload() -> None:
    """An envelope serialised and validated again keeps its typed payload."""
    data = CompletionRequested(messages=[Message(role="user", content="hi")])
    event = new_event("ai.completion.requested", data, source="t")
    again = envelope_model("ai.completion.requested").model_validate_json(event.model_dump_json())
    assert again == event
    assert isinstance(again.data, CompletionRequested)
    assert again.correlation_id == event.id


def test_caused_event_inherits_correlation() -> None:
    """An event caused by another carries its correlation id and names its cause."""
    cause = new_event("ai.completion.requested", CompletionRequested(messages=[]), source="t")
    beat = Heartbeat(worker="w", instance="i", started_at=cause.time, uptime_s=0)
    effect = new_event("health.heartbeat", beat, source="w", causation=cause)
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.id


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("extra",), 1),
        (("data", "extra"), 1),
        (("time",), "2026-01-01T00:00:00"),
        (("specversion",), "0.3"),
        (("data", "uptime_s"), -1),
        (("data", "error_rate"), "NaN"),
        (("id",), "has spaces"),
    ],
)
def test_envelope_rejects_bad_fields(path: tuple[str, ...], value: object) -> None:
    """Unknown fields, naive times, wrong spec versions and out-of-range numbers are refused."""
    raw = _heartbeat_json()
    target = raw
    for key in path[:-1]:
        target = target[key]  # type: ignore[assignment]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        envelope_model("health.heartbeat").model_validate(raw)


def test_every_catalogue_type_exports_a_schema(tmp_path: Path) -> None:
    """schema export writes one JSON Schema per event type plus an AsyncAPI 3.1 document."""
    schemas = event_schemas()
    assert set(schemas) == set(CATALOGUE)
    written = write_all(tmp_path, {"quarantine": ["quarantine.requested"]}, version="test")
    assert len(written) == len(CATALOGUE) + 1
    doc = json.loads((tmp_path / "asyncapi.json").read_text())
    assert doc["asyncapi"] == "3.1.0"
    assert doc["operations"]["quarantine_receives_quarantine_requested"]["action"] == "receive"
    assert doc["channels"]["health_heartbeat"]["address"] == "health.heartbeat"


def test_asyncapi_references_resolve() -> None:
    """Every $ref in the AsyncAPI document points at something the document defines."""
    doc = asyncapi_document({}, version="test")
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        node: object = doc
        for key in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict)
            assert key in node, ref
            node = node[key]
