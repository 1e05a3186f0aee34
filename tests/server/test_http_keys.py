"""API keys: each opens its own app, the admin key every app, and a key may be configured as
its SHA-256."""

from __future__ import annotations

import hashlib

from rtm2.server.config import AppConfig
from rtm2.server.http.keys import Keyring

A, B = "a" * 32, "b" * 32


def test_a_key_given_in_the_clear_or_as_its_sha256_names_its_app() -> None:
    hashed = "sha256:" + hashlib.sha256(b"key-b").hexdigest()
    keys = Keyring([AppConfig(A, api_keys=("key-a",)), AppConfig(B, api_keys=(hashed,))], "")
    assert keys.app_of("key-a") == A
    assert keys.app_of("key-b") == B
    assert keys.app_of(hashed) is None  # the digest itself is not the key


def test_the_admin_key_opens_every_app_and_an_unknown_key_none() -> None:
    keys = Keyring([AppConfig(A, api_keys=("key-a",))], "the-admin")
    assert keys.app_of("the-admin") == "*"
    assert keys.app_of("key-A") is None
    assert keys.app_of("") is None


def test_without_an_admin_key_nothing_is_admin() -> None:
    assert Keyring([AppConfig(A)], "").app_of("") is None
