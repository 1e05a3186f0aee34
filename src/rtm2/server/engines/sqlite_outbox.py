"""Webhook events of the embedded engine: queued in memory, durable in SQLite.

An event is appended through the metadata store's group-commit writer (``sqlite.SQLiteStore``)
and counts as queued once its transaction is committed, so a process killed at any moment
loses no event that ``put`` returned for. A delivered event's row is deleted through the same
writer without waiting: a crash before that commit delivers the event again (at least once).
One node: it always holds every queue's claim.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from typing import TYPE_CHECKING

from .base import OutboxEntry

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

__all__ = ["SQLiteOutbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_events (
    id INTEGER PRIMARY KEY, hook TEXT NOT NULL, part INTEGER NOT NULL, body BLOB NOT NULL,
    queued_ms INTEGER NOT NULL);
"""
_DELETE = "DELETE FROM webhook_events WHERE id = ?"


class SQLiteOutbox:
    """Implements ``EventOutbox`` for one process, on the store's SQLite file and writer."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._queues: dict[tuple[str, int], deque[OutboxEntry]] = {}
        self._next_id = 1

    async def open(self) -> None:
        """Load what a previous run left queued (call after the store is open)."""
        db = sqlite3.connect(self._store.path)
        try:
            db.executescript(_SCHEMA)
            for row_id, hook, part, body, queued_ms in db.execute(
                "SELECT id, hook, part, body, queued_ms FROM webhook_events ORDER BY id"
            ):
                entry = OutboxEntry(str(row_id), bytes(body), queued_ms)
                self._queues.setdefault((hook, part), deque()).append(entry)
                self._next_id = row_id + 1
        finally:
            db.close()

    async def put(self, entries: list[tuple[str, int, bytes]], bound: int) -> int:
        now = int(time.time() * 1000)
        rows = []
        for hook, part, body in entries:
            rows.append((self._next_id, hook, part, body, now))
            self._next_id += 1
        broken = await self._store.commit(
            [("INSERT INTO webhook_events VALUES (?, ?, ?, ?, ?)", row) for row in rows]
        )
        if broken:
            raise OSError(broken)
        dropped: list[int] = []
        for row_id, hook, part, body, queued_ms in rows:
            queue = self._queues.setdefault((hook, part), deque())
            queue.append(OutboxEntry(str(row_id), body, queued_ms))
            while len(queue) > bound:
                dropped.append(int(queue.popleft().id))
        if dropped:
            self._store.commit_later([(_DELETE, (i,)) for i in dropped])
        return len(dropped)

    async def claim(self, hook: str, partition: int, node: str, lease: float) -> bool:
        return True

    async def release(self, hook: str, partition: int, node: str) -> None:
        return None

    async def peek(self, hook: str, partition: int, node: str) -> OutboxEntry | None:
        queue = self._queues.get((hook, partition))
        return queue[0] if queue else None

    async def ack(self, hook: str, partition: int, entry_id: str) -> None:
        queue = self._queues.get((hook, partition))
        if queue and queue[0].id == entry_id:
            queue.popleft()
        elif queue:  # dropped over the bound meanwhile, or not the head: find it
            for entry in queue:
                if entry.id == entry_id:
                    queue.remove(entry)
                    break
        if queue is not None and not queue:
            del self._queues[(hook, partition)]
        self._store.commit_later([(_DELETE, (int(entry_id),))])

    async def depth(self, hook: str, partition: int) -> tuple[int, int]:
        queue = self._queues.get((hook, partition))
        if not queue:
            return 0, 0
        return len(queue), queue[0].queued_ms
