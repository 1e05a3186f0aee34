"""Webhook events of the Redis engine: one Redis Stream per (hook, partition).

Each stream has one consumer group (``rtm2``); every node is a consumer, named by its node
id. One node at a time delivers a stream, the holder of its lease (``claim``), so the stream's
events arrive in order. A node that dies holding events it took (pending in the group) loses
its lease when it runs out; the next holder takes those pending events over with XAUTOCLAIM
before it reads new ones, so nothing is skipped and the order holds. XADD is acknowledged by
Redis before ``put`` returns: an event is as durable as Redis keeps its writes.
"""

from __future__ import annotations

from typing import Any

from ...redisio import Commands, RedisError, Script, hash_tag, run, send
from ..base import EngineUnavailable, OutboxEntry

__all__ = ["RedisOutbox"]

_GROUP = "rtm2"

_PUT = Script(
    "outbox_put",
    """
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'rtm2', '0', 'MKSTREAM')
redis.call('XADD', KEYS[1], '*', 'b', ARGV[1])
local n = redis.call('XLEN', KEYS[1])
local bound = tonumber(ARGV[2])
if n <= bound then return 0 end
local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - bound)
for _, e in ipairs(old) do
  redis.call('XACK', KEYS[1], 'rtm2', e[1])
  redis.call('XDEL', KEYS[1], e[1])
end
return #old
""",
)

_CLAIM = Script(
    "outbox_claim",
    """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
""",
)

_RELEASE = Script(
    "outbox_release",
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
""",
)

# The oldest pending event (another node's, once its lease ran out, or this node's own,
# taken before and not yet acknowledged), else the next new one.
_PEEK = Script(
    "outbox_peek",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], 'rtm2', ARGV[1], 0, '0-0', 'COUNT', 10)
for _, e in ipairs(claimed[2]) do
  if type(e) == 'table' and type(e[2]) == 'table' then return e end
end
local new = redis.call('XREADGROUP', 'GROUP', 'rtm2', ARGV[1], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if new then return new[1][2][1] end
return false
""",
)


class RedisOutbox:
    """Implements ``EventOutbox`` on Redis Streams, shared by every node."""

    scripts = (_PUT, _CLAIM, _RELEASE, _PEEK)

    def __init__(self, client: Commands, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        for script in self.scripts:  # loaded on every (re)connection, so EVALSHA finds them
            client.preload(script.source)

    def _key(self, hook: str, partition: int, kind: str) -> str:
        return f"{self._prefix}{{wh:{hash_tag(hook)}:{partition}}}:{kind}"

    async def put(self, entries: list[tuple[str, int, bytes]], bound: int) -> int:
        dropped = 0
        try:
            # Sent before any await, in order: events of one queue reach Redis in order.
            pending = [
                send(self._client, _PUT, [self._key(hook, part, "q")], [body, bound])
                for hook, part, body in entries
            ]
            for future in pending:
                dropped += int(await future)
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None
        return dropped

    async def claim(self, hook: str, partition: int, node: str, lease: float) -> bool:
        try:
            got = await run(
                self._client,
                _CLAIM,
                [self._key(hook, partition, "lease")],
                [node, max(1, int(lease * 1000))],
            )
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None
        return bool(got)

    async def release(self, hook: str, partition: int, node: str) -> None:
        try:
            await run(self._client, _RELEASE, [self._key(hook, partition, "lease")], [node])
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    async def peek(self, hook: str, partition: int, node: str) -> OutboxEntry | None:
        try:
            found: Any = await run(self._client, _PEEK, [self._key(hook, partition, "q")], [node])
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None
        if not found:
            return None
        raw_id, fields = found
        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        body = values.get(b"b") or values.get("b") or b""
        return OutboxEntry(entry_id, bytes(body), int(entry_id.split("-", 1)[0]))

    async def ack(self, hook: str, partition: int, entry_id: str) -> None:
        key = self._key(hook, partition, "q")
        try:
            acked = self._client.send("XACK", key, _GROUP, entry_id)
            deleted = self._client.send("XDEL", key, entry_id)
            await acked
            await deleted
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    async def depth(self, hook: str, partition: int) -> tuple[int, int]:
        key = self._key(hook, partition, "q")
        try:
            length = self._client.send("XLEN", key)
            first = self._client.send("XRANGE", key, "-", "+", "COUNT", 1)
            n, head = int(await length), await first
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None
        if not n or not head:
            return 0, 0
        raw_id = head[0][0]
        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        return n, int(entry_id.split("-", 1)[0])
