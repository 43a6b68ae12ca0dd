"""The quarantine worker's background work: two loops, started in ``start`` and cancelled in
``stop``, both driven by an injectable clock.

* the tick (every ``tick_s``): release entities whose TTL passed (``quarantine.entry.released``),
  finish releases interrupted for longer than ``release_lease_s`` (same release id, see
  :mod:`workers.quarantine.release`), refresh the gauges, and every ``announce_interval_s``
  re-announce every active block so workers deployed later learn the list, and every
  ``purge_interval_s`` apply the retention (records and bodies older than ``retention_days``
  are deleted, active blocks and releases in progress excepted) and report the record count
  against ``max_records`` (an alert fires at 80%, before Redis memory runs out);
* the outbox announcer: a dead message is acked once its record is written; the record id
  goes into an outbox list in the same Lua step, and this loop publishes its
  ``quarantine.entry.added`` with confirms, woken at once by each new record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.exceptions import RedisError

from common.bus.publisher import Publisher
from common.config import QuarantineSettings
from common.errors import EventGuardError
from common.logging import get_logger
from common.metrics import Metrics
from schemas.envelope import new_event
from schemas.quarantine import QuarantineEntryAdded
from workers.quarantine.records import ACTIVE, entry_added
from workers.quarantine.release import Releaser
from workers.quarantine.repository import Repository

__all__ = ["Housekeeping"]

_log = get_logger("eventguard.quarantine")
_ANNOUNCE_BATCH = 1_000


class Housekeeping:
    """Expiry, release recovery, gauges, re-announcements and the outbox."""

    def __init__(
        self,
        *,
        repo: Repository,
        releaser: Releaser,
        publisher: Publisher,
        settings: QuarantineSettings,
        metrics: Metrics,
        now: Callable[[], float],
        source: str,
    ) -> None:
        self.repo = repo
        self.releaser = releaser
        self.publisher = publisher
        self.settings = settings
        self.now = now
        self.source = source
        self._m = metrics.quarantine
        self._task: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._last_announce = 0.0
        self._last_purge = 0.0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A record went into the outbox: announce it now rather than at the next tick."""
        self._wake.set()

    async def start(self) -> None:
        """Finish releases a previous process left half done, then start both loops."""
        await self.finish_interrupted(self.now() + 1)
        self._last_announce = self.now()
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="quarantine.tick")
        self._announcer = asyncio.create_task(self._announce_loop(), name="quarantine.outbox")

    async def stop(self) -> None:
        """Stop both loops."""
        self._stopping.set()
        self._wake.set()
        for task in (self._task, self._announcer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._announcer = None

    async def _loop(self) -> None:
        task = asyncio.current_task()
        while not self._stopping.is_set():
            try:
                await self.tick()
            except (EventGuardError, OSError, TimeoutError, RedisError) as error:
                _log.warning("quarantine.tick_failed", error=repr(error))
            except Exception:  # noqa: BLE001 - a bug in one tick must not stop expiry for good
                _log.exception("quarantine.tick_crashed")
            if task is not None and task.cancelling():
                # A cancel that landed inside a Redis call may surface as a TimeoutError
                # (asyncio.timeout); honour it rather than loop on.
                raise asyncio.CancelledError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.tick_s)

    async def _announce_loop(self) -> None:
        task = asyncio.current_task()
        while not self._stopping.is_set():
            sent = 0
            try:
                sent = await self.announce_outbox()
            except (EventGuardError, OSError, TimeoutError, RedisError) as error:
                # redis-py's ConnectionError is not an OSError: a Redis restart must not end
                # the announcer for good.
                _log.warning("quarantine.announce_failed", error=repr(error))
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.tick_s)
            self._wake.clear()

    async def announce_outbox(self, batch: int = 256) -> int:
        """Publish ``quarantine.entry.added`` for recorded dead messages (the outbox).

        A dead message is acked as soon as its record is written; the record id goes into an
        outbox list in the same Lua step, and this task announces it with confirms. A publish
        that fails (the broker is away) gives its claim back at once, so the next try takes it;
        a crash before the confirm leaves the claim, re-announced after ``release_lease_s``.
        """
        ids = await self.repo.claim_announcements(
            batch, now=self.now(), lease_s=self.settings.release_lease_s
        )
        if not ids:
            return 0
        rows = await self.repo.summaries(ids)
        events = [
            new_event(
                "quarantine.entry.added",
                QuarantineEntryAdded(
                    record_id=row["id"],
                    kind="message",
                    entity_id=row["entity_id"] or row["id"],
                    reason=f"{row['reason']}: {row['detail']}"[:2000],
                ),
                source=self.source,
            )
            for row in rows
        ]
        results = await asyncio.gather(
            *(self.publisher.publish(e) for e in events), return_exceptions=True
        )
        failed = [e.data.record_id for e, r in zip(events, results, strict=True) if r is not None]
        refused = set(failed)
        await self.repo.announced([i for i in ids if i not in refused])
        if failed:
            await self.repo.unclaim_announcements(failed)
            error = next(r for r in results if r is not None)
            raise error if isinstance(error, Exception) else RuntimeError(repr(error))
        return len(ids)

    async def tick(self) -> None:
        """Expire blocks, finish stuck releases, refresh gauges, re-announce when due."""
        await self.expire_due()
        await self.finish_interrupted(self.now() - self.settings.release_lease_s)
        await self.refresh_gauges()
        if self.now() - self._last_announce >= self.settings.announce_interval_s:
            await self.announce()
            self._last_announce = self.now()
        if self.now() - self._last_purge >= self.settings.purge_interval_s:
            await self.purge()
            self._last_purge = self.now()

    async def purge(self, *, max_batches: int = 20) -> int:
        """Apply the retention, a batch at a time (bounded per call); update the capacity
        gauges. Returns the records deleted."""
        cutoff = self.now() - self.settings.retention_days * 86_400
        batch, total, freed, kept = self.settings.purge_batch, 0, 0, 0
        for _ in range(max_batches):
            # The records kept (active blocks) stay in range: look past them.
            limit = batch + kept
            purged, kept, nbytes = await self.repo.purge(older_than=cutoff, limit=limit)
            total += purged
            freed += nbytes
            if purged + kept < limit:  # nothing older is left
                break
        count = await self.repo.count()
        self._m.records.set(count)
        self._m.records_cap.set(self.settings.max_records)
        if total:
            self._m.purged.inc(total)
            _log.info("quarantine.purged", records=total, body_bytes=freed, held=count)
        return total

    async def expire_due(self) -> int:
        """Release every entity whose TTL passed, each with ``quarantine.entry.released``."""
        released = 0
        for record_id in await self.repo.due_expiries(self.now()):
            outcome = await self.releaser.expire(record_id)
            if outcome is not None:
                await self.publisher.publish(outcome.event)
                released += 1
        return released

    async def finish_interrupted(self, started_before: float) -> int:
        """Resume releases left in ``releasing`` since before ``started_before``."""
        finished = 0
        for record_id in await self.repo.releasing(started_before):
            outcome = await self.releaser.resume(record_id)
            if outcome is not None and outcome.changed:
                await self.publisher.publish(outcome.event)
                finished += 1
        return finished

    async def refresh_gauges(self) -> None:
        """Entries by kind/reason/status, blacklist size, oldest unreviewed age."""
        counts, blacklist, oldest = await self.repo.gauges()
        for (kind, reason, status), n in counts.items():
            self._m.entries.labels(kind, reason, status).set(n)
        self._m.blacklist_size.set(blacklist)
        self._m.oldest_unreviewed.set(max(0.0, self.now() - oldest) if oldest else 0.0)

    async def announce(self) -> int:
        """Re-publish ``quarantine.entry.added`` for every active block (anti-entropy)."""
        sent = 0
        for record_id in list((await self.repo.blacklist()).values())[:_ANNOUNCE_BATCH]:
            record = await self.repo.get(record_id)
            if record is None or record.get("status") not in ACTIVE:
                continue
            await self.publisher.publish(entry_added(record, source=self.source, causation=None))
            sent += 1
        return sent
