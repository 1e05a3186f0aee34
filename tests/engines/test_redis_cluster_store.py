"""The engine contract suites (``contract.py``, ``roles.py``) against the Redis engine on a
Redis Cluster.

The same RedisStore as ``test_redis.py``, over ``RedisClusterClient`` on a local 3-master
cluster started for this module: every script must touch one slot only, and every behaviour
must hold whichever master a set or lock lands on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest

from rtm2.server.redisio import RedisClusterClient

from ..redis_cluster import LocalCluster, local_cluster
from .contract import ConcurrencyContract, LockContract, LockQueueContract, MetadataContract
from .roles import (
    BrokerContract,
    CrossNodeContract,
    PresenceStoreContract,
    StreamStoreContract,
)
from .test_redis import RedisHarness, RedisRoles


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("store-cluster")) as running:
        yield running


@pytest.fixture
async def engine(cluster: LocalCluster) -> AsyncIterator[RedisHarness]:
    prefix = f"rtm2test:{uuid4().hex}:"
    harness = RedisHarness(prefix, lambda: RedisClusterClient(cluster.url), cluster=True)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


class TestRedisClusterStore(MetadataContract, LockContract, LockQueueContract, ConcurrencyContract):
    pass


@pytest.fixture
async def roles(cluster: LocalCluster) -> AsyncIterator[RedisRoles]:
    harness = RedisRoles(f"{cluster.url}?prefix=rtm2test:{uuid4().hex}:")
    await harness.base.start()
    try:
        yield harness
    finally:
        await harness.close()


class TestRedisClusterRoles(
    StreamStoreContract, PresenceStoreContract, BrokerContract, CrossNodeContract
):
    pass
