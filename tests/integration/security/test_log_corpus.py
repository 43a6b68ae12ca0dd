"""Finding 2: a corpus of bad requests against a live worker never puts a token in its output,
and with EVENTGUARD_LOG_FORMAT=json every line it writes (aiohttp's and asyncio's included) is
JSON."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

from tests.integration.security.conftest import running, tokens_for


def _send(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(raw)
        answer = b""
        try:
            while chunk := conn.recv(65_536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def _request(line: str, *headers: bytes, body: bytes = b"") -> bytes:
    head = [line.encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        head.append(b"Content-Type: application/json")
        head.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _ws(token: str) -> bytes:
    key = base64.b64encode(b"0123456789abcdef").decode()
    return _request(
        "GET /admin/stream HTTP/1.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}".encode(),
        b"Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: eventguard.bearer.{token}".encode(),
    )


def _corpus(operator: str, admin: str, forged: str) -> list[bytes]:
    nested = b'{"note": "' + admin.encode() + b'", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    return [
        _ws(operator),  # only the bearer subprotocol: aiohttp warns about the offered protocols
        _ws(forged),
        _request("GET /admin/workers HTTP/1.1", f"Authorization: Bearer {admin}\x01".encode()),
        _request("GET /admin/workers HTTP/1.1", f"Authorization: Bearer {admin}\x7f x".encode()),
        _request("GET /admin/workers HTTP/1.1", f"X-API-Key: {admin}\x00".encode()),
        _request("GET /admin/workers HTTP/1.1", f"Authorization: Bearer {forged}".encode()),
        _request("GET /admin/workers HTTP/1.1", f"Authorization: Bearer {admin} {admin}".encode()),
        _request("GET /admin/workers HTTP/1.1", f"Authorization: {'x' * 9_000}{admin}".encode()),
        _request(f"GET /admin/{admin} HTTP/1.1"),
        _request(f"GET /admin/workers?access_token={admin} HTTP/1.1"),
        _request(f"GET /admin/workers\x01{admin} HTTP/1.1"),
        f"BREW /{admin} HTCPCP/1.0\r\n\r\n".encode(),
        b"\xff\xfe" + admin.encode() + b"\r\n\r\n",
        _request(
            "POST /admin/quarantine/records/r1/review HTTP/1.1",
            f"Authorization: Bearer {operator}".encode(),
            body=nested,
        ),
        _request(
            "POST /admin/health/silences HTTP/1.1",
            f"Authorization: Bearer {operator}".encode(),
            body=b'{"matchers": {"a": "b"}, "duration_s": ' + b"9" * 5_000 + b"}",
        ),
    ]


def test_no_token_in_any_output_line_and_every_line_is_json(live_env_factory: Any) -> None:
    """Bad requests of every kind: the worker's output holds no minted token, only JSON."""
    env = live_env_factory()
    tokens = tokens_for(env)
    operator = tokens.issue("ops-alice", "operator")
    admin = tokens.issue("root-bob", "admin")
    forged = tokens_for(live_env_factory()).issue("eve", "admin")
    with running(env, ("quarantine", "health_monitor")) as worker:
        answers = [_send(worker.port, raw) for raw in _corpus(operator, admin, forged)]
    assert all(answer for answer in answers)  # the server answered every one
    assert not any(answer.startswith(b"HTTP/1.1 5") for answer in answers)
    lines = [line for line in worker.lines if line.strip()]
    assert any('"access.denied"' in line for line in lines)
    for line in lines:
        assert isinstance(json.loads(line), dict), line
        for token in (operator, admin, forged):
            assert token not in line
            assert token.rsplit(".", 1)[1] not in line  # not even the signature
