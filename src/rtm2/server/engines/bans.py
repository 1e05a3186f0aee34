"""Bans for the embedded engine: in memory, kept durably in the SQLite database of metadata
and locks, written through its writer (group commit): a ban is on disk before the kick that
set it is acknowledged, and a restarted server refuses the banned user's logins still."""

from __future__ import annotations

import heapq
import sqlite3
import time
from pathlib import Path

from .base import Ban, EngineUnavailable
from .sqlite import SQLiteStore

__all__ = ["SQLiteBanStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    app TEXT NOT NULL, user TEXT NOT NULL, until_ms INTEGER NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (app, user));
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SQLiteBanStore:
    """Implements ``BanStore`` for one process, beside (and through) a ``SQLiteStore``."""

    local = True  # every ban is in this process's memory

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._bans: dict[tuple[str, str], Ban] = {}

    @property
    def path(self) -> Path:
        return self._store.path

    async def open(self) -> None:
        """Load the bans still running (the store must be open: it made the file)."""
        now = _now_ms()
        db = sqlite3.connect(self.path)
        try:
            db.executescript(_SCHEMA)
            with db:
                db.execute("DELETE FROM bans WHERE until_ms <= ?", (now,))
            for app, user, until_ms, reason in db.execute(
                "SELECT app, user, until_ms, reason FROM bans"
            ):
                self._bans[(app, user)] = Ban(user, until_ms, reason)
        finally:
            db.close()

    def known(self, app: str, user: str) -> Ban | None:
        ban = self._bans.get((app, user))
        if ban is not None and ban.until_ms <= _now_ms():
            del self._bans[(app, user)]  # ended; its row goes at the next start
            return None
        return ban

    async def banned_until(self, app: str, user: str) -> Ban | None:
        return self.known(app, user)

    async def ban(self, app: str, user: str, until_ms: int, reason: str) -> None:
        if until_ms <= _now_ms():
            await self.unban(app, user)
            return
        self._bans[(app, user)] = Ban(user, until_ms, reason)
        await self._save(
            "INSERT OR REPLACE INTO bans (app, user, until_ms, reason) VALUES (?, ?, ?, ?)",
            (app, user, until_ms, reason),
        )

    async def unban(self, app: str, user: str) -> bool:
        ban = self._bans.pop((app, user), None)
        await self._save("DELETE FROM bans WHERE app = ? AND user = ?", (app, user))
        return ban is not None and ban.until_ms > _now_ms()

    async def bans(self, app: str, limit: int) -> list[Ban]:
        now = _now_ms()
        running = (b for (a, _), b in self._bans.items() if a == app and b.until_ms > now)
        return heapq.nsmallest(limit, running, key=lambda b: (b.until_ms, b.user))

    async def _save(self, sql: str, args: tuple[object, ...]) -> None:
        broken = await self._store.commit([(sql, args)])
        if broken:
            raise EngineUnavailable(broken)
