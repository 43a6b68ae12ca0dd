"""Operators switch a model off and on by events, through the same authorisation as any client.

* ``ai.model.disable.requested`` (an operator or admin actor): the model leaves every chain until
  enabled (``keys.off`` in Redis); answered ``ai.model.disabled``.
* ``ai.model.enable.requested`` (idem): the operator disable, an authentication disable and a
  cool-down are lifted, as ``POST /admin/ai/models/{model}/enable`` does; answered
  ``ai.model.enabled``.

Admission has checked that the producer may publish the type and assert the actor, and the
type's ``act`` rule (operator); the handler also refuses a request without an actor. A model
the chain does not know is refused (dead-lettered ``handler_rejected``): it can never succeed.
One replica handles the request (the work queue); every replica re-reads the model's state on
the answer, a broadcast type, and at its periodic resync.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.bus.router import Emit, Router
from common.errors import Reject
from common.logging import get_logger
from common.problems import Problem
from common.security.actors import require_role
from common.service import AdminRoute
from common.validation import Answer, EmptyBody
from schemas import ai as events
from schemas.envelope import Envelope, new_event
from workers.ai_fallback.chain import Model
from workers.ai_fallback.health import HealthBook

__all__ = ["OPERATOR_ROLES", "ModelEnabled", "ModelSwitches"]

OPERATOR_ROLES = frozenset({"operator", "admin"})
_log = get_logger("eventguard.ai_fallback")


class ModelEnabled(Answer):
    """The model's disables and cool-down are lifted (``lifted``: it had one)."""

    model: str
    lifted: bool


class ModelSwitches:
    """The handlers of the model switch requests and of their broadcast answers."""

    def __init__(
        self,
        models: dict[str, Model],
        health: HealthBook,
        *,
        on_change: Callable[[Model, bool], Awaitable[None]],
        reload: Callable[[], Awaitable[None]],
        source: str = "ai_fallback",
        now: Callable[[], float] = time.time,
    ) -> None:
        self.models = models
        self.health = health
        self.on_change = on_change  # (model, an auth disable was lifted): gauges, alerts
        self.reload = reload  # re-read every model's state from Redis
        self.source = source
        self.now = now

    def register(self, router: Router) -> None:
        """Requests on the work queue (with replies); answers reach every replica."""
        router.add(events.ModelDisableRequested, self.on_disable, reply=True)
        router.add(events.ModelEnableRequested, self.on_enable, reply=True)
        router.add(events.ModelDisabled, self.on_answer, broadcast=True)
        router.add(events.ModelEnabled, self.on_answer, broadcast=True)

    def _model(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise Reject(f"unknown model {name[:200]!r} (known: {known[:500]})")
        return model

    async def on_disable(self, event: Envelope[events.ModelDisableRequested]) -> Emit:
        """Switch the model off for an operator or admin."""
        by = require_role(event.actor, OPERATOR_ROLES, action="disabling an AI model")
        model = self._model(event.data.model)
        changed = await self.health.switch_off(
            model.name, by=by, note=event.data.note, at=self.now()
        )
        await self.on_change(model, False)
        _log.info("ai.model_switched_off", model=model.name, by=by, changed=changed)
        data = events.ModelDisabled(
            model=model.name, disabled_by=by, note=event.data.note, changed=changed
        )
        return [new_event("ai.model.disabled", data, source=self.source, causation=event)]

    async def on_enable(self, event: Envelope[events.ModelEnableRequested]) -> Emit:
        """Lift every disable and the cool-down of the model for an operator or admin."""
        by = require_role(event.actor, OPERATOR_ROLES, action="enabling an AI model")
        model = self._model(event.data.model)
        auth_disabled = self.health.health[model.name].disabled
        lifted = await self.health.enable(model.name)
        await self.on_change(model, auth_disabled)
        _log.info("ai.model_enabled", model=model.name, by=by, lifted=lifted)
        data = events.ModelEnabled(
            model=model.name, enabled_by=by, note=event.data.note, lifted=lifted
        )
        return [new_event("ai.model.enabled", data, source=self.source, causation=event)]

    async def on_answer(
        self, _event: Envelope[events.ModelDisabled] | Envelope[events.ModelEnabled]
    ) -> Emit:
        """Every replica re-reads the models' state from Redis (the switch is there)."""
        await self.reload()
        return []

    def admin_route(self) -> AdminRoute:
        """``POST /admin/ai/models/{model}/enable``: what ``ai.model.enable.requested`` does, for
        an operator calling the admin API (audited like every state-changing call)."""

        async def enable(request: web.Request) -> web.StreamResponse:
            name = request.match_info["model"]
            if name not in self.models:
                raise Problem(404, "no such model", code="unknown_model")
            auth_disabled = self.health.health[name].disabled
            lifted = await self.health.enable(name)
            await self.on_change(self.models[name], auth_disabled)
            return web.json_response(ModelEnabled(model=name, lifted=lifted).model_dump())

        return AdminRoute(
            "POST", "ai/models/{model}/enable", enable, "operator", "ai.model.enable",
            body=EmptyBody, response=ModelEnabled,
            summary="lift a model's disables (operator, auth) and cool-down",
        )  # fmt: skip
