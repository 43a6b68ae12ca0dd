"""The AI fallback worker: ``ai.completion.requested`` -> ``ai.completion.succeeded``/``failed``.

A request is checked (messages, max_tokens, model names, window, per-request budget), looked up
in the cache when deterministic, checked against the actor's and the global budget, then
walked down its chain (:mod:`workers.ai_fallback.walker`) behind single-flight so identical
concurrent requests make one provider call. The answer is cached, its usage recorded, and the
response published (and sent to the requester's ``reply_to``). A bad request is answered with
``ai.completion.failed`` and a clear reason, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from common.bus.router import Emit
from common.logging import get_logger
from common.reliability.dedup import RequestDeduplicator
from common.security.admission import requester
from common.service import AdminRoute, BaseService, WorkerContext
from schemas.ai import CompletionFailed, CompletionRequested, CompletionSucceeded
from schemas.envelope import Envelope, new_event
from workers.ai_fallback.alerts import auth_alert, auth_resolved
from workers.ai_fallback.budget import Budgets, Reservation, Usage
from workers.ai_fallback.cache import CachedAnswer, CompletionCache, cache_key, cacheable
from workers.ai_fallback.calls import ModelCalls
from workers.ai_fallback.chain import Model, load_models
from workers.ai_fallback.checks import request_problem
from workers.ai_fallback.health import HealthBook
from workers.ai_fallback.responses import from_cache, from_walk
from workers.ai_fallback.switches import ModelSwitches
from workers.ai_fallback.tokens import EncodingName, TokenCounter, load_o200k
from workers.ai_fallback.walker import PromptSizes, Walk, Walker

__all__ = ["AiFallbackService"]

_log = get_logger("eventguard.ai_fallback")
_BIG_PROMPT_CHARS = 50_000  # count larger prompts off the event loop


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _Job:
    request: CompletionRequested
    chain: list[Model]
    sizes: PromptSizes
    deadline: float
    max_cost: float | None
    actor: str | None
    digest: str | None


class AiFallbackService(BaseService):
    """Completions through an ordered chain of LLM providers."""

    name = "ai_fallback"

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ctx, now=now)
        settings = ctx.settings.ai_fallback
        self.settings = settings
        self.models = load_models(settings)
        self.metrics = ctx.metrics.ai_fallback
        self.quarantine.add_listener(self._on_quarantine_change)
        self.health = HealthBook(
            self.models, store=ctx.store, alpha=settings.health_alpha, monotonic=monotonic
        )
        self.calls = ModelCalls(
            self.models, settings, ctx.guards, on_state_change=self._on_breaker_change
        )
        self.counter = TokenCounter(safety_factor=settings.estimate_safety_factor)
        self.cache = CompletionCache(ctx.store, ttl_s=settings.cache_ttl_s)
        self.budgets = Budgets(ctx.store, settings, now=now)
        self._session: aiohttp.ClientSession | None = None
        self._monotonic = monotonic
        # Single-flight only (ttl 0): answers are cached in Redis, not in this process.
        self._flights: RequestDeduplicator[Walk] = RequestDeduplicator(ttl_s=0.0)
        self.walker = Walker(
            models=self.models,
            settings=settings,
            health=self.health,
            calls=self.calls,
            counter=self.counter,
            quarantine=self.quarantine,
            metrics=self.metrics,
            session=self.session,
            on_auth_failure=self._auth_alert,
            monotonic=monotonic,
        )
        self.router.add(
            CompletionRequested,
            self.on_requested,
            timeout_s=settings.max_deadline_s + 5.0,
            reply=True,
        )
        self.switches = ModelSwitches(
            self.models, self.health, on_change=self._model_changed, reload=self.reload_models,
            now=now,
        )  # fmt: skip
        self.switches.register(self.router)

    # -- lifecycle ---------------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The shared HTTP session (created on first use; provider retries are ours, not its)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def start(self) -> None:
        """Load the quarantine view and persisted cool-downs; set the model-state gauges."""
        await self.quarantine.load()
        if any(model.encoding == "o200k" for model in self.models.values()):
            await asyncio.to_thread(load_o200k)  # ~1 s to build: not on the first request
        await self.reload_models()

    async def reload_models(self) -> None:
        """Re-read the models' disables and cool-downs from Redis; set the state gauges."""
        for name in await self.health.load():
            await self._auth_resolved(self.models[name])
        for model in self.models.values():
            self.walker.publish_state(model)

    async def resync(self) -> None:
        """Every replica re-reads the quarantine list and the model disables and cool-downs
        (``eventguard ai enable`` lifts them in Redis only)."""
        await self.quarantine.resync()
        await self.reload_models()

    async def stop(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def admin_routes(self) -> Sequence[AdminRoute]:
        """``GET /admin/ai/models``: the chain with each model's health (no keys);
        ``POST /admin/ai/models/{model}/enable``: lift a model's disables and cool-down
        (audited, like every state-changing call)."""
        return [
            AdminRoute("GET", "ai/models", self._models_page, "operator", "ai.models.read"),
            self.switches.admin_route(),
        ]

    async def _model_changed(self, model: Model, auth_lifted: bool) -> None:
        """A switch changed ``model``: resolve its auth alert if that lifted; gauges."""
        if auth_lifted:
            await self._auth_resolved(model)
        self.walker.publish_state(model)

    async def _models_page(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"models": self.describe()})

    def entity_error_rates(self) -> dict[str, float]:
        """``ai_model:<name>`` -> EWMA error rate, for the heartbeat health rules read."""
        return {f"ai_model:{n}": round(h.error_rate, 4) for n, h in self.health.health.items()}

    def describe(self) -> list[dict[str, Any]]:
        """Each model, its state and health, in chain order."""
        rows = []
        for name in self.health.order(self.models):
            model, h = self.models[name], self.health.health[name]
            rows.append(
                {
                    "name": name,
                    "provider": model.spec.provider,
                    "priority": model.spec.priority,
                    "context_window": model.spec.context_window,
                    "state": self.health.state(
                        name,
                        breaker_open=self.calls.is_open(model),
                        quarantined=self.quarantine.is_quarantined("ai_model", name),
                    ).name.lower(),
                    "latency_ms": None if h.latency_s is None else round(h.latency_s * 1000, 3),
                    "error_rate": round(h.error_rate, 4),
                    "cooldown_s": round(self.health.cooling(name), 3),
                }
            )
        return rows

    # -- the handler -------------------------------------------------------------------------

    async def on_requested(self, event: Envelope[CompletionRequested]) -> Emit:
        """Answer one completion request (succeeded or failed, never dead-lettered)."""
        request = event.data
        # Budgets count against who asked as admitted: the verified actor, else the producer.
        actor = requester(event).key
        try:
            data: CompletionSucceeded | CompletionFailed = await self._answer(
                event.id, request, actor
            )
        except _Refused as refused:
            data = CompletionFailed(
                request_id=event.id, reason=refused.reason, detail=refused.detail[:2000]
            )
        if isinstance(data, CompletionFailed):
            self.metrics.requests.labels("failed", data.reason).inc()
            kind = "ai.completion.failed"
        else:
            self.metrics.requests.labels("cached" if data.cached else "succeeded", "").inc()
            kind = "ai.completion.succeeded"
        return [new_event(kind, data, source=self.name, causation=event)]

    def _chain(self, request: CompletionRequested) -> list[Model]:
        if request.models:
            unknown = [m for m in request.models if m not in self.models]
            if unknown:
                known = ", ".join(self.models) or "none"
                raise _Refused("unknown_model", f"unknown model(s) {unknown}; known: {known}")
            return [self.models[name] for name in dict.fromkeys(request.models)]
        if not self.models:
            raise _Refused("no_models", "no model is configured (ai_fallback.models)")
        return [self.models[name] for name in self.health.order(self.models)]

    def _sizes(self, request: CompletionRequested, chain: list[Model]) -> dict[str, int]:
        encodings: set[EncodingName] = {"cl100k"}
        encodings |= {m.encoding for m in chain if m.encoding is not None}
        return {
            name: self.counter.count_prompt(
                request.messages, request.system, tools=request.tools or (), encoding=name
            )
            for name in sorted(encodings)
        }

    async def _count(self, request: CompletionRequested, chain: list[Model]) -> dict[str, int]:
        size = sum(len(m.content) for m in request.messages) + len(request.system or "")
        if size > _BIG_PROMPT_CHARS:
            return await asyncio.to_thread(self._sizes, request, chain)
        return self._sizes(request, chain)

    async def _answer(
        self, request_id: str, request: CompletionRequested, actor: str | None
    ) -> CompletionSucceeded | CompletionFailed:
        problem = request_problem(request)
        if problem is not None:
            raise _Refused("bad_request", problem)
        chain = self._chain(request)
        sizes = await self._count(request, chain)
        fitting = [m for m in chain if self.walker.fits(m, sizes, request.max_tokens)]
        if not fitting:
            biggest = max(m.spec.context_window for m in chain)
            raise _Refused(
                "prompt_too_large",
                f"prompt of ~{max(sizes.values())} tokens plus max_tokens {request.max_tokens} "
                f"fits no model's window (largest {biggest})",
            )
        worst = min(
            (
                Usage(
                    tokens=self.walker.prompt_tokens(m, sizes)
                    + self.walker.output_allowance(m, request.max_tokens),
                    cost_usd=self.walker.worst_cost(m, sizes, request.max_tokens),
                )
                for m in fitting
            ),
            key=lambda u: (u.cost_usd, u.tokens),
        )
        max_cost = min(
            (
                c
                for c in (request.max_cost_usd, self.settings.request_max_cost_usd)
                if c is not None
            ),
            default=None,
        )
        reason = self.budgets.check_request(worst, max_cost)
        if reason is not None:
            raise _Refused("over_budget", reason)
        digest = cache_key(request, [m.name for m in chain]) if cacheable(request) else None
        if digest is not None:
            hit = await self.cache.get(digest)
            if hit is not None:
                self.metrics.cache.labels("hit").inc()
                return from_cache(request_id, hit)
            self.metrics.cache.labels("miss").inc()
        else:
            self.metrics.cache.labels("bypass").inc()
        reservation = await self.budgets.reserve(actor, worst)
        if isinstance(reservation, str):
            raise _Refused("over_budget", reservation)
        deadline = self._monotonic() + min(request.deadline_s, self.settings.max_deadline_s)
        job = _Job(request, chain, sizes, deadline, max_cost, actor, digest)
        used = Usage(0, 0.0)  # settled to nothing unless this request's own walk got an answer
        try:
            walk, led = await self._single_flight(job)
            if led and walk.reply is not None and walk.model is not None:
                used = Usage(walk.input_tokens + walk.output_tokens, walk.cost_usd)
        finally:
            await self._settle(reservation, used)
        return from_walk(request_id, walk)

    async def _settle(self, reservation: Reservation, used: Usage) -> None:
        try:
            await self.budgets.settle(reservation, used)
        except Exception as error:  # noqa: BLE001 - the reservation stays counted: spend less, never more
            _log.warning("ai.budget_settle_failed", error=repr(error)[:200])

    async def _single_flight(self, job: _Job) -> tuple[Walk, bool]:
        """One walk per distinct cacheable request at a time; followers share its result.
        Returns the walk and whether this request led it (its usage is this request's)."""
        digest = job.digest
        if digest is None:
            return await self._walk(job), True
        led = False

        async def lead() -> Walk:
            nonlocal led
            led = True
            return await self._walk(job)

        walk = await self._flights.run(digest, lead)
        if not led:
            self.metrics.cache.labels("shared").inc()
        return walk, led

    async def _walk(self, job: _Job) -> Walk:
        walk = await self.walker.run(job.request, job.chain, job.sizes, job.deadline, job.max_cost)
        if walk.reply is None or walk.model is None:
            return walk
        if job.digest is not None:
            answer = CachedAnswer(
                model=walk.model.name,
                content=walk.reply.content,
                finish_reason=walk.reply.finish_reason,
                finish_reason_raw=walk.reply.finish_reason_raw,
                tool_calls=list(walk.reply.tool_calls),
                input_tokens=walk.input_tokens,
                output_tokens=walk.output_tokens,
                cost_usd=walk.cost_usd,
            )
            await self.cache.put(job.digest, answer)
        return walk

    # -- side channels -----------------------------------------------------------------------

    def _on_breaker_change(self, model: Model) -> None:
        self.walker.publish_state(model)

    def _on_quarantine_change(self, kind: str, entity_id: str, quarantined: bool) -> None:
        model = self.models.get(entity_id) if kind == "ai_model" else None
        if model is not None:
            self.walker.publish_state(model)
            _log.info("ai.model_quarantine", model=entity_id, quarantined=quarantined)

    async def _auth_resolved(self, model: Model) -> None:
        """The model's configuration changed since it was disabled: resolve the alert."""
        resolved = auth_resolved(model)
        try:
            await self.ctx.publisher.publish(
                new_event("health.alert.resolved", resolved, source=self.name)
            )
        except Exception as error:  # noqa: BLE001 - the model is enabled; the event is best effort
            _log.error("ai.auth_resolve_failed", model=model.name, error=repr(error))

    async def _auth_alert(self, model: Model, detail: str) -> None:
        """Raise a health alert: the model is disabled until its configuration changes."""
        alert = auth_alert(model, detail)
        try:
            await self.ctx.publisher.publish(
                new_event("health.alert.raised", alert, source=self.name)
            )
        except Exception as error:  # noqa: BLE001 - the disable stands; the alert is best effort
            _log.error("ai.auth_alert_failed", model=model.name, error=repr(error))
