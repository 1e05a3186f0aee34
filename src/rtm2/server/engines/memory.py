"""The embedded engine: everything in this process's memory. Single node only."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .bans import SQLiteBanStore
from .base import BusEvent, BusHandler, PresenceEntry, TopicPublishers, numbered
from .sqlite import SQLiteStore
from .sqlite_history import SQLiteHistoryStore
from .sqlite_outbox import SQLiteOutbox

__all__ = [
    "OFFSETS_IDLE",
    "MemoryBroker",
    "MemoryEngine",
    "MemoryPresenceStore",
    "MemoryRecoveryStore",
    "MemoryStreamStore",
    "Offsets",
]

OFFSETS_IDLE = 24 * 3600.0  # seconds, as the Redis engine's counters


class MemoryEngine:
    """The embedded engine: one node, everything in this process; metadata and locks are
    also kept durably in SQLite under the data directory."""

    def __init__(self, data_dir: Path, offsets_idle: float = OFFSETS_IDLE) -> None:
        self.stream_store = MemoryStreamStore()
        self.presence_store = MemoryPresenceStore()
        self.metadata_store = self.lock_store = SQLiteStore(data_dir / "rtm2.db")
        self.recovery_store = MemoryRecoveryStore(offsets_idle)
        self.ban_store = SQLiteBanStore(self.metadata_store)
        self.history_store = SQLiteHistoryStore(self.metadata_store)
        self.event_outbox = SQLiteOutbox(self.metadata_store)
        self._descriptors: dict[str, bytes] = {}

    def make_broker(self, handler: BusHandler, gap: Callable[[str | None], None]) -> MemoryBroker:
        return MemoryBroker(handler, self.recovery_store.offsets)

    async def start(self) -> None:
        await self.metadata_store.open()
        await self.ban_store.open()
        await self.history_store.open()
        await self.event_outbox.open()

    async def close(self) -> None:
        await self.history_store.close()
        await self.metadata_store.close()

    shared = False  # one node: everything in the stores is this node's

    def note(self, node: str, fields: list[str]) -> None:
        """One node: nobody to hand anything over to."""

    def unnote(self, node: str, fields: list[str]) -> None:
        """One node: nothing was noted."""

    async def heartbeat(self, node: str, descriptor: bytes = b"", ttl: float = 0.0) -> None:
        """One node: nobody to tell; its descriptor is kept for ``node_descriptors``."""
        if descriptor:
            self._descriptors = {node: descriptor}

    async def ping(self) -> None:
        """In this process: it answers while the process does."""

    async def orphans(self, node: str, timeout: float) -> list[list[str]]:
        return []  # one node: no other node can die and leave entries behind

    async def live_nodes(self, timeout: float) -> list[str]:
        return []  # one node: it knows no other

    async def node_descriptors(self, timeout: float) -> dict[str, bytes]:
        return dict(self._descriptors)  # one node: alive while the process runs


class Offsets:
    """The last offset of each (subject, topic), forgotten after ``idle`` seconds without a
    message, so that publishing to ever new channel names does not grow it without end.

    A forgotten counter starts again above every offset a forgotten one reached (as the Redis
    engine's start above its clock), so a client's old position is never taken for a newer
    one. Kept in order of last use: the idle ones are at the front.
    """

    __slots__ = ("_clock", "_floor", "_last", "_next_prune", "idle")

    def __init__(self, idle: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[int, float]] = {}  # key -> (offset, used at)
        self._floor = 0  # the highest offset of a forgotten counter
        self._next_prune = clock() + idle

    def __len__(self) -> int:
        return len(self._last)

    def get(self, key: tuple[str, str]) -> int:
        entry = self._last.get(key)
        return entry[0] if entry is not None else 0

    def next(self, key: tuple[str, str]) -> int:
        now = self._clock()
        if now >= self._next_prune:
            self._prune(now)
        entry = self._last.pop(key, None)  # re-inserted: at the back, the most recent
        offset = (entry[0] if entry is not None else self._floor) + 1
        self._last[key] = (offset, now)
        return offset

    def _prune(self, now: float) -> None:
        # A pass every ``idle / 10`` at most, each over the idle entries only.
        self._next_prune = now + self.idle / 10
        cutoff = now - self.idle
        for key, (offset, used) in list(self._last.items()):
            if used > cutoff:
                break
            del self._last[key]
            self._floor = max(self._floor, offset)


class MemoryRecoveryStore:
    """Offsets per (subject, topic); the messages themselves are kept by the node that
    receives them (``server.recovery``), which with one node is all of them."""

    def __init__(self, offsets_idle: float = OFFSETS_IDLE) -> None:
        # This process's offsets: a restart starts them again, so it is another epoch.
        self.epoch = os.urandom(6).hex()
        self.offsets = Offsets(offsets_idle)

    async def position(self, subject: str, topic: str) -> int:
        return self.offsets.get((subject, topic))

    async def since(
        self, subject: str, topic: str, offset: int, limit: int, seconds: float
    ) -> list[BusEvent] | None:
        # Whatever this node did not keep itself is gone.
        return [] if offset >= self.offsets.get((subject, topic)) else None


class MemoryBroker:
    """Delivers events to this node synchronously, in publish order."""

    __slots__ = ("_handler", "_offsets", "_subjects")

    def __init__(self, handler: BusHandler, offsets: Offsets) -> None:
        self._handler = handler
        self._subjects: set[str] = set()
        self._offsets = offsets

    def publish(self, subject: str, event: BusEvent) -> None:
        if subject in self._subjects:
            self._handler(subject, event)

    def publish_message(self, subject: str, event: BusEvent, keep: int, seconds: float) -> None:
        offset = self._offsets.next((subject, event.topic))
        if subject in self._subjects:
            frame = numbered(event.frame, offset)
            self._handler(subject, BusEvent(event.kind, event.topic, event.user, frame))

    async def ready(self, subject: str) -> None:
        """Delivery is synchronous: a subscribed subject is ready at once."""

    def release(self, subject: str, missed: list[BusEvent]) -> None:
        """Never holds anything: events cannot pass this broker by."""

    async def publish_counted(self, subject: str, event: BusEvent) -> int:
        if subject not in self._subjects:
            return 0
        self._handler(subject, event)
        return 1

    def subscribe(self, subject: str) -> None:
        self._subjects.add(subject)

    def unsubscribe(self, subject: str) -> None:
        self._subjects.discard(subject)


class _Channel:
    __slots__ = ("members", "topics")

    def __init__(self) -> None:
        self.members: dict[str, str] = {}  # user -> member id
        # topic -> user -> (member id, meta); dicts keep join order
        self.topics: dict[str, dict[str, tuple[str, str]]] = {}


class MemoryStreamStore:
    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], _Channel] = {}

    async def join(
        self, app: str, channel: str, user: str, member: str, max_users: int
    ) -> list[TopicPublishers] | None:
        ch = self._channels.get((app, channel))
        if ch is None:
            ch = self._channels[(app, channel)] = _Channel()
        if user not in ch.members and len(ch.members) >= max_users:
            return None
        ch.members[user] = member
        return [
            TopicPublishers(topic, [(u, meta) for u, (_, meta) in pubs.items()])
            for topic, pubs in ch.topics.items()
        ]

    async def leave(self, app: str, channel: str, user: str, member: str) -> list[str]:
        ch = self._channels.get((app, channel))
        if ch is None or ch.members.get(user) != member:
            return []
        del ch.members[user]
        left = []
        for topic, pubs in list(ch.topics.items()):
            entry = pubs.get(user)
            if entry is not None and entry[0] == member:
                del pubs[user]
                left.append(topic)
                if not pubs:
                    del ch.topics[topic]
        if not ch.members:
            del self._channels[(app, channel)]
        return left

    async def join_topic(
        self, app: str, channel: str, topic: str, user: str, member: str, meta: str
    ) -> None:
        ch = self._channels.get((app, channel))
        if ch is None or ch.members.get(user) != member:
            return
        ch.topics.setdefault(topic, {})[user] = (member, meta)

    async def leave_topic(self, app: str, channel: str, topic: str, user: str, member: str) -> bool:
        ch = self._channels.get((app, channel))
        pubs = ch.topics.get(topic) if ch is not None else None
        if ch is None or pubs is None or pubs.get(user, ("",))[0] != member:
            return False
        del pubs[user]
        if not pubs:
            del ch.topics[topic]
        return True

    async def publishers(self, app: str, channel: str, topic: str) -> list[str]:
        ch = self._channels.get((app, channel))
        return list(ch.topics.get(topic, {})) if ch is not None else []


class MemoryPresenceStore:
    def __init__(self) -> None:
        self._channels: dict[str, dict[str, PresenceEntry]] = {}
        self._users: dict[tuple[str, str], set[str]] = {}  # (app, user) -> subjects

    async def join(
        self, subject: str, user: str, member: str, state: dict[str, str], quiet: bool
    ) -> PresenceEntry | None:
        channel = self._channels.setdefault(subject, {})
        previous = channel.get(user)
        channel[user] = PresenceEntry(member, dict(state), quiet)
        self._users.setdefault((_app(subject), user), set()).add(subject)
        return previous

    async def leave(self, subject: str, user: str, member: str) -> PresenceEntry | None:
        channel = self._channels.get(subject)
        entry = channel.get(user) if channel is not None else None
        if channel is None or entry is None or entry.member != member:
            return None
        del channel[user]
        if not channel:
            del self._channels[subject]
        key = (_app(subject), user)
        subjects = self._users.get(key)
        if subjects is not None:
            subjects.discard(subject)
            if not subjects:
                del self._users[key]
        return entry

    async def update_state(
        self, subject: str, user: str, member: str, upsert: dict[str, str], remove: list[str]
    ) -> dict[str, str] | None:
        entry = self._channels.get(subject, {}).get(user)
        if entry is None or entry.member != member:
            return None
        entry.state.update(upsert)
        for key in remove:
            entry.state.pop(key, None)
        return dict(entry.state)

    async def members(self, subject: str) -> dict[str, PresenceEntry]:
        return dict(self._channels.get(subject, {}))

    async def where_now(self, app: str, user: str) -> list[tuple[str, bool]]:
        return [
            (subject, self._channels[subject][user].quiet)
            for subject in sorted(self._users.get((app, user), ()))
        ]

    async def channels(self, subject_prefix: str) -> dict[str, int]:
        return {s: len(m) for s, m in self._channels.items() if s.startswith(subject_prefix)}


def _app(subject: str) -> str:
    return subject.split(":", 2)[1]
