"""Redis I/O that knows nothing of RTM: a pipelined RESP client and pub/sub connection
(``resp``), the same over a Redis Cluster (``cluster``, ``slots``), Lua scripts (``script``)
and hash tags (``keys``). It imports nothing of rtm2 outside itself."""

from __future__ import annotations

from .cluster import RedisClusterClient, RedisClusterSubscriber
from .keys import hash_tag, unescape_tag
from .resp import (
    Arg,
    Commands,
    RedisClient,
    RedisError,
    RedisSubscriber,
    Subscriber,
    redact_url,
)
from .script import Script, load, run, send
from .slots import SLOTS, key_slot, parse_cluster_url

__all__ = [
    "SLOTS",
    "Arg",
    "Commands",
    "RedisClient",
    "RedisClusterClient",
    "RedisClusterSubscriber",
    "RedisError",
    "RedisSubscriber",
    "Script",
    "Subscriber",
    "hash_tag",
    "key_slot",
    "load",
    "parse_cluster_url",
    "redact_url",
    "run",
    "send",
    "unescape_tag",
]
