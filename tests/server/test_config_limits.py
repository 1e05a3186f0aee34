"""Configuration of the hardening limits and policies: bad values stop the server at start."""

from __future__ import annotations

import pytest

from rtm2.errors import ErrorCode, RTMError
from rtm2.server.config import AppConfig, AppLimits, ConfigError
from rtm2.server.handshake import presence_timeout_for

APP = "a5" * 16


def test_an_unknown_lock_admin_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lock_admin"):
        AppConfig(APP, lock_admin="owners")


def test_locks_are_administered_by_channel_members_unless_the_app_says_otherwise() -> None:
    assert AppConfig(APP).lock_admin == "members"
    assert AppConfig.from_toml({"id": APP, "lock_admin": "anyone"}).lock_admin == "anyone"


@pytest.mark.parametrize(
    ("low", "high", "asked", "kept"),
    [
        (5, 300, 300, 300),  # the SDK's default, with the default range
        (10, 60, 300, 60),  # an app that narrows the range: the SDK's default still logs in
        (10, 60, 5, 10),
        (5, 600, 600, 600),  # an app that widens it lets a raw client ask for more
    ],
)
def test_a_presence_timeout_within_reach_is_clamped_into_the_apps_range(
    low: int, high: int, asked: int, kept: int
) -> None:
    limits = AppLimits(presence_timeout_min=low, presence_timeout_max=high)
    assert presence_timeout_for(asked, limits) == kept


@pytest.mark.parametrize("asked", [-5, 0, 4, 301, 10**15])
def test_a_presence_timeout_out_of_reach_is_an_invalid_parameter(asked: int) -> None:
    with pytest.raises(RTMError) as info:
        presence_timeout_for(asked, AppLimits(presence_timeout_min=10, presence_timeout_max=60))
    assert info.value.code == ErrorCode.INVALID_PARAMETER


@pytest.mark.parametrize(("low", "high"), [(0, 300), (60, 30), (5, 10**6)])
def test_a_presence_timeout_range_must_be_ordered_and_sane(low: int, high: int) -> None:
    with pytest.raises(ConfigError, match="presence_timeout"):
        AppLimits(presence_timeout_min=low, presence_timeout_max=high)
