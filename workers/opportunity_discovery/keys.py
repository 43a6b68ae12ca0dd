"""Every Redis key of the opportunity worker, in one place (all under ``<prefix>opp:``).

- ``ent:<user>``: hash strategy -> expiry (epoch seconds, ``0`` = no expiry); the key itself
  expires with the user's last expiring entitlement when every entitlement has an expiry.
- ``filter:<user>``: the user's asset filter (JSON list), same lifetime as ``ent:<user>``.
- ``rev:<user>``: hash strategy -> time of its latest revocation (so an older purchase
  arriving late cannot re-grant it), 90 days.
- ``scan:<scan id>``: a scan's progress (hash: status, total, done, found, updated_at, and
  the reason once it ends partial or refused), one day.
- ``result:<sha256>``: a cached scan result; the digest covers the user, the strategies they
  own, the strategies run, the symbols, the venues and the result limit.
"""

from __future__ import annotations

from common.store import Store

__all__ = ["PROGRESS_TTL_S", "asset_filter", "entitlements", "result", "revocations", "scan"]

PROGRESS_TTL_S = 24 * 3600
_NS = "opp"


def entitlements(store: Store, user_id: str) -> str:
    """The user's owned strategies."""
    return store.key(_NS, "ent", user_id)


def asset_filter(store: Store, user_id: str) -> str:
    """The user's asset filter."""
    return store.key(_NS, "filter", user_id)


def revocations(store: Store, user_id: str) -> str:
    """When each of the user's strategies was last revoked."""
    return store.key(_NS, "rev", user_id)


def scan(store: Store, scan_id: str) -> str:
    """A scan's progress."""
    return store.key(_NS, "scan", scan_id)


def result(store: Store, digest: str) -> str:
    """A cached scan result."""
    return store.key(_NS, "result", digest)
