"""The Redis engine: the roles of ``engines.base`` on Redis, shared by every node.

Each role has its file: ``broker`` (events between nodes, message numbering), ``stream``
(stream-channel membership and publishers), ``presence``, ``metadata``, ``locks``,
``recovery`` (the buffers a resuming client reads) and ``nodes`` (who is alive, and what a
dead node left behind). This module assembles them on one Redis connection, or one Redis
Cluster client; ``common`` holds what they share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ...redisio import Commands, RedisClient, RedisClusterClient, Script, redact_url
from ..base import BusHandler
from .bans import RedisBanStore
from .broker import RedisBroker
from .history import RedisHistoryStore
from .locks import RedisLockStore
from .metadata import RedisMetadataStore
from .nodes import RedisNodes
from .outbox import RedisOutbox
from .presence import RedisPresenceStore
from .recovery import RedisRecoveryStore
from .stream import RedisStreamStore

__all__ = ["RedisEngine", "RedisStore"]

log = logging.getLogger("rtm2.server")


class RedisStore(RedisMetadataStore, RedisLockStore):
    """Implements ``MetadataStore`` and ``LockStore`` on one client, as the engine uses them
    (a channel's metadata and locks share a slot: a write can be bound to a lock)."""

    scripts: Sequence[Script] = (*RedisMetadataStore.scripts, *RedisLockStore.scripts)


class RedisEngine:
    """Many nodes, one Redis: ``rtm2 serve --engine redis://host:port/db``, or a Redis Cluster:
    ``redis-cluster://host:port,host:port,...`` (every key of a channel shares a hash tag, so
    every script runs in one slot; pub/sub is sharded)."""

    shared = True  # other nodes use the same Redis

    def __init__(self, url: str, prefix: str = "rtm2:") -> None:
        # ``?prefix=...`` in the URL namespaces every key and channel (one Redis, several
        # independent deployments or test runs).
        base, _, query = url.partition("?")
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "prefix" and value:
                prefix = value
        self.url = base
        self.prefix = prefix
        self.cluster = base.startswith("redis-cluster://")
        self._client: Commands
        if self.cluster:
            self._client = RedisClusterClient(self.url)
        else:
            self._client = RedisClient(self.url)
        self.stream_store = RedisStreamStore(self._client, prefix)
        self.presence_store = RedisPresenceStore(self._client, prefix)
        self.metadata_store = self.lock_store = RedisStore(self._client, prefix, self.cluster)
        self.recovery_store = RedisRecoveryStore(self._client, prefix)
        self.ban_store = RedisBanStore(self._client, prefix, self.url, self.cluster)
        self.history_store = RedisHistoryStore(self._client, prefix)
        self._nodes = RedisNodes(self._client, prefix)
        self.event_outbox = RedisOutbox(self._client, prefix)
        self._brokers: list[RedisBroker] = []

    def make_broker(self, handler: BusHandler, gap: Callable[[str | None], None]) -> RedisBroker:
        broker = RedisBroker(self._client, self.url, self.prefix, handler, gap, self.cluster)
        self._brokers.append(broker)
        return broker

    async def start(self) -> None:
        await self._client.connect()
        await self.metadata_store.open()
        for broker in self._brokers:
            await broker.start()
        await self.ban_store.start()
        log.info("engine: redis at %s (key prefix %r)", redact_url(self.url), self.prefix)

    async def close(self) -> None:
        for broker in self._brokers:
            await broker.close()
        await self.ban_store.close()
        await self._client.close()

    def note(self, node: str, fields: list[str]) -> None:
        self._nodes.note(node, fields)

    def unnote(self, node: str, fields: list[str]) -> None:
        self._nodes.unnote(node, fields)

    async def heartbeat(self, node: str, descriptor: bytes = b"", ttl: float = 0.0) -> None:
        await self._nodes.heartbeat(node, descriptor, ttl)

    async def ping(self) -> None:
        await self._client.call("PING")

    async def orphans(self, node: str, timeout: float) -> list[list[str]]:
        return await self._nodes.orphans(node, timeout)

    async def live_nodes(self, timeout: float) -> list[str]:
        return await self._nodes.live(timeout)

    async def node_descriptors(self, timeout: float) -> dict[str, bytes]:
        return await self._nodes.descriptors(timeout)
