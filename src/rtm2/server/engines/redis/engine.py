"""The Redis engine: the broker, stream membership and presence, shared by every node.

Every node keeps its own connections and routing tables and subscribes, on one pub/sub
connection, to the subjects of the channels it has local members in; events published by any
node reach every interested node through Redis, in publish order per node. Membership and
presence live in Redis hashes changed by Lua scripts, so concurrent nodes cannot interleave
between a check and its write. Metadata and locks are in ``storage.py``.

Messages are numbered and kept for recovery by Redis (``recovery.py``). Pub/sub channels are
named by the channel's hash tag, so that with Redis Cluster a channel's keys, scripts and
sharded pub/sub all live in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ...redisio import (
    Commands,
    RedisClient,
    RedisClusterClient,
    RedisClusterSubscriber,
    RedisError,
    RedisSubscriber,
    Script,
    hash_tag,
    run,
    send,
    unescape_tag,
)
from ..base import (
    BUS_MESSAGE,
    BusEvent,
    BusHandler,
    EngineUnavailable,
    PresenceEntry,
    TopicPublishers,
    frame_offset,
)
from .index import NodeIndex
from .recovery import BATCH, RedisRecoveryStore, batch_events, publish_numbered, recovery_keys
from .storage import RedisStore

__all__ = ["RedisBroker", "RedisEngine", "RedisPresenceStore", "RedisStreamStore"]

log = logging.getLogger("rtm2.server")

_encode = msgspec.msgpack.Encoder().encode

# At most this many messages in one publishing script call.
_BATCH_MAX = 500
_decode_event = msgspec.msgpack.Decoder(BusEvent).decode


def _tag(name: str) -> str:
    """A hash tag for a channel's keys: all of them, metadata and locks included, land in
    one Redis Cluster slot."""
    return hash_tag(name)


class Subscriber(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self, channel: str) -> None: ...

    def subscribe(self, channel: str) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...


class _Batch:
    __slots__ = ("events", "keep", "keep_ms")

    def __init__(self, keep: int, keep_ms: int) -> None:
        self.keep = keep
        self.keep_ms = keep_ms
        self.events: list[BusEvent] = []


class RedisBroker:
    """Publishes on the command connection, receives on a pub/sub connection (one per shard
    with Redis Cluster, whose sharded pub/sub sends a channel only to its shard)."""

    def __init__(
        self,
        client: Commands,
        url: str,
        prefix: str,
        handler: BusHandler,
        gap: Callable[[str | None], None],
        cluster: bool,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._handler = handler
        self._gap = gap
        self._subjects: set[str] = set()
        # Subjects whose channel moved to another master, with what arrived since: held until
        # the node caught up on what it missed meanwhile (``release``).
        self._held: dict[str, list[bytes]] = {}
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        self._numbered = publish_numbered(cluster)
        client.preload(self._numbered.source)
        # Messages published in this event-loop pass, per (subject, topic), sent with one
        # script call each at the end of the pass.
        self._batches: dict[tuple[str, str], _Batch] = {}
        # (subject, topic) -> (offset counter, buffer, pub/sub channel): built once, not per
        # message (bounded: cleared when it grows past 4,096 topics)
        self._names: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._subscriber: Subscriber
        if cluster:
            self._subscriber = RedisClusterSubscriber(
                url, self._received, self._lost, on_moved=self._moved
            )
        else:
            self._subscriber = RedisSubscriber(url, self._received, self._lost)

    async def start(self) -> None:
        await self._subscriber.connect()

    async def close(self) -> None:
        await self._subscriber.close()

    def _channel(self, subject: str) -> str:
        return f"{self._prefix}{{{_tag(subject)}}}"

    def publish(self, subject: str, event: BusEvent) -> None:
        if self._batches:  # messages published before this event go out before it
            self._flush()
        try:
            future = self._client.send(self._publish, self._channel(subject), _encode(event))
        except RedisError as exc:  # never acknowledge what Redis did not take
            raise EngineUnavailable(f"redis is unavailable: {exc}") from None
        future.add_done_callback(_log_failure)

    def publish_message(self, subject: str, event: BusEvent, keep: int, seconds: float) -> None:
        if not self._client.connected:  # never acknowledge what Redis cannot take
            raise EngineUnavailable("redis is unavailable")
        key = (subject, event.topic)
        batch = self._batches.get(key)
        if batch is None:
            if not self._batches:
                asyncio.get_running_loop().call_soon(self._flush)
            batch = self._batches[key] = _Batch(keep, max(int(seconds * 1000), 1))
        batch.events.append(event)
        if len(batch.events) >= _BATCH_MAX:
            self._flush()

    def _flush(self) -> None:
        """One script call per (subject, topic) for the messages of this loop pass."""
        batches, self._batches = self._batches, {}
        for (subject, topic), batch in batches.items():
            names = self._names.get((subject, topic))
            if names is None:
                if len(self._names) >= 4096:
                    self._names.clear()
                counter, buffer = recovery_keys(self._prefix, subject, topic)
                names = (counter, buffer, self._channel(subject))
                self._names[(subject, topic)] = names
            counter, buffer, channel = names
            events = batch.events
            args = (channel, batch.keep, batch.keep_ms, len(events), _encode(events))
            try:
                future = send(self._client, self._numbered, (counter, buffer), args)
            except RedisError as exc:
                log.error("redis: %d messages of %s not published: %s", len(events), subject, exc)
                continue
            future.add_done_callback(_log_failure)

    async def publish_counted(self, subject: str, event: BusEvent) -> int:
        try:
            channel = self._channel(subject)
            return int(await self._client.call(self._publish, channel, _encode(event)))
        except RedisError as exc:
            raise EngineUnavailable(str(exc)) from None

    async def ready(self, subject: str) -> None:
        try:
            await self._subscriber.ready(self._channel(subject))
        except RedisError as exc:
            raise EngineUnavailable(str(exc)) from None

    def subscribe(self, subject: str) -> None:
        if subject not in self._subjects:
            self._subjects.add(subject)
            self._subscriber.subscribe(self._channel(subject))

    def unsubscribe(self, subject: str) -> None:
        if subject in self._subjects:
            self._subjects.discard(subject)
            self._subscriber.unsubscribe(self._channel(subject))

    def _subject(self, channel: str) -> str:
        return unescape_tag(channel[len(self._prefix) + 1 : -1])

    def _received(self, channel: bytes, data: bytes) -> None:
        subject = self._subject(channel.decode())
        if subject not in self._subjects:
            return
        held = self._held.get(subject)
        if held is not None:
            held.append(data)
            return
        for event in _events(subject, data):
            self._handler(subject, event)

    def _lost(self) -> None:
        log.error("redis: the pub/sub connection was lost; reconnecting")
        self._gap(None)

    def _moved(self, channel: str) -> None:
        """The channel's slot moved (Redis Cluster): messages may have passed us by."""
        subject = self._subject(channel)
        if subject in self._subjects and subject not in self._held:
            self._held[subject] = []
            self._gap(subject)

    def release(self, subject: str, missed: list[BusEvent]) -> None:
        """Deliver what the node missed of ``subject``, then what was held meanwhile (less
        the messages ``missed`` already had)."""
        held = self._held.pop(subject, None)
        if subject not in self._subjects:
            return
        seen: dict[str, int] = {}
        for event in missed:
            self._handler(subject, event)
            seen[event.topic] = frame_offset(event.frame)
        for data in held or ():
            for event in _events(subject, data):
                if event.kind == BUS_MESSAGE and frame_offset(event.frame) <= seen.get(
                    event.topic, 0
                ):
                    continue
                self._handler(subject, event)


def _events(subject: str, data: bytes) -> list[BusEvent]:
    """The events of a pub/sub message: one event, or a numbered batch."""
    try:
        if data[:1] == BATCH:
            return batch_events(data)
        return [_decode_event(data)]
    except (msgspec.DecodeError, msgspec.ValidationError, struct.error):
        log.error("redis: dropping a malformed event on %s", subject)
        return []


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("redis: publish failed: %s", future.exception())


# --- stream channels --------------------------------------------------------------------------

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
        base = f"{self._prefix}{{{_tag(f'stream:{app}:{channel}')}}}"
        return f"{base}:members", f"{base}:pubs", f"{base}:order"

    async def join(
        self, app: str, channel: str, user: str, member: str, max_users: int
    ) -> list[TopicPublishers] | None:
        members, pubs, order = self._keys(app, channel)
        raw = await _guard(
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
        left = await _guard(run(self._client, _STREAM_LEAVE, [members, pubs], [user, member]))
        self._index.remove(member, "stream", app, channel, user)
        return [t.decode() for t in left]

    async def join_topic(
        self, app: str, channel: str, topic: str, user: str, member: str, meta: str
    ) -> None:
        members, pubs, order = self._keys(app, channel)
        await _guard(
            run(
                self._client,
                _STREAM_JOIN_TOPIC,
                [members, pubs, order],
                [f"{topic}\x00{user}", topic, user, member, meta],
            )
        )

    async def leave_topic(self, app: str, channel: str, topic: str, user: str, member: str) -> bool:
        _, pubs, _ = self._keys(app, channel)
        removed = await _guard(
            run(self._client, _STREAM_LEAVE_TOPIC, [pubs], [f"{topic}\x00{user}", member])
        )
        return bool(removed)

    async def publishers(self, app: str, channel: str, topic: str) -> list[str]:
        _, pubs, _ = self._keys(app, channel)
        raw = await _guard(self._client.call("HGETALL", pubs))
        found = []
        for i in range(1, len(raw), 2):
            entry_topic, who, _, _, seq = msgspec.msgpack.decode(raw[i])
            if entry_topic == topic:
                found.append((seq, who))
        return [who for _, who in sorted(found)]


# --- presence ---------------------------------------------------------------------------------

# The user's channel set (for where_now) lives under the user's hash tag, not the channel's:
# it is kept by separate commands so that every script touches one Redis Cluster slot.

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
        return f"{self._prefix}{{{_tag(subject)}}}:presence"

    def _where(self, app: str, user: str) -> str:
        return f"{self._prefix}{{{_tag(f'user:{app}:{user}')}}}:where"

    async def join(
        self, subject: str, user: str, member: str, state: dict[str, str], quiet: bool
    ) -> PresenceEntry | None:
        app = subject.split(":", 2)[1]
        entry = _encode([member, state, quiet])
        previous = await _guard(
            run(self._client, _PRESENCE_JOIN, [self._key(subject)], [user, entry])
        )
        await _guard(self._client.call("SADD", self._where(app, user), subject))
        self._index.add(member, "presence", subject, user)
        return _entry(previous) if previous else None

    async def leave(self, subject: str, user: str, member: str) -> PresenceEntry | None:
        app = subject.split(":", 2)[1]
        raw = await _guard(run(self._client, _PRESENCE_LEAVE, [self._key(subject)], [user, member]))
        if raw:
            await _guard(self._client.call("SREM", self._where(app, user), subject))
        self._index.remove(member, "presence", subject, user)
        return _entry(raw) if raw else None

    async def update_state(
        self, subject: str, user: str, member: str, upsert: dict[str, str], remove: list[str]
    ) -> dict[str, str] | None:
        raw = await _guard(
            run(
                self._client,
                _PRESENCE_STATE,
                [self._key(subject)],
                [user, member, _encode(upsert), _encode(remove)],
            )
        )
        return _entry(raw).state if raw else None

    async def members(self, subject: str) -> dict[str, PresenceEntry]:
        raw = await _guard(self._client.call("HGETALL", self._key(subject)))
        return {raw[i].decode(): _entry(raw[i + 1]) for i in range(0, len(raw), 2)}

    async def where_now(self, app: str, user: str) -> list[tuple[str, bool]]:
        subjects = sorted(
            s.decode() for s in await _guard(self._client.call("SMEMBERS", self._where(app, user)))
        )
        found = []
        for subject in subjects:
            raw = await _guard(self._client.call("HGET", self._key(subject), user))
            if raw:
                found.append((subject, _entry(raw).quiet))
        return found


async def _guard(pending: Any) -> Any:
    """Await a Redis call; a Redis failure is the engine's one error."""
    try:
        return await pending
    except RedisError as exc:
        raise EngineUnavailable(f"redis: {exc}") from None


# --- the engine -------------------------------------------------------------------------------


class RedisEngine:
    """Many nodes, one Redis: ``rtm2 serve --engine redis://host:port/db``, or a Redis Cluster:
    ``redis-cluster://host:port,host:port,...`` (every key of a channel shares a hash tag, so
    every script runs in one slot; pub/sub is sharded)."""

    shared = True  # other nodes use the same Redis

    def __init__(self, url: str, prefix: str = "rtm2:") -> None:
        # ``?prefix=...`` in the URL namespaces every key and channel (one Redis, several
        # independent deployments or test runs).
        base, _, query = url.partition("?")
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "prefix" and value:
                prefix = value
        self.url = base
        self.prefix = prefix
        self.cluster = base.startswith("redis-cluster://")
        self._client: Commands
        if self.cluster:
            self._client = RedisClusterClient(self.url)
        else:
            self._client = RedisClient(self.url)
        self.stream_store = RedisStreamStore(self._client, prefix)
        self.presence_store = RedisPresenceStore(self._client, prefix)
        self.metadata_store = self.lock_store = RedisStore(self._client, prefix, self.cluster)
        self.recovery_store = RedisRecoveryStore(self._client, prefix)
        self._index = NodeIndex(self._client, prefix)
        self._brokers: list[RedisBroker] = []

    def make_broker(self, handler: BusHandler, gap: Callable[[str | None], None]) -> RedisBroker:
        broker = RedisBroker(self._client, self.url, self.prefix, handler, gap, self.cluster)
        self._brokers.append(broker)
        return broker

    async def start(self) -> None:
        await self._client.connect()
        await self.metadata_store.open()
        for broker in self._brokers:
            await broker.start()
        log.info("engine: redis at %s (key prefix %r)", self.url, self.prefix)

    async def close(self) -> None:
        for broker in self._brokers:
            await broker.close()
        await self._client.close()

    def note(self, node: str, fields: list[str]) -> None:
        self._index.add(f"{node}-0", *fields)

    def unnote(self, node: str, fields: list[str]) -> None:
        self._index.remove(f"{node}-0", *fields)

    async def heartbeat(self, node: str) -> None:
        """Tell the other nodes this one is alive."""
        with contextlib.suppress(RedisError):
            now = await self._client.call("TIME")
            await self._client.call("ZADD", f"{self.prefix}nodes", int(now[0]), node)

    async def orphans(self, node: str, timeout: float) -> list[list[str]]:
        """What the nodes silent for ``timeout`` seconds left behind, taken over (once, by
        one node) for clean-up: entries ``[kind, *fields, member]`` (see ``index.NodeIndex``)."""
        nodes = f"{self.prefix}nodes"
        index = self._index
        found: list[list[str]] = []
        try:
            now = int((await self._client.call("TIME"))[0])
            dead = await self._client.call("ZRANGEBYSCORE", nodes, "-inf", now - timeout)
            for raw in dead:
                gone = raw.decode()
                if gone == node:
                    continue
                claim = f"{self.prefix}{{node:{gone}}}:sweeper"
                if not await self._client.call("SET", claim, node, "NX", "EX", 60):
                    continue  # another node is on it
                entries = await self._client.call("SMEMBERS", index.key(gone))
                await self._client.call("DEL", index.key(gone))
                await self._client.call("ZREM", nodes, gone)
                found += [list(msgspec.msgpack.decode(e)) for e in entries]
                log.warning("engine: node %s is gone; cleaning up %d entries", gone, len(entries))
        except RedisError as exc:
            log.warning("engine: sweep for dead nodes failed: %s", exc)
        return found
