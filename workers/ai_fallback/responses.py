"""Building the answer events' payloads from a walk or a cache hit."""

from __future__ import annotations

from schemas.ai import Attempt, CompletionFailed, CompletionSucceeded
from workers.ai_fallback.cache import CachedAnswer
from workers.ai_fallback.walker import Walk

__all__ = ["from_cache", "from_walk"]


def from_cache(request_id: str, hit: CachedAnswer) -> CompletionSucceeded:
    """A cache hit: the model that first answered, no cost."""
    return CompletionSucceeded(
        request_id=request_id,
        model=hit.model,
        content=hit.content,
        finish_reason=hit.finish_reason,
        finish_reason_raw=hit.finish_reason_raw,
        tool_calls=hit.tool_calls,
        input_tokens=hit.input_tokens,
        output_tokens=hit.output_tokens,
        cost_usd=0.0,
        cached=True,
        attempts=[Attempt(model=hit.model, outcome="cache_hit", latency_ms=0.0)],
    )


def from_walk(request_id: str, walk: Walk) -> CompletionSucceeded | CompletionFailed:
    """The answer, or why there is none, with the attempts (the last 50)."""
    attempts = walk.attempts[-50:]
    if walk.reply is None or walk.model is None:
        return CompletionFailed(
            request_id=request_id,
            reason=walk.failure,
            detail=(walk.detail or "no model in the chain could be tried")[:2000],
            attempts=attempts,
        )
    return CompletionSucceeded(
        request_id=request_id,
        model=walk.model.name,
        content=walk.reply.content,
        finish_reason=walk.reply.finish_reason,
        finish_reason_raw=walk.reply.finish_reason_raw,
        tool_calls=list(walk.reply.tool_calls),
        input_tokens=walk.input_tokens,
        output_tokens=walk.output_tokens,
        cost_usd=walk.cost_usd,
        fallback_used=walk.fallback_used,
        attempts=attempts,
    )
