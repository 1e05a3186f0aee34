"""Message numbering and recovery buffers in Redis, so a client can resume on any node.

Every message of a channel or topic is published by one Lua script that takes the next offset
from the topic's counter, writes it into the pre-encoded event (its last 8 bytes, see
``engines.base.UNNUMBERED``), appends the event to the topic's buffer (a Redis stream trimmed
to the app's ``recovery_messages``, exactly) and publishes it, all in one step: every node
receives the messages of a topic in offset order, and the buffer holds what was published.

A counter is dropped after a day without messages. A new one starts at Redis's clock in
microseconds, above every offset an older counter of that topic can have reached, so offsets
only grow and a client's old position is never taken for a newer one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ....errors import ErrorCode, RTMError
from ..base import BusEvent, frame_offset
from .resp import Commands, RedisError
from .storage import hash_tag

__all__ = ["PUBLISH_NUMBERED", "RedisRecoveryStore", "recovery_keys"]

COUNTER_IDLE_MS = 24 * 3600 * 1000

# KEYS[1] offset counter, KEYS[2] buffer (stream)
# ARGV: publish command, channel, event, keep (messages), keep (ms), counter idle (ms)
PUBLISH_NUMBERED = """
local offset = redis.call('INCR', KEYS[1])
if offset == 1 then
  local now = redis.call('TIME')
  offset = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('SET', KEYS[1], string.format('%d', offset))
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local event = string.sub(ARGV[3], 1, -9) .. struct.pack('>I8', offset)
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'e', event)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call(ARGV[1], ARGV[2], event)
return offset
"""

# KEYS[1] offset counter, KEYS[2] buffer; ARGV: keep (ms) -> {last offset, events kept...}
_SINCE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = redis.call('TIME')
local from = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local out = {string.format('%d', last)}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], string.format('%d', from), '+')) do
  out[#out + 1] = entry[2][2]
end
return out
"""

_decode_event = msgspec.msgpack.Decoder(BusEvent).decode


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
        self._since_sha = client.preload(_SINCE)

    async def position(self, subject: str, topic: str) -> int:
        counter, _ = recovery_keys(self._prefix, subject, topic)
        return int(await _guard(self._client.call("GET", counter)) or 0)

    async def since(
        self, subject: str, topic: str, offset: int, seconds: float
    ) -> list[BusEvent] | None:
        keep_ms = int(seconds * 1000)
        keys = recovery_keys(self._prefix, subject, topic)
        reply = await _guard(self._client.call("EVALSHA", self._since_sha, 2, *keys, keep_ms))
        last = int(reply[0])
        if offset >= last:
            return []
        events = [_decode_event(raw) for raw in reply[1:]]
        missed = [e for e in events if frame_offset(e.frame) > offset]
        if not missed or frame_offset(missed[0].frame) != offset + 1:
            return None
        return missed


async def _guard(pending: Any) -> Any:
    try:
        return await pending
    except RedisError as exc:
        raise RTMError(ErrorCode.CHANNEL_SUBSCRIBE_FAILED, f"redis: {exc}") from None
