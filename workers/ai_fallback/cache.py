"""The completion cache in Redis: keyed by everything that changes the answer.

The key is the SHA-256 of the canonical JSON (sorted keys, no spaces) of the messages (with
their tool calls and tool call ids), the system prompt, the resolved model chain, temperature,
top_p, max tokens, seed, stop sequences, response format, tools, tool choice and tenant, plus
:data:`CACHE_SCHEMA`. Bump the schema when the key material or the value changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from common.store import Store
from schemas.ai import CompletionRequested, FinishReason, ToolCall
from workers.ai_fallback import keys

__all__ = ["CACHE_SCHEMA", "CachedAnswer", "CompletionCache", "cache_key", "cacheable"]

CACHE_SCHEMA = "ai-cache-2"
# Everything of a request that changes its answer (deadline, budget and cache do not).
_KEY_FIELDS = {
    "messages",
    "system",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "response_format",
    "tools",
    "tool_choice",
    "tenant",
}


class CachedAnswer(BaseModel):
    """What the cache keeps: the answer and which model gave it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    content: str
    finish_reason: FinishReason | None
    finish_reason_raw: str | None = None
    tool_calls: list[ToolCall] = []
    input_tokens: int
    output_tokens: int
    cost_usd: float


def cacheable(request: CompletionRequested) -> bool:
    """Deterministic requests only: temperature 0, unless the caller opts in (or out)."""
    if request.cache is not None:
        return request.cache
    return request.temperature == 0


def cache_key(request: CompletionRequested, chain: Sequence[str]) -> str:
    """The hex digest naming ``request``'s answer over ``chain``."""
    material = {
        **request.model_dump(mode="json", include=_KEY_FIELDS),
        "schema": CACHE_SCHEMA,
        "chain": list(chain),
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class CompletionCache:
    """Get and put answers under the worker's namespace."""

    def __init__(self, store: Store, *, ttl_s: int) -> None:
        self._store = store
        self._ttl_s = ttl_s

    async def get(self, digest: str) -> CachedAnswer | None:
        """The cached answer, or None (an unreadable entry counts as a miss)."""
        key = keys.cache(self._store, digest)
        raw = await self._store.execute(lambda r: r.get(key))
        if raw is None:
            return None
        try:
            return CachedAnswer.model_validate_json(raw)
        except ValidationError:
            return None

    async def put(self, digest: str, answer: CachedAnswer) -> None:
        """Keep ``answer`` for the configured TTL."""
        key, body, ttl = keys.cache(self._store, digest), answer.model_dump_json(), self._ttl_s
        await self._store.execute(lambda r: r.set(key, body, ex=ttl))
