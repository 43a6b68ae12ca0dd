"""JSON Schema for every event, and the files ``eventguard schema export`` writes.

Each ``<type>.schema.json`` is the whole envelope of one type (JSON Schema 2020-12): ``type``
pinned as a ``const``, ``specversion`` required, the body size limit stated, one example. The
runtime validates wire JSON strictly against the same models (common/bus/admission.py), so a
body the schema accepts is one the workers accept, and the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas.asyncapi import Contract, asyncapi_document
from schemas.event_schema import DEFAULT_MAX_BODY_BYTES, JSON_SCHEMA_DIALECT, envelope_schema
from schemas.registry import CATALOGUE

__all__ = ["asyncapi_document", "event_schemas", "write_all"]

def event_schemas(*, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each event type's full envelope, by type."""
    out = {}
    for event_type in sorted(CATALOGUE):
        schema = {"$schema": JSON_SCHEMA_DIALECT, "$id": f"urn:eventguard:schema:{event_type}"}
        schema |= envelope_schema(event_type, max_body_bytes=max_body_bytes)
        out[event_type] = schema
    return out


def write_all(
    out: Path,
    consumers: Mapping[str, Sequence[str]],
    *,
    version: str,
    contract: Contract | None = None,
) -> list[Path]:
    """Write ``<type>.schema.json`` for each event and ``asyncapi.json`` into ``out``."""
    contract = contract or Contract()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in event_schemas(max_body_bytes=contract.max_body_bytes).items():
        path = out / f"{event_type}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    path = out / "asyncapi.json"
    document = asyncapi_document(consumers, version=version, contract=contract)
    path.write_text(json.dumps(document, indent=2) + "\n")
    written.append(path)
    return written
