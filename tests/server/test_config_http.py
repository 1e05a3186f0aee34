"""Configuration of the HTTP API: the [http] section, app keys, and the generated keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtm2.server.config import (
    ConfigError,
    HttpConfig,
    ServerConfig,
    ensure_admin_key,
    ensure_dev_app,
    load_config,
)

APP = "a5" * 16


def test_the_http_section_and_app_keys_are_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rtm2.toml"
    path.write_text(
        '[http]\nport = 0\nadmin_key = "adm"\n'
        f'[[apps]]\nid = "{APP}"\napi_keys = ["k1", "sha256:00ff"]\n'
    )
    config = load_config(path, ServerConfig(http=HttpConfig()))
    assert config.http == HttpConfig(enabled=True, host="127.0.0.1", port=0, admin_key="adm")
    assert config.apps[0].api_keys == ("k1", "sha256:00ff")


def test_code_that_builds_a_server_gets_no_http_api_unless_it_asks() -> None:
    assert ServerConfig().http.enabled is False
    assert HttpConfig().port == 7002


def test_an_unknown_http_setting_or_a_bad_port_stops_the_server(tmp_path: Path) -> None:
    path = tmp_path / "rtm2.toml"
    path.write_text("[http]\nprot = 1\n")
    with pytest.raises(ConfigError):
        load_config(path)
    with pytest.raises(ConfigError, match=r"http\.port"):
        HttpConfig(port=70000)


def test_the_admin_key_is_generated_once_and_private(tmp_path: Path) -> None:
    key, created = ensure_admin_key(tmp_path)
    assert created
    assert len(key) >= 32
    assert ensure_admin_key(tmp_path) == (key, False)
    assert (tmp_path / "admin-key").stat().st_mode & 0o777 == 0o600


def test_a_dev_app_made_before_the_api_gets_a_key_kept_from_then_on(tmp_path: Path) -> None:
    path = tmp_path / "dev-app.json"
    path.write_text(json.dumps({"app_id": APP, "certificate": "c" * 32}))
    app, created = ensure_dev_app(tmp_path)
    assert not created
    assert len(app.api_keys) == 1
    assert json.loads(path.read_text())["api_key"] == app.api_keys[0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_dev_app(tmp_path)[0].api_keys == app.api_keys
