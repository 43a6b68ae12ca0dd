"""The batch link's protocol: RESP encoding, replies matched to batches in order across reads,
and the connection dropped when the stream cannot be trusted (a stray reply, ``READONLY``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError

from common.resp_link import Arg, _Protocol, pack_commands


class _Transport(asyncio.Transport):
    """Records what is written; knows whether it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


def _connected() -> tuple[_Protocol, _Transport]:
    protocol, transport = _Protocol(), _Transport()
    protocol.connection_made(transport)
    return protocol, transport


def test_commands_are_encoded_as_arrays_of_bulk_strings_each_time_alike() -> None:
    """Text as UTF-8, bytes as they are, numbers in decimal; 1, 1.0 and True stay distinct
    however often a word is seen (the second round takes the remembered encodings)."""
    expected = (
        b"*8\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$4\r\nv\r\n\x00\r\n$1\r\n1\r\n$3\r\n1.0\r\n"
        b"$4\r\nTrue\r\n$1\r\n1\r\n$3\r\nGET\r\n"
    )
    command: list[Arg] = ["SET", "ké", b"v\r\n\x00", 1, 1.0, True, "1", "GET"]
    assert pack_commands([command]) == expected
    assert pack_commands([command]) == expected
    assert pack_commands([["PING"], ["PING"]]) == b"*1\r\n$4\r\nPING\r\n" * 2


async def test_replies_arriving_in_pieces_go_to_their_batches_in_order() -> None:
    """Two batches in flight; their replies arrive split at odd places; each batch gets its
    own, an error reply as its exception (redis-py's class for it)."""
    protocol, transport = _connected()
    first = protocol.send(pack_commands([["GET", "a"], ["EVALSHA", "x", 0]]), 2)
    second = protocol.send(pack_commands([["INCR", "n"]]), 1)
    assert transport.written[0].startswith(b"*2\r\n$3\r\nGET")
    stream = b"$3\r\nabc\r\n-NOSCRIPT No matching script.\r\n:42\r\n"
    for cut in (2, 11, 30):
        protocol.data_received(stream[:cut])
        stream = stream[cut:]
    assert not second.done()
    protocol.data_received(stream)
    replies = await first
    assert replies[0] == b"abc"
    assert isinstance(replies[1], NoScriptError)
    assert await second == [42]
    assert not transport.aborted


async def test_a_reply_nobody_waits_for_drops_the_connection() -> None:
    """A reply with no batch waiting means the stream is out of step: closed, never guessed."""
    protocol, transport = _connected()
    protocol.data_received(b"+OK\r\n")
    assert protocol.closed
    assert transport.aborted
    with pytest.raises(RedisConnectionError):
        await protocol.send(b"*1\r\n$4\r\nPING\r\n", 1)


async def test_readonly_delivers_the_batch_then_drops_the_connection() -> None:
    """A demoted primary answers ``READONLY``: the batch gets its replies, the batch behind it
    fails with ``ConnectionError`` (its guard retries it on a new connection)."""
    protocol, transport = _connected()
    first = protocol.send(pack_commands([["SET", "k", "v"]]), 1)
    behind = protocol.send(pack_commands([["GET", "k"]]), 1)
    protocol.data_received(b"-READONLY You can't write against a read only replica.\r\n")
    (reply,) = await first
    assert isinstance(reply, ReadOnlyError)
    with pytest.raises(RedisConnectionError):
        await behind
    assert transport.aborted


async def test_a_lost_connection_fails_every_batch_waiting_on_it() -> None:
    """The server went away: every batch in flight fails, none waits forever."""
    protocol, _ = _connected()
    waiting = [protocol.send(pack_commands([["PING"]]), 1) for _ in range(3)]
    protocol.connection_lost(ConnectionResetError("reset by peer"))
    for batch in waiting:
        with pytest.raises(RedisConnectionError, match="reset by peer"):
            await batch
