"""Reliability: breakers, retries with budgets, bulkheads, timeouts, dedup, batching, guard().

``Guards(metrics=...).guard("http:prices")`` is the one way to make an external call; the parts
it composes are usable on their own.

Import each name from the module that defines it (``from common.reliability.<module> import Name``):
the import path is the API, and this package re-exports nothing."""
