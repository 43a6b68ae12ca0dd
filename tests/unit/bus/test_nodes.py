"""The cluster settings: node URLs, the quorum replication factor, Redis through Sentinel."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.sentinel import MasterNotFoundError

from common.bus.link import Link, node_of
from common.bus.nodes import broker_urls, quorum_group_size
from common.bus.topology import QUORUM_GROUP_SIZE, worker_topology
from common.config import Settings, require_production
from common.errors import ConfigError, NotReplicated
from common.reliability.breaker import default_is_failure
from common.reliability.retry import default_is_retryable
from common.store import Store

ONE = "amqp://w:pw@rabbit:5672/"  # pragma: allowlist secret
NODES = [f"amqp://w:pw@rabbit-{n}:5672/" for n in (1, 2, 3)]  # pragma: allowlist secret


def test_the_node_list_wins_over_the_one_node_url() -> None:
    """EVENTGUARD_BROKER_URLS is used when set; EVENTGUARD_BROKER_URL otherwise; neither fails."""
    both = Settings(broker_url=SecretStr(ONE), broker_urls=tuple(SecretStr(u) for u in NODES))
    assert broker_urls(both) == NODES
    assert broker_urls(Settings(broker_url=SecretStr(ONE))) == [ONE]
    with pytest.raises(ConfigError, match="EVENTGUARD_BROKER_URLS"):
        broker_urls(Settings(broker_url=None))


def test_lists_come_comma_separated_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment may give the node list and the Sentinels comma-separated or as JSON."""
    monkeypatch.setenv("EVENTGUARD_BROKER_URLS", " , ".join(NODES))
    monkeypatch.setenv("EVENTGUARD_REDIS_SENTINELS", '["s1:26379", "s2:26379"]')
    settings = Settings()
    assert broker_urls(settings) == NODES
    assert settings.redis_sentinels == ("s1:26379", "s2:26379")


def test_quorum_queues_get_three_replicas_on_a_cluster_and_nothing_on_one_node() -> None:
    """min(3, nodes) replicas with a node list, unset with one URL, the setting when given."""
    assert quorum_group_size(Settings(broker_url=SecretStr(ONE))) is None
    nodes = tuple(SecretStr(u) for u in NODES)
    assert quorum_group_size(Settings(broker_urls=nodes)) == 3
    assert quorum_group_size(Settings(broker_urls=nodes[:2])) == 2
    assert quorum_group_size(Settings(broker_urls=nodes, quorum_initial_group_size=5)) == 5


def test_every_quorum_queue_carries_the_group_size_only_when_asked() -> None:
    """worker_topology puts x-quorum-initial-group-size on every queue, or on none."""
    sized = worker_topology("w", ["a.b"], Settings(quorum_initial_group_size=3))
    plain = worker_topology("w", ["a.b"], Settings())
    assert all(q.arguments[QUORUM_GROUP_SIZE] == 3 for q in sized.queues)
    assert all(QUORUM_GROUP_SIZE not in q.arguments for q in plain.queues)


def test_production_accepts_a_node_list_and_sentinels_but_wants_passwords() -> None:
    """run starts with node URLs and Sentinels instead of the one-node URLs; a node URL without
    a password is named."""
    base = {
        "broker_url": None,
        "redis_url": None,
        "redis_sentinels": ("s1:26379",),
        "security": {"jwt_signing_key": "k" * 40},
    }
    require_production(Settings.model_validate({**base, "broker_urls": NODES}))
    bare = [*NODES[:2], "amqp://w@rabbit-3:5672/"]
    with pytest.raises(ConfigError, match="EVENTGUARD_BROKER_URLS has a URL without a password"):
        require_production(Settings.model_validate({**base, "broker_urls": bare}))


def test_a_link_walks_the_nodes_and_names_them_without_credentials() -> None:
    """A link moves to the next node, says when a round is complete, and logs host:port only."""

    async def nothing(*_args: object) -> None:
        return

    link = Link(
        NODES,
        name="t",
        on_open=nothing,
        on_change=lambda: None,
        on_reconnect=lambda: None,
        reconnect_base_s=0.1,
        reconnect_max_delay_s=1.0,
        connect_timeout_s=1.0,
    )
    assert link.node == "rabbit-1:5672"
    assert [link._next_node() for _ in range(3)] == [False, False, True]
    assert node_of(NODES[1]) == "rabbit-2:5672"
    assert "pw" not in node_of(NODES[1])


def test_failover_errors_are_retried_and_count_against_redis() -> None:
    """ConnectionError, MasterNotFoundError, READONLY and a short WAIT are retryable failures."""
    for error in (
        RedisConnectionError("gone"),
        MasterNotFoundError("no master"),
        ReadOnlyError("READONLY"),
        NotReplicated("0 of 1"),
    ):
        assert default_is_retryable(error), error
        assert default_is_failure(error), error


def test_a_store_from_sentinels_finds_its_primary_through_them() -> None:
    """With Sentinels set, the store's client asks them for the primary (no URL needed)."""
    settings = Settings(
        redis_url=None,
        redis_sentinels=("127.0.0.1:26379", "127.0.0.1:26380"),
        redis_sentinel_master="m",
        redis_wait_replicas=1,
    )
    store = Store.from_settings(settings)
    pool = store.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "m"
    assert store.wait_replicas == 1
    with pytest.raises(ConfigError, match="not host:port"):
        Store.from_settings(Settings(redis_sentinels=("nope",)))
