"""Store.from_settings: how the CLIs get their Redis store."""

from __future__ import annotations

import pytest

from common.config import Settings
from common.errors import ConfigError
from common.store import Store


def test_a_store_from_settings_needs_a_url_and_takes_the_prefix() -> None:
    """CLIs build their store from settings: a missing URL is a clear error naming its use."""
    with pytest.raises(ConfigError, match=r"EVENTGUARD_REDIS_URL is missing \(the alert book\)"):
        Store.from_settings(Settings(redis_url=None), needed_for="the alert book")
    store = Store.from_settings(
        Settings(redis_url="redis://127.0.0.1:6379/15", redis_key_prefix="cli:")
    )
    assert store.key("a", "b") == "cli:a:b"
