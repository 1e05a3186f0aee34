"""Recent-message buffers, so a client that resumes after a blip misses nothing.

Every message channel and every stream-channel topic numbers its messages (offsets 1, 2, 3 …)
and keeps the most recent ones: at most ``recovery_messages`` of them, none older than
``recovery_seconds`` (per-app limits). A resuming client says, per subscription, the last offset
it saw; what came after is replayed in order, or, if the buffer no longer reaches back that far
(or the server restarted: another epoch), the client is told it was not recovered.
"""

from __future__ import annotations

import os
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
        self.last = 0  # offset of the newest message ever published here
        self.entries: deque[Entry] = deque()


class Recovery:
    def __init__(self, enabled: bool = True) -> None:
        # Off when messages of one channel may be numbered by several processes (the Redis
        # engine, until its buffers live in Redis): offsets 0, nothing kept, nothing replayed.
        self.enabled = enabled
        self.epoch = os.urandom(6).hex()  # this process's buffers; a restart changes it
        self._buffers: dict[BufferKey, _Buffer] = {}
        self._clock = time.monotonic

    def position(self, key: BufferKey) -> int:
        buffer = self._buffers.get(key)
        return buffer.last if buffer is not None else 0

    def next_offset(self, key: BufferKey) -> tuple[_Buffer | None, int]:
        if not self.enabled:
            return None, 0
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = _Buffer()
        buffer.last += 1
        return buffer, buffer.last

    def keep(
        self,
        buffer: _Buffer | None,
        offset: int,
        publisher: str,
        frame: bytes,
        limit: int,
        seconds: float,
    ) -> None:
        """Remember a published message (``limit`` 0: keep nothing)."""
        if buffer is None or limit <= 0:
            return
        now = self._clock()
        entries = buffer.entries
        entries.append(Entry(offset, now, publisher, frame))
        while len(entries) > limit or entries[0].stamp < now - seconds:
            entries.popleft()

    def since(self, key: BufferKey, offset: int, epoch: str) -> list[Entry] | None:
        """The buffered messages after ``offset``, or None when some of them are gone."""
        if not self.enabled:
            return None
        if epoch != self.epoch:
            return None
        buffer = self._buffers.get(key)
        if buffer is None:
            return [] if offset == 0 else None
        if offset >= buffer.last:
            return []
        entries = buffer.entries
        if not entries or entries[0].offset > offset + 1:
            return None
        return [e for e in entries if e.offset > offset]

    def prune(self, seconds_for: dict[str, float]) -> None:
        """Drop entries older than their app's ``recovery_seconds`` (by app id).

        A buffer itself stays, empty, for as long as the process runs: its offset must keep
        growing, or a resuming client would take new messages for ones it already has.
        """
        now = self._clock()
        for key, buffer in self._buffers.items():
            horizon = now - seconds_for.get(key[0].split(":", 2)[1], 0.0)
            entries = buffer.entries
            while entries and entries[0].stamp < horizon:
                entries.popleft()
