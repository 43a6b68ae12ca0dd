"""Every Redis key the AI fallback worker uses, in one place (all under ``<prefix>ai_fallback:``).

* ``cache:<sha256>`` -> JSON of a cached answer (string, TTL ``cache_ttl_s``)
* ``cooldown:<model>`` -> why the model cools down (string, TTL = the cool-down)
* ``disabled:<model>`` -> the configuration fingerprint that failed authentication (string)
* ``off:<model>`` -> who switched the model off and why (JSON ``{by, note, at}``), until an
  operator enables it (``ai.model.disable.requested`` / ``ai.model.enable.requested``)
* ``budget:<window>:global`` / ``budget:<window>:actor:<subject>`` -> hash {tokens, micro_usd},
  expiring one window after the window ends
* ``budget:<window>:index`` -> the requester scopes (``actor:<subject>``, ``producer:<user>``)
  with a hash in that window (set, same expiry): what the console lists without a SCAN
"""

from __future__ import annotations

from common.store import Store

__all__ = ["WORKER", "budget", "budget_index", "cache", "cooldown", "disabled", "off"]

WORKER = "ai_fallback"


def cache(store: Store, digest: str) -> str:
    """A cached answer."""
    return store.key(WORKER, "cache", digest)


def cooldown(store: Store, model: str) -> str:
    """A model's cool-down marker."""
    return store.key(WORKER, "cooldown", model)


def disabled(store: Store, model: str) -> str:
    """A model disabled by an authentication failure, until its configuration changes."""
    return store.key(WORKER, "disabled", model)


def off(store: Store, model: str) -> str:
    """A model an operator switched off, until an operator enables it."""
    return store.key(WORKER, "off", model)


def budget(store: Store, window: int, scope: str) -> str:
    """Usage in one budget window for ``scope`` (``global`` or ``actor:<subject>``)."""
    return store.key(WORKER, "budget", str(window), scope)


def budget_index(store: Store, window: int) -> str:
    """The requester scopes that have a budget hash in one window."""
    return store.key(WORKER, "budget", str(window), "index")
