"""Webhooks in the config file: read per app, checked at load with a clear error."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from rtm2.server.config import AppConfig, ConfigError, WebhookConfig, load_config

APP = "a5" * 16


def _load(tmp_path: Path, hooks: str) -> WebhookConfig:
    path = tmp_path / "rtm2.toml"
    path.write_text(f'[[apps]]\nid = "{APP}"\n{hooks}')
    return load_config(path).apps[0].webhooks[0]


def test_several_webhooks_per_app_are_read_with_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rtm2.toml"
    path.write_text(
        f'[[apps]]\nid = "{APP}"\n'
        '[[apps.webhooks]]\nurl = "https://backend.example/rtm"\nsecret = "s"\n'
        'events = ["user.*", "lock.*"]\n'
        '[[apps.webhooks]]\nurl = "http://10.0.0.1:8080/x"\nsecret = "t"\n'
        'events = ["message.published"]\nname = "messages"\nqueue_bound = 50\n'
    )
    first, second = load_config(path).apps[0].webhooks
    assert first == WebhookConfig("https://backend.example/rtm", "s", ("user.*", "lock.*"))
    assert (first.timeout, first.retry_horizon) == (10.0, 24 * 3600.0)
    assert "user.timeout" in first.types
    assert "lock.expired" in first.types
    assert "channel.join" not in first.types
    assert second.types == frozenset({"message.published"})
    assert (second.name, second.queue_bound) == ("messages", 50)


def test_an_app_has_no_webhooks_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "rtm2.toml"
    path.write_text(f'[[apps]]\nid = "{APP}"\n')
    assert load_config(path).apps[0].webhooks == ()


def test_message_published_is_sent_only_to_webhooks_that_name_it(tmp_path: Path) -> None:
    everything = _load(tmp_path, '[[apps.webhooks]]\nurl = "http://h/"\nsecret = "s"\n')
    assert "message.published" not in everything.types
    assert "channel.join" in everything.types
    with pytest.raises(ConfigError, match="sent only to webhooks that name it"):
        _load(
            tmp_path,
            '[[apps.webhooks]]\nurl = "http://h/"\nsecret = "s"\nevents = ["message.*"]\n',
        )


@pytest.mark.parametrize(
    ("hook", "error"),
    [
        ('url = "ftp://h/"\nsecret = "s"', "must be an http:// or https:// URL"),
        ('url = "not a url"\nsecret = "s"', "must be an http:// or https:// URL"),
        ('url = "http://h/"\nsecret = ""', "needs a secret"),
        ('url = "http://h/"', "needs 'secret'"),
        ('url = "http://h/"\nsecret = "s"\nevents = ["user.loggedin"]', "matches no event type"),
        ('url = "http://h/"\nsecret = "s"\nevents = []', "at least one event"),
        ('url = "http://h/"\nsecret = "s"\ntimeout = 0', "timeout must be > 0"),
        ('url = "http://h/"\nsecret = "s"\nqueue_bound = 0', "queue_bound must be > 0"),
        ('url = "http://h/"\nsecret = "s"\nretries = 3', "unknown webhook settings: retries"),
    ],
)
def test_a_bad_webhook_is_a_config_error_that_names_it(
    tmp_path: Path, hook: str, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        _load(tmp_path, f"[[apps.webhooks]]\n{hook}\n")


def test_the_documented_examples_load() -> None:
    docs = Path(__file__).parents[2] / "docs"
    for name in ("WEBHOOKS.md", "CONFIG.md"):
        block = re.search(r"```toml\n(.*?)```", (docs / name).read_text(), re.S)
        assert block is not None
        apps = [AppConfig.from_toml(a) for a in tomllib.loads(block.group(1))["apps"]]
        assert apps[0].webhooks
