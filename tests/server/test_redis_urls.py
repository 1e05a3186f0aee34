"""Redis engine URLs: ACL users, rediss:// (TLS), and what logs may show of them."""

from __future__ import annotations

import pytest

from rtm2.server.config import ConfigError, ServerConfig
from rtm2.server.redisio.resp import RedisURL, auth_args, parse_url, redact_url
from rtm2.server.redisio.slots import node_url, split_cluster_url


def test_a_password_alone_authenticates_the_default_user() -> None:
    target = parse_url("redis://:s3cret@db.example:6380/2")
    assert target == RedisURL("db.example", 6380, 2, "s3cret", None, False)
    assert auth_args(target) == ["AUTH", "s3cret"]


def test_a_user_and_password_authenticate_that_acl_user() -> None:
    target = parse_url("redis://app%40prod:p%3Ass@127.0.0.1/0")
    assert (target.username, target.password) == ("app@prod", "p:ss")
    assert auth_args(target) == ["AUTH", "app@prod", "p:ss"]


def test_no_password_sends_no_auth() -> None:
    assert auth_args(parse_url("redis://127.0.0.1:6379/0")) == []


def test_rediss_means_tls_on_the_same_defaults() -> None:
    target = parse_url("rediss://user:pw@redis.example")
    assert (target.host, target.port, target.db, target.tls) == ("redis.example", 6379, 0, True)


def test_the_engine_setting_accepts_rediss_and_refuses_other_schemes() -> None:
    assert ServerConfig(engine="rediss://h:6379/0").engine.startswith("rediss://")
    with pytest.raises(ConfigError):
        ServerConfig(engine="http://h")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@h:6379/0?prefix=x:", "redis://user:***@h:6379/0?prefix=x:"),
        ("rediss://:s3cret@h:6379", "rediss://:***@h:6379"),
        ("redis-cluster://s3cret@h:7000,h:7001/0", "redis-cluster://***@h:7000,h:7001/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("memory", "memory"),
    ],
)
def test_logs_show_a_url_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_a_bad_scheme_error_does_not_repeat_the_password() -> None:
    with pytest.raises(ValueError, match=r"\*\*\*") as info:
        parse_url("http://user:s3cret@h")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "node"),
    [
        ("redis-cluster://app:p%40ss@h:7000,h:7001", "redis://app:p%40ss@h:7002/0"),
        ("redis-cluster://:pw@h:7000", "redis://:pw@h:7002/0"),
        ("redis-cluster://pw@h:7000", "redis://:pw@h:7002/0"),  # a bare secret: the password
        ("redis-cluster://h:7000", "redis://h:7002/0"),
    ],
)
def test_every_cluster_node_is_reached_with_the_cluster_urls_acl_user(url: str, node: str) -> None:
    seeds, auth = split_cluster_url(url)
    assert seeds[0] == ("h", 7000)
    assert node_url("h", 7002, auth) == node


def test_a_cluster_node_url_authenticates_the_acl_user() -> None:
    _, auth = split_cluster_url("redis-cluster://app:p%40ss@h:7000")
    assert auth_args(parse_url(node_url("h", 7000, auth))) == ["AUTH", "app", "p@ss"]
