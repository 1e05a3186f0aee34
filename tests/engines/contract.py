"""Engine contract suite for metadata storage (``MetadataStore``) and locks (``LockStore``);
``roles.py`` has the stream, presence and broker roles.

Written once, run against every engine. A test module runs it against an engine by providing
an ``engine`` fixture that yields a started ``EngineHarness`` on empty storage, and by
subclassing the contract classes (they are not collected on their own: their names do not
start with ``Test``)::

    from .contract import ConcurrencyContract, LockContract, MetadataContract

    @pytest.fixture
    async def engine(tmp_path): ...  # start a harness, yield it, close it

    class TestRedis(MetadataContract, LockContract, ConcurrencyContract):
        pass

The tests use only the Protocol methods of ``rtm2.server.engines.base`` and ``restart()``,
never how an engine stores anything.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

from rtm2.errors import ErrorCode
from rtm2.server.engines.base import (
    OP_REMOVE,
    OP_SET,
    OP_UPDATE,
    ItemWrite,
    LockInfo,
    LockStore,
    Metadata,
    MetadataStore,
    WriteOutcome,
)

__all__ = [
    "ConcurrencyContract",
    "EngineHarness",
    "LockContract",
    "LockQueueContract",
    "MetadataContract",
]


class EngineHarness(Protocol):
    """What the ``engine`` fixture yields."""

    metadata: MetadataStore
    locks: LockStore

    async def restart(self) -> None:
        """Close the stores and reopen the same durable storage; afterwards ``metadata`` and
        ``locks`` are the fresh store objects."""


ROOM = "msg:app1:room"  # a channel's metadata set, and the lock scope of that channel
HALL = "msg:app1:hall"
ALICE = "user:app1:alice"

OUTDATED = ErrorCode.STORAGE_OUTDATED_REVISION
NO_ITEM = ErrorCode.STORAGE_INVALID_METADATA_ITEM
NOT_HOLDER = ErrorCode.STORAGE_LOCK_NOT_ACQUIRED


def iw(key: str, value: str = "", revision: int = -1) -> ItemWrite:
    return ItemWrite(key, value, revision)


async def write(
    engine: EngineHarness, op: int, items: list[ItemWrite], major: int = -1, **kw
) -> WriteOutcome:
    """``MetadataStore.write`` on ``target`` (default ROOM) with keyword defaults."""
    kw = {"target": ROOM, "author": "", "ts": 0, "lock": None, "max_size": 0, "max_rows": 0} | kw
    return await engine.metadata.write(
        kw["target"],
        op,
        items,
        major,
        kw["author"],
        kw["ts"],
        kw["lock"],
        kw["max_size"],
        kw["max_rows"],
    )


async def written(engine: EngineHarness, op: int, items: list[ItemWrite], **kw) -> Metadata:
    """Write, require success, return the new set (checked to be what a read gives)."""
    outcome = await write(engine, op, items, **kw)
    assert outcome.code == 0, outcome
    assert outcome.metadata == await engine.metadata.read(kw.get("target", ROOM))
    return outcome.metadata


async def refused(engine: EngineHarness, code: int, op: int, items: list[ItemWrite], **kw) -> None:
    """Write, require failure with ``code``, and require the set to be unchanged."""
    before = await engine.metadata.read(kw.get("target", ROOM))
    outcome = await write(engine, op, items, **kw)
    assert outcome.code == code, outcome
    assert await engine.metadata.read(kw.get("target", ROOM)) == before


async def lock(engine: EngineHarness, scope: str = ROOM, name: str = "L", owner: str = "") -> None:
    """Set lock ``name`` (ttl 30) and, if ``owner`` is given, have it acquired."""
    assert (await engine.locks.set(scope, name, 30, 10)).code == 0
    if owner:
        assert (await engine.locks.acquire(scope, name, owner)).code == 0


def values(md: Metadata) -> dict[str, str]:
    return {key: item.value for key, item in md.items.items()}


class MetadataContract:
    async def test_reading_a_missing_set_gives_major_revision_0_and_no_items(self, engine):
        assert await engine.metadata.read(ROOM) == Metadata(0, {})

    async def test_set_creates_items_and_returns_the_new_set(self, engine):
        md = await written(engine, OP_SET, [iw("a", "1"), iw("b", "2")])
        assert values(md) == {"a": "1", "b": "2"}
        assert md.major_revision > 0

    async def test_every_write_gets_a_revision_larger_than_any_before_across_targets(self, engine):
        writes = [
            (OP_SET, [iw("a", "1")], ROOM),
            (OP_SET, [iw("x", "1")], ALICE),
            (OP_UPDATE, [iw("a", "2")], ROOM),
            (OP_SET, [iw("h", "1")], HALL),
            (OP_REMOVE, [iw("a")], ROOM),
            (OP_SET, [iw("y", "1")], ALICE),
        ]
        majors = [(await written(engine, op, i, target=t)).major_revision for op, i, t in writes]
        assert majors == sorted(set(majors)), majors

    async def test_revisions_keep_growing_across_a_restart(self, engine):
        first = await written(engine, OP_SET, [iw("a", "1")])
        await written(engine, OP_REMOVE, [])
        await engine.restart()
        for target in (ROOM, ALICE):
            md = await written(engine, OP_SET, [iw("b", "1")], target=target)
            assert md.major_revision > first.major_revision

    async def test_an_items_revision_is_the_write_that_last_changed_it(self, engine):
        one = await written(engine, OP_SET, [iw("a", "1"), iw("b", "1")])
        two = await written(engine, OP_SET, [iw("b", "2")])
        three = await written(engine, OP_UPDATE, [iw("a", "3")])
        assert one.items["a"].revision == one.items["b"].revision == one.major_revision
        assert two.items["b"].revision == three.items["b"].revision == two.major_revision
        assert three.items["a"].revision == three.major_revision

    async def test_major_revision_is_the_revision_of_the_last_write_even_a_removal(self, engine):
        before = await written(engine, OP_SET, [iw("a", "1"), iw("b", "1")])
        md = await written(engine, OP_REMOVE, [iw("b")])
        assert md.major_revision > before.major_revision == md.items["a"].revision

    async def test_set_overwrites_existing_keys_and_leaves_other_keys(self, engine):
        await written(engine, OP_SET, [iw("a", "1"), iw("b", "1")])
        md = await written(engine, OP_SET, [iw("b", "2"), iw("c", "3")])
        assert values(md) == {"a": "1", "b": "2", "c": "3"}

    async def test_update_changes_an_existing_key(self, engine):
        await written(engine, OP_SET, [iw("a", "1"), iw("b", "1")])
        md = await written(engine, OP_UPDATE, [iw("a", "2")])
        assert values(md) == {"a": "2", "b": "1"}

    async def test_update_with_a_missing_key_fails_and_changes_no_key_at_all(self, engine):
        await refused(engine, NO_ITEM, OP_UPDATE, [iw("a", "1")])  # no set yet
        await written(engine, OP_SET, [iw("a", "1")])
        await refused(engine, NO_ITEM, OP_UPDATE, [iw("a", "2"), iw("missing", "3")])

    async def test_remove_deletes_the_listed_keys_only(self, engine):
        await written(engine, OP_SET, [iw("a", "1"), iw("b", "2"), iw("c", "3")])
        md = await written(engine, OP_REMOVE, [iw("a"), iw("c", "value is ignored")])
        assert values(md) == {"b": "2"}

    async def test_remove_of_a_missing_key_fails_and_removes_nothing(self, engine):
        await written(engine, OP_SET, [iw("a", "1"), iw("b", "2")])
        await refused(engine, NO_ITEM, OP_REMOVE, [iw("a"), iw("missing")])

    async def test_remove_with_no_keys_deletes_the_whole_set(self, engine):
        old = await written(engine, OP_SET, [iw("a", "1"), iw("b", "2")])
        assert (await write(engine, OP_REMOVE, [])).code == 0
        assert await engine.metadata.read(ROOM) == Metadata(0, {})
        md = await written(engine, OP_SET, [iw("c", "3")])
        assert values(md) == {"c": "3"}
        assert md.major_revision > old.major_revision

    async def test_major_revision_minus_1_skips_the_set_check(self, engine):
        await written(engine, OP_SET, [iw("a", "1")])
        await written(engine, OP_SET, [iw("a", "2")], major=-1)

    async def test_a_matching_major_revision_passes(self, engine):
        md = await written(engine, OP_SET, [iw("a", "1")])
        md = await written(engine, OP_UPDATE, [iw("a", "2")], major=md.major_revision)
        await written(engine, OP_REMOVE, [iw("a")], major=md.major_revision)

    @pytest.mark.parametrize("op", [OP_SET, OP_UPDATE, OP_REMOVE])
    async def test_a_stale_major_revision_fails_and_changes_nothing(self, engine, op):
        stale = (await written(engine, OP_SET, [iw("a", "1")])).major_revision
        await written(engine, OP_SET, [iw("b", "1")])
        await refused(engine, OUTDATED, op, [iw("a", "2")], major=stale)
        await refused(engine, OUTDATED, op, [iw("a", "2")], major=stale + 1000)
        await refused(engine, OUTDATED, OP_REMOVE, [], major=stale)

    async def test_major_revision_0_passes_only_while_the_set_does_not_exist(self, engine):
        stale = (await written(engine, OP_SET, [iw("a", "1")], major=0)).major_revision
        await refused(engine, OUTDATED, OP_SET, [iw("b")], major=0)
        await written(engine, OP_REMOVE, [])
        await refused(engine, OUTDATED, OP_SET, [iw("b")], major=stale)
        await written(engine, OP_SET, [iw("b", "1")], major=0)

    async def test_item_revision_minus_1_skips_the_item_check(self, engine):
        await written(engine, OP_SET, [iw("a", "1", -1)])
        assert values(await written(engine, OP_SET, [iw("a", "2", -1)])) == {"a": "2"}

    async def test_item_revision_0_creates_a_new_key_but_refuses_an_existing_one(self, engine):
        await written(engine, OP_SET, [iw("a", "1", 0)])
        await refused(engine, OUTDATED, OP_SET, [iw("a", "2", 0)])

    async def test_a_positive_item_revision_must_equal_the_items_revision(self, engine):
        old = await written(engine, OP_SET, [iw("a", "1"), iw("b", "1")])
        stale = old.items["a"].revision
        md = await written(engine, OP_UPDATE, [iw("a", "2", stale)])
        for op in (OP_SET, OP_UPDATE, OP_REMOVE):
            await refused(engine, OUTDATED, op, [iw("a", "3", stale)])
        await written(engine, OP_REMOVE, [iw("b", "", old.items["b"].revision)])
        await written(engine, OP_SET, [iw("a", "3", md.items["a"].revision)])

    async def test_a_missing_key_with_a_positive_item_revision_fails(self, engine):
        md = await written(engine, OP_SET, [iw("a", "1")])
        await refused(engine, OUTDATED, OP_SET, [iw("new", "1", md.major_revision)])

    async def test_one_failing_item_revision_fails_the_whole_write(self, engine):
        rev = (await written(engine, OP_SET, [iw("a", "1"), iw("b", "1")])).items["a"].revision
        bad = [iw("a", "2", rev), iw("c", "2", 0), iw("b", "2", rev + 1000)]
        await refused(engine, OUTDATED, OP_SET, bad)

    async def test_author_and_update_ts_are_stamped_on_the_written_items(self, engine):
        await written(engine, OP_SET, [iw("a", "1")], author="alice", ts=1_700_000_000_123)
        md = await written(engine, OP_SET, [iw("b", "1")])
        assert (md.items["a"].author, md.items["a"].update_ts) == ("alice", 1_700_000_000_123)
        assert (md.items["b"].author, md.items["b"].update_ts) == ("", 0)
        md = await written(engine, OP_UPDATE, [iw("a", "2")], author="bob", ts=5)
        assert (md.items["a"].author, md.items["a"].update_ts) == ("bob", 5)
        md = await written(engine, OP_SET, [iw("a", "3")])
        assert (md.items["a"].author, md.items["a"].update_ts) == ("", 0)

    async def test_max_size_bounds_the_bytes_of_all_keys_and_values_of_the_result(self, engine):
        code = ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW
        await refused(engine, code, OP_SET, [iw("k", "é")], max_size=2)  # 1 + 2 UTF-8 bytes
        await written(engine, OP_SET, [iw("k", "é")], max_size=3)
        await refused(engine, code, OP_SET, [iw("x", "1")], max_size=4)  # 3 kept + 2 new
        await written(engine, OP_SET, [iw("k", "abcd")], max_size=5)  # overwrite: 5 in all
        await refused(engine, code, OP_UPDATE, [iw("k", "abcde")], max_size=5)
        await written(engine, OP_SET, [iw("big", "x" * 1000)], max_size=0)  # 0: no limit

    async def test_an_unknown_operation_is_an_invalid_argument(self, engine):
        await written(engine, OP_SET, [iw("a", "1")])
        await refused(engine, ErrorCode.STORAGE_INVALID_ARGUMENT, 99, [iw("a", "2")])

    async def test_a_write_bound_to_a_lock_the_user_holds_succeeds(self, engine):
        await lock(engine, owner="alice")
        await written(engine, OP_SET, [iw("a", "1")], lock=(ROOM, "L", "alice"))

    @pytest.mark.parametrize("state", ["missing", "free", "held_by_another", "other_scope"])
    async def test_a_write_bound_to_a_lock_the_user_does_not_hold_is_refused(self, engine, state):
        await written(engine, OP_SET, [iw("a", "1")])
        if state in ("free", "held_by_another"):
            await lock(engine, owner="bob" if state == "held_by_another" else "")
        if state == "other_scope":
            await lock(engine, HALL, owner="alice")
        await refused(engine, NOT_HOLDER, OP_SET, [iw("a", "2")], lock=(ROOM, "L", "alice"))
        await refused(engine, NOT_HOLDER, OP_REMOVE, [], lock=(ROOM, "L", "alice"))

    async def test_an_acknowledged_write_survives_a_restart_with_its_revisions(self, engine):
        await written(engine, OP_SET, [iw("a", "1"), iw("b", "2")], author="al", ts=7)
        await written(engine, OP_REMOVE, [iw("b")])
        await written(engine, OP_SET, [iw("x", "y")], target=ALICE)
        await written(engine, OP_SET, [iw("gone", "1")], target=HALL)
        await written(engine, OP_REMOVE, [], target=HALL)
        before = [await engine.metadata.read(t) for t in (ROOM, ALICE, HALL)]
        await engine.restart()
        assert [await engine.metadata.read(t) for t in (ROOM, ALICE, HALL)] == before
        await written(engine, OP_SET, [iw("a", "2", before[0].items["a"].revision)])

    async def test_a_lock_binding_still_holds_after_a_restart(self, engine):
        await lock(engine, owner="alice")
        await engine.restart()
        await written(engine, OP_SET, [iw("a", "1")], lock=(ROOM, "L", "alice"))
        await refused(engine, NOT_HOLDER, OP_SET, [iw("a", "2")], lock=(ROOM, "L", "bob"))

    async def test_max_rows_bounds_the_sets_and_items_of_an_app_across_targets(self, engine):
        full = ErrorCode.STORAGE_METADATA_ITEM_EXCEED_LIMITATION
        await written(engine, OP_SET, [iw("a"), iw("b")], max_rows=4)  # the set + 2 items
        await refused(engine, full, OP_SET, [iw("c")], target=HALL, max_rows=4)
        await refused(engine, full, OP_SET, [iw("c"), iw("d")], max_rows=4)
        await written(engine, OP_SET, [iw("a", "2")], max_rows=4)  # adds no row
        await written(engine, OP_SET, [iw("c")], target="msg:app2:room", max_rows=4)
        await written(engine, OP_REMOVE, [iw("b")], max_rows=4)  # frees a row
        await written(engine, OP_SET, [iw("c")], target=HALL, max_rows=4)
        await refused(engine, full, OP_SET, [], target=ALICE, max_rows=4)  # an empty set is a row
        await written(engine, OP_SET, [iw("x")], target=ALICE, max_rows=6)

    async def test_an_apps_row_count_survives_a_restart_and_removals_free_it(self, engine):
        full = ErrorCode.STORAGE_METADATA_ITEM_EXCEED_LIMITATION
        await written(engine, OP_SET, [iw("a"), iw("b"), iw("c")], max_rows=5)
        await written(engine, OP_UPDATE, [iw("a", "1")], max_rows=5)
        await engine.restart()
        await refused(engine, full, OP_SET, [iw("x"), iw("y")], target=HALL, max_rows=5)
        await written(engine, OP_REMOVE, [], max_rows=5)  # the whole set: 4 rows
        await engine.restart()
        await written(engine, OP_SET, [iw("x"), iw("y"), iw("z"), iw("w")], target=HALL, max_rows=5)
        await refused(engine, full, OP_SET, [iw("a")], max_rows=5)

    async def test_targets_are_independent(self, engine):
        room = await written(engine, OP_SET, [iw("a", "room")])
        alice = await written(engine, OP_SET, [iw("a", "alice")], target=ALICE)
        await written(engine, OP_UPDATE, [iw("a", "room2")], major=room.major_revision)
        await written(engine, OP_REMOVE, [])
        assert await engine.metadata.read(ALICE) == alice
        assert await engine.metadata.read(HALL) == Metadata(0, {})


class LockContract:
    async def test_set_creates_a_free_lock(self, engine):
        outcome = await engine.locks.set(ROOM, "L", 30, 10)
        assert (outcome.code, outcome.lock) == (0, LockInfo("L", 30, "", 0))
        assert await engine.locks.locks(ROOM) == {"L": LockInfo("L", 30, "", 0)}

    async def test_setting_an_existing_lock_fails_and_keeps_it(self, engine):
        await lock(engine, owner="alice")
        assert (await engine.locks.set(ROOM, "L", 99, 10)).code == ErrorCode.LOCK_ALREADY_EXIST
        assert await engine.locks.locks(ROOM) == {"L": LockInfo("L", 30, "alice", 1)}

    async def test_setting_more_than_max_locks_in_a_scope_fails_only_in_that_scope(self, engine):
        locks = engine.locks
        assert [(await locks.set(ROOM, n, 30, 2)).code for n in ("L1", "L2")] == [0, 0]
        assert (await locks.set(ROOM, "L3", 30, 2)).code == ErrorCode.LOCK_OPERATION_FAILED
        assert set(await locks.locks(ROOM)) == {"L1", "L2"}
        assert (await locks.set(HALL, "L3", 30, 2)).code == 0

    async def test_acquiring_a_free_lock_makes_the_user_its_owner_with_fence_1(self, engine):
        await lock(engine)
        outcome = await engine.locks.acquire(ROOM, "L", "alice")
        assert (outcome.code, outcome.lock) == (0, LockInfo("L", 30, "alice", 1))
        assert await engine.locks.locks(ROOM) == {"L": LockInfo("L", 30, "alice", 1)}

    async def test_fencing_numbers_of_a_name_never_repeat_across_remove_and_set(self, engine):
        await lock(engine, owner="alice")
        assert (await engine.locks.remove(ROOM, "L")).code == 0
        await engine.restart()
        assert (await engine.locks.set(ROOM, "L", 30, 10)).code == 0
        again = await engine.locks.acquire(ROOM, "L", "bob")
        assert (again.code, again.lock) == (0, LockInfo("L", 30, "bob", 2))

    async def test_the_owner_acquiring_again_succeeds_with_the_same_fence(self, engine):
        await lock(engine, owner="alice")
        again = await engine.locks.acquire(ROOM, "L", "alice")
        assert (again.code, again.lock) == (0, LockInfo("L", 30, "alice", 1))

    async def test_another_user_cannot_acquire_a_held_lock(self, engine):
        await lock(engine, owner="alice")
        outcome = await engine.locks.acquire(ROOM, "L", "bob")
        held = LockInfo("L", 30, "alice", 1)
        assert (outcome.code, outcome.lock) == (ErrorCode.LOCK_ACQUIRE_FAILED, held)
        assert await engine.locks.locks(ROOM) == {"L": held}

    async def test_acquiring_a_missing_lock_fails_with_lock_not_exist(self, engine):
        await lock(engine, HALL)
        assert (await engine.locks.acquire(ROOM, "L", "alice")).code == ErrorCode.LOCK_NOT_EXIST

    async def test_release_by_the_owner_frees_the_lock_and_keeps_the_fence(self, engine):
        await lock(engine, owner="alice")
        outcome = await engine.locks.release(ROOM, "L", "alice")
        assert (outcome.code, outcome.lock) == (0, LockInfo("L", 30, "", 1))
        assert await engine.locks.locks(ROOM) == {"L": LockInfo("L", 30, "", 1)}

    async def test_release_by_anyone_but_the_owner_fails(self, engine):
        await lock(engine)
        assert (await engine.locks.release(ROOM, "L", "alice")).code == ErrorCode.LOCK_NOT_ACQUIRED
        await engine.locks.acquire(ROOM, "L", "alice")
        for user in ("bob", ""):
            code = (await engine.locks.release(ROOM, "L", user)).code
            assert code == ErrorCode.LOCK_NOT_ACQUIRED
        assert (await engine.locks.locks(ROOM))["L"].owner == "alice"

    async def test_revoke_naming_the_current_owner_frees_the_lock(self, engine):
        await lock(engine, owner="alice")
        outcome = await engine.locks.revoke(ROOM, "L", "alice")
        assert (outcome.code, outcome.lock) == (0, LockInfo("L", 30, "", 1))
        assert (await engine.locks.acquire(ROOM, "L", "bob")).code == 0

    async def test_revoke_naming_the_wrong_owner_fails(self, engine):
        await lock(engine)
        assert (await engine.locks.revoke(ROOM, "L", "")).code == ErrorCode.LOCK_NOT_ACQUIRED
        await engine.locks.acquire(ROOM, "L", "alice")
        assert (await engine.locks.revoke(ROOM, "L", "bob")).code == ErrorCode.LOCK_NOT_ACQUIRED
        assert (await engine.locks.locks(ROOM))["L"].owner == "alice"

    async def test_fencing_numbers_strictly_increase_across_cycles_owners_and_restarts(
        self, engine
    ):
        await lock(engine)
        fences = []
        for i, user in enumerate(["alice", "bob", "alice", "carol", "bob"]):
            fences.append((await engine.locks.acquire(ROOM, "L", user)).lock.fence)
            free = engine.locks.revoke if i % 2 else engine.locks.release
            assert (await free(ROOM, "L", user)).code == 0
            if i == 2:
                await engine.restart()
        assert fences == [1, 2, 3, 4, 5]

    async def test_remove_deletes_the_lock(self, engine):
        await lock(engine, owner="alice")
        await lock(engine, name="K")
        assert (await engine.locks.remove(ROOM, "L")).code == 0
        assert set(await engine.locks.locks(ROOM)) == {"K"}
        assert await engine.locks.held() == []
        assert (await engine.locks.acquire(ROOM, "L", "alice")).code == ErrorCode.LOCK_NOT_EXIST
        assert (await engine.locks.remove(ROOM, "L")).code == ErrorCode.LOCK_NOT_EXIST

    async def test_locks_lists_every_lock_of_the_scope_with_owner_ttl_and_fence(self, engine):
        await engine.locks.set(ROOM, "free", 10, 10)
        await engine.locks.set(ROOM, "held", 20, 10)
        await engine.locks.acquire(ROOM, "held", "alice")
        await lock(engine, HALL, "elsewhere")
        assert await engine.locks.locks(ROOM) == {
            "free": LockInfo("free", 10, "", 0),
            "held": LockInfo("held", 20, "alice", 1),
        }
        assert await engine.locks.locks("msg:app1:nowhere") == {}

    async def test_held_lists_exactly_the_held_locks_with_their_scope(self, engine):
        await lock(engine, ROOM, "A", owner="alice")
        await lock(engine, ROOM, "B")
        await lock(engine, HALL, "A", owner="bob")
        await lock(engine, HALL, "C", owner="alice")
        await engine.locks.release(HALL, "C", "alice")
        assert sorted(await engine.locks.held()) == [
            (HALL, LockInfo("A", 30, "bob", 1)),
            (ROOM, LockInfo("A", 30, "alice", 1)),
        ]

    async def test_locks_survive_a_restart(self, engine):
        await engine.locks.set(ROOM, "free", 10, 10)
        await lock(engine, ROOM, "held", owner="alice")
        await lock(engine, HALL, "gone")
        await engine.locks.remove(HALL, "gone")
        before = (await engine.locks.locks(ROOM), sorted(await engine.locks.held()))
        await engine.restart()
        assert (await engine.locks.locks(ROOM), sorted(await engine.locks.held())) == before
        assert await engine.locks.locks(HALL) == {}
        code = (await engine.locks.acquire(ROOM, "held", "bob")).code
        assert code == ErrorCode.LOCK_ACQUIRE_FAILED
        assert (await engine.locks.set(ROOM, "free", 1, 10)).code == ErrorCode.LOCK_ALREADY_EXIST

    async def test_max_rows_bounds_the_locks_of_an_app_across_scopes(self, engine):
        full = ErrorCode.LOCK_OPERATION_FAILED
        assert (await engine.locks.set(ROOM, "A", 30, 10, 2)).code == 0
        assert (await engine.locks.set(HALL, "B", 30, 10, 2)).code == 0
        assert (await engine.locks.set(HALL, "C", 30, 10, 2)).code == full
        assert set(await engine.locks.locks(HALL)) == {"B"}
        assert (await engine.locks.set("msg:app2:room", "C", 30, 10, 2)).code == 0
        assert (await engine.locks.remove(ROOM, "A")).code == 0  # frees one
        assert (await engine.locks.set(HALL, "C", 30, 10, 2)).code == 0
        await engine.restart()
        assert (await engine.locks.set(ROOM, "D", 30, 10, 2)).code == full
        assert await engine.locks.locks(ROOM) == {}
        assert (await engine.locks.remove(HALL, "B")).code == 0
        assert (await engine.locks.set(ROOM, "D", 30, 10, 2)).code == 0

    async def test_a_name_set_again_after_removal_goes_on_above_its_last_fence(self, engine):
        await lock(engine)
        for user in ("alice", "bob", "carol"):  # L reaches fence 3
            assert (await engine.locks.acquire(ROOM, "L", user)).code == 0
            assert (await engine.locks.release(ROOM, "L", user)).code == 0
        await lock(engine, HALL, "M", owner="bob")
        assert (await engine.locks.remove(ROOM, "L")).code == 0
        assert (await engine.locks.remove(HALL, "M")).code == 0
        await engine.restart()
        await lock(engine, HALL, "M")
        await lock(engine, ROOM, "L")
        assert (await engine.locks.acquire(HALL, "M", "dave")).lock.fence > 1
        assert (await engine.locks.acquire(ROOM, "L", "dave")).lock.fence > 3


class LockQueueContract:
    """Waiting for a lock is first come, first served, whichever node a waiter is on.

    Tickets are ``<session id>:<request id>``, as the lock service makes them.
    """

    async def test_waiting_tickets_take_a_freed_lock_in_arrival_order(self, engine):
        await lock(engine, owner="alice")
        for user, ticket in (("bob", "n1-1:5"), ("carol", "n2-1:7")):
            queued = await engine.locks.acquire(ROOM, "L", user, ticket, True)
            assert queued.code == ErrorCode.LOCK_ACQUIRE_FAILED
        await engine.locks.release(ROOM, "L", "alice")
        early = await engine.locks.acquire(ROOM, "L", "carol", "n2-1:7")
        assert early.code == ErrorCode.LOCK_ACQUIRE_FAILED  # bob came first
        first = await engine.locks.acquire(ROOM, "L", "bob", "n1-1:5")
        assert (first.code, first.lock) == (0, LockInfo("L", 30, "bob", 2))
        await engine.locks.release(ROOM, "L", "bob")
        second = await engine.locks.acquire(ROOM, "L", "carol", "n2-1:7")
        assert (second.code, second.lock) == (0, LockInfo("L", 30, "carol", 3))

    async def test_nobody_overtakes_the_queue_of_a_free_lock(self, engine):
        await lock(engine, owner="alice")
        await engine.locks.acquire(ROOM, "L", "bob", "n1-1:5", True)
        await engine.locks.release(ROOM, "L", "alice")
        for ticket in ("", "n3-1:1"):
            outcome = await engine.locks.acquire(ROOM, "L", "dave", ticket)
            assert outcome.code == ErrorCode.LOCK_ACQUIRE_FAILED
        assert (await engine.locks.locks(ROOM))["L"].owner == ""

    async def test_a_withdrawn_first_ticket_lets_the_next_one_take_the_lock(self, engine):
        await lock(engine, owner="alice")
        await engine.locks.acquire(ROOM, "L", "bob", "n1-1:5", True)
        await engine.locks.acquire(ROOM, "L", "carol", "n2-1:7", True)
        assert await engine.locks.withdraw(ROOM, "L", "n2-1:7") is False  # not first
        assert await engine.locks.withdraw(ROOM, "L", "n1-1:5") is True
        assert await engine.locks.withdraw(ROOM, "L", "n1-1:5") is False  # gone already
        await engine.locks.release(ROOM, "L", "alice")
        assert (await engine.locks.acquire(ROOM, "L", "dave")).code == 0  # nobody waits

    async def test_a_ticket_waits_once_however_often_it_asks(self, engine):
        await lock(engine, owner="alice")
        for _ in range(3):
            await engine.locks.acquire(ROOM, "L", "bob", "n1-1:5", True)
        assert await engine.locks.withdraw(ROOM, "L", "n1-1:5") is True
        await engine.locks.release(ROOM, "L", "alice")
        assert (await engine.locks.acquire(ROOM, "L", "dave")).code == 0

    async def test_the_holder_acquiring_again_leaves_the_queue(self, engine):
        await lock(engine, owner="alice")
        await engine.locks.acquire(ROOM, "L", "alice", "n1-1:9", True)
        again = await engine.locks.acquire(ROOM, "L", "alice", "n1-1:9", True)
        assert (again.code, again.lock) == (0, LockInfo("L", 30, "alice", 1))
        await engine.locks.release(ROOM, "L", "alice")
        assert (await engine.locks.acquire(ROOM, "L", "dave")).code == 0

    async def test_removing_a_lock_drops_its_queue(self, engine):
        await lock(engine, owner="alice")
        await engine.locks.acquire(ROOM, "L", "bob", "n1-1:5", True)
        assert (await engine.locks.remove(ROOM, "L")).code == 0
        assert (await engine.locks.set(ROOM, "L", 30, 10)).code == 0
        assert (await engine.locks.acquire(ROOM, "L", "dave")).code == 0

    async def test_queues_of_locks_are_independent(self, engine):
        await lock(engine, owner="alice")
        await engine.locks.acquire(ROOM, "L", "bob", "n1-1:5", True)
        assert (await engine.locks.set(HALL, "L", 30, 10)).code == 0
        assert (await engine.locks.acquire(HALL, "L", "dave")).code == 0


class ConcurrencyContract:
    N = 20

    @pytest.mark.parametrize("existing", [True, False], ids=["existing_set", "missing_set"])
    async def test_of_concurrent_writes_with_the_same_major_revision_exactly_one_succeeds(
        self, engine, existing
    ):
        major = (await written(engine, OP_SET, [iw("a", "0")])).major_revision if existing else 0
        tries = [write(engine, OP_SET, [iw("a", str(i))], major) for i in range(self.N)]
        outcomes = await asyncio.gather(*tries)
        winners = [i for i, o in enumerate(outcomes) if o.code == 0]
        assert len(winners) == 1, outcomes
        assert {o.code for o in outcomes if o.code} == {OUTDATED}
        assert values(await engine.metadata.read(ROOM)) == {"a": str(winners[0])}

    async def test_of_concurrent_creations_of_one_key_exactly_one_succeeds(self, engine):
        tries = [write(engine, OP_SET, [iw("k", str(i), 0)]) for i in range(self.N)]
        assert sum(o.code == 0 for o in await asyncio.gather(*tries)) == 1

    async def test_concurrent_writes_get_distinct_revisions_that_survive_a_restart(self, engine):
        targets = [f"user:app1:u{i}" for i in range(self.N)]
        tries = [write(engine, OP_SET, [iw("k", t)], target=t) for t in targets]
        revisions = [o.metadata.major_revision for o in await asyncio.gather(*tries)]
        assert len(set(revisions)) == self.N
        await engine.restart()
        later = await written(engine, OP_SET, [iw("k", "later")])
        assert later.major_revision > max(revisions)
        assert [(await engine.metadata.read(t)).major_revision for t in targets] == revisions

    async def test_of_concurrent_acquires_of_a_free_lock_exactly_one_user_owns_it(self, engine):
        await lock(engine)
        users = [f"user{i}" for i in range(self.N)]
        outcomes = await asyncio.gather(*(engine.locks.acquire(ROOM, "L", u) for u in users))
        owners = [u for u, o in zip(users, outcomes, strict=True) if o.code == 0]
        assert len(owners) == 1, outcomes
        assert {o.code for o in outcomes if o.code} == {ErrorCode.LOCK_ACQUIRE_FAILED}
        assert await engine.locks.locks(ROOM) == {"L": LockInfo("L", 30, owners[0], 1)}

    async def test_of_concurrent_lock_definitions_at_most_max_locks_succeed(self, engine):
        tries = [engine.locks.set(ROOM, f"L{i % 5}", 30, 3) for i in range(self.N)]
        assert sum(o.code == 0 for o in await asyncio.gather(*tries)) == 3
        assert len(await engine.locks.locks(ROOM)) == 3
