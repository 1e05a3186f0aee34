"""Durability end to end: acknowledged metadata and lock writes survive a SIGKILL (and a clean
SIGTERM) of ``rtm2 serve``; a multi-item write is never found half applied."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import rtm2
from rtm2 import ChannelType, LockDetail, LockEvent, Metadata, MetadataItem
from rtm2 import LockEventType as Kind
from rtm2.tokens import build_stream_token

from ..conftest import APP_A, CERT_A, ServerProcess
from .util import client_for, token_for, unique

MESSAGE, STREAM = ChannelType.MESSAGE, ChannelType.STREAM


class Users:
    """Clients of one server (without auto-reconnect: a killed server ends their sessions)."""

    def __init__(self) -> None:
        self.clients: list[rtm2.RTMClient] = []

    async def login(self, server: ServerProcess, user: str, **config: Any) -> rtm2.RTMClient:
        client = client_for(server, user, auto_reconnect=False, **config)
        await client.login(token_for(user))
        self.clients.append(client)
        return client

    async def logout_all(self) -> None:
        for client in self.clients:
            await client.logout()


@pytest.fixture
async def users() -> AsyncIterator[Users]:
    users = Users()
    yield users
    await users.logout_all()


@pytest.fixture
def restarts() -> Iterator[list[ServerProcess]]:
    """Servers a test started on another's data; stopped at its end."""
    started: list[ServerProcess] = []
    yield started
    for srv in started:
        srv.stop()


def restart(
    old: ServerProcess, sig: int, restarts: list[ServerProcess], signalled: bool = False
) -> ServerProcess:
    """Signal ``old`` (unless done already), wait for it to exit, and start a new server on
    the same work directory (so the same data directory, ``workdir / "data"``)."""
    if not signalled:
        old.signal(sig)
    code = old.wait(10)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), old.log()
    new = ServerProcess(old.workdir)
    restarts.append(new)
    return new.start()


async def join(client: rtm2.RTMClient, channel: str, **options: bool) -> None:
    token = build_stream_token(APP_A, CERT_A, channel, client.config.user_id)
    await client.stream_channel(channel).join(token, **options)


def uid(client: rtm2.RTMClient) -> str:
    return client.config.user_id


Target = tuple[str, ChannelType | None]  # (channel, type) or (user id, None)


async def read(client: rtm2.RTMClient, target: Target) -> Metadata:
    name, ctype = target
    if ctype is None:
        return await client.storage.get_user_metadata(name)
    return await client.storage.get_channel_metadata(name, ctype)


async def read_all(readers: list[rtm2.RTMClient], targets: list[Target]) -> dict[Target, Metadata]:
    """Every target's metadata, the reads spread over ``readers`` (20 storage calls/s each)."""
    assert len(targets) <= 18 * len(readers)
    results = await asyncio.gather(
        *(read(readers[i % len(readers)], t) for i, t in enumerate(targets))
    )
    return dict(zip(targets, results, strict=True))


def items(**kv: str) -> list[MetadataItem]:
    return [MetadataItem(key, value) for key, value in kv.items()]


# --- a mixed workload -----------------------------------------------------------------------------


class Workload:
    """Acknowledged writes of every kind by three users, and what they must leave behind."""

    def __init__(self) -> None:
        self.names = {n: unique(f"{n}-") for n in ("alice", "bob", "carol")}
        self.chat, self.room, self.gone = unique("chat"), unique("room"), unique("gone")
        self.channels: list[Target] = [
            (self.chat, MESSAGE),
            (self.room, STREAM),
            (self.gone, STREAM),
        ]

    @property
    def targets(self) -> list[Target]:
        return self.channels + [(u, None) for u in self.names.values()]

    async def run(self, server: ServerProcess, users: Users) -> None:
        alice, bob, carol = [await users.login(server, u) for u in self.names.values()]
        chat, room, gone = self.chat, self.room, self.gone
        await alice.storage.set_channel_metadata(
            chat, MESSAGE, items(topic="news", mood="ok", x="1"), record_ts=True, record_author=True
        )
        major = (await bob.storage.get_channel_metadata(chat, MESSAGE)).major_revision
        await bob.storage.update_channel_metadata(
            chat, MESSAGE, items(mood="great"), major_revision=major, record_author=True
        )
        await bob.storage.remove_channel_metadata(chat, MESSAGE, items(x=""))
        await carol.storage.set_channel_metadata(
            room, STREAM, {"a": MetadataItem("a", "1", revision=0), "b": MetadataItem("b", "2")}
        )
        await carol.storage.set_channel_metadata(gone, STREAM, items(a="1", b="2"))
        await carol.storage.remove_channel_metadata(gone, STREAM)
        for client in (alice, bob, carol):
            await client.storage.set_user_metadata(
                uid(client), items(name=uid(client), lang="en"), record_ts=True
            )
        await bob.storage.update_user_metadata(uid(bob), items(lang="fr"))

        # locks: a held one with history, a free one with history, a fresh one, a removed one
        await alice.lock.set(room, STREAM, "editor", ttl=60)
        await alice.lock.acquire(room, STREAM, "editor")
        await alice.lock.release(room, STREAM, "editor")
        await bob.lock.acquire(room, STREAM, "editor")  # fence 2, held by bob
        await carol.lock.set(room, STREAM, "history", ttl=30)
        for _ in range(3):
            await carol.lock.acquire(room, STREAM, "history")
            await carol.lock.release(room, STREAM, "history")  # fence 3, free
        await carol.lock.set(chat, MESSAGE, "fresh", ttl=300)
        await carol.lock.set(chat, MESSAGE, "removed")
        await carol.lock.acquire(chat, MESSAGE, "removed")
        await carol.lock.remove(chat, MESSAGE, "removed")
        # one more bound write, acknowledged last
        await bob.storage.set_channel_metadata(
            room, STREAM, items(c="3"), lock_name="editor", record_author=True
        )

    async def state(self, reader: rtm2.RTMClient) -> tuple[dict[Target, Metadata], Any]:
        metadata = await read_all([reader], self.targets)
        locks = (
            await reader.lock.get(self.room, STREAM),
            await reader.lock.get(self.chat, MESSAGE),
        )
        return metadata, locks

    def check(self, metadata: dict[Target, Metadata], locks: Any) -> None:
        """What the workload must have left, whatever else is true."""
        n = self.names
        chat = metadata[(self.chat, MESSAGE)]
        assert {k: (i.value, i.author) for k, i in chat.items.items()} == {
            "topic": ("news", n["alice"]),
            "mood": ("great", n["bob"]),
        }
        assert chat.items["topic"].update_ts > 0
        room = metadata[(self.room, STREAM)]
        assert {k: i.value for k, i in room.items.items()} == {"a": "1", "b": "2", "c": "3"}
        assert room.items["c"].author == n["bob"]
        assert metadata[(self.gone, STREAM)] == Metadata(0, {})
        for name, user in n.items():
            mine = metadata[(user, None)]
            assert {k: i.value for k, i in mine.items.items()} == {
                "name": user,
                "lang": "fr" if name == "bob" else "en",
            }
        room_locks, chat_locks = locks
        assert room_locks == {
            "editor": LockDetail("editor", n["bob"], 60),
            "history": LockDetail("history", "", 30),
        }
        assert chat_locks == {"fresh": LockDetail("fresh", "", 300)}


async def check_fences(server: ServerProcess, users: Users, work: Workload) -> None:
    """After a restart every lock goes on counting from where it was."""
    n = work.names
    alice = await users.login(server, n["alice"])
    carol = await users.login(server, n["carol"])
    await alice.lock.revoke(work.room, STREAM, "editor", owner=n["bob"])
    assert await alice.lock.acquire(work.room, STREAM, "editor") == 3
    assert await carol.lock.acquire(work.room, STREAM, "history") == 4
    assert await carol.lock.acquire(work.chat, MESSAGE, "fresh") == 1
    await carol.lock.set(work.chat, MESSAGE, "removed")  # it was removed: it can be set again


async def test_acknowledged_writes_survive_a_sigkill(
    own_server: ServerProcess, users: Users, restarts: list[ServerProcess]
) -> None:
    work = Workload()
    await work.run(own_server, users)
    reader = await users.login(own_server, unique("reader"))
    before, locks_before = await work.state(reader)
    work.check(before, locks_before)
    last = max(m.major_revision for m in before.values())

    server = restart(own_server, signal.SIGKILL, restarts)
    reader = await users.login(server, unique("reader"))
    after, locks_after = await work.state(reader)
    assert after == before  # values, revisions, authors and timestamps
    assert locks_after == locks_before
    await check_fences(server, users, work)

    # revisions go on growing from where they were
    await reader.storage.set_channel_metadata(work.chat, MESSAGE, items(after="1"))
    assert (await reader.storage.get_channel_metadata(work.chat, MESSAGE)).major_revision > last


async def test_a_clean_restart_keeps_everything_and_restarts_the_ttl_of_held_locks(
    own_server: ServerProcess, users: Users, restarts: list[ServerProcess]
) -> None:
    work = Workload()
    await work.run(own_server, users)
    # two more held 10 s locks: one owner comes back after the restart, the other does not
    comes_back, stays_away = unique("back-"), unique("away-")
    for user, name in ((comes_back, "kept"), (stays_away, "lost")):
        owner = await users.login(own_server, user)
        await owner.lock.set(work.room, STREAM, name)
        assert await owner.lock.acquire(work.room, STREAM, name) == 1
    reader = await users.login(own_server, unique("reader"))
    before, locks_before = await work.state(reader)

    server = restart(own_server, signal.SIGTERM, restarts)
    started = time.monotonic()
    assert "stopped" in own_server.log()
    observer = await users.login(server, unique("observer"))
    await join(observer, work.room, with_lock=True, with_presence=False)
    _, events = await observer.lock.get_lock_events(work.room, STREAM)
    assert (await events.get(timeout=5)).type is Kind.SNAPSHOT
    after, locks_after = await work.state(observer)
    assert after == before
    assert locks_after == locks_before
    assert locks_after[0]["kept"].owner == comes_back
    assert locks_after[0]["lost"].owner == stays_away

    back = await users.login(server, comes_back)
    await join(back, work.room, with_presence=False)  # in the channel again: keeps "kept"
    waiter = await users.login(server, unique("waiter"))
    wait_lost = asyncio.create_task(waiter.lock.acquire(work.room, STREAM, "lost", retry=True))
    await check_fences(server, users, work)

    # bob (owner of "editor" before) and the absent owner of "lost" did not come back: their
    # locks expire 10 s after the restart ("editor" was revoked meanwhile by check_fences).
    seen = []
    while not any(e.type is Kind.EXPIRED for e in seen):
        seen.append(await events.get(timeout=14 - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    assert 9 <= elapsed <= 13, elapsed
    assert seen[-1] == LockEvent(
        Kind.EXPIRED, work.room, STREAM, {"lost": LockDetail("lost", "", 10)}
    )
    assert await asyncio.wait_for(wait_lost, 5) == 2
    locks = await observer.lock.get(work.room, STREAM)
    assert locks["kept"].owner == comes_back
    assert locks["lost"].owner == uid(waiter)


# --- bursts of multi-item writes ------------------------------------------------------------------


class Burst:
    """``writers`` clients make ``per_writer`` writes each, all at once. A write puts five items:
    four keys of its own (``w<i>k<n>``) and the shared key ``last`` (value: the write's number),
    into one of six channel sets or into its writer's user metadata."""

    def __init__(self, writers: int = 20, per_writer: int = 10) -> None:
        self.writers, self.per_writer = writers, per_writer
        self.total = writers * per_writer
        self.users = [unique(f"w{j}-") for j in range(writers)]
        self.channels: list[Target] = [
            (unique(f"burst{c}-"), MESSAGE if c % 2 else STREAM) for c in range(6)
        ]
        self.salt = os.urandom(4).hex()

    def target(self, i: int) -> Target:
        if i % 4 == 3:
            return (self.users[i % self.writers], None)
        return self.channels[i % len(self.channels)]

    def items(self, i: int) -> list[MetadataItem]:
        own = [MetadataItem(f"w{i}k{n}", f"{i}:{n}:{self.salt}") for n in range(4)]
        return [*own, MetadataItem("last", str(i))]

    @property
    def targets(self) -> list[Target]:
        return self.channels + [(u, None) for u in self.users]

    async def write(self, client: rtm2.RTMClient, i: int) -> None:
        name, ctype = self.target(i)
        if ctype is None:
            await client.storage.set_user_metadata(name, self.items(i))
        else:
            await client.storage.set_channel_metadata(name, ctype, self.items(i))

    def check(self, metadata: dict[Target, Metadata], acked: set[int]) -> set[int]:
        """Every acknowledged write is there whole, every other one whole or not at all, and
        ``last`` names the newest write of its set. Returns the writes found."""
        found: set[int] = set()
        for target, md in metadata.items():
            by_write: dict[int, list[MetadataItem]] = {}
            for key, item in md.items.items():
                if key == "last":
                    continue
                i = int(key[1:].split("k")[0])
                assert self.target(i) == target, key
                assert item.value == f"{i}:{key.split('k')[1]}:{self.salt}", item
                by_write.setdefault(i, []).append(item)
            for i, written in by_write.items():
                assert len(written) == 4, f"write {i} is partial: {written}"
                assert len({item.revision for item in written}) == 1, written
            mine = {i for i in range(self.total) if self.target(i) == target}
            assert acked & mine <= set(by_write), f"acknowledged writes lost: {acked & mine}"
            found |= set(by_write)
            if not by_write:
                assert md == Metadata(0, {})
                continue
            newest = max(by_write, key=lambda i: by_write[i][0].revision)
            assert md.items["last"].value == str(newest)
            assert md.items["last"].revision == by_write[newest][0].revision == md.major_revision
        revisions = [
            item.revision for md in metadata.values() for k, item in md.items.items() if k != "last"
        ]
        assert len(set(revisions)) == len(found)  # one revision per write, never shared
        return found


async def burst_writers(server: ServerProcess, users: Users, burst: Burst) -> list[rtm2.RTMClient]:
    return list(await asyncio.gather(*(users.login(server, u) for u in burst.users)))


async def test_a_burst_of_multi_item_writes_survives_a_sigkill_right_after_the_last_ack(
    own_server: ServerProcess, users: Users, restarts: list[ServerProcess]
) -> None:
    burst = Burst()
    writers = await burst_writers(own_server, users, burst)
    await asyncio.gather(*(burst.write(writers[i % burst.writers], i) for i in range(burst.total)))
    own_server.signal(signal.SIGKILL)  # at once, before anything else can happen

    server = restart(own_server, signal.SIGKILL, restarts, signalled=True)
    readers = [await users.login(server, unique("reader")) for _ in range(2)]
    metadata = await read_all(readers, burst.targets)
    assert burst.check(metadata, set(range(burst.total))) == set(range(burst.total))


async def test_a_sigkill_in_the_middle_of_a_burst_leaves_no_partial_write(
    own_server: ServerProcess, users: Users, restarts: list[ServerProcess]
) -> None:
    burst = Burst()
    writers = await burst_writers(own_server, users, burst)
    acked: set[int] = set()
    killed = False

    async def write(i: int) -> None:
        nonlocal killed
        await burst.write(writers[i % burst.writers], i)
        acked.add(i)
        if len(acked) == burst.total // 2 and not killed:
            killed = True
            own_server.signal(signal.SIGKILL)  # right after the 100th acknowledgement

    results = await asyncio.gather(*(write(i) for i in range(burst.total)), return_exceptions=True)
    assert killed
    failed = [r for r in results if r is not None]
    assert all(isinstance(r, rtm2.RTMError) for r in failed), failed
    assert len(acked) + len(failed) == burst.total
    assert len(acked) >= burst.total // 2

    server = restart(own_server, signal.SIGKILL, restarts, signalled=True)
    readers = [await users.login(server, unique("reader")) for _ in range(2)]
    metadata = await read_all(readers, burst.targets)
    found = burst.check(metadata, acked)
    assert acked <= found
