"""Dead messages are redacted before they are recorded; clean ones stay byte for byte."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import time

from common.config.sections import SecuritySettings
from common.config.workers import QuarantineSettings
from common.security.tokens import TokenService
from workers.quarantine.records import DeadMessage
from workers.quarantine.scrub import scrub, scrub_body

NAMES = QuarantineSettings().secret_fields
# Minted at run time: no credential-shaped literal lives in the repository.
JWT = TokenService(SecuritySettings(jwt_signing_key=secrets.token_urlsafe(48)), store=None).issue(
    "root", "admin"
)
OPAQUE, PASSWORD, BEARER = (secrets.token_hex(8) for _ in range(3))


def _dead(body: bytes, headers: dict[str, object] | None = None) -> DeadMessage:
    return DeadMessage(
        record_id="r",
        body=body,
        headers=dict(headers or {}),
        properties={"reply_to": None, "app_id": "x"},
        reason="schema_violation",
        detail="",
        exception="",
        attempts=0,
        worker="w",
        queue="q",
        producer="p",
        event_type="t",
        event_id="e",
        dead_at="",
        destination=None,
    )


def test_a_clean_body_is_kept_byte_for_byte() -> None:
    """No credential: the very same bytes (odd spacing, non-UTF-8 and all)."""
    for body in (b'{ "a" : 1,  "max_tokens": 512 }', b"\xff\xfe\x00raw", b""):
        assert scrub_body(body, NAMES) == body
        fields = scrub(_dead(body), NAMES).fields(now=0.0)
        assert fields["body"] == body
        assert fields["redacted"] == "0"


def test_secret_fields_and_credential_shapes_are_redacted_in_json() -> None:
    """A token field, a password, a JWT and a Bearer value inside strings all go."""
    body = json.dumps(
        {
            "actor": {"subject": "a", "role": "admin", "token": OPAQUE},
            "data": {"note": f"use {JWT}", "Password": PASSWORD, "max_tokens": 16},
            "headers": [f"Authorization: Bearer {BEARER}"],
        }
    ).encode()
    out = scrub_body(body, NAMES)
    for secret in (OPAQUE, JWT, PASSWORD, BEARER):
        assert secret.encode() not in out
    assert json.loads(out)["data"]["max_tokens"] == 16


def test_configured_field_names_are_redacted() -> None:
    """A deployment adds its own secret field names (any case)."""
    body = b'{"data": {"PIN": "1234", "pin_hint": "x"}}'
    assert b"1234" in scrub_body(body, NAMES)
    assert b"1234" not in scrub_body(body, {*NAMES, "pin"})


def test_headers_non_json_bodies_and_details_are_redacted() -> None:
    """Authorization and cookie headers, a JWT in bytes, a password in the error detail."""
    dead = _dead(
        b"\xff not json " + JWT.encode(),
        {"Authorization": f"Bearer {JWT}", "Cookie": "sid=abc", "x-trace": "ok"},
    )
    dead = scrub(dataclasses.replace(dead, detail="amqp://u:pw-secret@h/ failed"), NAMES)
    fields = dead.fields(now=0.0)
    stored = json.dumps({k: v for k, v in fields.items() if k != "body"}).encode()
    for secret in (JWT.encode(), b"sid=abc", b"pw-secret"):
        assert secret not in fields["body"]
        assert secret not in stored
    assert b"ok" in stored
    assert fields["redacted"] == "1"
    original = b"\xff not json " + JWT.encode()
    assert fields["body_sha256"] == hashlib.sha256(original).hexdigest()
    assert fields["body_size"] == str(len(original))


def test_large_bodies_are_scanned_in_linear_time() -> None:
    """Two megabytes without a credential, or full of anchors, take well under a second."""
    for body in (b"x" * 2_000_000, b"a" * 1_000_000 + b"://" + b"b" * 1_000_000):
        started = time.perf_counter()
        assert scrub_body(body, NAMES) == body
        assert time.perf_counter() - started < 1.0


def test_a_credential_in_a_bytes_header_is_redacted() -> None:
    """Header bytes are stored as base64, which hides them from a text search: still found."""
    dead = _dead(b"{}", {"x-note": f"Bearer {BEARER}".encode(), "x-trace": "ok"})
    fields = scrub(dataclasses.replace(dead, headers_json=""), NAMES).fields(now=0.0)
    assert BEARER.encode() not in base64.b64decode(json.loads(fields["headers"])["x-note"]["$b64"])
    assert fields["redacted"] == "1"
