"""The engine contract suites (``contract.py``, ``roles.py``) against the Redis engine on a
Redis Cluster.

The same RedisStore as ``test_redis.py``, over ``RedisClusterClient`` on a local 3-master
cluster started for this module: every script must touch one slot only, and every behaviour
must hold whichever master a set or lock lands on.
"""

from __future__ import annotations

import pytest

from rtm2.server.engines import base
from rtm2.server.engines.base import LockInfo
from rtm2.server.redisio import RedisClusterClient

from .bans import BanStoreContract
from .conftest import RedisHarness, RedisRoles
from .contract import ConcurrencyContract, LockContract, LockQueueContract, MetadataContract
from .roles import (
    BrokerContract,
    CrossNodeContract,
    NodesContract,
    PresenceStoreContract,
    StreamStoreContract,
)


@pytest.fixture
def engine(cluster_engine: RedisHarness) -> RedisHarness:
    return cluster_engine


class TestRedisClusterStore(MetadataContract, LockContract, LockQueueContract, ConcurrencyContract):
    pass


@pytest.fixture
async def bans(engine: RedisHarness) -> RedisHarness:
    return engine


class TestRedisClusterBans(BanStoreContract):
    pass


@pytest.fixture
def roles(cluster_roles: RedisRoles) -> RedisRoles:
    return cluster_roles


class TestRedisClusterRoles(
    StreamStoreContract, PresenceStoreContract, BrokerContract, CrossNodeContract, NodesContract
):
    pass


async def test_removed_locks_keep_a_bounded_number_of_fences_by_name(
    engine: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "FENCES_KEPT", 3)
    for i in range(10):  # each L starts at the floor (0, rising to 2 as fences are forgotten)
        scope = f"msg:app1:room{i}"
        assert (await engine.locks.set(scope, "L", 30, 10)).code == 0
        assert (await engine.locks.acquire(scope, "L", "alice")).code == 0
        assert (await engine.locks.remove(scope, "L")).code == 0
    client = engine.client
    assert isinstance(client, RedisClusterClient)
    fences = await client.scan_all(f"{engine.prefix}*:fences")
    app = engine.metadata.app_key("msg:app1:room0")
    scopes = [key for key in fences if key != f"{app}:fences".encode()]
    assert sum([await client.call("HLEN", key) for key in scopes]) == 3
    assert await client.call("HLEN", f"{app}:fences") == 3
    for i, fence in ((0, 3), (9, 4)):  # forgotten (starts at the floor); kept (goes on)
        assert (await engine.locks.set(f"msg:app1:room{i}", "L", 30, 10)).code == 0
        acquired = await engine.locks.acquire(f"msg:app1:room{i}", "L", "bob")
        assert acquired.lock == LockInfo("L", 30, "bob", fence)
