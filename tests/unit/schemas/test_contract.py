"""The exported JSON Schemas and the runtime's strict wire validation agree, type by type."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; only a test uses it
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.bus.admission import parse_event
from schemas.envelope import Envelope
from schemas.examples import PAYLOADS, example
from schemas.export import event_schemas
from schemas.quarantine import ENTITY_KINDS
from schemas.registry import CATALOGUE

SCHEMAS = event_schemas()
TYPES = sorted(CATALOGUE)


def _schema_accepts(event_type: str, body: dict[str, Any]) -> bool:
    validator = jsonschema.Draft202012Validator(
        SCHEMAS[event_type], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return bool(validator.is_valid(body))


def _runtime_accepts(event_type: str, body: dict[str, Any]) -> bool:
    try:
        parse_event(json.dumps(body), event_type)
    except ValidationError:
        return False
    return True


Path = tuple[str | int, ...]


def _leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path, node


def _with(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def _lax_variants(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every number, boolean and time of the example written the lax way."""
    for path, value in _leaves(body):
        where = ".".join(map(str, path))
        if isinstance(value, bool):
            yield f"{where} as a string", _with(body, path, str(value).lower())
            yield f"{where} as a number", _with(body, path, int(value))
        elif isinstance(value, int | float):
            yield f"{where} as a string", _with(body, path, str(value))
        elif isinstance(value, str) and value[:4].isdigit() and "T" in value:
            yield f"{where} as epoch seconds", _with(body, path, 1_764_621_000)
            yield f"{where} without seconds", _with(body, path, value[:16] + "+00:00")
            yield f"{where} without offset", _with(body, path, value[:19])


@pytest.mark.parametrize("event_type", TYPES)
def test_each_exported_schema_states_the_contract(event_type: str) -> None:
    """$schema, type as const, specversion required, the body limit, and one valid example."""
    schema = SCHEMAS[event_type]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"]["const"] == event_type
    assert "specversion" in schema["required"]
    assert schema["x-eventguard-max-body-bytes"] == 262_144
    assert "262144 bytes" in schema["description"]
    (sample,) = schema["examples"]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert _schema_accepts(event_type, sample)
    assert _runtime_accepts(event_type, sample)


def test_every_type_has_an_example() -> None:
    """The examples cover the catalogue exactly."""
    assert set(PAYLOADS) == set(CATALOGUE)


@pytest.mark.parametrize("event_type", TYPES)
def test_schema_and_runtime_refuse_the_same_lax_values(event_type: str) -> None:
    """Strings for numbers or booleans, epoch or partial times: both refuse, for every field."""
    body = example(event_type)
    variants = list(_lax_variants(body))
    assert variants, "every example has a number, boolean or time to bend"
    for case, variant in variants:
        verdicts = (_schema_accepts(event_type, variant), _runtime_accepts(event_type, variant))
        assert verdicts == (False, False), case


@pytest.mark.parametrize("event_type", TYPES)
def test_schema_and_runtime_agree_on_the_envelope(event_type: str) -> None:
    """Without specversion, with an unknown field or a bad time both refuse; lower case passes."""
    body = example(event_type)
    without_version = {k: v for k, v in body.items() if k != "specversion"}
    for variant in (without_version, {**body, "extra": 1}, {**body, "time": "yesterday"}):
        assert not _schema_accepts(event_type, variant)
        assert not _runtime_accepts(event_type, variant)
    lower = {**body, "time": body["time"].lower()}  # RFC 3339 allows a lower-case t and z
    assert _schema_accepts(event_type, lower)
    assert _runtime_accepts(event_type, lower)
    other = next(t for t in TYPES if t != event_type)
    assert not _schema_accepts(event_type, {**body, "type": other})


@settings(max_examples=60, deadline=None)
@given(
    uptime=st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()),
    in_flight=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
    paused=st.one_of(st.booleans(), st.integers(0, 1), st.sampled_from(["true", "false"])),
)
def test_heartbeat_numbers_agree(uptime: float, in_flight: float, paused: object) -> None:
    """Generated numbers and flags: the schema and the runtime give the same verdict."""
    body = example("health.heartbeat")
    body["data"] |= {"uptime_s": uptime, "in_flight": in_flight, "paused": paused}
    if isinstance(in_flight, float) and in_flight.is_integer():
        return  # JSON Schema counts 2.0 as an integer; the runtime wants 2 (stricter, on purpose)
    assert _schema_accepts("health.heartbeat", body) == _runtime_accepts("health.heartbeat", body)


def test_python_callers_may_leave_specversion_out() -> None:
    """The default specversion still applies to models built in Python."""
    event = Envelope[Any].model_validate({**example("health.heartbeat"), "specversion": "1.0"})
    assert event.specversion == "1.0"
    built = Envelope[dict[str, Any]].model_validate(  # type: ignore[type-var]
        {k: v for k, v in example("health.heartbeat").items() if k != "specversion"}
    )
    assert built.specversion == "1.0"


def test_quarantine_requests_name_only_entity_kinds() -> None:
    """The schema's kind enum is the entity kinds; `message` is not one (it arrives dead)."""
    data = SCHEMAS["quarantine.requested"]["$defs"]["QuarantineRequested"]
    assert set(data["properties"]["kind"]["enum"]) == ENTITY_KINDS
    assert "message" not in ENTITY_KINDS
    body = example("quarantine.requested")
    body["data"]["kind"] = "message"
    assert not _schema_accepts("quarantine.requested", body)
    assert not _runtime_accepts("quarantine.requested", body)


def test_alerts_name_entity_kinds_from_the_same_set() -> None:
    """health.alert.* entity_kind is the same closed set as quarantine's."""
    data = SCHEMAS["health.alert.raised"]["$defs"]["AlertRaised"]
    kinds = next(v["enum"] for v in data["properties"]["entity_kind"]["anyOf"] if "enum" in v)
    assert set(kinds) == ENTITY_KINDS
