"""Engine contract suite for bans (``BanStore``), run against every engine.

A test module provides a ``bans`` fixture that yields a started ``BanHarness`` on empty
storage and subclasses ``BanStoreContract``. The tests use only the Protocol's methods and
``restart()``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from rtm2.server.engines.base import Ban, BanStore

__all__ = ["BanHarness", "BanStoreContract"]

APP = "app1"


class BanHarness(Protocol):
    bans: BanStore

    async def restart(self) -> None:
        """Close the store and open a new one on the same durable storage (for Redis: a
        new connection, as a node started later)."""


def in_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


class BanStoreContract:
    async def test_a_ban_names_its_end_and_reason_for_that_user_of_that_app_only(
        self, bans: BanHarness
    ) -> None:
        until = in_ms(60)
        await bans.bans.ban(APP, "alice", until, "spam")
        assert await bans.bans.banned_until(APP, "alice") == Ban("alice", until, "spam")
        assert await bans.bans.banned_until(APP, "bob") is None
        assert await bans.bans.banned_until("app2", "alice") is None

    async def test_a_ban_outlives_a_restart_of_the_store(self, bans: BanHarness) -> None:
        until = in_ms(60)
        await bans.bans.ban(APP, "alice", until, "spam")
        await bans.restart()
        assert await bans.bans.banned_until(APP, "alice") == Ban("alice", until, "spam")

    async def test_the_latest_ban_replaces_an_earlier_one_even_a_longer_one(
        self, bans: BanHarness
    ) -> None:
        await bans.bans.ban(APP, "alice", in_ms(600), "first")
        shorter = in_ms(30)
        await bans.bans.ban(APP, "alice", shorter, "second")
        assert await bans.bans.banned_until(APP, "alice") == Ban("alice", shorter, "second")

    async def test_unban_lifts_a_ban_and_says_whether_there_was_one(self, bans: BanHarness) -> None:
        await bans.bans.ban(APP, "alice", in_ms(60), "")
        assert await bans.bans.unban(APP, "alice") is True
        assert await bans.bans.banned_until(APP, "alice") is None
        assert await bans.bans.unban(APP, "alice") is False
        await bans.restart()
        assert await bans.bans.banned_until(APP, "alice") is None

    async def test_a_ban_ends_by_itself_when_its_time_runs_out(self, bans: BanHarness) -> None:
        await bans.bans.ban(APP, "alice", in_ms(0.3), "")
        assert await bans.bans.banned_until(APP, "alice") is not None
        await asyncio.sleep(0.3)
        for _ in range(100):  # a clock, nothing to wait on; Redis expires keys a little late
            if await bans.bans.banned_until(APP, "alice") is None:
                break
            await asyncio.sleep(0.05)
        assert await bans.bans.banned_until(APP, "alice") is None
        assert await bans.bans.bans(APP, 10) == []

    async def test_a_ban_until_a_past_time_lifts_the_ban(self, bans: BanHarness) -> None:
        await bans.bans.ban(APP, "alice", in_ms(60), "")
        await bans.bans.ban(APP, "alice", in_ms(-1), "")
        assert await bans.bans.banned_until(APP, "alice") is None

    async def test_the_list_holds_the_apps_running_bans_soonest_end_first_up_to_the_limit(
        self, bans: BanHarness
    ) -> None:
        ends = {f"u{i}": in_ms(60 + i) for i in range(5)}
        for user, until in reversed(ends.items()):
            await bans.bans.ban(APP, user, until, "")
        await bans.bans.ban("app2", "other", in_ms(1), "")
        listed = await bans.bans.bans(APP, 3)
        assert listed == [Ban(f"u{i}", ends[f"u{i}"], "") for i in range(3)]
        assert len(await bans.bans.bans(APP, 100)) == 5

    async def test_user_ids_with_separators_and_braces_are_kept_apart(
        self, bans: BanHarness
    ) -> None:
        odd = ["a:b", "a{b}", "a%7Bb", "a*"]
        for user in odd:
            await bans.bans.ban(APP, user, in_ms(60), user)
        for user in odd:
            ban = await bans.bans.banned_until(APP, user)
            assert ban is not None
            assert ban.reason == user
        assert sorted(b.user for b in await bans.bans.bans(APP, 10)) == sorted(odd)
        assert await bans.bans.banned_until(APP, "a") is None

    async def test_what_a_local_store_knows_without_asking_is_the_whole_answer(
        self, bans: BanHarness
    ) -> None:
        until = in_ms(60)
        await bans.bans.ban(APP, "alice", until, "")
        if bans.bans.local:
            assert bans.bans.known(APP, "alice") == Ban("alice", until, "")
            assert bans.bans.known(APP, "bob") is None
        else:  # it may know less, never a ban that does not exist
            assert bans.bans.known(APP, "bob") is None
