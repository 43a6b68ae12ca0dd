"""Findings 9 and 10 of issue 19: strategy purchases are a closed set, and the load generator
refuses a vhost that is not a test one unless told it is synthetic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.errors import ConfigError
from eventguard import cli
from eventguard.synthetic import refuse_unless_test_vhost
from schemas.marketplace import STRATEGIES, StrategyPurchased, StrategyRevoked
from workers.opportunity_discovery.scanners import STRATEGIES as RUNNABLE

UNREACHABLE = "amqp://guest:guest@127.0.0.1:9/"  # pragma: allowlist secret


def test_an_unknown_strategy_cannot_be_purchased() -> None:
    """`warp_drive` is refused by the schema (dead-lettered schema_violation, never granted)."""
    with pytest.raises(ValidationError, match="spot_arbitrage"):
        StrategyPurchased.model_validate({"user_id": "u1", "strategy": "warp_drive"})
    assert StrategyPurchased(user_id="u1", strategy="momentum").strategy == "momentum"


def test_the_purchasable_set_is_the_runnable_set() -> None:
    """What can be bought is exactly what the opportunity worker can run."""
    assert set(STRATEGIES) == set(RUNNABLE)
    schema = StrategyPurchased.model_json_schema()
    assert set(schema["properties"]["strategy"]["enum"]) == set(STRATEGIES)


def test_a_grant_made_before_the_set_closed_can_still_be_revoked() -> None:
    """A revocation names any strategy, so an old bogus grant can be removed."""
    assert StrategyRevoked(user_id="u1", strategy="warp_drive").strategy == "warp_drive"


@pytest.mark.parametrize("vhost", ["eventguard-test", "e2e", "load_1", "bench", "h6-test"])
def test_load_runs_against_test_vhosts(vhost: str) -> None:
    """A vhost whose name says test, e2e, load, bench or demo needs no confirmation."""
    assert refuse_unless_test_vhost(f"amqp://u:p@h/{vhost}", confirmed=False) == vhost


@pytest.mark.parametrize("url", ["amqp://u:p@h/", "amqp://u:p@h/prod", "amqp://u:p@h/latest"])
def test_load_refuses_other_vhosts_without_confirmation(url: str) -> None:
    """/, prod or a word merely containing test letters: refused unless confirmed."""
    with pytest.raises(ConfigError, match="--i-know-this-is-synthetic"):
        refuse_unless_test_vhost(url, confirmed=False)
    assert refuse_unless_test_vhost(url, confirmed=True)


def test_load_command_refuses_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eventguard load` against / exits 2 with one line and publishes nothing."""
    monkeypatch.setenv("EVENTGUARD_BROKER_URL", UNREACHABLE)
    assert cli.main(["load", "--count", "1"]) == 2
    assert "refusing to load vhost '/'" in capsys.readouterr().err
