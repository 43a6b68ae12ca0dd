"""Every Redis key the AI fallback worker uses, in one place (all under ``<prefix>ai_fallback:``).

* ``cache:<sha256>`` -> JSON of a cached answer (string, TTL ``cache_ttl_s``)
* ``cooldown:<model>`` -> why the model cools down (string, TTL = the cool-down)
* ``disabled:<model>`` -> the configuration fingerprint that failed authentication (string)
* ``budget:<window>:global`` / ``budget:<window>:actor:<subject>`` -> hash {tokens, micro_usd},
  expiring one window after the window ends
"""

from __future__ import annotations

from common.store import Store

__all__ = ["WORKER", "budget", "cache", "cooldown", "disabled"]

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


def budget(store: Store, window: int, scope: str) -> str:
    """Usage in one budget window for ``scope`` (``global`` or ``actor:<subject>``)."""
    return store.key(WORKER, "budget", str(window), scope)
