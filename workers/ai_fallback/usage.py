"""Reconciling the usage a provider reports with what the request made possible.

A provider's figures are billed as reported unless they are impossible for the request:

* output tokens above the output allowance sent (``max_tokens``/``max_completion_tokens``; a
  model cannot write more than it was allowed): billed as our count of the answer (its text and
  tool calls in the model's encoding), never above the allowance;
* input tokens above twice our count of the prompt plus 256 (our count is exact for plain chat
  in the model's encoding, a calibrated estimate otherwise; the slack covers tool definitions
  and provider-side framing): billed as our count.

Each impossible figure is flagged: ``eventguard_ai_usage_impossible_total{model,field}`` and a
``ai.usage_impossible`` log line with what was reported and the limit. A figure the provider did
not report is our count, as before, and is not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.ai_fallback.wire import ProviderReply

__all__ = ["Impossible", "Reconciled", "reconcile"]

_INPUT_FACTOR = 2
_INPUT_SLACK = 256


@dataclass(frozen=True)
class Impossible:
    """A reported figure the request could not have produced."""

    field: str  # "input" or "output"
    reported: int
    limit: int
    billed: int


@dataclass(frozen=True)
class Reconciled:
    """The token figures to bill, and the reported ones that were impossible."""

    input_tokens: int
    output_tokens: int
    impossible: tuple[Impossible, ...] = ()


def reconcile(
    reply: ProviderReply, *, planned_input: int, allowance: int, counted_output: int
) -> Reconciled:
    """Bill ``reply``'s usage, or our counts where what it reports is impossible."""
    flags: list[Impossible] = []
    input_tokens = planned_input
    if reply.input_tokens is not None:
        limit = planned_input * _INPUT_FACTOR + _INPUT_SLACK
        if reply.input_tokens > limit:
            flags.append(Impossible("input", reply.input_tokens, limit, planned_input))
        else:
            input_tokens = reply.input_tokens
    output_tokens = min(counted_output, allowance)
    if reply.output_tokens is not None:
        if reply.output_tokens > allowance:
            flags.append(Impossible("output", reply.output_tokens, allowance, output_tokens))
        else:
            output_tokens = reply.output_tokens
    return Reconciled(input_tokens, output_tokens, tuple(flags))
