"""Metadata of the Redis engine: sets with revisions, shared by every node of a deployment.

Unlike the embedded engine, no node may keep the truth in its memory: any node can write any
set. So every read goes to Redis and every write is one Lua script, which Redis runs
atomically: the checks (major revision, item revisions, existence, the bound lock, the size
limit) and the change can never be split by another node's request, which a WATCH/MULTI retry
loop or client-side locking would allow or make slow under contention. Checks, error codes and
their order are those of ``engines.writes``, as in ``SQLiteStore``. A write is acknowledged
once its script has returned: Redis then holds it, and how it survives a Redis restart (AOF,
RDB, replicas) is the deployment's choice.

Key layout (``prefix`` defaults to ``rtm2:``), made for Redis Cluster: every key of one set
carries the target as its hash tag, so a script touching them stays in one slot, and a
channel's metadata set and its locks (channel target == lock scope) share one slot too, which
a write bound to a lock needs::

    {prefix}{<target>}:meta     hash: "#" -> major revision, "." + key -> item (MessagePack)
    {prefix}revision            the revision counter (one for all sets, see METADATA_WRITE;
                                with Redis Cluster read before the write's script)
    {prefix}{app:<app>}         hash: "metadata" -> the app's rows (each set counts one, each
                                item one more), against ``max_rows``

On one Redis the script keeps the app's row count itself, exactly. With Redis Cluster the
count is in another slot: the caller reads it before the script, which checks against it
and answers how many rows the write added (or freed), and the caller adds that after. Writes
racing each other near the quota may so overshoot it by a few rows; a Redis failure between
the two steps leaves the count off by that write's rows.

Targets go into the tag escaped (``redisio.hash_tag``): Redis takes the tag up to the first
``}``, so a brace in a name would otherwise cut it short. The escape is reversible and keeps
keys readable in redis-cli (a digest would do neither).

A Redis error (connection lost, script failure) makes a write answer STORAGE_NOT_AVAILABLE;
it may or may not have been applied. Reads raise ``EngineUnavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from ....errors import ErrorCode
from ...redisio import Arg, RedisError, Script
from ..base import Item, ItemWrite, Metadata, WriteOutcome
from ..writes import (
    DUPLICATE_KEY,
    check_op,
    item_exists,
    item_missing,
    item_outdated,
    lock_not_held,
    major_outdated,
    rows_full,
    too_large,
)
from .common import ScriptedStore, guard

__all__ = ["METADATA_WRITE", "RedisMetadataStore"]

log = logging.getLogger("rtm2.server")

_ITEM = msgspec.msgpack.Decoder(Item)
_MAJOR = b"#"
_REVISION_TRIES = 20

# The script answers with a status word first ("ok" or why nothing changed) and data after
# it; ``engines.writes`` turns that into the outcome SQLite would give.

METADATA_WRITE = Script(
    "metadata_write",
    """\
-- KEYS[1]  the metadata set: a hash; field "#" = major revision, field "." .. key = an item,
--          MessagePack [key, value, revision, author, update_ts]
-- KEYS[2]  the revision counter (a string, INCR): every write of every set takes its revision
--          from it. On Redis Cluster it lives in another slot than KEYS[1], so the caller
--          takes the revision from it first and gives it (ARGV[8]); KEYS[2] is then unused.
-- KEYS[3]  the app's hash: field "metadata" = its rows (on Redis Cluster, where it is in
--          another slot, any key of this slot: unused)
-- KEYS[4]  only for a write bound to a lock: the lock scope's locks hash (see lock_set)
-- ARGV     op (0 set, 1 update, 2 remove), major revision (-1 = no check), author, update_ts,
--          max size in bytes (0 = no limit), lock name, lock user, the write's revision (0 =
--          INCR KEYS[2]), max rows of the app (0 = no limit), the app's rows as the caller
--          read them ("" = read and count in KEYS[3]), then key, value and revision (-1 no
--          check, 0 must not exist, > 0 must match) of each item
-- returns  {"ok", the set after the write as HGETALL gives it ({} once deleted), the rows
--          it added (< 0: freed)}, or the first reason nothing changed (i = 1-based index of
--          the item): {"major", current major revision}, {"duplicate"}, {"exists", i},
--          {"revision", i, the item's revision or -1 if it does not exist}, {"missing", i},
--          {"lock"}, {"size"}, {"rows"}, or {"stale"} (the given revision is not above the
--          set's: take another)
local set = KEYS[1]
local op = tonumber(ARGV[1])
local major = tonumber(ARGV[2])
local max_size = tonumber(ARGV[5])
local n = (#ARGV - 10) / 3

local current = tonumber(redis.call('HGET', set, '#') or 0)
if major ~= -1 and major ~= current then
  return {'major', current}
end

local seen = {}
for i = 1, n do
  local key = ARGV[8 + 3 * i]
  if seen[key] then
    return {'duplicate'}
  end
  seen[key] = true
end

local old = {}
for i = 1, n do
  local raw = redis.call('HGET', set, '.' .. ARGV[8 + 3 * i])
  local item = raw and cmsgpack.unpack(raw)
  local revision = tonumber(ARGV[10 + 3 * i])
  if revision == 0 and item then
    return {'exists', i}
  end
  if revision > 0 and not (item and item[3] == revision) then
    return {'revision', i, item and item[3] or -1}
  end
  if op ~= 0 and not item then
    return {'missing', i}
  end
  old[i] = item
end

if KEYS[4] then
  local raw = redis.call('HGET', KEYS[4], ARGV[6])
  if not raw or ARGV[7] == '' or cmsgpack.unpack(raw)[3] ~= ARGV[7] then
    return {'lock'}
  end
end

if max_size > 0 and op ~= 2 then
  local size = 0
  local all = redis.call('HGETALL', set)
  for j = 1, #all, 2 do
    if all[j] ~= '#' then
      local item = cmsgpack.unpack(all[j + 1])
      size = size + #item[1] + #item[2]
    end
  end
  local new = size
  for i = 1, n do
    if old[i] then
      new = new - #old[i][1] - #old[i][2]
    end
    new = new + #ARGV[8 + 3 * i] + #ARGV[9 + 3 * i]
  end
  -- a write that does not grow the set is allowed even over the limit
  if new > math.max(max_size, size) then
    return {'size'}
  end
end

-- rows: the set itself (while it exists) and each of its items
local rows = 0
if current > 0 then
  rows = redis.call('HLEN', set)
end
local grown = 0
if op == 2 and n == 0 then
  grown = -rows
else
  if current == 0 then
    grown = 1
  end
  for i = 1, n do
    if op == 0 and not old[i] then
      grown = grown + 1
    elseif op == 2 then
      grown = grown - 1
    end
  end
end
local max_rows = tonumber(ARGV[9])
local in_script = ARGV[10] == ''
if max_rows > 0 and grown > 0 then
  local have = tonumber(ARGV[10])
  if in_script then
    have = tonumber(redis.call('HGET', KEYS[3], 'metadata') or 0)
  end
  if have + grown > max_rows then
    return {'rows'}
  end
end

local revision = tonumber(ARGV[8])
if revision == 0 then
  revision = redis.call('INCR', KEYS[2])
elseif revision <= current then
  return {'stale'}
end
if in_script and grown ~= 0 then
  redis.call('HINCRBY', KEYS[3], 'metadata', grown)
end
if op == 2 and n == 0 then
  redis.call('DEL', set)
  return {'ok', {}, grown}
end
local author, ts = ARGV[3], tonumber(ARGV[4])
for i = 1, n do
  local key = ARGV[8 + 3 * i]
  if op == 2 then
    redis.call('HDEL', set, '.' .. key)
  else
    local item = cmsgpack.pack({key, ARGV[9 + 3 * i], revision, author, ts})
    redis.call('HSET', set, '.' .. key, item)
  end
end
redis.call('HSET', set, '#', revision)
return {'ok', redis.call('HGETALL', set), grown}
""",
)


class RedisMetadataStore(ScriptedStore):
    """Implements ``MetadataStore``."""

    scripts: Sequence[Script] = (METADATA_WRITE,)

    async def read(self, target: str) -> Metadata:
        return _metadata(await guard(self.client.call("HGETALL", self.key(target, "meta"))))

    async def write(
        self,
        target: str,
        op: int,
        items: list[ItemWrite],
        major_revision: int,
        author: str,
        update_ts: int,
        lock: tuple[str, str, str] | None = None,
        max_size: int = 0,
        max_rows: int = 0,
    ) -> WriteOutcome:
        refused = check_op(op)
        if refused is not None:
            return refused
        # On a Redis Cluster the counter is in another slot than the set: take a revision
        # from it first (again if a concurrent write of the set got a later one in first).
        revision_key = self.key(target, "rev") if self.cluster else self._revision_key
        # Likewise the app's row count: read first, added to after (see the module's doc).
        app_key = self.app_key(target)
        keys = [self.key(target, "meta"), revision_key, revision_key if self.cluster else app_key]
        args: list[Arg] = [op, major_revision, author, update_ts, max_size, "", "", 0, max_rows, ""]
        if self.cluster:
            try:
                args[9] = int(await self.client.call("HGET", app_key, "metadata") or 0)
            except RedisError as exc:
                return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, f"Redis: {exc}")
        if lock is not None:
            scope, name, user = lock
            keys.append(self.key(scope, "locks"))
            args[5:7] = [name, user]
        for w in items:
            args += [w.key, w.value, w.revision]
        for _ in range(_REVISION_TRIES):
            if self.cluster:
                try:
                    args[7] = int(await self.client.call("INCR", self._revision_key))
                except RedisError as exc:
                    return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, f"Redis: {exc}")
            reply = await self._run(METADATA_WRITE, keys, args)
            if isinstance(reply, str):
                return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, reply)
            if reply[0] != b"stale":
                break
        else:
            return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, "too many concurrent writes")
        status = reply[0]
        if status == b"ok":
            if self.cluster and reply[2]:
                await self._count(app_key, reply[2])
            return WriteOutcome(0, "", _metadata(reply[1]))
        if status == b"major":
            return major_outdated(reply[1], major_revision)
        if status == b"duplicate":
            return DUPLICATE_KEY
        if status == b"exists":
            return item_exists(items[reply[1] - 1])
        if status == b"revision":
            return item_outdated(items[reply[1] - 1], reply[2] if reply[2] >= 0 else None)
        if status == b"missing":
            return item_missing(items[reply[1] - 1])
        if status == b"lock":
            assert lock is not None
            return lock_not_held(lock[1])
        if status == b"size":
            return too_large(max_size)
        if status == b"rows":
            return rows_full(max_rows)
        raise AssertionError(f"unexpected reply of {METADATA_WRITE.name}: {reply!r}")

    async def _count(self, app_key: str, grown: int) -> None:
        try:
            await self.client.call("HINCRBY", app_key, "metadata", grown)
        except RedisError as exc:
            log.error("storage: cannot count %d metadata rows in %s: %s", grown, app_key, exc)


def _metadata(flat: list[bytes]) -> Metadata:
    """A set from its hash as HGETALL gives it (field, value, field, value, ...)."""
    major = 0
    items: dict[str, Item] = {}
    for i in range(0, len(flat), 2):
        if flat[i] == _MAJOR:
            major = int(flat[i + 1])
        else:
            item = _ITEM.decode(flat[i + 1])
            items[item.key] = item
    return Metadata(major, items)
