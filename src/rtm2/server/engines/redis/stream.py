"""Stream-channel membership and topic publishers in Redis, shared by every node.

Membership and publishers live in hashes changed by Lua scripts, so concurrent nodes cannot
interleave between a check and its write; every script touches the keys of one channel (one
hash tag, one Redis Cluster slot).
"""

from __future__ import annotations

import msgspec

from ...redisio import Commands, Script, run
from ..base import TopicPublishers
from .common import guard, tagged
from .nodes import NodeIndex

__all__ = ["RedisStreamStore"]

# KEYS[1] members hash, KEYS[2] publishers hash, KEYS[3] order counter
# ARGV: user, member, max_users -> nil when full, else the publishers as a flat list
# of (topic, user, meta, order) from the publishers hash.
_STREAM_JOIN = Script(
    "stream_join",
    """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and
   redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[2])
""",
)

# KEYS[1] members, KEYS[2] publishers; ARGV: user, member -> topics the user published in
_STREAM_LEAVE = Script(
    "stream_leave",
    """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {} end
redis.call('HDEL', KEYS[1], ARGV[1])
local left = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local entry = cmsgpack.unpack(all[i + 1])
  if entry[2] == ARGV[1] and entry[3] == ARGV[2] then
    redis.call('HDEL', KEYS[2], all[i])
    table.insert(left, entry[1])
  end
end
return left
""",
)

# KEYS[1] members, KEYS[2] publishers, KEYS[3] order counter
# ARGV: field, topic, user, member, meta
_STREAM_JOIN_TOPIC = Script(
    "stream_join_topic",
    """
if redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[4] then return 0 end
local order = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.pack({ARGV[2], ARGV[3], ARGV[4], ARGV[5], order}))
return 1
""",
)

# KEYS[1] publishers; ARGV: field, member -> 1 if removed
_STREAM_LEAVE_TOPIC = Script(
    "stream_leave_topic",
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
if cmsgpack.unpack(raw)[3] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
""",
)


class RedisStreamStore:
    def __init__(self, client: Commands, prefix: str) -> None:
        self._prefix = prefix
        self._client = client
        self._index = NodeIndex(client, prefix)

    def _keys(self, app: str, channel: str) -> tuple[str, str, str]:
        base = tagged(self._prefix, f"stream:{app}:{channel}")
        return f"{base}:members", f"{base}:pubs", f"{base}:order"

    async def join(
        self, app: str, channel: str, user: str, member: str, max_users: int
    ) -> list[TopicPublishers] | None:
        members, pubs, order = self._keys(app, channel)
        raw = await guard(
            run(self._client, _STREAM_JOIN, [members, pubs, order], [user, member, max_users])
        )
        if raw is None:
            return None
        self._index.add(member, "stream", app, channel, user)
        topics: dict[str, list[tuple[int, str, str]]] = {}
        for i in range(1, len(raw), 2):
            topic, who, _, meta, seq = msgspec.msgpack.decode(raw[i])
            topics.setdefault(topic, []).append((seq, who, meta))
        return [
            TopicPublishers(topic, [(who, meta) for _, who, meta in sorted(entries)])
            for topic, entries in topics.items()
        ]

    async def leave(self, app: str, channel: str, user: str, member: str) -> list[str]:
        members, pubs, _ = self._keys(app, channel)
        left = await guard(run(self._client, _STREAM_LEAVE, [members, pubs], [user, member]))
        self._index.remove(member, "stream", app, channel, user)
        return [t.decode() for t in left]

    async def join_topic(
        self, app: str, channel: str, topic: str, user: str, member: str, meta: str
    ) -> None:
        members, pubs, order = self._keys(app, channel)
        await guard(
            run(
                self._client,
                _STREAM_JOIN_TOPIC,
                [members, pubs, order],
                [f"{topic}\x00{user}", topic, user, member, meta],
            )
        )

    async def leave_topic(self, app: str, channel: str, topic: str, user: str, member: str) -> bool:
        _, pubs, _ = self._keys(app, channel)
        removed = await guard(
            run(self._client, _STREAM_LEAVE_TOPIC, [pubs], [f"{topic}\x00{user}", member])
        )
        return bool(removed)

    async def publishers(self, app: str, channel: str, topic: str) -> list[str]:
        _, pubs, _ = self._keys(app, channel)
        raw = await guard(self._client.call("HGETALL", pubs))
        found = []
        for i in range(1, len(raw), 2):
            entry_topic, who, _, _, seq = msgspec.msgpack.decode(raw[i])
            if entry_topic == topic:
                found.append((seq, who))
        return [who for _, who in sorted(found)]
