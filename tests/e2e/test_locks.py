"""Locks end to end: every method and its event, errors and limits, fencing numbers, the fair
(FIFO) wait and its cancellation, and TTL expiry after an owner goes away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, LockDetail, LockEvent
from rtm2 import LockEventType as Kind

from ..conftest import ServerProcess
from .util import Users, client_for, enter, fails, leave, uid, unique

MESSAGE, STREAM = ChannelType.MESSAGE, ChannelType.STREAM
BOTH_TYPES = pytest.mark.parametrize("ctype", [MESSAGE, STREAM], ids=["message", "stream"])


async def watch(
    client: rtm2.RTMClient, channel: str, ctype: ChannelType
) -> rtm2.EventStream[LockEvent]:
    """Enter the channel with lock events; return the stream past its SNAPSHOT."""
    await enter(client, channel, ctype, with_lock=True, with_presence=False)
    _, events = await client.lock.get_lock_events(channel, ctype)
    assert (await events.get(timeout=5)).type is Kind.SNAPSHOT
    return events


async def changes(events: rtm2.EventStream[LockEvent], n: int, timeout: float = 5) -> list[Any]:
    """The next ``n`` lock events as (type, owner) of their single lock."""
    out = []
    for _ in range(n):
        event = await events.get(timeout=timeout)
        assert len(event.locks) == 1, event
        (detail,) = event.locks.values()
        out.append((event.type, detail.owner))
    return out


async def waiting(client: rtm2.RTMClient, channel: str, ctype: ChannelType, name: str) -> Any:
    """Start ``acquire(retry=True)`` and return its task once the server has queued it."""
    task = asyncio.create_task(client.lock.acquire(channel, ctype, name, retry=True))
    await asyncio.sleep(0)  # the task sends its request
    await client.lock.get(channel, ctype)  # answered after the acquire was handled: it waits
    assert not task.done()
    return task


def kill(client: rtm2.RTMClient) -> None:
    """End the client's connection without a word: the server keeps its session detached."""
    assert client._link is not None
    assert client._link._transport is not None
    client._link._transport.disconnect()


def spy(client: rtm2.RTMClient) -> list[Any]:
    """Record every lock-event frame the client receives, whether it has a view or not."""
    frames: list[Any] = []
    handler = client.lock._on_event

    def record(frame: Any) -> None:
        frames.append(frame)
        handler(frame)

    client.lock._on_event = record  # type: ignore[method-assign]
    return frames


async def ended(stream: rtm2.EventStream[Any]) -> list[Any]:
    async with asyncio.timeout(5):
        return [item async for item in stream]


# --- every method and its event ---------------------------------------------------------------


@BOTH_TYPES
async def test_every_lock_method_and_the_event_it_sends(users: Users, ctype: ChannelType) -> None:
    channel = unique("locks")
    alice, bob, carol, dave = [await users.login(n) for n in ("alice", "bob", "carol", "dave")]
    await enter(carol, channel, ctype, with_lock=True)
    snapshot, events = await carol.lock.get_lock_events(channel, ctype)
    assert snapshot == {}
    assert await events.get(timeout=5) == LockEvent(Kind.SNAPSHOT, channel, ctype, {})

    def event(kind: Kind, owner: str = "") -> LockEvent:
        return LockEvent(kind, channel, ctype, {"editor": LockDetail("editor", owner, 30)})

    await alice.lock.set(channel, ctype, "editor", ttl=30)
    assert await events.get(timeout=5) == event(Kind.SET)
    assert await dave.lock.get(channel, ctype) == {"editor": LockDetail("editor", "", 30)}

    first = await alice.lock.acquire(channel, ctype, "editor")
    assert await events.get(timeout=5) == event(Kind.ACQUIRED, uid(alice))
    assert await dave.lock.get(channel, ctype) == {"editor": LockDetail("editor", uid(alice), 30)}

    await alice.lock.release(channel, ctype, "editor")
    assert await events.get(timeout=5) == event(Kind.RELEASED)
    assert (await dave.lock.get(channel, ctype))["editor"].owner == ""

    # locks need no membership: dave is not in the channel
    second = await bob.lock.acquire(channel, ctype, "editor")
    assert await events.get(timeout=5) == event(Kind.ACQUIRED, uid(bob))
    await dave.lock.revoke(channel, ctype, "editor", owner=uid(bob))
    assert await events.get(timeout=5) == event(Kind.RELEASED)
    third = await dave.lock.acquire(channel, ctype, "editor", retry=True)  # free: at once
    assert await events.get(timeout=5) == event(Kind.ACQUIRED, uid(dave))
    assert (first, second, third) == (first, first + 1, first + 2)
    assert first >= 1

    await bob.lock.set(channel, ctype, "second", ttl=60)
    await bob.lock.acquire(channel, ctype, "second")
    assert [e.type for e in [await events.get(timeout=5) for _ in range(2)]] == [
        Kind.SET,
        Kind.ACQUIRED,
    ]
    # the view follows the events; a new member's snapshot has every lock
    view, _ = await carol.lock.get_lock_events(channel, ctype)
    expected = {
        "editor": LockDetail("editor", uid(dave), 30),
        "second": LockDetail("second", uid(bob), 60),
    }
    assert view == expected
    assert await alice.lock.get(channel, ctype) == expected
    await enter(alice, channel, ctype, with_lock=True)
    late_view, late = await alice.lock.get_lock_events(channel, ctype)
    assert late_view == expected
    assert await late.get(timeout=5) == LockEvent(Kind.SNAPSHOT, channel, ctype, expected)

    # removing a held lock: REMOVED (with the lock as it was), then it is gone
    await alice.lock.remove(channel, ctype, "editor")
    removed = LockEvent(Kind.REMOVED, channel, ctype, {"editor": expected["editor"]})
    assert await events.get(timeout=5) == removed
    assert await late.get(timeout=5) == removed
    assert await bob.lock.get(channel, ctype) == {"second": expected["second"]}
    assert (await carol.lock.get_lock_events(channel, ctype))[0] == {"second": expected["second"]}

    # and it may be defined again
    await alice.lock.set(channel, ctype, "editor")
    assert (await events.get(timeout=5)).locks == {"editor": LockDetail("editor", "", 10)}

    # nothing about the other channel type or other channels
    other = MESSAGE if ctype is STREAM else STREAM
    await dave.lock.set(channel, other, "editor")
    await dave.lock.set(unique("elsewhere"), ctype, "editor")
    await carol.lock.get(channel, ctype)  # a round trip: pushes came before
    assert len(events) == 0


@BOTH_TYPES
async def test_members_without_with_lock_get_no_lock_events(
    users: Users, ctype: ChannelType
) -> None:
    channel = unique("nolock")
    alice, bob = await users.login("alice"), await users.login("bob")
    code = ErrorCode.CHANNEL_NOT_SUBSCRIBED if ctype is MESSAGE else ErrorCode.CHANNEL_NOT_JOINED
    frames = spy(bob)
    await enter(bob, channel, ctype)
    await fails(bob.lock.get_lock_events(channel, ctype), code)
    await fails(alice.lock.get_lock_events(channel, ctype), code)
    await alice.lock.set(channel, ctype, "l")
    await alice.lock.acquire(channel, ctype, "l")
    await alice.lock.release(channel, ctype, "l")
    await alice.lock.remove(channel, ctype, "l")
    await bob.lock.get(channel, ctype)
    assert frames == []

    # a member that leaves stops getting them, and its stream ends
    events = await watch(alice, channel, ctype)
    await bob.lock.set(channel, ctype, "l")
    await leave(alice, channel, ctype)
    assert [e.type for e in await ended(events)] == [Kind.SET]
    frames = spy(alice)
    await bob.lock.acquire(channel, ctype, "l")
    await alice.lock.get(channel, ctype)
    assert frames == []
    await fails(alice.lock.get_lock_events(channel, ctype), code)


# --- errors and limits --------------------------------------------------------------------------


async def test_lock_errors(users: Users) -> None:
    channel = unique("errors")
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]
    events = await watch(carol, channel, STREAM)
    lk = alice.lock

    await lk.set(channel, STREAM, "l")
    await fails(lk.set(channel, STREAM, "l", ttl=60), ErrorCode.LOCK_ALREADY_EXIST)
    await fails(bob.lock.set(channel, STREAM, "l"), ErrorCode.LOCK_ALREADY_EXIST)
    for call in (
        lk.acquire(channel, STREAM, "nope"),
        lk.acquire(channel, STREAM, "nope", retry=True),
        lk.release(channel, STREAM, "nope"),
        lk.revoke(channel, STREAM, "nope", owner=uid(bob)),
        lk.remove(channel, STREAM, "nope"),
        lk.acquire(channel, MESSAGE, "l"),  # the other channel type has no such lock
    ):
        await fails(call, ErrorCode.LOCK_NOT_EXIST)
    # nobody holds it yet
    await fails(lk.release(channel, STREAM, "l"), ErrorCode.LOCK_NOT_ACQUIRED)
    await fails(lk.revoke(channel, STREAM, "l", owner=uid(bob)), ErrorCode.LOCK_NOT_ACQUIRED)
    await fails(lk.revoke(channel, STREAM, "l", owner=""), ErrorCode.LOCK_NOT_ACQUIRED)

    await lk.acquire(channel, STREAM, "l")
    await fails(bob.lock.release(channel, STREAM, "l"), ErrorCode.LOCK_NOT_ACQUIRED)
    await fails(bob.lock.revoke(channel, STREAM, "l", owner=uid(bob)), ErrorCode.LOCK_NOT_ACQUIRED)
    await fails(bob.lock.revoke(channel, STREAM, "l", owner=""), ErrorCode.LOCK_NOT_ACQUIRED)
    await fails(bob.lock.acquire(channel, STREAM, "l"), ErrorCode.LOCK_ACQUIRE_FAILED)
    await fails(bob.lock.acquire(channel, STREAM, "l", retry=False), ErrorCode.LOCK_ACQUIRE_FAILED)

    for name in ("", "n" * 65):
        for call in (
            lk.set(channel, STREAM, name),
            lk.acquire(channel, STREAM, name),
            lk.acquire(channel, STREAM, name, retry=True),
            lk.release(channel, STREAM, name),
            lk.revoke(channel, STREAM, name, owner=uid(alice)),
            lk.remove(channel, STREAM, name),
        ):
            await fails(call, ErrorCode.LOCK_INVALID_NAME)
    longest = "n" * 64
    await lk.set(channel, STREAM, longest)
    await lk.acquire(channel, STREAM, longest)

    for ctype in (ChannelType.USER, 0):
        for call in (
            lk.set(channel, ctype, "x"),  # type: ignore[arg-type]
            lk.acquire(channel, ctype, "x"),  # type: ignore[arg-type]
            lk.get(channel, ctype),  # type: ignore[arg-type]
            lk.remove(channel, ctype, "x"),  # type: ignore[arg-type]
        ):
            await fails(call, ErrorCode.INVALID_CHANNEL_TYPE)
    await fails(lk.set("bad/name", STREAM, "x"), ErrorCode.INVALID_CHANNEL_NAME)

    # failures change nothing and send no event
    assert await bob.lock.get(channel, STREAM) == {
        "l": LockDetail("l", uid(alice), 10),
        longest: LockDetail(longest, uid(alice), 10),
    }
    assert await changes(events, 4) == [
        (Kind.SET, ""),
        (Kind.ACQUIRED, uid(alice)),
        (Kind.SET, ""),
        (Kind.ACQUIRED, uid(alice)),
    ]
    await carol.lock.get(channel, STREAM)
    assert len(events) == 0


async def test_a_channel_has_at_most_32_locks(users: Users) -> None:
    channel = unique("many")
    alice = await users.login("alice")
    await asyncio.gather(*(alice.lock.set(channel, MESSAGE, f"l{i}") for i in range(32)))
    await fails(alice.lock.set(channel, MESSAGE, "l32"), ErrorCode.LOCK_OPERATION_FAILED)
    assert sorted(await alice.lock.get(channel, MESSAGE)) == sorted(f"l{i}" for i in range(32))
    # per channel (and type): others are not affected
    await alice.lock.set(channel, STREAM, "l32")
    await alice.lock.set(unique("other"), MESSAGE, "l32")
    # removing one makes room for one
    await alice.lock.remove(channel, MESSAGE, "l0")
    await alice.lock.set(channel, MESSAGE, "l32")
    await fails(alice.lock.set(channel, MESSAGE, "l33"), ErrorCode.LOCK_OPERATION_FAILED)
    assert len(await alice.lock.get(channel, MESSAGE)) == 32


async def test_ttl_is_clamped_to_10_to_300_seconds(users: Users) -> None:
    channel = unique("ttl")
    alice = await users.login("alice")
    for name, ttl in (("one", 1), ("zero", 0), ("ten", 10), ("sixty", 60), ("max", 300)):
        await alice.lock.set(channel, STREAM, name, ttl=ttl)
    await alice.lock.set(channel, STREAM, "huge", ttl=1000)
    await alice.lock.set(channel, STREAM, "default")
    assert {n: d.ttl for n, d in (await alice.lock.get(channel, STREAM)).items()} == {
        "one": 10,
        "zero": 10,
        "ten": 10,
        "sixty": 60,
        "max": 300,
        "huge": 300,
        "default": 10,
    }


async def test_every_lock_call_needs_a_login(server: ServerProcess) -> None:
    client = client_for(server, unique("nologin"))
    lk = client.lock
    for call in (
        lk.set("c", STREAM, "l"),
        lk.remove("c", STREAM, "l"),
        lk.acquire("c", STREAM, "l"),
        lk.acquire("c", STREAM, "l", retry=True),
        lk.release("c", STREAM, "l"),
        lk.revoke("c", STREAM, "l", owner="x"),
        lk.get("c", MESSAGE),
        lk.get_lock_events("c", MESSAGE),
    ):
        await fails(call, ErrorCode.NOT_LOGIN)


# --- fencing numbers ----------------------------------------------------------------------------


async def test_fencing_numbers_grow_by_one_with_every_acquisition(users: Users) -> None:
    channel = unique("fence")
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]
    await alice.lock.set(channel, MESSAGE, "a")
    await alice.lock.set(channel, MESSAGE, "b")

    fences = [await alice.lock.acquire(channel, MESSAGE, "a")]
    await alice.lock.release(channel, MESSAGE, "a")
    fences.append(await alice.lock.acquire(channel, MESSAGE, "a"))  # the same owner again
    await bob.lock.revoke(channel, MESSAGE, "a", owner=uid(alice))
    fences.append(await bob.lock.acquire(channel, MESSAGE, "a"))
    waiter = await waiting(carol, channel, MESSAGE, "a")
    await bob.lock.release(channel, MESSAGE, "a")
    fences.append(await asyncio.wait_for(waiter, 5))  # granted to a waiter
    await alice.lock.revoke(channel, MESSAGE, "a", owner=uid(carol))
    fences.append(await alice.lock.acquire(channel, MESSAGE, "a", retry=True))
    assert fences == list(range(fences[0], fences[0] + 5))

    # every lock counts its own acquisitions
    other = await carol.lock.acquire(channel, MESSAGE, "b")
    assert other == fences[0]

    # of three concurrent plain acquires of a free lock, exactly one wins, with the next number
    await alice.lock.release(channel, MESSAGE, "a")
    results = await asyncio.gather(
        *(c.lock.acquire(channel, MESSAGE, "a") for c in (alice, bob, carol)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, int)]
    assert won == [fences[-1] + 1]
    for r in results:
        if not isinstance(r, int):
            assert isinstance(r, rtm2.RTMError)
            assert r.code == ErrorCode.LOCK_ACQUIRE_FAILED


async def test_the_holder_may_acquire_its_lock_again_even_while_others_wait(users: Users) -> None:
    """A holder's acquire succeeds with its fence whether or not others wait: only "someone
    else" fails while a queue exists (docs/STORAGE.md). Fails today: LockService.acquire
    (src/rtm2/server/locks.py) checks the queue before the owner, so the holder's plain acquire
    gets LOCK_ACQUIRE_FAILED and its retry=True acquire queues behind the waiters, i.e. it
    waits for itself."""
    channel = unique("again")
    alice, bob = await users.login("alice"), await users.login("bob")
    await alice.lock.set(channel, STREAM, "l")
    fence = await alice.lock.acquire(channel, STREAM, "l")
    assert await alice.lock.acquire(channel, STREAM, "l") == fence  # nobody waits: fine

    waiter = await waiting(bob, channel, STREAM, "l")
    try:
        assert await alice.lock.acquire(channel, STREAM, "l") == fence
        assert (
            await asyncio.wait_for(alice.lock.acquire(channel, STREAM, "l", retry=True), 2) == fence
        )
        assert (await bob.lock.get(channel, STREAM))["l"].owner == uid(alice)
        assert not waiter.done()
    finally:
        waiter.cancel()


# --- the fair wait ------------------------------------------------------------------------------


async def test_waiters_get_the_lock_first_come_first_served(users: Users) -> None:
    channel = unique("fifo")
    a, b, c, d, e, observer = [await users.login(n) for n in ("a", "b", "c", "d", "e", "observer")]
    events = await watch(observer, channel, MESSAGE)
    await a.lock.set(channel, MESSAGE, "l")
    first = await a.lock.acquire(channel, MESSAGE, "l")
    tasks = {}
    for client in (b, c, d):
        tasks[uid(client)] = await waiting(client, channel, MESSAGE, "l")
    # nobody overtakes the queue: a plain acquire fails at once
    await fails(e.lock.acquire(channel, MESSAGE, "l"), ErrorCode.LOCK_ACQUIRE_FAILED)
    assert await changes(events, 2) == [(Kind.SET, ""), (Kind.ACQUIRED, uid(a))]

    holder = a
    for n, client in enumerate((b, c, d), start=1):
        await holder.lock.release(channel, MESSAGE, "l")
        assert await asyncio.wait_for(tasks[uid(client)], 5) == first + n
        assert await changes(events, 2) == [(Kind.RELEASED, ""), (Kind.ACQUIRED, uid(client))]
        assert all(not t.done() for t in list(tasks.values())[n:])
        assert (await e.lock.get(channel, MESSAGE))["l"].owner == uid(client)
        holder = client
    # the queue is empty: the next release leaves the lock free
    await d.lock.release(channel, MESSAGE, "l")
    assert await changes(events, 1) == [(Kind.RELEASED, "")]
    assert await e.lock.acquire(channel, MESSAGE, "l") == first + 4


async def test_a_revoked_or_expired_lock_also_goes_to_the_first_waiter(users: Users) -> None:
    channel = unique("revoked")
    a, b, c = [await users.login(n) for n in ("a", "b", "c")]
    await a.lock.set(channel, STREAM, "l")
    first = await a.lock.acquire(channel, STREAM, "l")
    wb = await waiting(b, channel, STREAM, "l")
    wc = await waiting(c, channel, STREAM, "l")
    await c.lock.revoke(channel, STREAM, "l", owner=uid(a))
    assert await asyncio.wait_for(wb, 5) == first + 1
    assert not wc.done()
    await a.lock.revoke(channel, STREAM, "l", owner=uid(b))
    assert await asyncio.wait_for(wc, 5) == first + 2


async def test_a_cancelled_wait_is_withdrawn_and_skipped(users: Users) -> None:
    channel = unique("cancel")
    a, b, c, d, observer = [await users.login(n) for n in ("a", "b", "c", "d", "observer")]
    events = await watch(observer, channel, STREAM)
    await a.lock.set(channel, STREAM, "l")
    first = await a.lock.acquire(channel, STREAM, "l")
    wb = await waiting(b, channel, STREAM, "l")
    wc = await waiting(c, channel, STREAM, "l")
    wd = await waiting(d, channel, STREAM, "l")

    wc.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wc
    await asyncio.sleep(0.2)  # the withdrawal goes out
    await c.lock.get(channel, STREAM)  # and is handled before this is answered

    await a.lock.release(channel, STREAM, "l")
    assert await asyncio.wait_for(wb, 5) == first + 1
    await b.lock.release(channel, STREAM, "l")
    assert await asyncio.wait_for(wd, 5) == first + 2
    assert await changes(events, 6) == [
        (Kind.SET, ""),
        (Kind.ACQUIRED, uid(a)),
        (Kind.RELEASED, ""),
        (Kind.ACQUIRED, uid(b)),
        (Kind.RELEASED, ""),
        (Kind.ACQUIRED, uid(d)),
    ]
    await observer.lock.get(channel, STREAM)
    assert len(events) == 0  # c never held it
    assert (await c.lock.get(channel, STREAM))["l"].owner == uid(d)
    # c's connection is fine, and it may wait again (behind nobody now: d holds it)
    wc2 = await waiting(c, channel, STREAM, "l")
    await d.lock.release(channel, STREAM, "l")
    assert await asyncio.wait_for(wc2, 5) == first + 3


async def test_a_wait_cancelled_just_as_the_lock_is_granted_gives_the_lock_back(
    users: Users,
) -> None:
    """A lock granted in the instant its wait is cancelled is released again, so the next
    waiter is not stuck (client/lock.py docstring, docs/STORAGE.md). Fails today: cancelling the
    task also cancels the reply future it awaits, so ``Lock._withdraw`` gets CancelledError
    from ``await future`` (it catches only RTMError/TimeoutError), never sees the grant and
    never releases: the lock stays with c until c's connection goes plus the TTL."""
    channel = unique("race")
    a, c, d, observer = [await users.login(n) for n in ("a", "c", "d", "observer")]
    events = await watch(observer, channel, MESSAGE)
    await a.lock.set(channel, MESSAGE, "l")
    first = await a.lock.acquire(channel, MESSAGE, "l")
    wc = await waiting(c, channel, MESSAGE, "l")
    wd = await waiting(d, channel, MESSAGE, "l")
    assert await changes(events, 2) == [(Kind.SET, ""), (Kind.ACQUIRED, uid(a))]

    # c does not read for a moment: the server grants it the lock, then c cancels its wait
    # before it has seen the grant.
    assert c._link is not None
    assert c._link._transport is not None
    socket = c._link._transport.underlying_transport
    socket.pause_reading()
    try:
        await a.lock.release(channel, MESSAGE, "l")
        assert await changes(events, 2) == [(Kind.RELEASED, ""), (Kind.ACQUIRED, uid(c))]
        wc.cancel()
        await asyncio.sleep(0.1)
    finally:
        socket.resume_reading()
    with pytest.raises(asyncio.CancelledError):
        await wc

    # c never got the fence, so it must give the lock back, and d (next in line) gets it.
    owner = ""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        owner = (await observer.lock.get(channel, MESSAGE))["l"].owner
        if owner == uid(d):
            break
        await asyncio.sleep(0.2)
    try:
        assert owner == uid(d), f"the lock stayed with {owner!r} (c cancelled its wait)"
        assert await asyncio.wait_for(wd, 5) == first + 2
    finally:
        wd.cancel()


async def test_waiters_that_leave_log_out_or_lose_their_connection_are_skipped(
    users: Users,
) -> None:
    channel, elsewhere = unique("gone"), unique("elsewhere")
    a, b, c, e, f, observer = [await users.login(n) for n in ("a", "b", "c", "e", "f", "observer")]
    d = await users.login("d", auto_reconnect=False)
    events = await watch(observer, channel, MESSAGE)
    await a.lock.set(channel, MESSAGE, "l")
    first = await a.lock.acquire(channel, MESSAGE, "l")
    await enter(b, channel, MESSAGE)
    await enter(e, channel, STREAM)  # e is in the stream channel of the same name ...
    await enter(e, elsewhere, MESSAGE)  # ... and in another message channel
    wb = await waiting(b, channel, MESSAGE, "l")
    wc = await waiting(c, channel, MESSAGE, "l")
    wd = await waiting(d, channel, MESSAGE, "l")
    we = await waiting(e, channel, MESSAGE, "l")
    wf = await waiting(f, channel, MESSAGE, "l")

    # b leaves the channel: its wait ends with LOCK_ACQUIRE_FAILED
    await leave(b, channel, MESSAGE)
    await fails(asyncio.wait_for(wb, 5), ErrorCode.LOCK_ACQUIRE_FAILED)
    # c logs out: the connection goes, the wait ends with NOT_CONNECTED
    await c.logout()
    await fails(asyncio.wait_for(wc, 5), ErrorCode.NOT_CONNECTED)
    # d's connection is killed: NOT_CONNECTED too
    kill(d)
    await fails(asyncio.wait_for(wd, 5), ErrorCode.NOT_CONNECTED)
    # e leaves other channels: it keeps waiting
    await leave(e, channel, STREAM)
    await leave(e, elsewhere, MESSAGE)
    await e.lock.get(channel, MESSAGE)
    assert not we.done()

    await asyncio.sleep(0.3)  # the server has seen d's connection go
    await a.lock.release(channel, MESSAGE, "l")
    assert await asyncio.wait_for(we, 5) == first + 1
    await e.lock.release(channel, MESSAGE, "l")
    assert await asyncio.wait_for(wf, 5) == first + 2
    assert [owner for kind, owner in await changes(events, 6) if kind is Kind.ACQUIRED] == [
        uid(a),
        uid(e),
        uid(f),
    ]
    # b can still use locks
    await b.lock.get(channel, MESSAGE)


async def test_removing_a_lock_ends_every_wait_with_lock_not_exist(users: Users) -> None:
    channel = unique("removed")
    a, b, c = [await users.login(n) for n in ("a", "b", "c")]
    await a.lock.set(channel, STREAM, "l")
    await a.lock.acquire(channel, STREAM, "l")
    wb = await waiting(b, channel, STREAM, "l")
    wc = await waiting(c, channel, STREAM, "l")
    await c.lock.remove(channel, STREAM, "l")
    await fails(asyncio.wait_for(wb, 5), ErrorCode.LOCK_NOT_EXIST)
    await fails(asyncio.wait_for(wc, 5), ErrorCode.LOCK_NOT_EXIST)
    assert await a.lock.get(channel, STREAM) == {}


# --- TTL ----------------------------------------------------------------------------------------


async def test_a_lock_outlives_its_absent_owner_by_its_ttl(users: Users) -> None:
    """Five owners of a 10 s lock go away at once; everything is checked concurrently.

    - killed: its connection dies (no auto-reconnect); ~10 s later members get EXPIRED and the
      waiter gets the lock.
    - left: it leaves the channel but stays connected; the same happens.
    - back early / back late: its connection dies and a new login of the same user re-enters
      the channel after 2 s (session still detached) or 7 s (the 5 s presence timeout has
      ended the old session); it still holds the lock at 12 s and nobody saw EXPIRED.
    - resumed: its connection dies and the SDK reconnects and resumes the session by itself;
      it still holds the lock at 12 s too.
    """

    async def scenario(how: str, ctype: ChannelType) -> None:
        channel = unique(f"ttl-{how}-")
        resumes = how == "resumed"
        owner = await users.login(
            f"owner-{how}-",
            presence_timeout=5,
            auto_reconnect=resumes,
            reconnect_min_delay=0.2,
            reconnect_max_delay=0.5,
        )
        waiter = await users.login(f"waiter-{how}-")
        observer = await users.login(f"observer-{how}-")
        events = await watch(observer, channel, ctype)
        await enter(owner, channel, ctype, with_lock=True)
        await owner.lock.set(channel, ctype, "l", ttl=1)  # clamped to 10
        fence = await owner.lock.acquire(channel, ctype, "l")
        queued = await waiting(waiter, channel, ctype, "l")
        assert await changes(events, 2) == [(Kind.SET, ""), (Kind.ACQUIRED, uid(owner))]

        gone = time.monotonic()
        if how == "left":
            await leave(owner, channel, ctype)
        else:
            kill(owner)
        if how.startswith("back") or resumes:
            again = owner
            if not resumes:
                await asyncio.sleep(gone + (2 if how == "back-early" else 7) - time.monotonic())
                again = await users.login(user=uid(owner), presence_timeout=5)
                await enter(again, channel, ctype, with_lock=True)
            await asyncio.sleep(gone + 12 - time.monotonic())
            assert (await observer.lock.get(channel, ctype))["l"].owner == uid(owner)
            assert len(events) == 0, [events.get_nowait() for _ in range(len(events))]
            assert not queued.done()
            await again.lock.release(channel, ctype, "l")
            assert await asyncio.wait_for(queued, 5) == fence + 1
            return

        await asyncio.sleep(gone + 7 - time.monotonic())  # past the presence timeout
        assert (await observer.lock.get(channel, ctype))["l"].owner == uid(owner)
        assert not queued.done()
        expired = await events.get(timeout=8)
        elapsed = time.monotonic() - gone
        assert expired == LockEvent(Kind.EXPIRED, channel, ctype, {"l": LockDetail("l", "", 10)})
        assert 9.5 <= elapsed <= 12, elapsed
        assert await asyncio.wait_for(queued, 5) == fence + 1
        assert await changes(events, 1) == [(Kind.ACQUIRED, uid(waiter))]
        if how == "left":  # the owner never lost its connection
            await owner.lock.get(channel, ctype)

    await asyncio.gather(
        scenario("killed", MESSAGE),
        scenario("left", STREAM),
        scenario("back-early", STREAM),
        scenario("back-late", MESSAGE),
        scenario("resumed", STREAM),
    )


async def test_a_resumed_connection_does_not_stop_the_ttl_of_a_lock_whose_channel_was_left(
    users: Users,
) -> None:
    """Leaving the channel starts the lock's countdown; only entering the channel again stops
    it (docs/STORAGE.md). A connection blip that the SDK resumes must not stop it too. Fails
    today: LockService.connection_back (src/rtm2/server/locks.py) cancels every countdown of
    the user, so the lock of a channel it left is kept for good."""
    channel = unique("left-resumed")
    owner = await users.login(
        "owner", presence_timeout=5, reconnect_min_delay=0.2, reconnect_max_delay=0.5
    )
    observer = await users.login("observer")
    events = await watch(observer, channel, MESSAGE)
    await enter(owner, channel, MESSAGE)
    await owner.lock.set(channel, MESSAGE, "l")
    await owner.lock.acquire(channel, MESSAGE, "l")
    await leave(owner, channel, MESSAGE)
    gone = time.monotonic()
    assert await changes(events, 2) == [(Kind.SET, ""), (Kind.ACQUIRED, uid(owner))]

    session = owner.session_id
    conn = users.streams[owner].conn_events
    while conn.get_nowait() is not None:  # the login's own events
        pass
    kill(owner)  # the SDK reconnects and resumes the session
    async with asyncio.timeout(5):
        async for change in conn:
            if change.state is rtm2.ConnectionState.CONNECTED:
                break
    assert change.reason is rtm2.ConnectionChangeReason.REJOIN_SUCCESS
    assert owner.session_id == session  # resumed, not a new login

    await asyncio.sleep(gone + 12 - time.monotonic())
    detail = (await observer.lock.get(channel, MESSAGE))["l"]
    assert detail.owner == "", f"{detail.owner} still holds it 12 s after leaving the channel"
    expired = await events.get(timeout=1)
    assert expired == LockEvent(Kind.EXPIRED, channel, MESSAGE, {"l": LockDetail("l", "", 10)})


async def test_anyone_may_revoke_the_lock_of_an_absent_owner_before_its_ttl_ends(
    users: Users,
) -> None:
    """A lock whose owner is away can still be revoked by anyone before the TTL ends."""
    channel = unique("revoke-away")
    owner = await users.login("owner", presence_timeout=5, auto_reconnect=False)
    other = await users.login("other")
    await enter(owner, channel, MESSAGE)
    await owner.lock.set(channel, MESSAGE, "l")
    fence = await owner.lock.acquire(channel, MESSAGE, "l")
    kill(owner)
    await asyncio.sleep(0.3)
    assert (await other.lock.get(channel, MESSAGE))["l"].owner == uid(owner)
    await other.lock.revoke(channel, MESSAGE, "l", owner=uid(owner))
    assert await other.lock.acquire(channel, MESSAGE, "l") == fence + 1
    with contextlib.suppress(rtm2.RTMError):
        await owner.logout()
