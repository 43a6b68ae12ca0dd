"""Finding 4: /admin/stream closes (4401 with the reason) when its token expires or is revoked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType

from common.security.keys import demo_settings
from tests.unit.security._ops import Ops, ops_server


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    """An ops server whose stream re-checks its token every 20 ms."""
    security = demo_settings().model_copy(update={"stream_recheck_s": 0.02})
    async with ops_server(security=security) as server:
        yield server


async def _closed(ops: Ops, headers: dict[str, str], act: object) -> tuple[int | None, str]:
    async with ops.client.ws_connect("/admin/stream", headers=headers) as ws:
        await asyncio.sleep(0.05)
        assert not ws.closed
        await act()  # type: ignore[operator]
        message = await ws.receive(timeout=5)
        assert message.type in {WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED}
        return ws.close_code, str(message.extra or "")


async def test_stream_closes_when_the_token_expires(ops: Ops) -> None:
    """Past the token's expiry (injected clock) the socket closes with 4401 token_expired."""

    async def expire() -> None:
        ops.clock.now += 120

    code, reason = await _closed(ops, ops.bearer("operator", ttl_s=60), expire)
    assert (code, reason) == (4401, "token_expired")


async def test_stream_closes_when_the_token_is_revoked(ops: Ops) -> None:
    """Revoking the subject's tokens closes its open stream with 4401 token_revoked."""

    async def revoke() -> None:
        ops.clock.now += 1
        await ops.tokens.revoke_subject("watcher")

    code, reason = await _closed(ops, ops.bearer("operator", sub="watcher"), revoke)
    assert (code, reason) == (4401, "token_revoked")


async def test_stream_stays_open_while_the_token_holds(ops: Ops) -> None:
    """A valid token keeps the stream open across many re-checks."""
    async with ops.client.ws_connect("/admin/stream", headers=ops.bearer("operator")) as ws:
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.2)
        assert not ws.closed
