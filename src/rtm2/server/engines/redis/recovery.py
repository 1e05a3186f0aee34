"""Message numbering and recovery buffers in Redis, so a client can resume on any node.

A node sends the messages of one channel or topic published in one event-loop pass (often
one, a burst under load) as one batch, to one Lua script call that takes the next offsets from
the topic's counter, appends the batch to the topic's buffer (a Redis stream) and publishes
it, all in one step: every node receives the messages of a topic in offset order, and the
buffer holds what was published. A batch travels as ``N``, the 8-byte offset of its first
message, and the MessagePack array of its events; receivers write each message's offset into
its frame (``engines.base.numbered``). Redis does a fixed amount of work per batch, not per
message.

The buffer keeps about ``recovery_messages`` messages (whole batches; approximate trimming is
cheaper, so readers apply the exact limit) and nothing older than ``recovery_seconds``.

A counter is dropped after a day without messages. A new one starts at Redis's clock in
microseconds, above every offset an older counter of that topic can have reached, so offsets
only grow and a client's old position is never taken for a newer one.
"""

from __future__ import annotations

import struct

import msgspec

from ...redisio import Commands, Script, hash_tag, run
from ..base import BusEvent, numbered
from .common import guard

__all__ = ["RedisRecoveryStore", "batch_events", "publish_numbered", "recovery_keys"]

COUNTER_IDLE_MS = 24 * 3600 * 1000
BATCH = b"N"  # first byte of a numbered batch (a plain event, a MessagePack array, never is)

# KEYS[1] offset counter, KEYS[2] buffer (stream)
# ARGV: channel, keep (messages), keep (ms), number of events, the events (MessagePack array)
_PUBLISH_NUMBERED = """
local n = tonumber(ARGV[4])
local last = redis.call('INCRBY', KEYS[1], n)
if last == n then
  local now = redis.call('TIME')
  last = tonumber(now[1]) * 1000000 + tonumber(now[2]) + n - 1
  redis.call('SET', KEYS[1], string.format('%d', last))
end
redis.call('PEXPIRE', KEYS[1], IDLE_MS)
local batch = 'N' .. struct.pack('>I8', last - n + 1) .. ARGV[5]
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', math.ceil(keep / n), '*', 'b', batch)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[1], batch)
return last
"""


def publish_numbered(sharded: bool) -> Script:
    """The publishing script, with PUBLISH (one Redis) or SPUBLISH (Redis Cluster)."""
    script = _PUBLISH_NUMBERED.replace("IDLE_MS", str(COUNTER_IDLE_MS))
    if sharded:
        return Script("publish_numbered_sharded", script.replace("'PUBLISH'", "'SPUBLISH'"))
    return Script("publish_numbered", script)


# KEYS[1] offset counter, KEYS[2] buffer; ARGV: keep (ms) -> {last offset, batches kept...}
_SINCE = Script(
    "recovery_since",
    """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = redis.call('TIME')
local from = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local out = {string.format('%d', last)}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], string.format('%d', from), '+')) do
  out[#out + 1] = entry[2][2]
end
return out
""",
)

_first_offset = struct.Struct(">Q").unpack_from
_decode_events = msgspec.msgpack.Decoder(list[BusEvent]).decode


def batch_events(data: bytes) -> list[BusEvent]:
    """The events of a numbered batch, each frame with its offset written in."""
    first: int = _first_offset(data, 1)[0]
    return [
        BusEvent(e.kind, e.topic, e.user, numbered(e.frame, first + i))
        for i, e in enumerate(_decode_events(memoryview(data)[9:]))
    ]


def recovery_keys(prefix: str, subject: str, topic: str) -> tuple[str, str]:
    """The counter and buffer of a (subject, topic): in the channel's slot."""
    base = f"{prefix}{{{hash_tag(subject)}}}"
    return f"{base}:offset:{topic}", f"{base}:recent:{topic}"


class RedisRecoveryStore:
    """``RecoveryStore`` on Redis; the buffers are filled by ``RedisBroker.publish_message``."""

    # Offsets only grow (see above): positions from any node and any time compare.
    epoch = "redis"

    def __init__(self, client: Commands, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        client.preload(_SINCE.source)

    async def position(self, subject: str, topic: str) -> int:
        counter, _ = recovery_keys(self._prefix, subject, topic)
        return int(await guard(self._client.call("GET", counter)) or 0)

    async def since(
        self, subject: str, topic: str, offset: int, limit: int, seconds: float
    ) -> list[BusEvent] | None:
        keep_ms = int(seconds * 1000)
        keys = recovery_keys(self._prefix, subject, topic)
        reply = await guard(run(self._client, _SINCE, keys, [keep_ms]))
        last = int(reply[0])
        if offset >= last:
            return []
        oldest = max(offset, last - limit)  # only the newest ``limit`` count as kept
        missed = [
            (n, e)
            for batch in reply[1:]
            for n, e in enumerate(batch_events(batch), _first_offset(batch, 1)[0])
            if n > oldest
        ]
        if not missed or missed[0][0] != offset + 1:
            return None
        return [e for _, e in missed]
