"""The Lua scripts of the Redis metadata and lock stores.

Redis runs a script atomically: no other command runs between its reads and its writes. So
every compare-and-set (revisions, existence, the bound lock, the size limit, lock ownership)
is one script: the check and the change can never be split by another node's request, which
a WATCH/MULTI retry loop or client-side locking would allow or make slow under contention.

Each script names every key it touches in KEYS, and all keys of one metadata set or lock
scope share a hash tag, so the scripts also run on Redis Cluster. The one exception is the
revision counter (see ``METADATA_WRITE``). Scripts answer with a status word first ("ok" or
why nothing changed) and data after it; the store turns that into RTM outcomes and messages.

They are loaded once (SCRIPT LOAD) and run with ``redisio.run``.
"""

from __future__ import annotations

from ...redisio import Script

__all__ = [
    "LOCK_ACQUIRE",
    "LOCK_FREE",
    "LOCK_REMOVE",
    "LOCK_SET",
    "LOCK_WITHDRAW",
    "METADATA_WRITE",
    "SCRIPTS",
]


METADATA_WRITE = Script(
    "metadata_write",
    """\
-- KEYS[1]  the metadata set: a hash; field "#" = major revision, field "." .. key = an item,
--          MessagePack [key, value, revision, author, update_ts]
-- KEYS[2]  the revision counter (a string, INCR): every write of every set takes its revision
--          from it. On Redis Cluster it lives in another slot than KEYS[1], so the caller
--          takes the revision from it first and gives it (ARGV[8]); KEYS[2] is then unused.
-- KEYS[3]  only for a write bound to a lock: the lock scope's locks hash (see lock_set)
-- ARGV     op (0 set, 1 update, 2 remove), major revision (-1 = no check), author, update_ts,
--          max size in bytes (0 = no limit), lock name, lock user, the write's revision (0 =
--          INCR KEYS[2]), then key, value and revision (-1 no check, 0 must not exist, > 0
--          must match) of each item
-- returns  {"ok", the set after the write as HGETALL gives it ({} once deleted)}, or the
--          first reason nothing changed (i = 1-based index of the item): {"major", current
--          major revision}, {"duplicate"}, {"exists", i}, {"revision", i, the item's revision
--          or -1 if it does not exist}, {"missing", i}, {"lock"}, {"size"}, or {"stale"} (the
--          given revision is not above the set's: take another)
local set = KEYS[1]
local op = tonumber(ARGV[1])
local major = tonumber(ARGV[2])
local max_size = tonumber(ARGV[5])
local n = (#ARGV - 8) / 3

local current = tonumber(redis.call('HGET', set, '#') or 0)
if major ~= -1 and major ~= current then
  return {'major', current}
end

local seen = {}
for i = 1, n do
  local key = ARGV[6 + 3 * i]
  if seen[key] then
    return {'duplicate'}
  end
  seen[key] = true
end

local old = {}
for i = 1, n do
  local raw = redis.call('HGET', set, '.' .. ARGV[6 + 3 * i])
  local item = raw and cmsgpack.unpack(raw)
  local revision = tonumber(ARGV[8 + 3 * i])
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

if KEYS[3] then
  local raw = redis.call('HGET', KEYS[3], ARGV[6])
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
    new = new + #ARGV[6 + 3 * i] + #ARGV[7 + 3 * i]
  end
  -- a write that does not grow the set is allowed even over the limit
  if new > math.max(max_size, size) then
    return {'size'}
  end
end

local revision = tonumber(ARGV[8])
if revision == 0 then
  revision = redis.call('INCR', KEYS[2])
elseif revision <= current then
  return {'stale'}
end
if op == 2 and n == 0 then
  redis.call('DEL', set)
  return {'ok', {}}
end
local author, ts = ARGV[3], tonumber(ARGV[4])
for i = 1, n do
  local key = ARGV[6 + 3 * i]
  if op == 2 then
    redis.call('HDEL', set, '.' .. key)
  else
    local item = cmsgpack.pack({key, ARGV[7 + 3 * i], revision, author, ts})
    redis.call('HSET', set, '.' .. key, item)
  end
end
redis.call('HSET', set, '#', revision)
return {'ok', redis.call('HGETALL', set)}
""",
)

LOCK_SET = Script(
    "lock_set",
    """\
-- KEYS[1]  the scope's locks: a hash, lock name -> MessagePack [name, ttl, owner, fence]
--          (owner "" = free; fence = the last fencing number given out, 0 = never acquired)
-- KEYS[2]  the scope's fences: a hash, name of a removed lock -> its last fencing number, so
--          that a lock set again under that name goes on from there and never repeats one
-- ARGV     lock name, ttl, max locks in the scope
-- returns  {"ok", the new lock}, {"exists"} or {"full"}
local name = ARGV[1]
if redis.call('HEXISTS', KEYS[1], name) == 1 then
  return {'exists'}
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {'full'}
end
local fence = tonumber(redis.call('HGET', KEYS[2], name) or 0)
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
-- KEYS[3]  the lock's queue (see lock_acquire)
-- ARGV     lock name
-- returns  {"ok", the removed lock} or {"missing"}
local lock = redis.call('HGET', KEYS[1], ARGV[1])
if not lock then
  return {'missing'}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.unpack(lock)[4])
redis.call('DEL', KEYS[3])
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

SCRIPTS = (METADATA_WRITE, LOCK_SET, LOCK_REMOVE, LOCK_ACQUIRE, LOCK_WITHDRAW, LOCK_FREE)
