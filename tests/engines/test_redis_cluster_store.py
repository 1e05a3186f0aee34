"""The engine contract suite (``contract.py``) against the Redis engine on a Redis Cluster.

The same RedisStore as ``test_redis.py``, over ``RedisClusterClient`` on a local 3-master
cluster started for this module: every script must touch one slot only, and every behaviour
must hold whichever master a set or lock lands on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from rtm2.server.engines.redis.cluster import RedisClusterClient
from rtm2.server.engines.redis.storage import RedisStore

from ..redis_cluster import LocalCluster, local_cluster
from .contract import ConcurrencyContract, LockContract, LockQueueContract, MetadataContract


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("store-cluster")) as running:
        yield running


class ClusterHarness:
    """An ``EngineHarness`` over one key prefix of a real Redis Cluster."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.client: RedisClusterClient | None = None
        self.store: RedisStore | None = None

    @property
    def metadata(self) -> RedisStore:
        assert self.store is not None
        return self.store

    @property
    def locks(self) -> RedisStore:
        return self.metadata

    async def start(self) -> None:
        self.client = RedisClusterClient(self.url)
        await self.client.connect()
        self.store = RedisStore(self.client, self.prefix, cluster=True)
        await self.store.open()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.client = self.store = None

    async def restart(self) -> None:
        await self.close()
        await self.start()


@pytest.fixture
async def engine(cluster: LocalCluster, tmp_path: Path) -> AsyncIterator[ClusterHarness]:
    harness = ClusterHarness(cluster.url, f"rtm2test:{uuid4().hex}:")
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


class TestRedisClusterStore(MetadataContract, LockContract, LockQueueContract, ConcurrencyContract):
    pass
