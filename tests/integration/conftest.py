"""Integration tests run against the real RabbitMQ and Redis.

``rabbit_url`` and ``redis_url`` come from EVENTGUARD_TEST_AMQP_URL / EVENTGUARD_TEST_REDIS_URL
(defaults: the local servers, Redis database 15). Reachability is checked once per session:
when a server is unreachable the tests that need it are skipped with a loud reason, unless
CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from urllib.parse import urlsplit

import pytest
import redis

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_METHOD_FRAME = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration as ``integration``."""
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@cache
def _amqp_problem(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2) as s:
            s.settimeout(2)
            s.sendall(_AMQP_HEADER)
            first = s.recv(1)
    except OSError as error:
        return f"RabbitMQ unreachable at {parts.hostname}:{parts.port}: {error}"
    if first != bytes([_METHOD_FRAME]):
        return f"no AMQP 0-9-1 server at {parts.hostname}:{parts.port}"
    return None


@cache
def _redis_problem(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        return f"Redis unreachable at {url}: {error}"
    finally:
        client.close()
    return None


def _require(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {problem}", pytrace=False)
    pytest.skip(f"INTEGRATION SKIPPED: {problem}")


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    """The RabbitMQ under test (checked reachable once per session)."""
    url = os.environ.get("EVENTGUARD_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    _require(_amqp_problem(url))
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis under test (checked reachable once per session)."""
    url = os.environ.get("EVENTGUARD_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    _require(_redis_problem(url))
    return url
