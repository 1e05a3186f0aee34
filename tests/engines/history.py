"""Engine contract suite for the ``HistoryStore`` role (message history).

Written once, run against every engine (``test_history_engines.py``: the embedded engine's
SQLite store, Redis, Redis Cluster): a test module provides a ``history`` fixture yielding a
started ``HistoryHarness`` on an empty store, and subclasses ``HistoryContract``. The tests use
only the Protocol methods of ``rtm2.server.engines.base``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from rtm2.server.engines.base import HISTORY_IDS_PER_MS, HistoryEntry, HistoryStore

__all__ = ["HistoryContract", "HistoryHarness"]

ROOM = "msg:app1:room"
HALL = "msg:app1:hall"
PEER = "peer:app1:5:alice:bob"


class HistoryHarness(Protocol):
    """What the ``history`` fixture yields."""

    @property
    def history(self) -> HistoryStore: ...

    async def restart(self) -> None:
        """Close the store and open a new one on the same storage."""


def entry(text: str, user: str = "alice") -> HistoryEntry:
    return HistoryEntry(user, text.encode(), 1, "ct")


def now_ms() -> int:
    return int(time.time() * 1000)


async def texts(store: HistoryStore, key: str, before: int = 0, after: int = 0) -> list[str]:
    return [e.payload.decode() for _, e in await store.read(key, before, after, 1000)]


class HistoryContract:
    async def test_appended_messages_read_back_newest_first_with_growing_ids(
        self, history: HistoryHarness
    ) -> None:
        store = history.history
        ts = now_ms()
        ids = [await store.append(ROOM, entry(f"m{i}"), ts + i, 0, 0) for i in range(5)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 5
        found = await store.read(ROOM, 0, 0, 100)
        assert [i for i, _ in found] == ids[::-1]
        assert [e for _, e in found] == [entry(f"m{i}") for i in range(5)][::-1]
        assert [i // HISTORY_IDS_PER_MS for i in ids] == [ts + i for i in range(5)]

    async def test_messages_of_one_millisecond_get_distinct_ordered_ids(
        self, history: HistoryHarness
    ) -> None:
        store = history.history
        ts = now_ms()
        pending = [store.append(ROOM, entry(f"m{i}"), ts, 0, 0) for i in range(50)]
        ids = list(await asyncio.gather(*pending))
        assert ids == sorted(set(ids)), "call order, no two alike"
        assert {i // HISTORY_IDS_PER_MS for i in ids} == {ts}
        assert await texts(store, ROOM) == [f"m{i}" for i in range(50)][::-1]

    async def test_ids_keep_growing_when_the_clock_goes_back(self, history: HistoryHarness) -> None:
        store = history.history
        ts = now_ms()
        first = await store.append(ROOM, entry("late"), ts, 0, 0)
        second = await store.append(ROOM, entry("early"), ts - 5000, 0, 0)
        assert second > first
        assert await texts(store, ROOM) == ["early", "late"]

    async def test_reads_take_before_exclusive_after_inclusive_and_count(
        self, history: HistoryHarness
    ) -> None:
        store = history.history
        ts = now_ms()
        ids = [await store.append(ROOM, entry(f"m{i}"), ts, 0, 0) for i in range(10)]
        assert await texts(store, ROOM, before=ids[5]) == ["m4", "m3", "m2", "m1", "m0"]
        assert await texts(store, ROOM, after=ids[7]) == ["m9", "m8", "m7"]
        assert await texts(store, ROOM, before=ids[5], after=ids[3]) == ["m4", "m3"]
        assert [e.payload for _, e in await store.read(ROOM, 0, 0, 3)] == [b"m9", b"m8", b"m7"]
        assert await store.read(ROOM, ids[0], 0, 10) == []

    async def test_keys_keep_their_own_messages(self, history: HistoryHarness) -> None:
        store = history.history
        ts = now_ms()
        await store.append(ROOM, entry("in room"), ts, 0, 0)
        await store.append(PEER, entry("to bob"), ts, 0, 0)
        assert await texts(store, ROOM) == ["in room"]
        assert await texts(store, PEER) == ["to bob"]
        assert await texts(store, HALL) == []

    async def test_acknowledged_messages_survive_a_restart_and_ids_go_on_above_them(
        self, history: HistoryHarness
    ) -> None:
        ts = now_ms()
        ids = [await history.history.append(ROOM, entry(f"m{i}"), ts, 0, 0) for i in range(20)]
        await history.restart()
        store = history.history
        assert await texts(store, ROOM) == [f"m{i}" for i in range(20)][::-1]
        after = await store.append(ROOM, entry("after"), ts, 0, 0)
        assert after > ids[-1]

    async def test_a_channel_keeps_at_most_its_bound_after_a_sweep(
        self, history: HistoryHarness
    ) -> None:
        store = history.history
        ts = now_ms()
        for i in range(30):
            await store.append(ROOM, entry(f"m{i}"), ts, 10, 0)
        await store.append(HALL, entry("other"), ts, 10, 0)
        await store.sweep(lambda key: (10, 0), 1000)
        assert await texts(store, ROOM) == [f"m{i}" for i in range(20, 30)][::-1]
        assert await texts(store, HALL) == ["other"]

    async def test_a_sweep_removes_only_messages_past_the_retention_oldest_first(
        self, history: HistoryHarness
    ) -> None:
        store = history.history
        ts = now_ms()
        for i in range(5):
            await store.append(ROOM, entry(f"old{i}"), ts - 60_000, 0, 30_000)
        for i in range(5):
            await store.append(ROOM, entry(f"new{i}"), ts, 0, 30_000)
        await store.sweep(lambda key: (0, 30_000), 1000)
        left = await texts(store, ROOM)
        # Engines may trim lazily (readers filter by age), but never a message inside the
        # retention, and what is left is the newest end.
        assert left[:5] == [f"new{i}" for i in range(5)][::-1]
        assert (
            left
            == [*[f"new{i}" for i in range(5)][::-1], *[f"old{i}" for i in range(5)][::-1]][
                : len(left)
            ]
        )
