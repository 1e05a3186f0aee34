"""Message history of the Redis engine: one Redis Stream per channel (or peer conversation).

The stream's key carries the channel's subject as its hash tag, like the channel's other keys
(``common.tagged``), so on Redis Cluster it lives in the channel's slot. An append is one
script: it gives the message the id ``<ms>-<rank>`` (the node's time, or just above the
stream's newest id if that is later; rank < ``HISTORY_IDS_PER_MS``), adds it trimmed to the
newest ``keep`` (MAXLEN), trims what is older than the retention (MINID, approximate and
bounded: whole stream nodes, at most 100 entries per call), and sets the key to expire when
its newest message would be too old, so a quiet channel's history goes away by itself. The
append is acknowledged when Redis answered: Redis has it (its own persistence is the
deployment's choice, as for metadata). Readers filter by age themselves, so reads are exact
whatever the approximate trim left; there is nothing for ``sweep`` to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from ...redisio import Commands, RedisError, Script
from ..base import HISTORY_IDS_PER_MS, EngineUnavailable, HistoryEntry
from .common import guard, tagged

__all__ = ["HISTORY_APPEND", "RedisHistoryStore"]

HISTORY_APPEND = Script(
    "history_append",
    """\
-- KEYS[1]  the stream
-- ARGV     the publish time in ms, keep (0 = no bound), retention in ms (0 = forever), the
--          entry (MessagePack)
-- returns  the new entry's id, "<ms>-<rank>"
local ts = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local ms, rank = ts, 0
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if newest then
  local id = newest[1]
  local dash = string.find(id, '-', 1, true)
  local last_ms = tonumber(string.sub(id, 1, dash - 1))
  if last_ms >= ts then
    ms, rank = last_ms, tonumber(string.sub(id, dash + 1)) + 1
    if rank >= """
    + str(HISTORY_IDS_PER_MS)
    + """ then
      ms, rank = ms + 1, 0
    end
  end
end
local id = string.format('%d-%d', ms, rank)
if keep > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', keep, id, 'e', ARGV[4])
else
  redis.call('XADD', KEYS[1], id, 'e', ARGV[4])
end
if retention > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', ts - retention), 'LIMIT', 100)
  redis.call('PEXPIRE', KEYS[1], retention + (ms - ts) + 1000)
else
  redis.call('PERSIST', KEYS[1])
end
return id
""",
)

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(HistoryEntry).decode


def _ident(raw: bytes | str) -> int:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, rank = text.partition("-")
    return int(ms) * HISTORY_IDS_PER_MS + int(rank)


def _stream_id(ident: int) -> str:
    return f"{ident // HISTORY_IDS_PER_MS}-{ident % HISTORY_IDS_PER_MS}"


class RedisHistoryStore:
    """Implements ``HistoryStore`` on Redis (or Redis Cluster)."""

    def __init__(self, client: Commands, prefix: str = "rtm2:") -> None:
        self.client = client
        self.prefix = prefix
        self._sha = client.preload(HISTORY_APPEND.source)

    def key(self, key: str) -> str:
        return f"{tagged(self.prefix, key)}:history"

    def append(
        self, key: str, entry: HistoryEntry, ts: int, keep: int, retention_ms: int
    ) -> asyncio.Future[int]:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            sent = self.client.send(
                "EVALSHA", self._sha, 1, self.key(key), ts, keep, retention_ms, _encode(entry)
            )
        except RedisError as exc:
            done.set_exception(EngineUnavailable(f"redis: {exc}"))
            return done

        def settle(f: asyncio.Future[Any]) -> None:
            if done.done():
                return
            error = f.exception()
            if error is None:
                done.set_result(_ident(f.result()))
            elif isinstance(error, RedisError):
                done.set_exception(EngineUnavailable(f"redis: {error}"))
            else:
                done.set_exception(error)

        sent.add_done_callback(settle)
        return done

    async def read(
        self, key: str, before: int, after: int, count: int
    ) -> list[tuple[int, HistoryEntry]]:
        if count <= 0:
            return []
        high = f"({_stream_id(before)}" if before else "+"
        low = _stream_id(after) if after else "-"
        rows = await guard(self.client.call("XREVRANGE", self.key(key), high, low, "COUNT", count))
        return [(_ident(ident), _decode(fields[1])) for ident, fields in rows]

    async def sweep(self, limits: Callable[[str], tuple[int, int]], budget: int) -> int:
        return 0  # trimmed on append, and a quiet channel's stream expires
