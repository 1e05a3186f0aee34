"""What this process's Redis connections did, for the server's metrics: command latency (one
command in ``SAMPLE`` timed, by a small fixed set of kinds, never by key) and reconnects.

Process-wide: a server process has one engine, and the clients of a Redis Cluster (one per
master) add up into the same figures.
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import Any

__all__ = ["BUCKETS", "KINDS", "SAMPLE", "STATS", "RedisStats", "kind_of"]

SAMPLE = 64  # a power of two: one command in this many is timed
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
KINDS = ("script", "publish", "read", "write", "other")

_KIND = {
    **dict.fromkeys((b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL"), "script"),
    **dict.fromkeys((b"PUBLISH", b"SPUBLISH"), "publish"),
    **dict.fromkeys(
        (b"GET", b"MGET", b"HGET", b"HGETALL", b"HLEN", b"SMEMBERS", b"SCAN", b"ZRANGE", b"EXISTS"),
        "read",
    ),
    **dict.fromkeys(
        (b"SET", b"DEL", b"HSET", b"HDEL", b"SADD", b"SREM", b"EXPIRE", b"PEXPIRE", b"ZADD"),
        "write",
    ),
}


def kind_of(command: Any) -> str:
    name = command.upper() if isinstance(command, bytes) else str(command).upper().encode()
    return _KIND.get(name, "other")


class RedisStats:
    __slots__ = ("buckets", "reconnects", "sent", "sums")

    def __init__(self) -> None:
        self.sent = 0  # commands sent (the sampling counter)
        self.buckets = {kind: [0] * (len(BUCKETS) + 1) for kind in KINDS}
        self.sums = dict.fromkeys(KINDS, 0.0)
        # Connections re-established after a loss: "command" and "pubsub".
        self.reconnects = {"command": 0, "pubsub": 0}

    def timer(self, command: Any) -> Any:
        """A done-callback that times the command from now to its reply."""
        kind, start = kind_of(command), perf_counter()

        def done(_: object) -> None:
            seconds = perf_counter() - start
            self.buckets[kind][bisect_left(BUCKETS, seconds)] += 1
            self.sums[kind] += seconds

        return done


STATS = RedisStats()
