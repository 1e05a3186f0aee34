"""Presence in Redis: who is in which channel with what temporary state, for every node.

Each channel's presence is one hash changed by Lua scripts (one slot). The user's channel set
(for where_now) lives under the user's hash tag, not the channel's: it is kept by separate
commands so that every script touches one Redis Cluster slot.
"""

from __future__ import annotations

import asyncio

import msgspec

from ...redisio import Commands, Script, hash_tag, run, unescape_tag
from ..base import PresenceEntry
from .common import glob_escape, guard, scan, tagged
from .nodes import NodeIndex

__all__ = ["RedisPresenceStore"]

_encode = msgspec.msgpack.Encoder().encode

# KEYS[1] presence hash; ARGV: user, entry -> the previous entry (or false)
_PRESENCE_JOIN = Script(
    "presence_join",
    """
local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return previous
""",
)

# KEYS[1] presence hash; ARGV: user, member -> the removed entry (or false)
_PRESENCE_LEAVE = Script(
    "presence_leave",
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
if cmsgpack.unpack(raw)[1] ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return raw
""",
)

# KEYS[1] presence hash; ARGV: user, member, upsert (msgpack map), removed keys (msgpack list)
_PRESENCE_STATE = Script(
    "presence_state",
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local entry = cmsgpack.unpack(raw)
if entry[1] ~= ARGV[2] then return false end
local state = entry[2]
for k, v in pairs(cmsgpack.unpack(ARGV[3])) do state[k] = v end
for _, k in ipairs(cmsgpack.unpack(ARGV[4])) do state[k] = nil end
entry[2] = state
local packed = cmsgpack.pack(entry)
redis.call('HSET', KEYS[1], ARGV[1], packed)
return packed
""",
)


def _entry(raw: bytes) -> PresenceEntry:
    member, state, quiet = msgspec.msgpack.decode(raw)
    return PresenceEntry(member, dict(state) if state else {}, bool(quiet))


class RedisPresenceStore:
    def __init__(self, client: Commands, prefix: str) -> None:
        self._prefix = prefix
        self._client = client
        self._index = NodeIndex(client, prefix)

    def _key(self, subject: str) -> str:
        return f"{tagged(self._prefix, subject)}:presence"

    def _where(self, app: str, user: str) -> str:
        return f"{tagged(self._prefix, f'user:{app}:{user}')}:where"

    async def join(
        self, subject: str, user: str, member: str, state: dict[str, str], quiet: bool
    ) -> PresenceEntry | None:
        app = subject.split(":", 2)[1]
        entry = _encode([member, state, quiet])
        previous = await guard(
            run(self._client, _PRESENCE_JOIN, [self._key(subject)], [user, entry])
        )
        await guard(self._client.call("SADD", self._where(app, user), subject))
        self._index.add(member, "presence", subject, user)
        return _entry(previous) if previous else None

    async def leave(self, subject: str, user: str, member: str) -> PresenceEntry | None:
        app = subject.split(":", 2)[1]
        raw = await guard(run(self._client, _PRESENCE_LEAVE, [self._key(subject)], [user, member]))
        if raw:
            await guard(self._client.call("SREM", self._where(app, user), subject))
        self._index.remove(member, "presence", subject, user)
        return _entry(raw) if raw else None

    async def update_state(
        self, subject: str, user: str, member: str, upsert: dict[str, str], remove: list[str]
    ) -> dict[str, str] | None:
        raw = await guard(
            run(
                self._client,
                _PRESENCE_STATE,
                [self._key(subject)],
                [user, member, _encode(upsert), _encode(remove)],
            )
        )
        return _entry(raw).state if raw else None

    async def members(self, subject: str) -> dict[str, PresenceEntry]:
        raw = await guard(self._client.call("HGETALL", self._key(subject)))
        return {raw[i].decode(): _entry(raw[i + 1]) for i in range(0, len(raw), 2)}

    async def where_now(self, app: str, user: str) -> list[tuple[str, bool]]:
        subjects = sorted(
            s.decode() for s in await guard(self._client.call("SMEMBERS", self._where(app, user)))
        )
        found = []
        for subject in subjects:
            raw = await guard(self._client.call("HGET", self._key(subject), user))
            if raw:
                found.append((subject, _entry(raw).quiet))
        return found

    async def channels(self, subject_prefix: str) -> dict[str, int]:
        head, tail = self._prefix + "{", "}:presence"
        # The subject is the key's hash tag, escaped: escape the prefix the same way, then
        # for SCAN's glob. Redis drops a hash when its last field goes, so none is empty.
        pattern = f"{glob_escape(head + hash_tag(subject_prefix))}*{tail}"
        keys = await guard(scan(self._client, pattern))
        counts = await asyncio.gather(*(guard(self._client.call("HLEN", k)) for k in keys))
        found = {}
        for key, count in zip(keys, counts, strict=True):
            if count:  # gone between the SCAN and the HLEN: left since
                found[unescape_tag(key.decode()[len(head) : -len(tail)])] = int(count)
        return found
