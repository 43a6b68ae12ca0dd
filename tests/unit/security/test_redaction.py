"""Log redaction: tokens, keys, passwords and Authorization headers never reach a log line."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import Any

import structlog
from hypothesis import given
from hypothesis import strategies as st

from common.security.redaction import REDACTED, redact, redact_secrets, redact_text
from common.security.tokens import TokenService
from tests.unit.security import _mint as m


def _jwt() -> str:
    return TokenService(m.settings(), store=None).issue("alice", "admin")


def _run(event: dict[str, Any]) -> str:
    return json.dumps(redact_secrets(None, "info", dict(event)), default=str)


def test_secret_keys_are_redacted_at_any_depth() -> None:
    """Values under secret-looking keys are replaced, nested in dicts and lists too."""
    secret = secrets.token_hex(12)
    event = {
        "event": "x",
        "password": secret,
        "Authorization": f"Bearer {secret}",
        "headers": {"X-API-Key": secret, "cookie": secret, "accept": "json"},
        "items": [{"client_secret": secret}, ({"dbPassword": secret},)],
        "signing_key": secret,
        "private_key": secret,
        "access_token": secret,
        "credentials": {"user": "u", "pass": secret},
    }
    text = _run(event)
    assert secret not in text
    assert '"accept": "json"' in text


def test_counts_under_token_like_keys_survive() -> None:
    """Numbers, bools and None are never secrets: max_tokens=512 stays."""
    cleaned = redact_secrets(None, "info", {"max_tokens": 512, "token_valid": True, "pwd": None})
    assert cleaned == {"max_tokens": 512, "token_valid": True, "pwd": None}


def test_jwts_are_redacted_inside_any_string() -> None:
    """A JWT in a message, a value, a nested list or a dict key is replaced."""
    token = _jwt()
    event = {
        "event": f"got {token} from client",
        "note": f"x={token};",
        "deep": [[{"k": token}]],
        "by_token": {token: "alice"},
    }
    text = _run(event)
    assert token not in text
    assert "eyJ" not in text


def test_url_passwords_are_redacted_keeping_the_rest() -> None:
    """A URL password is replaced; user, host and port stay (an empty user too, as Redis has)."""
    password = secrets.token_hex(8)
    text = redact_text(
        f"connect amqp://eventguard:{password}@rabbit:5672/ and redis://:{password}@r:6379/0"
    )
    assert password not in text
    assert f"amqp://eventguard:{REDACTED}@rabbit:5672/" in text
    assert f"redis://:{REDACTED}@r:6379/0" in text
    assert redact_text("see http://example.com/a:b") == "see http://example.com/a:b"


def test_authorization_values_and_api_keys_are_redacted() -> None:
    """Bearer and Basic credentials and egk_ keys are replaced; the key id label stays."""
    secret = secrets.token_urlsafe(32)
    key_id = secrets.token_hex(6)
    text = redact_text(
        f"Authorization: Bearer {secret} / basic: Basic {secret} / key egk_{key_id}_{secret}"
    )
    assert secret not in text
    assert f"egk_{key_id}_{REDACTED}" in text


def test_key_value_pairs_in_free_text_are_redacted() -> None:
    """password=..., ?token=... and api_key: ... inside strings lose their value."""
    secret = secrets.token_hex(10)
    for text in (
        f"login failed password={secret} user=bob",
        f"GET /x?token={secret}&page=2",
        f"api_key: {secret}",
        f'{{"client_secret": "{secret}"}}',
    ):
        assert secret not in redact_text(text), text
    assert redact_text("tokens: 512 used") == "tokens: 512 used"


def test_pem_private_keys_are_redacted() -> None:
    """A PEM private key block (or a truncated one) is replaced whole."""
    pem = m.private_pem(m.ec_key())
    body = pem.splitlines()[1]
    assert body not in redact_text(f"loaded {pem} ok")
    assert body not in redact_text("start " + pem[: len(pem) // 2])


def test_bytes_sets_tuples_and_cycles_are_handled() -> None:
    """Bytes, sets and tuples are cleaned; a cyclic structure does not loop."""
    token = _jwt()
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    cleaned = redact({"b": token.encode(), "s": {token}, "t": (token,), "loop": loop})
    text = json.dumps(cleaned, default=str)
    assert token not in text
    assert "[TRUNCATED]" in text


def test_callers_objects_are_not_mutated() -> None:
    """Redaction copies nested containers; the caller's data keeps its values."""
    secret = secrets.token_hex(8)
    nested = {"password": secret}
    redact_secrets(None, "info", {"event": "x", "nested": nested})
    assert nested == {"password": secret}


def test_processor_in_a_structlog_chain_cleans_rendered_lines() -> None:
    """Configured like common.logging, a rendered JSON line holds no secret."""
    lines: list[str] = []
    token = _jwt()
    password = secrets.token_hex(8)
    logger = structlog.wrap_logger(
        None,
        processors=[
            redact_secrets,
            lambda _l, _m, event: lines.append(json.dumps(event)) or event,  # type: ignore[func-returns-value]
            structlog.processors.JSONRenderer(),
        ],
    )
    logger.info("ops.connect", url=f"amqp://u:{password}@h/", header=f"Bearer {token}")
    assert lines
    assert password not in lines[0]
    assert token not in lines[0]


@given(
    secret=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        min_size=8,
        max_size=40,
    ).map(lambda text: "zq" + text)  # "zq" occurs nowhere else in the event
)
def test_generated_secrets_never_survive(secret: str) -> None:
    """Any secret in URL, Bearer, key=value or secret-key position is gone after redaction."""
    event = {
        "event": f"amqp://svc:{secret}@rabbit/ Bearer {secret} password={secret}",
        "token": secret,
        "nested": {"api_key": secret},
    }
    assert secret not in _run(event)


def test_logging_module_imports_the_processor_without_a_cycle() -> None:
    """common.logging can import the processor first thing in a fresh interpreter."""
    code = "import common.logging, common.security.redaction as r; print(r.REDACTED)"
    result = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr[-500:]
