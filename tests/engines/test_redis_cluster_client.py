"""RedisClusterClient / RedisClusterSubscriber against a real local 3-master Redis Cluster.

The cluster (``tests/redis_cluster.py``) is the session's (``cluster`` in tests/conftest.py),
started once on free ports and killed at the end. If it does not come up (``.ci/run`` installs
redis-server), the tests fail with the commands' output: they are never skipped.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from rtm2.server.redisio import (
    SLOTS,
    RedisClient,
    RedisClusterClient,
    RedisClusterSubscriber,
    RedisError,
    key_slot,
    parse_cluster_url,
)

from ..redis_cluster import LocalCluster


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[RedisClusterClient]:
    cl = RedisClusterClient(cluster.url)
    await cl.connect()
    yield cl
    await cl.close()


async def node_client(port: int) -> RedisClient:
    node = RedisClient(f"redis://127.0.0.1:{port}/0")
    await node.connect()
    return node


def owner(client: RedisClusterClient, key: str) -> str:
    """The master ("host:port") the client routes ``key`` to."""
    node = client._slots[key_slot(key)]
    return next(name for name, n in client._nodes.items() if n is node)


def random_key(rng: random.Random) -> str:
    chars = string.ascii_letters + string.digits + "{}:-_é"
    key = "".join(rng.choice(chars) for _ in range(rng.randint(1, 24)))
    if rng.random() < 0.4:  # a hash tag somewhere
        key = f"{key[:3]}{{{key[3:8]}}}{key[8:]}"
    return key


def test_parse_cluster_url() -> None:
    assert parse_cluster_url("redis-cluster://a:1,b:2/0?x=y") == [("a", 1), ("b", 2)]
    assert parse_cluster_url("redis-cluster://:pw@h:7000") == [("h", 7000)]
    with pytest.raises(ValueError, match="database 0"):
        parse_cluster_url("redis-cluster://a:1/3")
    with pytest.raises(ValueError, match="not a redis-cluster"):
        parse_cluster_url("redis://a:1")


def test_key_slot_known_values() -> None:
    assert key_slot("foo") == 12182
    assert key_slot("123456789") == 0x31C3 % SLOTS
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    # An empty tag does not count: the whole key is hashed (CRC16 8363), not "bar" (5061).
    assert key_slot("foo{}{bar}") == 8363
    assert key_slot("bar") == 5061
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")
    assert key_slot(b"{a}x") == key_slot("a")


async def test_key_slot_agrees_with_redis(cluster: LocalCluster) -> None:
    rng = random.Random(1)
    keys = [random_key(rng) for _ in range(500)]
    keys += ["{}", "{}a", "a{}b{c}", "{{}}", "}{x}", "{x}{y}", "a{b", "é{ü}"]
    node = await node_client(cluster.ports[0])
    try:
        answers = await asyncio.gather(*(node.send("CLUSTER", "KEYSLOT", k) for k in keys))
    finally:
        await node.close()
    mismatches = [(k, key_slot(k), a) for k, a in zip(keys, answers, strict=True)]
    assert [m for m in mismatches if m[1] != m[2]] == []


async def test_set_get_over_every_master(cluster: LocalCluster, client: RedisClusterClient) -> None:
    assert client.connected
    assert sorted(client.masters()) == sorted(f"127.0.0.1:{p}" for p in cluster.ports)
    prefix = f"t:{uuid4().hex}:"
    keys = [f"{prefix}{i}" for i in range(300)]
    assert {owner(client, k) for k in keys} == set(client.masters())
    assert await asyncio.gather(*(client.send("SET", k, k) for k in keys)) == [b"OK"] * 300
    assert await asyncio.gather(*(client.send("GET", k) for k in keys)) == [
        k.encode() for k in keys
    ]
    # Each key really sits on its slot's master.
    for port in cluster.ports:
        node = await node_client(port)
        try:
            mine = [k for k in keys if owner(client, k) == f"127.0.0.1:{port}"]
            assert mine
            assert await asyncio.gather(*(node.send("GET", k) for k in mine)) == [
                k.encode() for k in mine
            ]
        finally:
            await node.close()
    assert await client.call("DEL", f"{{{prefix}}}x", f"{{{prefix}}}y") == 0  # same slot
    await asyncio.gather(*(client.send("DEL", k) for k in keys))


async def test_keyless_commands(client: RedisClusterClient) -> None:
    assert await client.call("PING") == b"PONG"
    seconds, _ = await client.call("TIME")
    assert abs(int(seconds) - time.time()) < 5
    with pytest.raises(RedisError, match="scan_all"):
        client.send("SCAN", 0)


async def test_eval_per_slot_and_script_load_everywhere(client: RedisClusterClient) -> None:
    prefix = f"e:{uuid4().hex}:"
    keys = [f"{prefix}{i}" for i in range(60)]
    assert {owner(client, k) for k in keys} == set(client.masters())
    script = "return {KEYS[1], redis.call('INCRBY', KEYS[1], ARGV[1])}"
    replies = await asyncio.gather(*(client.send("EVAL", script, 1, k, 5) for k in keys))
    assert replies == [[k.encode(), 5] for k in keys]
    # Two keys in one slot by hash tag.
    two = "return redis.call('MSET', KEYS[1], ARGV[1], KEYS[2], ARGV[1])"
    tagged = [f"{{{prefix}tag}}a", f"{{{prefix}tag}}b"]
    assert await client.call("EVAL", two, 2, *tagged, "v") == b"OK"
    assert await client.call("EVAL", "return 7", 0) == 7
    # Two keys in different slots: Redis's own error, unchanged.
    with pytest.raises(RedisError, match="CROSSSLOT"):
        await client.call("EVAL", two, 2, keys[0], keys[1], "v")
    # SCRIPT LOAD reaches every master, so EVALSHA works whatever the key's slot.
    sha = (await client.call("SCRIPT", "LOAD", script)).decode()
    replies = await asyncio.gather(*(client.send("EVALSHA", sha, 1, k, 1) for k in keys))
    assert replies == [[k.encode(), 6] for k in keys]
    await asyncio.gather(*(client.send("DEL", k) for k in [*keys, *tagged]))


async def test_scan_all_finds_keys_on_every_master(client: RedisClusterClient) -> None:
    prefix = f"s:{uuid4().hex}:"
    keys = [f"{prefix}{i}" for i in range(120)]
    assert {owner(client, k) for k in keys} == set(client.masters())
    await asyncio.gather(*(client.send("SET", k, 1) for k in keys))
    found = await client.scan_all(f"{prefix}*", count=7)
    assert sorted(found) == sorted(k.encode() for k in keys)
    await asyncio.gather(*(client.send("DEL", k) for k in keys))
    assert await client.scan_all(f"{prefix}*") == []


async def test_sharded_pubsub(cluster: LocalCluster, client: RedisClusterClient) -> None:
    received: list[tuple[bytes, bytes]] = []
    lost: list[None] = []
    sub = RedisClusterSubscriber(
        cluster.url, lambda ch, data: received.append((ch, data)), lambda: lost.append(None)
    )
    await sub.connect()
    try:
        assert sorted(sub.masters()) == sorted(client.masters())
        channels = [f"c:{uuid4().hex}:{i}" for i in range(50)]
        assert {owner(client, c) for c in channels} == set(client.masters())
        for channel in channels:
            sub.subscribe(channel)

        async def wait_receivers(expected: int) -> None:
            # SSUBSCRIBE has no reply we wait for: probe until each shard counts us.
            deadline = time.monotonic() + 10
            while True:
                counts = await asyncio.gather(
                    *(client.send("SPUBLISH", c, b"probe") for c in channels)
                )
                if all(n == expected for n in counts):
                    return
                assert time.monotonic() < deadline, counts
                await asyncio.sleep(0.02)

        await wait_receivers(1)
        sent = await asyncio.gather(*(client.send("SPUBLISH", c, f"msg-{c}") for c in channels))
        assert sent == [1] * 50
        deadline = time.monotonic() + 5
        while len([r for r in received if r[1] != b"probe"]) < 50:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        real = sorted(r for r in received if r[1] != b"probe")
        assert real == sorted((c.encode(), f"msg-{c}".encode()) for c in channels)

        for channel in channels:
            sub.unsubscribe(channel)
        await wait_receivers(0)
        received.clear()
        assert (
            await asyncio.gather(*(client.send("SPUBLISH", c, "late") for c in channels))
            == [0] * 50
        )
        await asyncio.sleep(0.2)
        assert received == []
        assert lost == []
    finally:
        await sub.close()


async def test_stale_slot_map_is_refreshed_on_moved(
    client: RedisClusterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshes: list[None] = []
    real_refresh = client._refresh

    async def counted() -> None:
        refreshes.append(None)
        await real_refresh()

    monkeypatch.setattr(client, "_refresh", counted)
    right = list(client._slots)
    client._slots = [right[0]] * SLOTS  # every slot on the first master: mostly wrong
    prefix = f"m:{uuid4().hex}:"
    keys = [f"{prefix}{i}" for i in range(90)]
    # send() (futures) and call() both follow MOVED; concurrent ones share one refresh.
    assert await asyncio.gather(*(client.send("SET", k, k) for k in keys)) == [b"OK"] * 90
    assert client._slots == right
    assert len(refreshes) == 1
    client._slots = [right[-1]] * SLOTS
    assert [await client.call("GET", k) for k in keys] == [k.encode() for k in keys]
    assert client._slots == right
    assert len(refreshes) == 2  # only the first wrong call() needed one
    await asyncio.gather(*(client.send("DEL", k) for k in keys))


async def test_ask_redirection_during_slot_import(
    cluster: LocalCluster, client: RedisClusterClient
) -> None:
    key = f"a:{uuid4().hex}"
    source_name = owner(client, key)
    target_name = next(m for m in client.masters() if m != source_name)
    slot = key_slot(key)
    source = await node_client(int(source_name.rpartition(":")[2]))
    target = await node_client(int(target_name.rpartition(":")[2]))
    try:
        source_id = (await source.call("CLUSTER", "MYID")).decode()
        target_id = (await target.call("CLUSTER", "MYID")).decode()
        await target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        await source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        try:
            # The key is not on the source: it answers ASK, the target (after ASKING) serves.
            with pytest.raises(RedisError, match="ASK"):
                await source.call("SET", key, "x")
            assert await client.call("SET", key, "v") == b"OK"
            assert await client.call("GET", key) == b"v"
            assert await target.call("DBSIZE") >= 1
            assert await client.call("DEL", key) == 1
        finally:
            await source.call("CLUSTER", "SETSLOT", slot, "STABLE")
            await target.call("CLUSTER", "SETSLOT", slot, "STABLE")
        assert owner(client, key) == source_name
        assert await client.call("GET", key) is None
    finally:
        await source.close()
        await target.close()


async def test_not_connected(cluster: LocalCluster) -> None:
    cl = RedisClusterClient(cluster.url)
    assert not cl.connected
    with pytest.raises(RedisError):
        cl.send("GET", "x")
    bad = RedisClusterClient("redis-cluster://127.0.0.1:1")
    with pytest.raises(RedisError, match="slot map"):
        await bad.connect()


async def test_a_subscriber_follows_a_channel_whose_slot_moves_to_another_master(
    cluster: LocalCluster, client: RedisClusterClient
) -> None:
    received: list[bytes] = []
    moved: list[str] = []
    sub = RedisClusterSubscriber(
        cluster.url,
        lambda ch, data: received.append(data),
        lambda: None,
        on_moved=moved.append,
    )
    await sub.connect()
    channel = f"mv:{uuid4().hex}"
    slot = key_slot(channel)
    try:
        sub.subscribe(channel)
        await sub.ready(channel)
        assert await client.call("SPUBLISH", channel, b"before") == 1
        source = cluster.owner_of(slot)
        target = next(p for p in cluster.ports if p != source)
        await asyncio.to_thread(cluster.migrate_slot, slot, target)
        await sub.ready(channel)  # followed to the new master
        # Redis drops a slot's subscribers on every master told the slot's new owner, the
        # new owner too, so the move may be reported once or twice, never for another channel.
        assert moved
        assert set(moved) == {channel}
        assert cluster.owner_of(slot) == target
        await client.refresh()
        assert await client.call("SPUBLISH", channel, b"after") == 1
        deadline = time.monotonic() + 5
        while received != [b"before", b"after"]:
            assert time.monotonic() < deadline, received
            await asyncio.sleep(0.01)
        sub.unsubscribe(channel)
        await asyncio.sleep(0.1)
        assert await client.call("SPUBLISH", channel, b"gone") == 0
    finally:
        await sub.close()


async def test_a_script_on_keys_being_migrated_is_retried_not_failed(
    cluster: LocalCluster, client: RedisClusterClient
) -> None:
    tag = uuid4().hex
    keys = [f"{{{tag}}}:a", f"{{{tag}}}:b"]
    slot = key_slot(keys[0])
    await client.call("MSET", keys[0], "1", keys[1], "2")
    source = cluster.owner_of(slot)
    target = next(p for p in cluster.ports if p != source)
    target_id = cluster.begin_migration(slot, target)
    cluster.move_key(source, target, keys[0])
    script = "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])"
    pending = asyncio.ensure_future(client.call("EVAL", script, 2, *keys))  # keys split
    await asyncio.sleep(0.1)
    assert not pending.done()  # TRYAGAIN, retried
    cluster.move_key(source, target, keys[1])
    cluster.end_migration(slot, target_id)
    assert await asyncio.wait_for(pending, 5) == b"12"
    await client.call("DEL", *keys)


async def test_a_command_answered_ask_waits_for_an_earlier_one_answered_tryagain(
    cluster: LocalCluster, client: RedisClusterClient
) -> None:
    # Mid-migration, the first script's keys are split between the masters (TRYAGAIN, retried
    # later); the second's are all gone from the source (ASK, runnable on the target at once).
    # Both append to one list: the second must still run after the first.
    tag = uuid4().hex
    a, b, log = f"{{{tag}}}:a", f"{{{tag}}}:b", f"{{{tag}}}:log"
    slot = key_slot(a)
    await client.call("MSET", a, "1", b, "2")
    source = cluster.owner_of(slot)
    target = next(p for p in cluster.ports if p != source)
    target_id = cluster.begin_migration(slot, target)
    cluster.move_key(source, target, a)
    push = "return redis.call('RPUSH', KEYS[#KEYS], ARGV[1])"
    first = client.send("EVAL", push, 3, a, b, log, "first")  # a moved, b not: TRYAGAIN
    second = client.send("EVAL", push, 1, log, "second")  # log on neither: ASK
    await asyncio.sleep(0.1)
    assert not first.done()
    assert not second.done()  # behind the first's redirection
    cluster.move_key(source, target, b)
    cluster.end_migration(slot, target_id)
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert await client.call("LRANGE", log, 0, -1) == [b"first", b"second"]
    await client.call("DEL", a, b, log)


async def test_commands_for_a_moved_slot_keep_their_order_through_the_redirection(
    client: RedisClusterClient,
) -> None:
    key = f"order:{uuid4().hex}"
    right = list(client._slots)
    wrong = next(n for n in client._nodes.values() if n is not right[key_slot(key)])
    client._slots = [wrong] * SLOTS  # a stale map: the first pushes meet MOVED
    pushes = []
    for i in range(300):
        pushes.append(client.send("RPUSH", key, i))
        if i % 10 == 0:
            await asyncio.sleep(0.001)  # later pushes leave after the map was read again
    await asyncio.gather(*pushes)
    assert await client.call("LRANGE", key, 0, -1) == [b"%d" % i for i in range(300)]
    await client.call("DEL", key)
