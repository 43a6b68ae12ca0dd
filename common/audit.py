"""The audit trail of the admin API: every state-changing call, whoever made it and however it
ended.

The ops server wraps each state-changing admin route (POST, PUT, PATCH, DELETE) with
:meth:`Auditor.wrap`. After the handler answers (or fails) the auditor writes one JSON log line
``audit.recorded`` and publishes ``ops.audit.recorded`` (:mod:`schemas.ops`) as the worker that
owns the route; the quarantine worker keeps those events and serves them at ``/admin/audit``.
The log line comes first and never depends on the broker: a publish that fails is logged
(``audit.publish_failed``) and does not change the caller's answer. Calls refused before they
reach a handler (no credentials, role too low, throttled) are in the ``access.denied`` log
line instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from common.bus.publisher import Publisher
from common.errors import EventGuardError
from common.logging import get_logger
from common.problems import Problem
from common.security.http import PRINCIPAL
from schemas.envelope import new_event
from schemas.ops import AuditRecorded

__all__ = ["STATE_CHANGING", "Auditor"]

_log = get_logger("eventguard.audit")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return "refused" if status < 500 else "error"


class Auditor:
    """Records the admin calls one worker serves, and publishes them with its publisher."""

    def __init__(self, publisher: Publisher | None, *, worker: str) -> None:
        self._publisher = publisher
        self._worker = worker

    def wrap(self, handler: Handler, *, action: str) -> Handler:
        """``handler``, recording every call it serves."""

        async def audited(request: web.Request) -> web.StreamResponse:
            status = 500
            try:
                response = await handler(request)
            except Problem as problem:
                status = problem.status
                raise
            except web.HTTPException as error:
                status = error.status
                raise
            else:
                status = response.status
            finally:
                await self.record(request, action=action, status=status)
            return response

        return audited

    async def record(self, request: web.Request, *, action: str, status: int) -> AuditRecorded:
        """Log and publish one call's record."""
        principal = request.get(PRINCIPAL)
        resource = request.match_info.route.resource
        record = AuditRecorded.model_validate(
            {
                "subject": (principal.subject if principal else "anonymous")[:200],
                "role": principal.role.value if principal else "guest",
                "auth": principal.method if principal else "none",
                "action": action,
                "method": request.method,
                "route": (resource.canonical if resource is not None else request.path)[:300],
                "target": {k[:40]: v[:200] for k, v in list(request.match_info.items())[:8]},
                "outcome": _outcome(status),
                "status": status,
                "at": datetime.now(UTC),
                "worker": self._worker,
            }
        )
        _log.info("audit.recorded", **record.model_dump(mode="json"))
        if self._publisher is not None:
            try:
                await self._publisher.publish(
                    new_event("ops.audit.recorded", record, source=self._worker)
                )
            except (EventGuardError, OSError) as error:
                _log.error("audit.publish_failed", action=action, error=type(error).__name__)
        return record
