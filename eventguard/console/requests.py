"""Requests a worker answers (model switches, silences), and the console's audit records.

The console asks the way every client does: it publishes ``ai.model.disable.requested``,
``ai.model.enable.requested``, ``health.silence.requested`` or
``health.silence.expire.requested`` with the signed-in person as the ``actor`` and a
``reply_to``, and waits up to ``wait_s`` for the worker's answer (``ai.model.disabled``,
``ai.model.enabled``, ``health.silence.created``, ``health.silence.expired``), so the page it
redirects to already shows the change. No answer in time is not a failure: the request stays
queued and the worker applies it when it can; the page says "requested".

Every action the console takes for someone (these, and the quarantine requests and group jobs
of :mod:`eventguard.console.actions`) is recorded as ``ops.audit.recorded`` with ``auth``
``session`` and ``worker`` ``console``: the quarantine worker keeps it with the admin API's
records, so the Audit page (and ``GET /admin/audit``) shows who did what through either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from common.bus.publisher import Publisher
from common.bus.rpc import request
from common.errors import EventGuardError
from common.logging import get_logger
from eventguard.console.auth import Viewer
from schemas.ai import ModelDisableRequested, ModelEnableRequested
from schemas.envelope import Actor, Envelope, Payload, new_event
from schemas.health import SilenceExpireRequested, SilenceRequested
from schemas.ops import AuditRecorded

__all__ = ["Answered", "Requests"]

_log = get_logger("eventguard.console.requests")
Answered = Envelope[Any] | None
"""The worker's answer, or None when none came within the wait (the request stands)."""


class Requests:
    """Publishes requests for signed-in people, waits briefly for answers, audits actions."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        wait_s: float = 5.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.publisher = publisher
        self.wait_s = wait_s
        self.now = now

    async def _ask(self, viewer: Viewer, event_type: str, data: Payload) -> Answered:
        actor = Actor(subject=viewer.subject[:200], role=viewer.role.value)
        event = new_event(event_type, data, source="console", actor=actor)
        try:
            return await request(self.publisher, event, timeout_s=self.wait_s)
        except TimeoutError:
            _log.info("console.request_unanswered", type=event_type, wait_s=self.wait_s)
            return None

    async def switch_model(
        self, viewer: Viewer, model: str, *, enable: bool, note: str
    ) -> Answered:
        """Ask ai_fallback to enable or disable ``model``."""
        if enable:
            data: Payload = ModelEnableRequested(model=model, note=note[:500])
            return await self._ask(viewer, "ai.model.enable.requested", data)
        data = ModelDisableRequested(model=model, note=note[:500])
        return await self._ask(viewer, "ai.model.disable.requested", data)

    async def silence(
        self, viewer: Viewer, matchers: dict[str, str], *, duration_s: float, comment: str
    ) -> Answered:
        """Ask health_monitor to create a silence."""
        data = SilenceRequested(matchers=matchers, duration_s=duration_s, comment=comment[:500])
        return await self._ask(viewer, "health.silence.requested", data)

    async def expire_silence(self, viewer: Viewer, silence_id: str) -> Answered:
        """Ask health_monitor to expire a silence."""
        data = SilenceExpireRequested(silence_id=silence_id)
        return await self._ask(viewer, "health.silence.expire.requested", data)

    async def audit(
        self,
        viewer: Viewer,
        *,
        action: str,
        route: str,
        target: dict[str, str],
        outcome: Literal["ok", "refused", "error"] = "ok",
        status: int = 202,
    ) -> None:
        """Record one action taken for ``viewer`` (best effort: the action already happened)."""
        data = AuditRecorded(
            subject=viewer.subject[:200], role=viewer.role.value, auth="session",
            action=action, method="POST", route=route,
            target={k[:40]: v[:200] for k, v in list(target.items())[:8]},
            outcome=outcome, status=status, at=datetime.fromtimestamp(self.now(), UTC),
            worker="console",
        )  # fmt: skip
        try:
            await self.publisher.publish(new_event("ops.audit.recorded", data, source="console"))
        except EventGuardError as error:
            _log.warning("console.audit_unpublished", action=action, error=type(error).__name__)
