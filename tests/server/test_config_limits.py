"""Configuration of the hardening limits and policies: bad values stop the server at start."""

from __future__ import annotations

import pytest

from rtm2.server.config import AppConfig, ConfigError

APP = "a5" * 16


def test_an_unknown_lock_admin_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lock_admin"):
        AppConfig(APP, lock_admin="owners")


def test_locks_are_administered_by_channel_members_unless_the_app_says_otherwise() -> None:
    assert AppConfig(APP).lock_admin == "members"
    assert AppConfig.from_toml({"id": APP, "lock_admin": "anyone"}).lock_admin == "anyone"
