"""Message history of the embedded engine: SQLite, through the metadata store's writer.

A stored message is one row (key, id, entry) of a table whose primary key is (key, id), so a
page is one index range scan however long the channel's history. Ids are given in memory, at
the call, from each key's last id; the appends of one event-loop pass become one job of
multi-row inserts in the metadata writer's queue, so they are committed with whatever else
queued meanwhile (group commit), in call order, and each append resolves only once it is.
Reads and sweeps use a reader connection of their own (WAL: they never wait for the writer)
on a worker thread. The sweep deletes through the writer too.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from .base import HISTORY_IDS_PER_MS, HistoryEntry
from .sqlite import SQLiteStore

__all__ = ["SQLiteHistoryStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    key TEXT NOT NULL, id INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (key, id)
) WITHOUT ROWID;
"""
# Every key and its newest id, one index seek per key (a plain GROUP BY reads every row).
_KEYS = """
WITH RECURSIVE keys(key) AS (
    SELECT MIN(key) FROM history
    UNION ALL SELECT (SELECT MIN(key) FROM history WHERE key > keys.key) FROM keys
    WHERE keys.key IS NOT NULL)
SELECT key, (SELECT MAX(id) FROM history WHERE history.key = keys.key) FROM keys
WHERE key IS NOT NULL
"""
_NO_BOUND = 2**62
_ROWS = 256  # rows per INSERT: 768 parameters, below SQLite's oldest limit of 999
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(HistoryEntry).decode


class SQLiteHistoryStore:
    """Implements ``HistoryStore`` on the embedded engine's database."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._last: dict[str, int] = {}  # every key with messages: its newest id
        self._reader: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the reader is used by one thread at a time
        self._cursor = ""  # the sweep goes on from the key after this one
        # Appends of this loop pass, committed together: (key, id, entry, future).
        self._pending: list[tuple[str, int, bytes, asyncio.Future[int]]] = []

    async def open(self) -> None:
        db = sqlite3.connect(self._store.path, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(_SCHEMA)
        self._last = {key: last for key, last in db.execute(_KEYS)}
        self._reader = db
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def append(
        self, key: str, entry: HistoryEntry, ts: int, keep: int, retention_ms: int
    ) -> asyncio.Future[int]:
        last = self._last.get(key, 0)
        ident = max(last + 1, ts * HISTORY_IDS_PER_MS)
        self._last[key] = ident
        loop = self._loop
        done: asyncio.Future[int] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((key, ident, _encode(entry), done))
        return done

    def _flush(self) -> None:
        """Hand this loop pass's appends to the writer as one job of multi-row INSERTs: the
        writer thread then steps SQLite once per ``_ROWS`` rows, not once per message."""
        pending, self._pending = self._pending, []
        statements = []
        for i in range(0, len(pending), _ROWS):
            chunk = pending[i : i + _ROWS]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            args = tuple(x for key, ident, blob, _ in chunk for x in (key, ident, blob))
            statements.append((f"INSERT INTO history VALUES {values}", args))
        try:
            committed = self._store.submit(statements)
        except Exception as exc:  # the store is not open (any more)
            for *_, done in pending:
                if not done.done():
                    done.set_exception(exc)
            return

        def settle(f: asyncio.Future[None]) -> None:
            error = f.exception()
            for _, ident, _, done in pending:
                if done.done():
                    continue
                if error is None:
                    done.set_result(ident)
                else:
                    done.set_exception(error)

        committed.add_done_callback(settle)

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        assert self._reader is not None, "store not open"
        with self._lock:
            return self._reader.execute(sql, args).fetchall()

    async def read(
        self, key: str, before: int, after: int, count: int
    ) -> list[tuple[int, HistoryEntry]]:
        if key not in self._last or count <= 0:
            return []
        rows = await asyncio.to_thread(
            self._query,
            "SELECT id, entry FROM history WHERE key = ? AND id >= ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (key, after, before or _NO_BOUND, count),
        )
        return [(ident, _decode(entry)) for ident, entry in rows]

    async def sweep(self, limits: Callable[[str], tuple[int, int]], budget: int) -> int:
        keys = sorted(self._last)
        if not keys:
            return 0
        # Round robin from where the last sweep stopped, so every key gets its turn.
        start = next((i for i, k in enumerate(keys) if k > self._cursor), 0)
        order = keys[start:] + keys[:start]
        now_ms = int(time.time() * 1000)
        removed = 0
        for key in order:
            if removed >= budget:
                break
            self._cursor = key
            keep, retention_ms = limits(key)
            bound = 0  # ids below it go
            if retention_ms > 0:
                bound = (now_ms - retention_ms) * HISTORY_IDS_PER_MS
            if keep > 0:
                over = await asyncio.to_thread(
                    self._query,
                    "SELECT id FROM history WHERE key = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (key, keep),
                )
                if over:
                    bound = max(bound, over[0][0] + 1)
            if bound <= 0:
                continue
            # At most what is left of the budget: the oldest rows below the bound.
            found = await asyncio.to_thread(
                self._query,
                "SELECT COUNT(*), MAX(id) FROM (SELECT id FROM history WHERE key = ? AND id < ?"
                " ORDER BY id LIMIT ?)",
                (key, bound, budget - removed),
            )
            count, highest = found[0]
            if not count:
                continue
            await self._store.submit(
                [("DELETE FROM history WHERE key = ? AND id <= ?", (key, highest))]
            )
            removed += count
            if self._last.get(key, 0) <= highest:  # all of it went (and nothing came since)
                del self._last[key]
        return removed
