"""Durable metadata and locks for the embedded engine: memory first, SQLite (WAL) behind it.

Every check and every change happens in memory, synchronously, so two requests can never
interleave between a compare and its set. The change is then handed, as one transaction, to a
single writer thread that commits queued transactions together (group commit, ``synchronous=
FULL``); the request is acknowledged only when its transaction is committed. A process killed
at any moment therefore loses no acknowledged write and never keeps half of a multi-item one.
If a commit ever fails, the store refuses every later write (STORAGE_NOT_AVAILABLE): memory may
then be ahead of the disk, and only a restart, which reloads from the disk, makes it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ...errors import ErrorCode
from . import base
from .base import (
    OP_REMOVE,
    Item,
    ItemWrite,
    LockInfo,
    LockOutcome,
    Metadata,
    WriteOutcome,
    subject_app,
)
from .writes import (
    check_write,
    lock_not_held,
    lock_rows_full,
    metadata_rows,
    rows_full,
    too_large,
)

__all__ = ["SQLiteStore"]

log = logging.getLogger("rtm2.server")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta_sets (target TEXT PRIMARY KEY, major_revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta_items (
    target TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, revision INTEGER NOT NULL,
    author TEXT NOT NULL, update_ts INTEGER NOT NULL, PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS locks (
    scope TEXT NOT NULL, name TEXT NOT NULL, ttl INTEGER NOT NULL, owner TEXT NOT NULL,
    fence INTEGER NOT NULL, PRIMARY KEY (scope, name));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- The last fence of recently removed locks (at most FENCES_KEPT per app; older ones fold into
-- the app's floor, counters "fence:<app>"), oldest rowid first.
CREATE TABLE IF NOT EXISTS lock_fences (
    scope TEXT NOT NULL, name TEXT NOT NULL, fence INTEGER NOT NULL, PRIMARY KEY (scope, name));
"""

Statement = tuple[str, tuple[Any, ...]]
_EMPTY = Metadata(0, {})


class _Writer(threading.Thread):
    """Commits queued transactions in order, several per commit when they queue up."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="rtm2-sqlite-writer", daemon=True)
        self._path = path
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[list[Statement], asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )

    def submit(self, statements: list[Statement]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((statements, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if None in batch:
                stopping = True
            jobs = [job for job in batch if job is not None]
            if not jobs:
                continue
            error: BaseException | None = None
            try:
                db.execute("BEGIN IMMEDIATE")
                for statements, _ in jobs:
                    for sql, args in statements:
                        db.execute(sql, args)
                db.execute("COMMIT")
            except BaseException as exc:  # report to every waiting request, never die silently
                error = exc
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            for _, future in jobs:
                self._loop.call_soon_threadsafe(_settle, future, error)
        db.close()


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("storage: a deferred write failed: %s", future.exception())


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class SQLiteStore:
    """Implements ``MetadataStore`` and ``LockStore`` for one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sets: dict[str, Metadata] = {}
        self._locks: dict[str, dict[str, LockInfo]] = {}
        # Per app: the last fence of its recently removed locks by (scope, name), oldest
        # first, and the floor above every fence it forgot (see ``base.FENCES_KEPT``).
        self._fences: dict[str, dict[tuple[str, str], int]] = {}
        self._floors: dict[str, int] = {}
        # Rows per app, against its quotas: locks, and metadata sets plus their items.
        self._lock_rows: dict[str, int] = {}
        self._meta_rows: dict[str, int] = {}
        # Tickets of requests waiting for a lock, first come first. Not durable: the waiting
        # requests do not outlive the process either.
        self._queues: dict[tuple[str, str], list[str]] = {}
        self._revision = 0
        self._writer: _Writer | None = None
        self._broken = ""

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        # Metadata and locks are the apps' data: the directory and the file are the owner's
        # only (SQLite gives its -wal and -shm files the database file's mode).
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            items: dict[str, dict[str, Item]] = {}
            for target, key, value, revision, author, ts in db.execute(
                "SELECT target, key, value, revision, author, update_ts FROM meta_items"
            ):
                items.setdefault(target, {})[key] = Item(key, value, revision, author, ts)
            for target, major in db.execute("SELECT target, major_revision FROM meta_sets"):
                self._sets[target] = Metadata(major, items.get(target, {}))
            for scope, name, ttl, owner, fence in db.execute(
                "SELECT scope, name, ttl, owner, fence FROM locks"
            ):
                self._locks.setdefault(scope, {})[name] = LockInfo(name, ttl, owner, fence)
            for name, value in db.execute(
                "SELECT name, value FROM counters WHERE name LIKE 'fence:%'"
            ):
                self._floors[name[len("fence:") :]] = value
            forgotten: list[Statement] = []
            for scope, name, fence in db.execute(
                "SELECT scope, name, fence FROM lock_fences ORDER BY rowid"
            ):
                forgotten += self._keep_fence(scope, name, fence)
            if forgotten:  # a database from before the bound (or a smaller one)
                with db:
                    for sql, args in forgotten:
                        db.execute(sql, args)
            row = db.execute("SELECT value FROM counters WHERE name = 'revision'").fetchone()
            self._revision = row[0] if row else 0
        finally:
            db.close()
        for target, metadata in self._sets.items():
            app = subject_app(target)
            self._meta_rows[app] = self._meta_rows.get(app, 0) + metadata_rows(metadata)
        for scope, locks in self._locks.items():
            app = subject_app(scope)
            self._lock_rows[app] = self._lock_rows.get(app, 0) + len(locks)
        self._writer = _Writer(self.path, asyncio.get_running_loop())
        self._writer.start()
        log.info(
            "storage: %d metadata sets and %d locks loaded from %s",
            len(self._sets),
            sum(len(v) for v in self._locks.values()),
            self.path,
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join, 5.0)
            self._writer = None

    def submit(self, statements: list[Statement]) -> asyncio.Future[None]:
        """Queue ``statements`` for the writer's next group commit (the history store shares
        it); the future is done once they are committed."""
        assert self._writer is not None, "store not open"
        return self._writer.submit(statements)

    async def _commit(self, statements: list[Statement]) -> str:
        """Make ``statements`` durable; "" on success, otherwise why the store is broken."""
        if self._broken:
            return self._broken
        assert self._writer is not None, "store not open"
        try:
            await self._writer.submit(statements)
        except Exception as exc:
            self._broken = f"storage write failed ({exc}); restart the server"
            log.error("storage: %s", self._broken)
            return self._broken
        return ""

    async def commit(self, statements: list[Statement]) -> str:
        """Commit ``statements`` with the store's writes (group commit: bans, history, outbox)."""
        return await self._commit(statements)

    def commit_later(self, statements: list[Statement]) -> None:
        """Queue ``statements`` for the writer without waiting for their commit."""
        if self._writer is not None and not self._broken:
            self._writer.submit(statements).add_done_callback(_ignore_outcome)

    # --- metadata ------------------------------------------------------------------------

    async def read(self, target: str) -> Metadata:
        current = self._sets.get(target, _EMPTY)
        return Metadata(current.major_revision, dict(current.items))

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
        if self._broken:
            return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, self._broken)
        current = self._sets.get(target, _EMPTY)
        refused = check_write(current, op, items, major_revision)
        if refused is not None:
            return refused
        if lock is not None:
            scope, name, user = lock
            held = self._locks.get(scope, {}).get(name)
            if held is None or not user or held.owner != user:
                return lock_not_held(name)
        self._revision += 1
        revision = self._revision
        statements: list[Statement] = [
            ("INSERT OR REPLACE INTO counters VALUES ('revision', ?)", (revision,))
        ]
        new_items = dict(current.items)
        if op == OP_REMOVE and not items:  # the whole set goes
            new = _EMPTY
            statements += [
                ("DELETE FROM meta_items WHERE target = ?", (target,)),
                ("DELETE FROM meta_sets WHERE target = ?", (target,)),
            ]
        else:
            for w in items:
                if op == OP_REMOVE:
                    del new_items[w.key]
                    statements.append(
                        ("DELETE FROM meta_items WHERE target = ? AND key = ?", (target, w.key))
                    )
                else:
                    item = Item(w.key, w.value, revision, author, update_ts)
                    new_items[w.key] = item
                    statements.append(
                        (
                            "INSERT OR REPLACE INTO meta_items VALUES (?, ?, ?, ?, ?, ?)",
                            (target, w.key, w.value, revision, author, update_ts),
                        )
                    )
            new = Metadata(revision, new_items)
            if max_size and _size(new) > max(max_size, _size(current)):  # may still shrink
                self._revision -= 1
                return too_large(max_size)
            statements.append(
                ("INSERT OR REPLACE INTO meta_sets VALUES (?, ?)", (target, revision))
            )
        app = subject_app(target)
        rows = self._meta_rows.get(app, 0)
        grown = metadata_rows(new) - metadata_rows(current)
        if max_rows and grown > 0 and rows + grown > max_rows:
            self._revision -= 1
            return rows_full(max_rows)
        self._meta_rows[app] = rows + grown
        if new is _EMPTY:
            self._sets.pop(target, None)
        else:
            self._sets[target] = new
        broken = await self._commit(statements)
        if broken:
            return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, broken)
        return WriteOutcome(0, "", new)

    # --- locks ---------------------------------------------------------------------------

    async def locks(self, scope: str) -> dict[str, LockInfo]:
        return dict(self._locks.get(scope, {}))

    async def held(self) -> list[tuple[str, LockInfo]]:
        return [
            (scope, info)
            for scope, locks in self._locks.items()
            for info in locks.values()
            if info.owner
        ]

    async def set(
        self, scope: str, name: str, ttl: int, max_locks: int, max_rows: int = 0
    ) -> LockOutcome:
        locks = self._locks.get(scope, {})
        if name in locks:
            return LockOutcome(ErrorCode.LOCK_ALREADY_EXIST, f"lock {name!r} already exists")
        if len(locks) >= max_locks:
            return LockOutcome(
                ErrorCode.LOCK_OPERATION_FAILED, f"a channel has at most {max_locks} locks"
            )
        app = subject_app(scope)
        rows = self._lock_rows.get(app, 0)
        if max_rows and rows >= max_rows:
            return lock_rows_full(max_rows)
        if self._broken:
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, self._broken)
        self._lock_rows[app] = rows + 1
        fence = self._fences.get(app, {}).pop((scope, name), None)
        if fence is None:
            fence = self._floors.get(app, 0)
        forget = ("DELETE FROM lock_fences WHERE scope = ? AND name = ?", (scope, name))
        return await self._put(scope, LockInfo(name, ttl, "", fence), [forget])

    def _keep_fence(self, scope: str, name: str, fence: int) -> list[Statement]:
        """Remember a removed lock's last fence (in memory); the statements that forget the
        oldest ones kept beyond ``FENCES_KEPT`` into the app's floor."""
        app = subject_app(scope)
        kept = self._fences.setdefault(app, {})
        kept.pop((scope, name), None)
        kept[(scope, name)] = fence
        statements: list[Statement] = []
        while len(kept) > base.FENCES_KEPT:
            (old_scope, old_name), old = next(iter(kept.items()))
            del kept[(old_scope, old_name)]
            floor = self._floors[app] = max(self._floors.get(app, 0), old)
            statements += [
                (
                    "DELETE FROM lock_fences WHERE scope = ? AND name = ?",
                    (old_scope, old_name),
                ),
                ("INSERT OR REPLACE INTO counters VALUES (?, ?)", (f"fence:{app}", floor)),
            ]
        return statements

    async def remove(self, scope: str, name: str) -> LockOutcome:
        info = self._locks.get(scope, {}).get(name)
        if info is None:
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        locks = self._locks[scope]
        del locks[name]
        self._queues.pop((scope, name), None)
        if not locks:
            del self._locks[scope]
        app = subject_app(scope)
        self._lock_rows[app] -= 1
        return await self._save(
            LockOutcome(0, "", info),
            [
                ("DELETE FROM locks WHERE scope = ? AND name = ?", (scope, name)),
                ("INSERT OR REPLACE INTO lock_fences VALUES (?, ?, ?)", (scope, name, info.fence)),
                *self._keep_fence(scope, name, info.fence),
            ],
        )

    async def acquire(
        self, scope: str, name: str, owner: str, ticket: str = "", wait: bool = False
    ) -> LockOutcome:
        info = self._locks.get(scope, {}).get(name)
        if info is None:
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        queue = self._queues.get((scope, name))
        if info.owner == owner:
            if queue and ticket in queue:
                self._unqueue(scope, name, ticket)
            return LockOutcome(0, "", info)
        if not info.owner and (not queue or queue[0] == ticket):
            if queue:
                self._unqueue(scope, name, ticket)
            return await self._put(scope, LockInfo(name, info.ttl, owner, info.fence + 1))
        if wait and ticket:
            queue = self._queues.setdefault((scope, name), [])
            if ticket not in queue:
                queue.append(ticket)
        return LockOutcome(ErrorCode.LOCK_ACQUIRE_FAILED, f"lock {name!r} is held", info)

    async def withdraw(self, scope: str, name: str, ticket: str) -> bool:
        queue = self._queues.get((scope, name))
        first = queue is not None and queue[0] == ticket
        self._unqueue(scope, name, ticket)
        return first

    def _unqueue(self, scope: str, name: str, ticket: str) -> None:
        queue = self._queues.get((scope, name))
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._queues[(scope, name)]

    async def release(self, scope: str, name: str, owner: str) -> LockOutcome:
        return await self.revoke(scope, name, owner)

    async def revoke(self, scope: str, name: str, owner: str) -> LockOutcome:
        info = self._locks.get(scope, {}).get(name)
        if info is None:
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        if not owner or info.owner != owner:
            return LockOutcome(
                ErrorCode.LOCK_NOT_ACQUIRED, f"lock {name!r} is not held by {owner!r}", info
            )
        return await self._put(scope, LockInfo(name, info.ttl, "", info.fence))

    async def _put(
        self, scope: str, info: LockInfo, also: list[Statement] | None = None
    ) -> LockOutcome:
        if self._broken:
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, self._broken)
        self._locks.setdefault(scope, {})[info.name] = info
        return await self._save(
            LockOutcome(0, "", info),
            [
                (
                    "INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?)",
                    (scope, info.name, info.ttl, info.owner, info.fence),
                ),
                *(also or []),
            ],
        )

    async def _save(self, outcome: LockOutcome, statements: list[Statement]) -> LockOutcome:
        broken = await self._commit(statements)
        if broken:
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, broken)
        return outcome


def _size(metadata: Metadata) -> int:
    return sum(len(i.key.encode()) + len(i.value.encode()) for i in metadata.items.values())
