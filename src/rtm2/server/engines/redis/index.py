"""Per node, what its sessions hold in Redis: what to clean up if the node dies.

Entries are MessagePack lists ``[kind, *fields, member]`` in a set per node; the member (a
session id, ``<node>-<n>``) names the node. ``RedisEngine.orphans`` hands a dead node's entries
to one live node, which undoes each of them.
"""

from __future__ import annotations

import contextlib

import msgspec

from ...redisio import Commands, RedisError

__all__ = ["NodeIndex", "node_of"]

_encode = msgspec.msgpack.Encoder().encode


def node_of(member: str) -> str:
    """Session ids are ``<node>-<n>``: the node that holds a membership."""
    return member.split("-", 1)[0]


class NodeIndex:
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
