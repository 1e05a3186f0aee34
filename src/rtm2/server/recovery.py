"""Recent messages kept by this node, so a client that resumes after a blip misses nothing.

The engine numbers every message of a message channel and of a stream-channel topic (offsets
that only grow) and may keep them itself (the Redis engine does, for clients that come back
on another node). Each node also keeps the numbered messages it receives for its own
subscribers: at most ``recovery_messages`` per channel or topic, none older than
``recovery_seconds`` (per-app limits). A client resuming on the same node is served from here
at once, with no engine round trip.

A buffer only answers for offsets it saw continuously: it starts with the first message the
node receives, is emptied when an offset is skipped (the node missed something), and is
dropped when the node stops listening to the channel. What it cannot answer, the engine's
``RecoveryStore`` may.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["Entry", "Recovery"]

BufferKey = tuple[str, str]  # (channel subject, topic or "")
# (offset, monotonic time received, publisher, the encoded push as subscribers got it)
Entry = tuple[int, float, str, bytes]


class _Buffer:
    __slots__ = ("entries", "last")

    def __init__(self, limit: int) -> None:
        self.last = 0  # offset of the newest message received here
        self.entries: deque[Entry] = deque(maxlen=limit)


class _Subject:
    __slots__ = ("limit", "seconds", "topics")

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.topics: dict[str, _Buffer] = {}


class Recovery:
    def __init__(self, limits: Callable[[str], tuple[int, float]]) -> None:
        # subject -> its app's (recovery_messages, recovery_seconds) and a buffer per topic
        # ("" for message channels)
        self._subjects: dict[str, _Subject] = {}
        self._limits = limits
        self._clock = time.monotonic

    def _get(self, key: BufferKey) -> _Buffer | None:
        subject = self._subjects.get(key[0])
        return subject.topics.get(key[1]) if subject is not None else None

    def position(self, key: BufferKey) -> int:
        """The newest offset received here (0: none, ask the engine)."""
        buffer = self._get(key)
        return buffer.last if buffer is not None else 0

    def receive(self, subject: str, topic: str, offset: int, publisher: str, frame: bytes) -> None:
        """Remember a numbered message this node received (the hot path: once per message)."""
        known = self._subjects.get(subject)
        if known is None:
            known = self._subjects[subject] = _Subject(*self._limits(subject))
        buffer = known.topics.get(topic)
        if buffer is None:
            buffer = known.topics[topic] = _Buffer(known.limit)
        if offset != buffer.last + 1:  # a gap (or the first message): older ones say nothing
            buffer.entries.clear()
        buffer.last = offset
        if known.limit:  # the deque drops the oldest itself; the sweep drops the too old
            buffer.entries.append((offset, self._clock(), publisher, frame))

    def mark(self, subject: str, topic: str, offset: int) -> None:
        """The engine's position of (subject, topic), read while this node listens to it: what
        came before is no concern of this node's subscribers (a buffer this node has already,
        of messages it received, is kept as it is)."""
        known = self._subjects.get(subject)
        if known is None:
            known = self._subjects[subject] = _Subject(*self._limits(subject))
        if topic not in known.topics and offset > 0:
            buffer = known.topics[topic] = _Buffer(known.limit)
            buffer.last = offset

    def lasts(self, subject: str) -> dict[str, int]:
        """The newest offset received here of each topic of ``subject``."""
        known = self._subjects.get(subject)
        return {t: b.last for t, b in known.topics.items()} if known is not None else {}

    def since(self, key: BufferKey, offset: int) -> list[Entry] | None:
        """The kept messages after ``offset``; None when this buffer cannot tell."""
        buffer = self._get(key)
        if buffer is None:
            return None
        if offset >= buffer.last:
            return []
        entries = buffer.entries
        if not entries or entries[0][0] > offset + 1:
            return None
        return [e for e in entries if e[0] > offset]

    def forget(self, subject: str) -> None:
        """This node no longer listens to ``subject``: what it kept may now miss messages."""
        self._subjects.pop(subject, None)

    def clear(self) -> None:
        """The node may have missed messages of every channel (its engine link dropped)."""
        self._subjects.clear()

    def prune(self) -> None:
        """Drop entries older than their app's ``recovery_seconds``."""
        now = self._clock()
        for subject in self._subjects.values():
            horizon = now - subject.seconds
            for buffer in subject.topics.values():
                entries = buffer.entries
                while entries and entries[0][1] < horizon:
                    entries.popleft()
