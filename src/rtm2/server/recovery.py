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

__all__ = ["Entry", "Recovery"]

BufferKey = tuple[str, str]  # (channel subject, topic or "")


class Entry:
    __slots__ = ("frame", "offset", "publisher", "stamp")

    def __init__(self, offset: int, stamp: float, publisher: str, frame: bytes) -> None:
        self.offset = offset
        self.stamp = stamp
        self.publisher = publisher
        self.frame = frame  # the encoded push, as subscribers got it


class _Buffer:
    __slots__ = ("entries", "last")

    def __init__(self) -> None:
        self.last = 0  # offset of the newest message received here
        self.entries: deque[Entry] = deque()


class Recovery:
    def __init__(self) -> None:
        # subject -> topic ("" for message channels) -> buffer
        self._buffers: dict[str, dict[str, _Buffer]] = {}
        self._clock = time.monotonic

    def _get(self, key: BufferKey) -> _Buffer | None:
        topics = self._buffers.get(key[0])
        return topics.get(key[1]) if topics is not None else None

    def position(self, key: BufferKey) -> int:
        """The newest offset received here (0: none, ask the engine)."""
        buffer = self._get(key)
        return buffer.last if buffer is not None else 0

    def receive(
        self, key: BufferKey, offset: int, publisher: str, frame: bytes, limit: int, seconds: float
    ) -> None:
        """Remember a numbered message this node received (``limit`` 0: keep nothing)."""
        topics = self._buffers.get(key[0])
        if topics is None:
            topics = self._buffers[key[0]] = {}
        buffer = topics.get(key[1])
        if buffer is None:
            buffer = topics[key[1]] = _Buffer()
        entries = buffer.entries
        if offset != buffer.last + 1:  # a gap (or the first message): older ones say nothing
            entries.clear()
        buffer.last = offset
        if limit <= 0:
            return
        now = self._clock()
        entries.append(Entry(offset, now, publisher, frame))
        while len(entries) > limit or entries[0].stamp < now - seconds:
            entries.popleft()

    def since(self, key: BufferKey, offset: int) -> list[Entry] | None:
        """The kept messages after ``offset``; None when this buffer cannot tell."""
        buffer = self._get(key)
        if buffer is None:
            return None
        if offset >= buffer.last:
            return []
        entries = buffer.entries
        if not entries or entries[0].offset > offset + 1:
            return None
        return [e for e in entries if e.offset > offset]

    def forget(self, subject: str) -> None:
        """This node no longer listens to ``subject``: what it kept may now miss messages."""
        self._buffers.pop(subject, None)

    def clear(self) -> None:
        """The node may have missed messages of every channel (its engine link dropped)."""
        self._buffers.clear()

    def prune(self, seconds_for: dict[str, float]) -> None:
        """Drop entries older than their app's ``recovery_seconds`` (by app id)."""
        now = self._clock()
        for subject, topics in self._buffers.items():
            horizon = now - seconds_for.get(subject.split(":", 2)[1], 0.0)
            for buffer in topics.values():
                entries = buffer.entries
                while entries and entries[0].stamp < horizon:
                    entries.popleft()
