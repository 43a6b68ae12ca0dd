"""The user-facing documents match the code (findings 1 and 6 of issue 19): every admin route
is listed with its least role in docs/admin-api.md, the API-key header is documented, and the
producer table of docs/connect.md is the built-in one."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis
from prometheus_client import CollectorRegistry

from common.bus.memory import MemoryBroker
from common.bus.publisher import Publisher
from common.config import Settings
from common.metrics import Metrics
from common.security.producers import DEFAULT_PRODUCERS, WORKER_USERS
from common.service import WorkerContext
from common.store import Store
from workers.registry import WORKERS

ROOT = Path(__file__).resolve().parents[3]
ADMIN = (ROOT / "docs" / "admin-api.md").read_text()
CONNECT = (ROOT / "docs" / "connect.md").read_text()
README = (ROOT / "README.md").read_text()


def _mounted() -> dict[str, str]:
    """'METHOD /admin/path' -> least role, for every worker's admin routes."""
    metrics = Metrics(CollectorRegistry())
    broker = MemoryBroker()
    store = Store(fakeredis.FakeAsyncRedis(), prefix="docs:")
    routes = {"GET /admin/workers": "operator", "GET /admin/stream": "operator"}
    for name, factory in WORKERS.items():
        publisher = Publisher(broker, worker=name, user_id=None, metrics=metrics)
        ctx = WorkerContext(name, Settings(), store, broker, publisher, metrics)
        for route in factory(ctx).admin_routes():
            routes[f"{route.method} /admin/{route.path.lstrip('/')}"] = route.min_role
    return routes


def _documented() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z]+ /admin/[^`]+)`[^|]*\| (\w+) \|", ADMIN, re.MULTILINE)
    return dict(rows)


def test_every_admin_route_is_documented_with_its_role() -> None:
    """docs/admin-api.md lists exactly the mounted routes, each with its least role."""
    assert _documented() == _mounted()


def test_credentials_are_documented_where_users_look() -> None:
    """The bearer and API-key headers are named in the admin page and the README links it."""
    assert "`Authorization: Bearer <access token>`" in ADMIN
    assert "`X-API-Key: <key>`" in ADMIN
    assert "X-API-Key" in README
    assert "(docs/admin-api.md)" in README
    assert "(docs/connect.md)" in README


def test_the_producer_table_of_connect_md_is_the_built_in_one() -> None:
    """Each listed type names exactly its default producers; the rest are workers' own."""
    section = CONNECT[CONNECT.index("The built-in table") :]
    rows = dict(re.findall(r"^\| `([a-z.]+)` \| ([^|]+) \|", section, re.MULTILINE))
    for event_type, users in rows.items():
        names = {u.strip() for u in users.replace(" and every worker", "").split(",")}
        if "every worker" in users:
            names |= WORKER_USERS
        assert names == set(DEFAULT_PRODUCERS[event_type]), event_type
    for event_type, users in DEFAULT_PRODUCERS.items():
        if event_type not in rows:
            assert users <= WORKER_USERS, event_type
