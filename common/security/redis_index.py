"""A Redis set that indexes records which expire on their own (API keys, a user's sessions): read
the live ones in one pipeline and prune the members whose record is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # annotations only: importing common.store here would cycle via logging
    from common.store import Store

__all__ = ["live_members"]


async def live_members(
    store: Store,
    index: str,
    key_of: Callable[[str], str],
    command: Literal["exists", "hgetall"],
) -> list[tuple[str, Any]]:
    """The members of the set ``index``, sorted, each with the answer of ``command`` on its record
    (``key_of(member)``); members whose record expired (an empty answer) are left out and
    removed from the index."""
    raw: Any = await store.execute(lambda r: r.smembers(index))
    members = sorted(item.decode() for item in raw)
    if not members:
        return []

    async def read(r: Any) -> Any:
        async with r.pipeline(transaction=False) as pipe:
            for member in members:
                getattr(pipe, command)(key_of(member))
            return await pipe.execute()

    rows: Any = await store.execute(read)
    gone = [member for member, row in zip(members, rows, strict=True) if not row]
    if gone:
        await store.execute(lambda r: r.srem(index, *gone))
    return [(member, row) for member, row in zip(members, rows, strict=True) if row]
