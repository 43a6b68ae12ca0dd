"""Admission: whether a delivery is an event at all, checked against the wire contract.

The contract is the exported JSON Schemas plus the AMQP properties that mirror the envelope
(docs/wire-contract.md lists each rule and its reason). In order, each check with its one
dead-letter reason:

1. the body is at most ``max_body_bytes`` -> ``too_large``;
2. ``content_encoding`` is absent or ``identity`` -> ``bad_content_encoding``;
3. ``content_type`` is absent or ``application/json`` (``charset=utf-8`` allowed)
   -> ``bad_content_type``;
4. the body is JSON -> ``invalid_json``;
5. the body's ``type`` is in the catalogue -> ``unknown_type``; the ``type`` property, when
   present, equals it -> ``type_mismatch``;
6. the envelope and its payload validate *strictly*, as the schemas say (no string-to-number or
   string-to-bool coercion, ``time`` an RFC 3339 string with an offset) -> ``schema_violation``;
7. the routing key equals the type -> ``routing_key_mismatch`` (for a relayed copy, a retry or
   a release, the original routing key its relay recorded).

Python-side construction of models stays lax (``Model(field="1")`` still converts); only wire
JSON goes through :func:`parse_event`, in strict mode.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from common.bus import headers as h
from common.bus.headers import DeadReason
from common.bus.message import IncomingMessage
from schemas.envelope import Envelope
from schemas.registry import envelope_model, is_known

__all__ = ["CONTENT_TYPE", "DeadLetter", "admit", "parse_event", "peek_type"]

CONTENT_TYPE = "application/json"
_IDENTITY = frozenset({"", "identity"})
_CHARSETS = frozenset({"utf-8", "utf8"})
_LEGACY_COPY = "application/octet-stream"  # older runtimes' stamp on copies of such messages


class DeadLetter(Exception):
    """The message cannot be taken: dead-letter it with ``reason``."""

    def __init__(self, reason: DeadReason, detail: str, exception: str = "") -> None:
        super().__init__(detail)
        self.reason: DeadReason = reason
        self.detail = detail
        self.exception = exception


def admit(message: IncomingMessage, *, max_body_bytes: int, relayed: bool) -> Envelope[Any]:
    """The event in ``message``, or :class:`DeadLetter` naming the first rule it breaks.

    ``relayed``: the message was re-published by a trusted relay (this worker's retry, a
    quarantine release), whose ``x-eventguard-routing-key`` header is then believed.
    """
    body = message.body
    if len(body) > max_body_bytes:
        raise DeadLetter("too_large", f"{len(body)} bytes > {max_body_bytes}")
    _check_properties(message, relayed=relayed)
    event = _parse(message)
    routing_key = message.routing_key
    if relayed and h.ORIGINAL_ROUTING_KEY in message.headers:
        routing_key = str(message.headers[h.ORIGINAL_ROUTING_KEY])
    if routing_key != event.type:
        raise DeadLetter(
            "routing_key_mismatch",
            f"routing key {routing_key[:200]!r} differs from event type {event.type!r}",
        )
    return event


def parse_event(body: bytes | str, event_type: str) -> Envelope[Any]:
    """``body`` as an ``event_type`` envelope, validated strictly (ValidationError if not)."""
    return envelope_model(event_type).model_validate_json(body, strict=True)


def peek_type(body: bytes | str) -> str:
    """The ``type`` of an envelope whatever its payload (:class:`DeadLetter` if there is none)."""
    try:
        envelope = Envelope[dict[str, Any]].model_validate_json(  # type: ignore[type-var]
            body, strict=True
        )
    except ValidationError as error:
        raise _invalid(error) from None
    return str(envelope.type)


def _check_properties(message: IncomingMessage, *, relayed: bool) -> None:
    encoding = message.content_encoding or ""
    if encoding.strip().lower() not in _IDENTITY:
        raise DeadLetter(
            "bad_content_encoding",
            f"content_encoding {encoding[:100]!r}: only identity (or none) is accepted",
        )
    if message.content_type is None:
        return  # absent: JSON is assumed (docs/wire-contract.md)
    if relayed and message.content_type == _LEGACY_COPY:
        return  # a retry or release copy made before copies kept an absent content_type
    media, *params = (part.strip().lower() for part in message.content_type.split(";"))
    charsets = {p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")}
    others = [p for p in params if not p.startswith("charset=")]
    if media != CONTENT_TYPE or others or not charsets <= _CHARSETS:
        raise DeadLetter(
            "bad_content_type",
            f"content_type {message.content_type[:100]!r}: expected {CONTENT_TYPE!r}",
        )


def _parse(message: IncomingMessage) -> Envelope[Any]:
    claimed = message.type
    if claimed is None or not is_known(claimed):
        body_type = peek_type(message.body)
        if claimed is not None and claimed != body_type:
            raise _mismatch(claimed, body_type)
        if not is_known(body_type):
            detail = f"event type {body_type[:128]!r} is not in the catalogue"
            raise DeadLetter("unknown_type", detail)
        claimed = body_type
    try:
        event = parse_event(message.body, claimed)
    except ValidationError as error:
        dead = _invalid(error)
        if dead.reason == "schema_violation":
            body_type = peek_type(message.body)  # only on failure: say the real fault
            if body_type != claimed:
                raise _mismatch(claimed, body_type) from None
        raise dead from None
    if event.type != claimed:
        raise _mismatch(claimed, event.type)
    return event


def _mismatch(claimed: str, body_type: str) -> DeadLetter:
    return DeadLetter(
        "type_mismatch",
        f"type property {claimed[:128]!r} differs from envelope type {body_type[:128]!r}",
    )


def _invalid(error: ValidationError) -> DeadLetter:
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return DeadLetter("invalid_json", str(first["msg"]), "ValidationError")
    return DeadLetter("schema_violation", _summarise(error), "ValidationError")


def _summarise(error: ValidationError) -> str:
    """The first few validation errors, one ``loc: msg`` each."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]]
    return "; ".join(parts)
