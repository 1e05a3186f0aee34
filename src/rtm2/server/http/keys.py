"""API keys: each app's (``[[apps]] api_keys``) and the server-wide admin key.

Keys are compared as SHA-256 digests with ``hmac.compare_digest``, so a configured key may be
kept as ``sha256:<hex>`` instead of in the clear, and the time a check takes says nothing about
how much of a wrong key matched. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from ..config import AppConfig

__all__ = ["Keyring", "digest"]

_HASHED = "sha256:"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _configured(key: str) -> bytes:
    if key.startswith(_HASHED):
        try:
            return bytes.fromhex(key[len(_HASHED) :])
        except ValueError:
            pass  # not hex after all: a key that happens to start so
    return digest(key)


class Keyring:
    def __init__(self, apps: Iterable[AppConfig], admin_key: str) -> None:
        self._apps = {a.app_id: [_configured(k) for k in a.api_keys] for a in apps}
        self._admin = _configured(admin_key) if admin_key else None

    def app_of(self, key: str) -> str | None:
        """'*' for the admin key, the app id the key belongs to, or None for no known key."""
        given = digest(key)
        if self._admin is not None and hmac.compare_digest(given, self._admin):
            return "*"
        found = None
        # Every key is compared, found or not: the time taken does not tell which app matched.
        for app_id, keys in self._apps.items():
            for k in keys:
                if hmac.compare_digest(given, k):
                    found = app_id
        return found
