"""Storage end to end: channel and user metadata, compare-and-set, lock-bound writes, events,
limits and policy, against a real ``rtm2 serve``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, Metadata, MetadataItem, StorageEvent
from rtm2 import StorageEventType as Kind
from rtm2 import StorageType as Store

from ..conftest import ServerProcess
from .util import Users, client_for, enter, fails, leave, token_for, uid, unique

MESSAGE, STREAM = ChannelType.MESSAGE, ChannelType.STREAM
BOTH_TYPES = pytest.mark.parametrize("ctype", [MESSAGE, STREAM], ids=["message", "stream"])


def values(metadata: Metadata) -> dict[str, str]:
    return {key: item.value for key, item in metadata.items.items()}


def revisions(metadata: Metadata) -> dict[str, int]:
    return {key: item.revision for key, item in metadata.items.items()}


def items(**kv: str) -> list[MetadataItem]:
    return [MetadataItem(key, value) for key, value in kv.items()]


def spy(client: rtm2.RTMClient) -> list[Any]:
    """Record every storage-event frame the client receives, whether it has a view or not."""
    frames: list[Any] = []
    handler = client.storage._on_event

    def record(frame: Any) -> None:
        frames.append(frame)
        handler(frame)

    client.storage._on_event = record  # type: ignore[method-assign]
    return frames


async def ended(stream: rtm2.EventStream[Any]) -> list[Any]:
    """What is left in a stream that must be ending: iteration has to stop by itself."""
    async with asyncio.timeout(5):
        return [item async for item in stream]


# --- set, update, remove, get -------------------------------------------------------------------


@BOTH_TYPES
async def test_channel_metadata_set_update_remove_and_get(users: Users, ctype: ChannelType) -> None:
    channel = unique("meta")
    alice, bob = await users.login("alice"), await users.login("bob")
    assert await bob.storage.get_channel_metadata(channel, ctype) == Metadata(0, {})

    await alice.storage.set_channel_metadata(channel, ctype, items(name="lobby", color="red"))
    first = await bob.storage.get_channel_metadata(channel, ctype)
    r1 = first.major_revision
    assert r1 > 0
    assert first.items == {
        "color": MetadataItem("color", "red", r1, "", 0),
        "name": MetadataItem("name", "lobby", r1, "", 0),
    }

    # set creates or overwrites and leaves other keys alone
    await alice.storage.set_channel_metadata(channel, ctype, items(color="blue", size="9"))
    second = await bob.storage.get_channel_metadata(channel, ctype)
    r2 = second.major_revision
    assert r2 > r1
    assert values(second) == {"name": "lobby", "color": "blue", "size": "9"}
    assert revisions(second) == {"name": r1, "color": r2, "size": r2}

    await bob.storage.update_channel_metadata(channel, ctype, items(size="10"))
    third = await alice.storage.get_channel_metadata(channel, ctype)
    r3 = third.major_revision
    assert r3 > r2
    assert values(third) == {"name": "lobby", "color": "blue", "size": "10"}
    assert revisions(third) == {"name": r1, "color": r2, "size": r3}

    # remove ignores values; the set keeps its other items and gets a new major revision
    await bob.storage.remove_channel_metadata(channel, ctype, [MetadataItem("name", "whatever")])
    fourth = await alice.storage.get_channel_metadata(channel, ctype)
    assert fourth.major_revision > r3
    assert values(fourth) == {"color": "blue", "size": "10"}
    assert revisions(fourth) == {"color": r2, "size": r3}

    # The same channel name of the other type is another set.
    other = MESSAGE if ctype is STREAM else STREAM
    assert await alice.storage.get_channel_metadata(channel, other) == Metadata(0, {})


async def test_user_metadata_set_update_remove_and_get(users: Users) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    me = uid(alice)
    assert await bob.storage.get_user_metadata(me) == Metadata(0, {})

    await alice.storage.set_user_metadata(me, items(mood="calm", city="Oslo"))
    first = await bob.storage.get_user_metadata(me)
    r1 = first.major_revision
    assert r1 > 0
    assert first.items == {
        "city": MetadataItem("city", "Oslo", r1, "", 0),
        "mood": MetadataItem("mood", "calm", r1, "", 0),
    }
    await alice.storage.update_user_metadata(me, items(mood="busy"))
    second = await bob.storage.get_user_metadata(me)
    r2 = second.major_revision
    assert r2 > r1
    assert values(second) == {"mood": "busy", "city": "Oslo"}
    assert revisions(second) == {"mood": r2, "city": r1}

    await alice.storage.remove_user_metadata(me, [MetadataItem("city")])
    third = await alice.storage.get_user_metadata(me)
    assert third.major_revision > r2
    assert values(third) == {"mood": "busy"}

    # Users' sets are separate, and a user's set is not a channel's set of the same name.
    assert await alice.storage.get_user_metadata(uid(bob)) == Metadata(0, {})
    assert await alice.storage.get_channel_metadata(me, MESSAGE) == Metadata(0, {})


async def test_items_may_be_given_as_a_dict_keyed_by_name(users: Users) -> None:
    channel = unique("dict")
    alice = await users.login("alice")
    me = uid(alice)
    await alice.storage.set_channel_metadata(
        channel, STREAM, {"a": MetadataItem("a", "1"), "b": MetadataItem("", "2")}
    )
    await alice.storage.set_user_metadata(me, {"x": MetadataItem(key="", value="X")})
    got = await alice.storage.get_channel_metadata(channel, STREAM)
    assert values(got) == {"a": "1", "b": "2"}
    assert values(await alice.storage.get_user_metadata(me)) == {"x": "X"}

    r = got.major_revision
    await alice.storage.update_channel_metadata(
        channel, STREAM, {"a": MetadataItem("a", "one", revision=r)}
    )
    await alice.storage.remove_channel_metadata(channel, STREAM, {"b": MetadataItem("b")})
    assert values(await alice.storage.get_channel_metadata(channel, STREAM)) == {"a": "one"}

    # A dict entry whose item names another key is refused before anything is sent.
    await fails(
        alice.storage.set_channel_metadata(channel, STREAM, {"a": MetadataItem("b", "x")}),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    await fails(
        alice.storage.set_user_metadata(me, {"y": MetadataItem("z", "x")}),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    assert values(await alice.storage.get_channel_metadata(channel, STREAM)) == {"a": "one"}
    assert values(await alice.storage.get_user_metadata(me)) == {"x": "X"}


async def test_removing_without_items_deletes_the_whole_set(users: Users) -> None:
    channel = unique("whole")
    alice = await users.login("alice")
    me = uid(alice)
    await alice.storage.set_channel_metadata(channel, MESSAGE, items(a="1", b="2", c="3"))
    await alice.storage.set_user_metadata(me, items(a="1", b="2"))
    before = (await alice.storage.get_channel_metadata(channel, MESSAGE)).major_revision

    await alice.storage.remove_channel_metadata(channel, MESSAGE)
    await alice.storage.remove_user_metadata(me, [])
    assert await alice.storage.get_channel_metadata(channel, MESSAGE) == Metadata(0, {})
    assert await alice.storage.get_user_metadata(me) == Metadata(0, {})

    # A new set starts at a revision larger than any before: revisions never go back.
    await alice.storage.set_channel_metadata(channel, MESSAGE, items(d="4"), major_revision=0)
    again = await alice.storage.get_channel_metadata(channel, MESSAGE)
    assert values(again) == {"d": "4"}
    assert again.major_revision > before


# --- compare-and-set --------------------------------------------------------------------------


async def test_major_revision_compare_and_set(users: Users) -> None:
    channel = unique("major")
    alice, bob = await users.login("alice"), await users.login("bob")
    store = alice.storage

    # 0 is the major revision of a set that does not exist yet
    await fails(
        store.set_channel_metadata(channel, STREAM, items(a="0"), major_revision=5),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    await store.set_channel_metadata(channel, STREAM, items(a="1"), major_revision=0)
    r1 = (await bob.storage.get_channel_metadata(channel, STREAM)).major_revision

    await store.set_channel_metadata(channel, STREAM, items(a="2"), major_revision=r1)  # equal
    r2 = (await bob.storage.get_channel_metadata(channel, STREAM)).major_revision
    assert r2 > r1
    await store.set_channel_metadata(channel, STREAM, items(b="3"), major_revision=-1)  # no check
    current = await bob.storage.get_channel_metadata(channel, STREAM)
    r3 = current.major_revision
    assert r3 > r2

    # stale: every operation refuses it and nothing changes
    for write in (
        store.set_channel_metadata(channel, STREAM, items(a="x", c="x"), major_revision=r2),
        store.update_channel_metadata(channel, STREAM, items(a="x"), major_revision=r1),
        store.remove_channel_metadata(channel, STREAM, items(a=""), major_revision=r2),
        store.remove_channel_metadata(channel, STREAM, major_revision=r1),
        store.set_channel_metadata(channel, STREAM, items(a="x"), major_revision=0),
    ):
        await fails(write, ErrorCode.STORAGE_OUTDATED_REVISION)
    assert await bob.storage.get_channel_metadata(channel, STREAM) == current

    await store.remove_channel_metadata(channel, STREAM, items(a=""), major_revision=r3)
    r4 = (await bob.storage.get_channel_metadata(channel, STREAM)).major_revision
    await store.remove_channel_metadata(channel, STREAM, major_revision=r4)
    assert await bob.storage.get_channel_metadata(channel, STREAM) == Metadata(0, {})

    # user metadata works the same way
    me = uid(alice)
    await store.set_user_metadata(me, items(k="1"), major_revision=0)
    u1 = (await bob.storage.get_user_metadata(me)).major_revision
    await store.update_user_metadata(me, items(k="2"), major_revision=u1)
    mine = await bob.storage.get_user_metadata(me)
    await fails(
        store.update_user_metadata(me, items(k="3"), major_revision=u1),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    await fails(
        store.remove_user_metadata(me, major_revision=u1), ErrorCode.STORAGE_OUTDATED_REVISION
    )
    assert await bob.storage.get_user_metadata(me) == mine
    assert values(mine) == {"k": "2"}


async def test_item_revision_compare_and_set(users: Users) -> None:
    channel = unique("item")
    alice, bob = await users.login("alice"), await users.login("bob")
    store = alice.storage

    await store.set_channel_metadata(channel, MESSAGE, [MetadataItem("a", "1", revision=0)])
    ra = revisions(await bob.storage.get_channel_metadata(channel, MESSAGE))["a"]
    # 0: the key must not exist yet
    await fails(
        store.set_channel_metadata(channel, MESSAGE, [MetadataItem("a", "again", revision=0)]),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    # > 0: the item must be at exactly that revision (and exist)
    await fails(
        store.set_channel_metadata(channel, MESSAGE, [MetadataItem("b", "x", revision=ra)]),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    await store.update_channel_metadata(channel, MESSAGE, [MetadataItem("a", "2", revision=ra)])
    ra2 = revisions(await bob.storage.get_channel_metadata(channel, MESSAGE))["a"]
    assert ra2 > ra
    for write in (
        store.update_channel_metadata(channel, MESSAGE, [MetadataItem("a", "3", revision=ra)]),
        store.set_channel_metadata(channel, MESSAGE, [MetadataItem("a", "3", revision=ra)]),
        store.remove_channel_metadata(channel, MESSAGE, [MetadataItem("a", revision=ra)]),
        store.set_channel_metadata(channel, MESSAGE, [MetadataItem("a", "3", revision=ra2 + 1)]),
    ):
        await fails(write, ErrorCode.STORAGE_OUTDATED_REVISION)
    # -1: no check
    await store.set_channel_metadata(channel, MESSAGE, [MetadataItem("a", "4", revision=-1)])
    got = await bob.storage.get_channel_metadata(channel, MESSAGE)
    assert values(got) == {"a": "4"}
    await store.remove_channel_metadata(
        channel, MESSAGE, [MetadataItem("a", revision=got.items["a"].revision)]
    )
    assert values(await bob.storage.get_channel_metadata(channel, MESSAGE)) == {}

    # user metadata item checks
    me = uid(alice)
    await store.set_user_metadata(me, [MetadataItem("k", "1", revision=0)])
    rk = revisions(await bob.storage.get_user_metadata(me))["k"]
    await fails(
        store.set_user_metadata(me, [MetadataItem("k", "2", revision=0)]),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    await fails(
        store.update_user_metadata(me, [MetadataItem("k", "2", revision=rk + 1)]),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    await store.update_user_metadata(me, [MetadataItem("k", "2", revision=rk)])
    assert values(await bob.storage.get_user_metadata(me)) == {"k": "2"}


async def test_update_or_remove_of_a_missing_key_fails_the_whole_call(users: Users) -> None:
    channel = unique("missing")
    alice, bob = await users.login("alice"), await users.login("bob")
    await alice.storage.set_channel_metadata(channel, STREAM, items(a="1", b="2"))
    before = await bob.storage.get_channel_metadata(channel, STREAM)

    await fails(
        alice.storage.update_channel_metadata(channel, STREAM, items(a="new", zz="new")),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    await fails(
        alice.storage.remove_channel_metadata(channel, STREAM, items(a="", zz="")),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    await fails(
        alice.storage.update_channel_metadata(unique("nothing"), STREAM, items(a="1")),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    assert await bob.storage.get_channel_metadata(channel, STREAM) == before

    me = uid(alice)
    await alice.storage.set_user_metadata(me, items(a="1"))
    mine = await bob.storage.get_user_metadata(me)
    await fails(
        alice.storage.update_user_metadata(me, items(a="2", b="2")),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    await fails(
        alice.storage.remove_user_metadata(me, items(b="")),
        ErrorCode.STORAGE_INVALID_METADATA_ITEM,
    )
    assert await bob.storage.get_user_metadata(me) == mine


async def test_a_refused_multi_item_write_changes_nothing(users: Users) -> None:
    channel = unique("atomic")
    alice, bob = await users.login("alice"), await users.login("bob")
    store = alice.storage
    await store.set_channel_metadata(channel, MESSAGE, items(a="1", b="2", c="3"))
    before = await bob.storage.get_channel_metadata(channel, MESSAGE)
    rb = before.items["b"].revision

    refused = [
        # the last item's check fails after the first ones passed theirs
        (
            store.set_channel_metadata(
                channel,
                MESSAGE,
                [
                    MetadataItem("a", "x"),
                    MetadataItem("new", "x", revision=0),
                    MetadataItem("b", "x", revision=rb + 100),
                ],
            ),
            ErrorCode.STORAGE_OUTDATED_REVISION,
        ),
        (
            store.set_channel_metadata(
                channel,
                MESSAGE,
                [MetadataItem("a", "x"), MetadataItem("c", "x", revision=0)],
            ),
            ErrorCode.STORAGE_OUTDATED_REVISION,
        ),
        (
            store.set_channel_metadata(channel, MESSAGE, items(a="x", d="x" * 16_380)),
            ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW,
        ),
        (
            store.set_channel_metadata(
                channel, MESSAGE, [MetadataItem("a", "x"), MetadataItem("k" * 33, "x")]
            ),
            ErrorCode.STORAGE_KEY_LENGTH_OVERFLOW,
        ),
        (
            store.set_channel_metadata(
                channel,
                MESSAGE,
                [MetadataItem("a", "x"), MetadataItem("e", "x"), MetadataItem("a", "y")],
            ),
            ErrorCode.STORAGE_DUPLICATE_KEY,
        ),
        (
            store.update_channel_metadata(
                channel, MESSAGE, [MetadataItem("a", "x"), MetadataItem("", "x")]
            ),
            ErrorCode.STORAGE_INVALID_KEY,
        ),
        (
            store.remove_channel_metadata(
                channel, MESSAGE, [MetadataItem("a"), MetadataItem("b", revision=-2)]
            ),
            ErrorCode.STORAGE_INVALID_REVISION,
        ),
    ]
    for write, code in refused:
        await fails(write, code)
    assert await bob.storage.get_channel_metadata(channel, MESSAGE) == before

    # and a later accepted write gets the next revision, as if the refused ones never were
    await store.set_channel_metadata(channel, MESSAGE, items(a="ok"))
    after = await bob.storage.get_channel_metadata(channel, MESSAGE)
    assert after.major_revision > before.major_revision
    assert values(after) == {"a": "ok", "b": "2", "c": "3"}


async def test_revisions_grow_with_every_write_across_sets(users: Users) -> None:
    alice = await users.login("alice")
    me = uid(alice)
    one, two = unique("rev1"), unique("rev2")
    seen = []
    writes = [
        alice.storage.set_channel_metadata(one, MESSAGE, items(a="1")),
        alice.storage.set_channel_metadata(two, STREAM, items(a="1")),
        alice.storage.set_user_metadata(me, items(a="1")),
        alice.storage.update_channel_metadata(one, MESSAGE, items(a="2")),
        alice.storage.remove_channel_metadata(two, STREAM, items(a="")),
        alice.storage.set_user_metadata(me, items(b="2")),
    ]
    reads = [
        lambda: alice.storage.get_channel_metadata(one, MESSAGE),
        lambda: alice.storage.get_channel_metadata(two, STREAM),
        lambda: alice.storage.get_user_metadata(me),
    ]
    for i, write in enumerate(writes):
        await write
        seen.append((await reads[i % 3]()).major_revision)
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[0] > 0


# --- recording timestamps and authors ------------------------------------------------------------


async def test_record_ts_and_record_author_stamp_the_items_a_write_touches(users: Users) -> None:
    channel = unique("stamp")
    alice, bob = await users.login("alice"), await users.login("bob")

    def ms() -> int:
        return int(time.time() * 1000)

    before = ms()
    await alice.storage.set_channel_metadata(
        channel, STREAM, items(a="1", b="2"), record_ts=True, record_author=True
    )
    after = ms()
    got = await bob.storage.get_channel_metadata(channel, STREAM)
    for key in ("a", "b"):
        item = got.items[key]
        assert item.author == uid(alice)
        assert before - 2000 <= item.update_ts <= after + 2000

    # bob touches "b" only, recording only his name: "a" keeps alice's stamps
    await bob.storage.update_channel_metadata(channel, STREAM, items(b="3"), record_author=True)
    got2 = await alice.storage.get_channel_metadata(channel, STREAM)
    assert got2.items["a"] == got.items["a"]
    assert got2.items["b"].author == uid(bob)
    assert got2.items["b"].update_ts == 0

    # neither: nothing recorded (and a previous stamp is not kept on the rewritten item)
    await bob.storage.set_channel_metadata(channel, STREAM, items(a="4"))
    got3 = await alice.storage.get_channel_metadata(channel, STREAM)
    assert got3.items["a"] == MetadataItem("a", "4", got3.major_revision, "", 0)

    # only a timestamp
    before = ms()
    await alice.storage.set_channel_metadata(channel, STREAM, items(c="5"), record_ts=True)
    after = ms()
    c = (await bob.storage.get_channel_metadata(channel, STREAM)).items["c"]
    assert c.author == ""
    assert before - 2000 <= c.update_ts <= after + 2000

    # user metadata
    me = uid(alice)
    before = ms()
    await alice.storage.set_user_metadata(me, items(x="1"), record_ts=True, record_author=True)
    after = ms()
    await alice.storage.set_user_metadata(me, items(y="2"))
    mine = await bob.storage.get_user_metadata(me)
    assert mine.items["x"].author == me
    assert before - 2000 <= mine.items["x"].update_ts <= after + 2000
    assert mine.items["y"] == MetadataItem("y", "2", mine.major_revision, "", 0)


# --- lock-bound writes --------------------------------------------------------------------------


async def test_a_lock_bound_write_is_allowed_only_to_the_lock_holder(users: Users) -> None:
    channel = unique("bound")
    alice, bob = await users.login("alice"), await users.login("bob")
    await alice.lock.set(channel, STREAM, "editor")
    await alice.lock.set(channel, STREAM, "free")
    await alice.lock.set(channel, MESSAGE, "other")  # the same channel name, other type
    await alice.lock.acquire(channel, STREAM, "editor")
    await bob.lock.acquire(channel, MESSAGE, "other")

    await alice.storage.set_channel_metadata(channel, STREAM, items(a="1"), lock_name="editor")
    await alice.storage.update_channel_metadata(channel, STREAM, items(a="2"), lock_name="editor")
    await alice.storage.set_channel_metadata(channel, STREAM, items(b="3"), lock_name="editor")
    await alice.storage.remove_channel_metadata(channel, STREAM, items(b=""), lock_name="editor")
    before = await bob.storage.get_channel_metadata(channel, STREAM)
    assert values(before) == {"a": "2"}

    refused = [
        bob.storage.set_channel_metadata(channel, STREAM, items(a="x"), lock_name="editor"),
        bob.storage.update_channel_metadata(channel, STREAM, items(a="x"), lock_name="editor"),
        bob.storage.remove_channel_metadata(channel, STREAM, lock_name="editor"),
        # a free lock and a lock that does not exist bind too
        alice.storage.set_channel_metadata(channel, STREAM, items(a="x"), lock_name="free"),
        alice.storage.set_channel_metadata(channel, STREAM, items(a="x"), lock_name="nolock"),
        # bob's lock of the message channel does not count for the stream channel
        bob.storage.set_channel_metadata(channel, STREAM, items(a="x"), lock_name="other"),
    ]
    for write in refused:
        await fails(write, ErrorCode.STORAGE_LOCK_NOT_ACQUIRED)
    await fails(
        alice.storage.set_channel_metadata(channel, STREAM, items(a="x"), lock_name="l" * 65),
        ErrorCode.STORAGE_INVALID_LOCK_NAME,
    )
    assert await bob.storage.get_channel_metadata(channel, STREAM) == before

    # once alice releases, she cannot write under the lock either; bob can once he holds it
    await alice.lock.release(channel, STREAM, "editor")
    await fails(
        alice.storage.set_channel_metadata(channel, STREAM, items(a="x"), lock_name="editor"),
        ErrorCode.STORAGE_LOCK_NOT_ACQUIRED,
    )
    await bob.lock.acquire(channel, STREAM, "editor")
    await bob.storage.set_channel_metadata(channel, STREAM, items(a="bob"), lock_name="editor")
    assert values(await alice.storage.get_channel_metadata(channel, STREAM)) == {"a": "bob"}


# --- events -------------------------------------------------------------------------------------


@BOTH_TYPES
async def test_members_with_metadata_get_a_snapshot_then_the_whole_set_after_every_write(
    users: Users, ctype: ChannelType
) -> None:
    channel = unique("events")
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]
    await alice.storage.set_channel_metadata(channel, ctype, items(topic="hello"))
    existing = await alice.storage.get_channel_metadata(channel, ctype)

    await enter(bob, channel, ctype, with_metadata=True)
    snapshot, events = await bob.storage.get_channel_metadata_events(channel, ctype)
    assert snapshot == existing
    first = await events.get(timeout=5)
    assert first == StorageEvent(
        Kind.SNAPSHOT, Store.CHANNEL, channel, ctype, "", existing.major_revision, existing.items
    )

    # a write by a member, one by carol who is not in the channel, an update and removals
    await bob.storage.set_channel_metadata(channel, ctype, items(a="1"), record_author=True)
    await carol.storage.set_channel_metadata(channel, ctype, items(b="2"))
    await carol.storage.update_channel_metadata(channel, ctype, items(a="3"))
    await alice.storage.remove_channel_metadata(channel, ctype, items(topic=""))
    expected = [await alice.storage.get_channel_metadata(channel, ctype)]
    await alice.storage.remove_channel_metadata(channel, ctype)

    got = [await events.get(timeout=5) for _ in range(5)]
    assert all(
        (e.type, e.storage_type, e.channel, e.channel_type, e.user_id)
        == (Kind.UPDATE, Store.CHANNEL, channel, ctype, "")
        for e in got
    )
    assert [values(Metadata(e.major_revision, e.items)) for e in got] == [
        {"topic": "hello", "a": "1"},
        {"topic": "hello", "a": "1", "b": "2"},
        {"topic": "hello", "a": "3", "b": "2"},
        {"a": "3", "b": "2"},
        {},
    ]
    majors = [e.major_revision for e in got[:4]]
    assert majors == sorted(majors)
    assert majors[0] > existing.major_revision
    assert got[0].items["a"].author == uid(bob)
    assert Metadata(got[3].major_revision, got[3].items) == expected[0]
    assert got[4].major_revision == 0
    # the view follows the events
    assert (await bob.storage.get_channel_metadata_events(channel, ctype))[0] == Metadata(0, {})

    # writes to the other channel type or to other channels are not this channel's events
    other = MESSAGE if ctype is STREAM else STREAM
    await carol.storage.set_channel_metadata(channel, other, items(z="1"))
    await carol.storage.set_channel_metadata(unique("elsewhere"), ctype, items(z="1"))
    await bob.storage.get_channel_metadata(channel, ctype)  # a round trip: pushes came before
    assert len(events) == 0


@BOTH_TYPES
async def test_members_without_metadata_get_no_metadata_events(
    users: Users, ctype: ChannelType
) -> None:
    channel = unique("quiet")
    alice, bob = await users.login("alice"), await users.login("bob")
    frames = spy(bob)
    await enter(bob, channel, ctype)  # with_metadata defaults to False
    code = ErrorCode.CHANNEL_NOT_SUBSCRIBED if ctype is MESSAGE else ErrorCode.CHANNEL_NOT_JOINED
    await fails(bob.storage.get_channel_metadata_events(channel, ctype), code)
    await fails(alice.storage.get_channel_metadata_events(channel, ctype), code)  # not a member

    await alice.storage.set_channel_metadata(channel, ctype, items(a="1"))
    await bob.storage.set_channel_metadata(channel, ctype, items(b="1"))
    await bob.storage.get_channel_metadata(channel, ctype)  # a round trip: pushes came before
    assert frames == []


@BOTH_TYPES
async def test_leaving_the_channel_ends_its_metadata_events(
    users: Users, ctype: ChannelType
) -> None:
    channel = unique("left")
    alice, bob = await users.login("alice"), await users.login("bob")
    await enter(bob, channel, ctype, with_metadata=True, with_presence=False)
    _, events = await bob.storage.get_channel_metadata_events(channel, ctype)
    await alice.storage.set_channel_metadata(channel, ctype, items(a="1"))
    await leave(bob, channel, ctype)
    remaining = await ended(events)
    assert [e.type for e in remaining] == [Kind.SNAPSHOT, Kind.UPDATE]

    frames = spy(bob)
    await alice.storage.set_channel_metadata(channel, ctype, items(a="2"))
    await bob.storage.get_channel_metadata(channel, ctype)
    assert frames == []
    code = ErrorCode.CHANNEL_NOT_SUBSCRIBED if ctype is MESSAGE else ErrorCode.CHANNEL_NOT_JOINED
    await fails(bob.storage.get_channel_metadata_events(channel, ctype), code)

    # entering again with metadata starts a fresh stream with the current set
    await enter(bob, channel, ctype, with_metadata=True, with_presence=False)
    snapshot, again = await bob.storage.get_channel_metadata_events(channel, ctype)
    assert values(snapshot) == {"a": "2"}
    assert (await again.get(timeout=5)).type is Kind.SNAPSHOT


async def test_user_metadata_subscribers_get_a_snapshot_then_every_change_until_unsubscribed(
    users: Users,
) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    me = uid(alice)
    await alice.storage.set_user_metadata(me, items(mood="calm"))
    existing = await alice.storage.get_user_metadata(me)

    snapshot, events = await bob.storage.subscribe_user_metadata(me)
    assert snapshot == existing
    assert await events.get(timeout=5) == StorageEvent(
        Kind.SNAPSHOT, Store.USER, "", None, me, existing.major_revision, existing.items
    )
    again, same = await bob.storage.subscribe_user_metadata(me)  # subscribing again: same stream
    assert same is events
    assert again == existing

    await alice.storage.set_user_metadata(me, items(city="Oslo"), record_author=True)
    await alice.storage.update_user_metadata(me, items(mood="busy"))
    await alice.storage.remove_user_metadata(me, items(city=""))
    await alice.storage.remove_user_metadata(me)
    got = [await events.get(timeout=5) for _ in range(4)]
    assert all(
        (e.type, e.storage_type, e.channel, e.channel_type, e.user_id)
        == (Kind.UPDATE, Store.USER, "", None, me)
        for e in got
    )
    assert [values(Metadata(e.major_revision, e.items)) for e in got] == [
        {"mood": "calm", "city": "Oslo"},
        {"mood": "busy", "city": "Oslo"},
        {"mood": "busy"},
        {},
    ]
    majors = [e.major_revision for e in got]
    assert majors[:3] == sorted(majors[:3])
    assert majors[0] > existing.major_revision
    assert majors[3] == 0
    assert got[0].items["city"].author == me

    # the subscriber's own metadata and other users' are not part of this stream
    await bob.storage.set_user_metadata(uid(bob), items(x="1"))
    await bob.storage.get_user_metadata(me)
    assert len(events) == 0

    await bob.storage.unsubscribe_user_metadata(me)
    assert await ended(events) == []
    frames = spy(bob)
    await alice.storage.set_user_metadata(me, items(after="1"))
    await bob.storage.get_user_metadata(me)
    assert frames == []
    await fails(bob.storage.unsubscribe_user_metadata(me), ErrorCode.STORAGE_NOT_SUBSCRIBE)

    # a user may follow its own metadata too
    mine, own = await alice.storage.subscribe_user_metadata(me)
    assert values(mine) == {"after": "1"}
    assert (await own.get(timeout=5)).type is Kind.SNAPSHOT
    await alice.storage.set_user_metadata(me, items(more="2"))
    assert values(Metadata(0, (await own.get(timeout=5)).items)) == {"after": "1", "more": "2"}


# --- limits -------------------------------------------------------------------------------------


async def test_keys_items_and_sets_have_size_limits(users: Users) -> None:
    channel = unique("limits")
    alice, bob = await users.login("alice"), await users.login("bob")
    me = uid(alice)
    store = alice.storage

    await store.set_channel_metadata(channel, MESSAGE, [MetadataItem("k" * 32, "32 chars")])
    await fails(
        store.set_channel_metadata(channel, MESSAGE, [MetadataItem("k" * 33, "x")]),
        ErrorCode.STORAGE_KEY_LENGTH_OVERFLOW,
    )
    await fails(
        store.set_user_metadata(me, [MetadataItem("é" * 33, "x")]),
        ErrorCode.STORAGE_KEY_LENGTH_OVERFLOW,
    )
    # an item is its key plus its value, in bytes: 16 KB at most
    await store.set_channel_metadata(channel, STREAM, [MetadataItem("big", "v" * (16_384 - 3))])
    await fails(
        store.set_channel_metadata(channel, MESSAGE, [MetadataItem("big", "v" * (16_384 - 2))]),
        ErrorCode.STORAGE_VALUE_LENGTH_OVERFLOW,
    )
    await fails(
        store.set_user_metadata(me, [MetadataItem("big", "é" * 8_191)]),  # 16_385 bytes
        ErrorCode.STORAGE_VALUE_LENGTH_OVERFLOW,
    )
    # a set is all its keys and values: 16 KB at most, whether in one call or over several
    await fails(
        store.set_channel_metadata(channel, MESSAGE, items(a="v" * 9_000, b="v" * 9_000)),
        ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW,
    )
    await store.set_user_metadata(me, items(a="v" * 9_000))
    await fails(
        store.set_user_metadata(me, items(b="v" * 9_000)),
        ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW,
    )
    # the full stream set is exactly at the limit: one more byte does not fit
    await fails(
        store.set_channel_metadata(channel, STREAM, items(c="")),
        ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW,
    )
    await fails(
        store.set_channel_metadata(channel, MESSAGE, items(a="1", b="2", a_="3") + items(a="4")),
        ErrorCode.STORAGE_DUPLICATE_KEY,
    )
    await fails(store.set_user_metadata(me, [MetadataItem("", "x")]), ErrorCode.STORAGE_INVALID_KEY)
    await fails(
        store.set_channel_metadata(channel, MESSAGE, items(a="1"), major_revision=-2),
        ErrorCode.STORAGE_INVALID_REVISION,
    )
    await fails(
        store.set_user_metadata(me, [MetadataItem("a", "1", revision=-5)]),
        ErrorCode.STORAGE_INVALID_REVISION,
    )

    assert values(await bob.storage.get_channel_metadata(channel, MESSAGE)) == {
        "k" * 32: "32 chars"
    }
    assert values(await bob.storage.get_user_metadata(me)) == {"a": "v" * 9_000}
    stream_set = await bob.storage.get_channel_metadata(channel, STREAM)
    assert values(stream_set) == {"big": "v" * (16_384 - 3)}


async def test_more_than_20_storage_calls_a_second_are_refused(users: Users) -> None:
    channel = unique("rate")
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]

    # 30 calls at once: 25 reads, then 5 writes (each write waits for its commit, so they go
    # last, where the rate no longer depends on how fast the disk is)
    calls = [alice.storage.get_channel_metadata(channel, MESSAGE) for _ in range(25)]
    calls += [
        alice.storage.set_channel_metadata(channel, MESSAGE, items(**{f"k{i}": str(i)}))
        for i in range(5)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert 20 <= len(ok) <= 22, results
    for error in refused:
        assert isinstance(error, rtm2.RTMError), error
        assert error.code == ErrorCode.OPERATION_RATE_EXCEED_LIMITATION
    written = {f"k{i}" for i, r in enumerate(results[25:]) if r is None}
    assert len(written) <= 2
    # refused writes changed nothing
    assert set((await carol.storage.get_channel_metadata(channel, MESSAGE)).items) == written

    # user metadata calls count too, per client
    reads = await asyncio.gather(
        *(bob.storage.get_user_metadata(uid(bob)) for _ in range(30)), return_exceptions=True
    )
    assert 20 <= sum(isinstance(r, Metadata) for r in reads) <= 22
    assert all(
        isinstance(r, rtm2.RTMError) and r.code == ErrorCode.OPERATION_RATE_EXCEED_LIMITATION
        for r in reads
        if not isinstance(r, Metadata)
    )
    await fails(
        bob.storage.set_user_metadata(uid(bob), items(a="1")),
        ErrorCode.OPERATION_RATE_EXCEED_LIMITATION,
    )
    await fails(
        bob.storage.subscribe_user_metadata(uid(alice)), ErrorCode.OPERATION_RATE_EXCEED_LIMITATION
    )
    # carol is not limited by the others
    await carol.storage.set_user_metadata(uid(carol), items(a="1"))

    # a second later the bucket has refilled
    await asyncio.sleep(1.1)
    await alice.storage.set_channel_metadata(channel, MESSAGE, items(later="1"))
    await bob.storage.get_user_metadata(uid(bob))


async def test_a_client_follows_at_most_100_users_metadata(users: Users) -> None:
    alice = await users.login("alice")
    followed = [unique(f"f{i}-") for i in range(100)]
    for start in range(0, 100, 20):  # 20 storage calls a second at most
        if start:
            await asyncio.sleep(1.0)
        await asyncio.gather(
            *(alice.storage.subscribe_user_metadata(u) for u in followed[start : start + 20])
        )
    await asyncio.sleep(1.0)
    await fails(
        alice.storage.subscribe_user_metadata(unique("one-more")),
        ErrorCode.STORAGE_SUBSCRIBE_USER_EXCEED_LIMITATION,
    )
    again, _ = await alice.storage.subscribe_user_metadata(followed[0])  # already followed
    assert again == Metadata(0, {})
    await alice.storage.unsubscribe_user_metadata(followed[0])
    await alice.storage.subscribe_user_metadata(unique("instead"))


# --- policy and preconditions ---------------------------------------------------------------------


async def test_a_user_may_write_only_its_own_user_metadata(users: Users) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    await bob.storage.set_user_metadata(uid(bob), items(a="mine"))
    bobs = await alice.storage.get_user_metadata(uid(bob))
    for write in (
        alice.storage.set_user_metadata(uid(bob), items(a="x")),
        alice.storage.update_user_metadata(uid(bob), items(a="x")),
        alice.storage.remove_user_metadata(uid(bob), items(a="")),
        alice.storage.remove_user_metadata(uid(bob)),
        alice.storage.set_user_metadata(unique("nobody"), items(a="x")),
    ):
        await fails(write, ErrorCode.STORAGE_OPERATION_FAILED)
    assert await alice.storage.get_user_metadata(uid(bob)) == bobs
    await fails(alice.storage.get_user_metadata("_bad"), ErrorCode.INVALID_USER_ID)
    await fails(alice.storage.subscribe_user_metadata(""), ErrorCode.INVALID_USER_ID)


async def test_channel_metadata_needs_a_message_or_stream_channel(users: Users) -> None:
    alice = await users.login("alice")
    channel = unique("kind")
    for ctype in (ChannelType.USER, 0, 7):
        for call in (
            alice.storage.set_channel_metadata(channel, ctype, items(a="1")),  # type: ignore[arg-type]
            alice.storage.update_channel_metadata(channel, ctype, items(a="1")),  # type: ignore[arg-type]
            alice.storage.remove_channel_metadata(channel, ctype),  # type: ignore[arg-type]
            alice.storage.get_channel_metadata(channel, ctype),  # type: ignore[arg-type]
        ):
            await fails(call, ErrorCode.INVALID_CHANNEL_TYPE)
    await fails(
        alice.storage.set_channel_metadata("bad/name", MESSAGE, items(a="1")),
        ErrorCode.INVALID_CHANNEL_NAME,
    )
    await fails(alice.storage.get_channel_metadata("", STREAM), ErrorCode.INVALID_CHANNEL_NAME)


async def test_every_storage_call_needs_a_login(server: ServerProcess) -> None:
    user = unique("nologin")
    client = client_for(server, user)

    def calls() -> list[Awaitable[object]]:
        s = client.storage
        return [
            s.set_channel_metadata("c", MESSAGE, items(a="1")),
            s.update_channel_metadata("c", STREAM, items(a="1")),
            s.remove_channel_metadata("c", MESSAGE),
            s.get_channel_metadata("c", STREAM),
            s.get_channel_metadata_events("c", MESSAGE),
            s.set_user_metadata(user, items(a="1")),
            s.update_user_metadata(user, items(a="1")),
            s.remove_user_metadata(user),
            s.get_user_metadata(user),
            s.subscribe_user_metadata(user),
            s.unsubscribe_user_metadata(user),
        ]

    for call in calls():
        await fails(call, ErrorCode.NOT_LOGIN)

    await client.login(token_for(user))
    _, events = await client.storage.subscribe_user_metadata(user)
    await client.logout()
    assert [e.type for e in await ended(events)] == [Kind.SNAPSHOT]
    for call in calls():
        await fails(call, ErrorCode.NOT_LOGIN)
