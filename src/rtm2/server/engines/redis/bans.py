"""Bans in Redis: one key per banned user, under the user's hash tag (as its where_now set),
holding the ban's end and reason and expiring with it (``PXAT``): nothing to sweep, and every
node, one started after the ban too, reads the same key."""

from __future__ import annotations

import time

import msgspec

from ...redisio import Commands, hash_tag, unescape_tag
from ..base import Ban
from .common import glob_escape, guard, scan, tagged

__all__ = ["RedisBanStore"]

_encode = msgspec.msgpack.Encoder().encode


class RedisBanStore:
    local = False  # other nodes ban too: only Redis knows every ban

    def __init__(self, client: Commands, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, app: str, user: str) -> str:
        return f"{tagged(self._prefix, f'user:{app}:{user}')}:ban"

    def known(self, app: str, user: str) -> Ban | None:
        return None  # see ``local``: a ban set or lifted elsewhere is only in Redis

    async def ban(self, app: str, user: str, until_ms: int, reason: str) -> None:
        if until_ms <= int(time.time() * 1000):
            await self.unban(app, user)
            return
        value = _encode([until_ms, reason])
        await guard(self._client.call("SET", self._key(app, user), value, "PXAT", until_ms))

    async def unban(self, app: str, user: str) -> bool:
        return bool(await guard(self._client.call("DEL", self._key(app, user))))

    async def banned_until(self, app: str, user: str) -> Ban | None:
        raw = await guard(self._client.call("GET", self._key(app, user)))
        return _ban(user, raw)

    async def bans(self, app: str, limit: int) -> list[Ban]:
        head, tail = self._prefix + "{", "}:ban"
        pattern = f"{glob_escape(head + hash_tag(f'user:{app}:'))}*{tail}"
        found = []
        for key in await guard(scan(self._client, pattern)):
            user = unescape_tag(key.decode()[len(head) : -len(tail)]).split(":", 2)[2]
            ban = _ban(user, await guard(self._client.call("GET", key)))
            if ban is not None:  # expired between the SCAN and the GET
                found.append(ban)
        found.sort(key=lambda b: (b.until_ms, b.user))
        return found[:limit]


def _ban(user: str, raw: bytes | None) -> Ban | None:
    if not raw:
        return None
    until_ms, reason = msgspec.msgpack.decode(raw)
    if until_ms <= int(time.time() * 1000):
        return None  # Redis expires keys a little late
    return Ban(user, int(until_ms), str(reason))
