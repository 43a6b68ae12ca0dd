"""The wire contract's facts that live in settings and policy, for the exported documents.

``eventguard schema export`` passes :func:`contract_from` to :func:`schemas.export.write_all`:
the AsyncAPI server names the broker host and vhost of ``EVENTGUARD_BROKER_URL`` (never its
user or password), the channels the producers the policy allows, and the body limit is
``EVENTGUARD_RUNTIME__MAX_BODY_BYTES``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from common.bus.headers import DEAD_REASONS
from common.config import Settings
from common.security.producers import ProducerPolicy
from schemas.asyncapi import Contract
from schemas.registry import CATALOGUE

__all__ = ["contract_from"]


def contract_from(settings: Settings) -> Contract:
    """Server, producer rules, body limit and dead-letter reasons from ``settings``."""
    host, vhost = "localhost:5672", "/"
    if settings.broker_url is not None:
        url = urlsplit(settings.broker_url.get_secret_value())
        host = f"{url.hostname or 'localhost'}:{url.port or 5672}"
        vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
    policy = ProducerPolicy.from_settings(settings)
    any_type = sorted(settings.security.any_type_producers)
    return Contract(
        host=host,
        vhost=vhost,
        max_body_bytes=settings.runtime.max_body_bytes,
        producers={t: sorted(policy.producers(t)) + any_type for t in sorted(CATALOGUE)},
        dead_reasons=sorted(DEAD_REASONS),
    )
