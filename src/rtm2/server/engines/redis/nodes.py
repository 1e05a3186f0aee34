"""Nodes in Redis: which are alive, and what each one's sessions hold, to clean up after it.

Every node marks itself alive on each sweep (``{prefix}nodes``, a sorted set scored by Redis's
clock). Per node, a set holds what its sessions hold in Redis: MessagePack lists
``[kind, *fields, member]``; the member (a session id, ``<node>-<n>``) names the node. When a
node stays silent, one live node claims its set and undoes each entry. Each node also keeps
its descriptor (what /v1/info tells of it) under ``{prefix}{node:<id>}:info``, with a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

import msgspec

from ...redisio import Commands, RedisError

__all__ = ["NodeIndex", "RedisNodes", "node_of"]

log = logging.getLogger("rtm2.server")

_encode = msgspec.msgpack.Encoder().encode


def node_of(member: str) -> str:
    """Session ids are ``<node>-<n>``: the node that holds a membership."""
    return member.split("-", 1)[0]


class NodeIndex:
    """What each node's sessions hold in Redis. Fire and forget: losing an entry while Redis
    is down costs only a clean-up should the node die."""

    def __init__(self, client: Commands, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def key(self, node: str) -> str:
        return f"{self._prefix}{{node:{node}}}:index"

    def add(self, member: str, *fields: str) -> None:
        with contextlib.suppress(RedisError):
            self._client.send("SADD", self.key(node_of(member)), _encode([*fields, member]))

    def remove(self, member: str, *fields: str) -> None:
        with contextlib.suppress(RedisError):
            self._client.send("SREM", self.key(node_of(member)), _encode([*fields, member]))


class RedisNodes:
    """Which nodes are alive; what the dead ones left behind (see ``Engine.orphans``)."""

    def __init__(self, client: Commands, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self.index = NodeIndex(client, prefix)

    def note(self, node: str, fields: list[str]) -> None:
        self.index.add(f"{node}-0", *fields)

    def unnote(self, node: str, fields: list[str]) -> None:
        self.index.remove(f"{node}-0", *fields)

    def info_key(self, node: str) -> str:
        return f"{self._prefix}{{node:{node}}}:info"

    async def heartbeat(self, node: str, descriptor: bytes = b"", ttl: float = 0.0) -> None:
        """Tell the other nodes this one is alive, and what it is (``descriptor``): a key of
        its own that expires by itself after ``ttl`` s, should the node die."""
        with contextlib.suppress(RedisError):
            now = await self._client.call("TIME")
            await self._client.call("ZADD", f"{self._prefix}nodes", int(now[0]), node)
            if descriptor:
                seconds = max(1, math.ceil(ttl))
                await self._client.call("SET", self.info_key(node), descriptor, "EX", seconds)

    async def descriptors(self, timeout: float) -> dict[str, bytes]:
        """The descriptors of the nodes alive as in ``live`` (one GET each: the keys are in
        other slots of a Redis Cluster); a dead node's key may outlive it, never its entry."""
        nodes = await self.live(timeout)
        try:
            found = await asyncio.gather(
                *(self._client.call("GET", self.info_key(node)) for node in nodes)
            )
        except RedisError:
            return {}
        return {node: bytes(raw) for node, raw in zip(nodes, found, strict=True) if raw}

    async def orphans(self, node: str, timeout: float) -> list[list[str]]:
        """What the nodes silent for ``timeout`` seconds left behind, taken over (once, by
        one node) for clean-up: entries ``[kind, *fields, member]``."""
        nodes = f"{self._prefix}nodes"
        index = self.index
        found: list[list[str]] = []
        try:
            now = int((await self._client.call("TIME"))[0])
            dead = await self._client.call("ZRANGEBYSCORE", nodes, "-inf", now - timeout)
            for raw in dead:
                gone = raw.decode()
                if gone == node:
                    continue
                claim = f"{self._prefix}{{node:{gone}}}:sweeper"
                if not await self._client.call("SET", claim, node, "NX", "EX", 60):
                    continue  # another node is on it
                entries = await self._client.call("SMEMBERS", index.key(gone))
                await self._client.call("DEL", index.key(gone), self.info_key(gone))
                await self._client.call("ZREM", nodes, gone)
                found += [list(msgspec.msgpack.decode(e)) for e in entries]
                log.warning("engine: node %s is gone; cleaning up %d entries", gone, len(entries))
        except RedisError as exc:
            log.warning("engine: sweep for dead nodes failed: %s", exc)
        return found

    async def live(self, timeout: float) -> list[str]:
        """Nodes heard from within ``timeout`` s (Redis's clock, as the heartbeats)."""
        try:
            now = int((await self._client.call("TIME"))[0])
            raw = await self._client.call(
                "ZRANGEBYSCORE", f"{self._prefix}nodes", now - timeout, "+inf"
            )
        except RedisError:
            return []
        return sorted(n.decode() for n in raw)
