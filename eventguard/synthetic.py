"""Where ``eventguard load`` may publish its synthetic traffic without being told twice.

The load generator publishes fake alerts, quarantine requests, purchases and real AI calls.
Against a vhost whose name says it is for tests (``test``, ``e2e``, ``bench``, ``load``,
``demo`` or ``synthetic`` as a word of it, e.g. ``eventguard-test``, ``load_1``) it runs;
anywhere else it refuses unless ``--i-know-this-is-synthetic`` is given.
"""

from __future__ import annotations

import re

from common.errors import ConfigError
from common.preflight import url_vhost

__all__ = ["TEST_VHOST", "refuse_unless_test_vhost"]

TEST_VHOST = re.compile(r"(^|[-_.])(test|tests|e2e|bench|load|demo|synthetic)([-_.0-9]|$)")


def refuse_unless_test_vhost(url: str, *, confirmed: bool) -> str:
    """The vhost, when it is a test one or ``confirmed``; otherwise a ConfigError."""
    vhost = url_vhost(url)
    if confirmed or TEST_VHOST.search(vhost.lower()):
        return vhost
    raise ConfigError(
        f"refusing to load vhost {vhost!r} (EVENTGUARD_BROKER_URL): the load generator "
        "publishes fake alerts, quarantine requests, purchases and real AI calls; point it at "
        "a test vhost (a name with test, e2e, bench, load or demo in it) or pass "
        "--i-know-this-is-synthetic"
    )
