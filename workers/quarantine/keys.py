"""Every Redis key the quarantine worker writes, in one place.

All keys share the hash tag ``{q}`` so the Lua scripts that touch a record, its indexes and
the blacklist in one step stay in one slot on Redis Cluster.

* ``rec:<id>``            hash: one record (dead message or entity), body stored as bytes
* ``hist:<id>``           list: the record's transitions (JSON), oldest first
* ``idx:<status>:<kind>:<reason>``  sorted sets scored by creation time; each part may be
  ``all``, so every record sits in 8 sets and any filter combination is one ZREVRANGEBYSCORE
* ``combos``              set of ``kind|reason`` pairs seen (drives the entries gauge)
* ``bl``                  hash ``kind<US>entity_id`` -> id of the active entity record
* ``bl:expiry``           sorted set: entity record id -> expiry (epoch s); permanent ones absent
* ``releasing``           sorted set: record id -> when its release started (recovery)
* ``outbox``              list: dead-message records written but not yet announced
* ``announcing``          sorted set: record id -> when its announcement was claimed
* ``flood:<dim>:<window>:<value>``  counters of dead letters per producer / type and window
"""

from __future__ import annotations

from common.store import Store

__all__ = ["ANY", "Keys"]

ANY = "all"


class Keys:
    """The quarantine key layout under one store prefix."""

    def __init__(self, store: Store) -> None:
        self.base = store.key("quarantine", "{q}") + ":"
        self.index_prefix = self.base + "idx:"
        self.combos = self.base + "combos"
        self.blacklist = self.base + "bl"
        self.expiry = self.base + "bl:expiry"
        self.releasing = self.base + "releasing"
        self.outbox = self.base + "outbox"
        self.announcing = self.base + "announcing"

    def record(self, record_id: str) -> str:
        """The hash of one record."""
        return f"{self.base}rec:{record_id}"

    def history(self, record_id: str) -> str:
        """The transition list of one record."""
        return f"{self.base}hist:{record_id}"

    def index(self, status: str = ANY, kind: str = ANY, reason: str = ANY) -> str:
        """The time-scored index for a filter combination (``all`` = any value)."""
        return f"{self.index_prefix}{status}:{kind}:{reason}"

    def flood(self, dimension: str, window: int, value: str) -> str:
        """The dead-letter counter of ``value`` (a producer or a type) in ``window``."""
        return f"{self.base}flood:{dimension}:{window}:{value}"
