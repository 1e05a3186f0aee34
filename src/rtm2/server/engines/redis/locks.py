"""Locks of the Redis engine: named per channel, with fencing numbers and one queue of
waiters per lock across every node.

Every change is one Lua script (atomic in Redis), with the checks, codes and order of
``SQLiteStore``. Key layout (see ``metadata``: the scope, a channel's subject, is the hash
tag, so a channel's locks share the slot of its metadata)::

    {prefix}{<scope>}:locks     hash: lock name -> [name, ttl, owner, fence] (MessagePack)
    {prefix}{<scope>}:fences    hash: removed lock name -> its last fencing number (Redis
                                Cluster only, see below)
    {prefix}{<scope>}:queue:<name>  list: tickets waiting for the lock, first come first
    {prefix}{app:<app>}         hash: "locks" -> the app's locks, "fence" -> its fencing
                                floor, "seq" -> removals so far (``ScriptedStore.app_key``)
    {prefix}{app:<app>}:fences  hash: "<len(scope)>:<scope>:<name>" of a recently removed
                                lock -> its last fencing number
    {prefix}{app:<app>}:removed sorted set: those same names, by removal

The last fences of the ``FENCES_KEPT`` most recently removed locks of an app are kept by
name, older ones fold into the app's floor, where every lock set later starts (see
``base.FENCES_KEPT``). On one Redis the scripts keep the app's keys themselves, exactly.

With Redis Cluster the app's keys are in another slot than any channel's. A set first
reserves a row there, then defines the lock, and gives the row back when the lock is
refused. A remove keeps the lock's last fence in the scope's ``fences`` hash, then gives its
row back, keeps the fence by name in the app's keys and folds the oldest into the floor
(lock_retire), and last deletes the folded fences from their scopes (lock_forget). A set
that finds no fence of its name in the scope reads the floor only then and tries again with
it: a folded fence leaves its scope only after the floor covers it, so that floor does too.
(Strictly: unless, during that one set, the same name is set, removed and folded away by
``FENCES_KEPT`` later removals of the app.) A Redis failure between the steps leaves the count
one row too high, or a fence in its scope until the name is set again.

A Redis error makes a lock change answer LOCK_NOT_AVAILABLE (it may or may not have been
applied); reads raise ``EngineUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from ....errors import ErrorCode
from ...redisio import Arg, RedisError, Script, run, unescape_tag
from .. import base
from ..base import EngineUnavailable, LockInfo, LockOutcome
from ..writes import lock_rows_full
from .common import ScriptedStore, guard

__all__ = ["LOCK_SCRIPTS", "RedisLockStore"]

log = logging.getLogger("rtm2.server")

_LOCK = msgspec.msgpack.Decoder(LockInfo)
_SCAN_COUNT = 1000

LOCK_SET = Script(
    "lock_set",
    """\
-- KEYS[1]  the scope's locks: a hash, lock name -> MessagePack [name, ttl, owner, fence]
--          (owner "" = free; fence = the last fencing number given out, 0 = never acquired)
-- KEYS[2]  the scope's fences: a hash, name of a removed lock -> its last fencing number, so
--          that a lock set again under that name goes on from there and never repeats one
--          (Redis Cluster, and databases from before app floors)
-- KEYS[3]  the app's hash: "locks" -> its locks, "fence" -> its fencing floor
-- KEYS[4]  the app's kept fences: a hash, "<len(scope)>:<scope>:<name>" -> last fence
-- KEYS[5]  the app's removed names: a sorted set of those fields, oldest removal first
--          (KEYS[3..5]: on Redis Cluster, where they are in another slot, any key of this
--          slot, unused)
-- ARGV     lock name, ttl, max locks in the scope, max locks of the app (0 = no limit), ""
--          (one Redis: count and fence from KEYS[3..5]); on Redis Cluster, where the caller
--          reserved the row: "?" (no floor read yet) or the app's floor as read after a
--          "?" try; the lock's field in KEYS[4]
-- returns  {"ok", the new lock}, {"exists"}, {"full"}, {"rows"} or {"floor"} (a "?" try
--          found no fence of the name in KEYS[2]: read the floor now, and try again with it)
local name = ARGV[1]
if redis.call('HEXISTS', KEYS[1], name) == 1 then
  return {'exists'}
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {'full'}
end
local fence = 0
if ARGV[5] == '?' then
  if not redis.call('HGET', KEYS[2], name) then
    return {'floor'}
  end
elseif ARGV[5] ~= '' then
  fence = tonumber(ARGV[5])
else
  local max_rows = tonumber(ARGV[4])
  if max_rows > 0 and tonumber(redis.call('HGET', KEYS[3], 'locks') or 0) >= max_rows then
    return {'rows'}
  end
  redis.call('HINCRBY', KEYS[3], 'locks', 1)
  local kept = redis.call('HGET', KEYS[4], ARGV[6])
  if kept then
    fence = tonumber(kept)
    redis.call('HDEL', KEYS[4], ARGV[6])
    redis.call('ZREM', KEYS[5], ARGV[6])
  else
    fence = tonumber(redis.call('HGET', KEYS[3], 'fence') or 0)
  end
end
fence = math.max(fence, tonumber(redis.call('HGET', KEYS[2], name) or 0))
local lock = cmsgpack.pack({name, tonumber(ARGV[2]), '', fence})
redis.call('HSET', KEYS[1], name, lock)
redis.call('HDEL', KEYS[2], name)
return {'ok', lock}
""",
)

LOCK_REMOVE = Script(
    "lock_remove",
    """\
-- KEYS[1]  the scope's locks hash, KEYS[2] the scope's fences hash (see lock_set),
-- KEYS[3]  the lock's queue (see lock_acquire), KEYS[4..6] the app's hash, kept fences and
--          removed names (see lock_set)
-- ARGV     lock name, "1" on Redis Cluster (keep the fence in KEYS[2]; the caller then runs
--          lock_retire), the lock's field in KEYS[5], how many fences the app keeps
-- returns  {"ok", the removed lock} or {"missing"}
local lock = redis.call('HGET', KEYS[1], ARGV[1])
if not lock then
  return {'missing'}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
local fence = cmsgpack.unpack(lock)[4]
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], fence)
else
  redis.call('HINCRBY', KEYS[4], 'locks', -1)
  redis.call('HSET', KEYS[5], ARGV[3], fence)
  redis.call('ZADD', KEYS[6], redis.call('HINCRBY', KEYS[4], 'seq', 1), ARGV[3])
  while redis.call('ZCARD', KEYS[6]) > tonumber(ARGV[4]) do
    local oldest = redis.call('ZPOPMIN', KEYS[6])[1]
    local forgotten = tonumber(redis.call('HGET', KEYS[5], oldest) or 0)
    redis.call('HDEL', KEYS[5], oldest)
    if forgotten > tonumber(redis.call('HGET', KEYS[4], 'fence') or 0) then
      redis.call('HSET', KEYS[4], 'fence', forgotten)
    end
  end
end
return {'ok', lock}
""",
)

LOCK_ACQUIRE = Script(
    "lock_acquire",
    """\
-- KEYS[1]  the scope's locks hash (see lock_set)
-- KEYS[2]  the lock's queue: a list of waiting tickets, first come first
-- ARGV     lock name, user acquiring it, its ticket ("" = none), "1" to queue the ticket
--          when the lock cannot be taken now
-- returns  {"ok", the lock} (free before, or already the user's: then unchanged),
--          {"held", the lock} (held by another, or free but others queue first),
--          {"queued", the lock} (likewise; the ticket waits in the queue) or {"missing"}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'missing'}
end
local lock = cmsgpack.unpack(raw)
local ticket = ARGV[3]
if lock[3] == ARGV[2] then
  if ticket ~= '' then
    redis.call('LREM', KEYS[2], 0, ticket)
  end
  return {'ok', raw}
end
local first = redis.call('LINDEX', KEYS[2], 0)
if lock[3] == '' and (not first or first == ticket) then
  if first then
    redis.call('LPOP', KEYS[2])
  end
  raw = cmsgpack.pack({lock[1], lock[2], ARGV[2], lock[4] + 1})
  redis.call('HSET', KEYS[1], ARGV[1], raw)
  return {'ok', raw}
end
if ARGV[4] == '1' and ticket ~= '' then
  if not redis.call('LPOS', KEYS[2], ticket) then
    redis.call('RPUSH', KEYS[2], ticket)
  end
  return {'queued', raw}
end
return {'held', raw}
""",
)

LOCK_WITHDRAW = Script(
    "lock_withdraw",
    """\
-- KEYS[1]  the lock's queue (see lock_acquire)
-- ARGV     a ticket
-- returns  1 if it was first in the queue (the next may take a free lock now), else 0
local first = redis.call('LINDEX', KEYS[1], 0)
redis.call('LREM', KEYS[1], 0, ARGV[1])
if first == ARGV[1] then
  return 1
end
return 0
""",
)

LOCK_FREE = Script(
    "lock_free",
    """\
-- KEYS[1]  the scope's locks hash (see lock_set)
-- ARGV     lock name, user that must hold it (release and revoke alike)
-- returns  {"ok", the freed lock}, {"not_owner", the lock} or {"missing"}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'missing'}
end
local lock = cmsgpack.unpack(raw)
if ARGV[2] == '' or lock[3] ~= ARGV[2] then
  return {'not_owner', raw}
end
raw = cmsgpack.pack({lock[1], lock[2], '', lock[4]})
redis.call('HSET', KEYS[1], ARGV[1], raw)
return {'ok', raw}
""",
)

LOCK_RESERVE = Script(
    "lock_reserve",
    """\
-- Redis Cluster only, before lock_set: take one of the app's lock rows.
-- KEYS[1]  the app's hash (see lock_set)
-- ARGV     max locks of the app (0 = no limit)
-- returns  {"ok"} or {"rows"}
local max_rows = tonumber(ARGV[1])
if max_rows > 0 and tonumber(redis.call('HGET', KEYS[1], 'locks') or 0) >= max_rows then
  return {'rows'}
end
redis.call('HINCRBY', KEYS[1], 'locks', 1)
return {'ok'}
""",
)

LOCK_RETIRE = Script(
    "lock_retire",
    """\
-- Redis Cluster only, after lock_remove: give back the lock's row, keep its last fence by
-- name in the app's keys, and fold the oldest kept fences beyond the bound into the floor.
-- KEYS     the app's hash, kept fences and removed names (see lock_set)
-- ARGV     the lock's field (see lock_set), its last fence, how many fences the app keeps
-- returns  {the app's floor, the fields folded into it}: the caller then deletes their
--          fences from their scopes (lock_forget)
redis.call('HINCRBY', KEYS[1], 'locks', -1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], 'seq', 1), ARGV[1])
local floor = tonumber(redis.call('HGET', KEYS[1], 'fence') or 0)
local folded = {}
while redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[3]) do
  local oldest = redis.call('ZPOPMIN', KEYS[3])[1]
  floor = math.max(floor, tonumber(redis.call('HGET', KEYS[2], oldest) or 0))
  redis.call('HDEL', KEYS[2], oldest)
  folded[#folded + 1] = oldest
end
redis.call('HSET', KEYS[1], 'fence', floor)
return {floor, folded}
""",
)

LOCK_FORGET = Script(
    "lock_forget",
    """\
-- Redis Cluster only, after lock_retire folded a fence into its app's floor.
-- KEYS[1]  the scope's fences hash (see lock_set)
-- ARGV     lock name, the app's floor
-- Deletes the name's fence unless it is above the floor (the name was set and removed
-- again since): every set from now on reads a floor at least as high.
local fence = redis.call('HGET', KEYS[1], ARGV[1])
if fence and tonumber(fence) <= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
""",
)

LOCK_UNRESERVE = Script(
    "lock_unreserve",
    """\
-- Redis Cluster only: give back a lock row (after a refused lock_set or a lock_remove).
-- KEYS[1]  the app's hash (see lock_set)
return redis.call('HINCRBY', KEYS[1], 'locks', -1)
""",
)

LOCK_SCRIPTS = (
    LOCK_SET,
    LOCK_REMOVE,
    LOCK_ACQUIRE,
    LOCK_WITHDRAW,
    LOCK_FREE,
    LOCK_RESERVE,
    LOCK_UNRESERVE,
    LOCK_RETIRE,
    LOCK_FORGET,
)


class RedisLockStore(ScriptedStore):
    """Implements ``LockStore``."""

    scripts: Sequence[Script] = LOCK_SCRIPTS

    async def locks(self, scope: str) -> dict[str, LockInfo]:
        return _locks(await guard(self.client.call("HGETALL", self.key(scope, "locks"))))

    async def held(self) -> list[tuple[str, LockInfo]]:
        """Every held lock; SCANs all lock keys of the prefix (meant for start-up only)."""
        try:
            return await self._held()
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    async def _held(self) -> list[tuple[str, LockInfo]]:
        head, tail = f"{self.prefix}{{", "}:locks"
        pattern = f"{_glob_escape(head)}*{tail}"
        keys: list[bytes] = []
        scan_all = getattr(self.client, "scan_all", None)
        if scan_all is not None:  # a Redis Cluster: every master
            keys = await scan_all(pattern)
        cursor: bytes | int = 0
        while scan_all is None:
            cursor, found = await self.client.call(
                "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT
            )
            keys += found
            if cursor in (b"0", 0):
                break
        replies = await asyncio.gather(*(self.client.send("HGETALL", key) for key in keys))
        held = []
        for key, reply in zip(keys, replies, strict=True):
            scope = unescape_tag(key.decode()[len(head) : -len(tail)])
            held += [(scope, info) for info in _locks(reply).values() if info.owner]
        return held

    async def set(
        self, scope: str, name: str, ttl: int, max_locks: int, max_rows: int = 0
    ) -> LockOutcome:
        keys = [self.key(scope, "locks"), self.key(scope, "fences"), *self._app_keys(scope)]
        reserved = ""
        if self.cluster:
            reply = await self._run(LOCK_RESERVE, [self.app_key(scope)], [max_rows])
            if isinstance(reply, str):
                return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
            if reply[0] == b"rows":
                return lock_rows_full(max_rows)
            reserved = "?"
        args: list[Arg] = [name, ttl, max_locks, max_rows, reserved, _field(scope, name)]
        reply = await self._run(LOCK_SET, keys, args)
        if not isinstance(reply, str) and reply[0] == b"floor":
            # Read only now: a fence folded into the floor was deleted from the scope after
            # the floor was raised, so a floor read after finding no fence covers it.
            try:
                args[4] = int(await self.client.call("HGET", self.app_key(scope), "fence") or 0)
            except RedisError as exc:
                reply = f"Redis is not available ({exc})"
            else:
                reply = await self._run(LOCK_SET, keys, args)
        if isinstance(reply, str):  # the lock may have been set: the row stays taken
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        if reply[0] != b"ok" and self.cluster:
            await self._unreserve(scope)
        if reply[0] == b"exists":
            return LockOutcome(ErrorCode.LOCK_ALREADY_EXIST, f"lock {name!r} already exists")
        if reply[0] == b"full":
            return LockOutcome(
                ErrorCode.LOCK_OPERATION_FAILED, f"a channel has at most {max_locks} locks"
            )
        if reply[0] == b"rows":
            return lock_rows_full(max_rows)
        return _lock_outcome(LOCK_SET, reply)

    def _app_keys(self, scope: str) -> list[str]:
        """The app's hash, kept fences and removed names; on Redis Cluster, where they are
        in another slot, the scope's locks key in their place (the scripts leave it)."""
        if self.cluster:
            return [self.key(scope, "locks")] * 3
        app = self.app_key(scope)
        return [app, f"{app}:fences", f"{app}:removed"]

    async def _unreserve(self, scope: str) -> None:
        try:
            await run(self.client, LOCK_UNRESERVE, [self.app_key(scope)], [])
        except RedisError as exc:
            log.error("storage: cannot give back a lock row of %s: %s", scope, exc)

    def _queue(self, scope: str, name: str) -> str:
        return f"{self.key(scope, 'queue')}:{name}"

    async def remove(self, scope: str, name: str) -> LockOutcome:
        keys = [self.key(scope, "locks"), self.key(scope, "fences"), self._queue(scope, name)]
        keys += self._app_keys(scope)
        args: list[Arg] = [name, "1" if self.cluster else "", _field(scope, name), base.FENCES_KEPT]
        reply = await self._run(LOCK_REMOVE, keys, args)
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        if reply[0] == b"missing":
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        outcome = _lock_outcome(LOCK_REMOVE, reply)
        if self.cluster and outcome.lock is not None:
            await self._retire(scope, name, outcome.lock.fence)
        return outcome

    async def _retire(self, scope: str, name: str, fence: int) -> None:
        app = self.app_key(scope)
        keys = [app, f"{app}:fences", f"{app}:removed"]
        try:
            reply = await run(
                self.client, LOCK_RETIRE, keys, [_field(scope, name), fence, base.FENCES_KEPT]
            )
            floor, folded = reply
            for field in folded:
                old_scope, old_name = _unfield(field.decode())
                fences = [self.key(old_scope, "fences")]
                await run(self.client, LOCK_FORGET, fences, [old_name, floor])
        except RedisError as exc:  # the count stays a row too high, or a fence is kept
            log.error("storage: cannot retire lock %r of %s: %s", name, scope, exc)

    async def acquire(
        self, scope: str, name: str, owner: str, ticket: str = "", wait: bool = False
    ) -> LockOutcome:
        keys = [self.key(scope, "locks"), self._queue(scope, name)]
        reply = await self._run(LOCK_ACQUIRE, keys, [name, owner, ticket, "1" if wait else ""])
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        status = reply[0]
        if status == b"missing":
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        if status in (b"held", b"queued"):
            if status == b"queued":  # if this node dies, another takes the ticket out
                self.index.add(_member(ticket), "lockq", scope, name, ticket)
            return LockOutcome(
                ErrorCode.LOCK_ACQUIRE_FAILED, f"lock {name!r} is held", _LOCK.decode(reply[1])
            )
        if ticket:
            self.index.remove(_member(ticket), "lockq", scope, name, ticket)
        return _lock_outcome(LOCK_ACQUIRE, reply)

    async def withdraw(self, scope: str, name: str, ticket: str) -> bool:
        try:
            first = await run(self.client, LOCK_WITHDRAW, [self._queue(scope, name)], [ticket])
        except RedisError as exc:
            log.error(
                "storage: cannot take ticket %s out of the queue of %s: %s", ticket, name, exc
            )
            return False
        self.index.remove(_member(ticket), "lockq", scope, name, ticket)
        return bool(first)

    async def release(self, scope: str, name: str, owner: str) -> LockOutcome:
        return await self.revoke(scope, name, owner)

    async def revoke(self, scope: str, name: str, owner: str) -> LockOutcome:
        reply = await self._run(LOCK_FREE, [self.key(scope, "locks")], [name, owner])
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        if reply[0] == b"missing":
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        if reply[0] == b"not_owner":
            return LockOutcome(
                ErrorCode.LOCK_NOT_ACQUIRED,
                f"lock {name!r} is not held by {owner!r}",
                _LOCK.decode(reply[1]),
            )
        return _lock_outcome(LOCK_FREE, reply)


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _field(scope: str, name: str) -> str:
    """A lock's field among its app's kept fences (the length keeps it unambiguous)."""
    return f"{len(scope)}:{scope}:{name}"


def _unfield(field: str) -> tuple[str, str]:
    """The (scope, name) of a ``_field``."""
    length, _, rest = field.partition(":")
    return rest[: int(length)], rest[int(length) + 1 :]


def _member(ticket: str) -> str:
    """Tickets are ``<session id>:<request id>``."""
    return ticket.rsplit(":", 1)[0]


def _locks(flat: list[bytes]) -> dict[str, LockInfo]:
    infos = (_LOCK.decode(flat[i]) for i in range(1, len(flat), 2))
    return {info.name: info for info in infos}


def _lock_outcome(script: Script, reply: list[Any]) -> LockOutcome:
    if reply[0] != b"ok":
        raise AssertionError(f"unexpected reply of {script.name}: {reply!r}")
    return LockOutcome(0, "", _LOCK.decode(reply[1]))
