"""Several ``rtm2 serve`` nodes sharing one Redis (or a Redis Cluster) under a key prefix of
their own."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..conftest import ServerProcess

__all__ = ["REDIS", "RedisNodes", "forget", "redis_nodes"]

REDIS = "redis://127.0.0.1:6379/0"


class RedisNodes:
    """Starts nodes (``kind``: ``ServerProcess`` or a subclass with apps of its own) on one key
    prefix of the Redis at ``url`` (each node in its own folder); ``stop`` stops them all and,
    on the shared Redis, deletes the prefix's keys (a test cluster is thrown away whole)."""

    def __init__(
        self, tmp_path: Path, url: str = REDIS, kind: type[ServerProcess] = ServerProcess
    ) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.kind = kind
        self.prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
        self.started: list[ServerProcess] = []

    def start(
        self, name: str, http: bool = False, timers: dict[str, float] | None = None
    ) -> ServerProcess:
        engine = f'"{self.url}?prefix={self.prefix}"'
        node = self.kind(self.tmp_path / name, timers=timers, server={"engine": engine}, http=http)
        node.workdir.mkdir()
        self.started.append(node)
        return node.start()

    def stop(self) -> None:
        for node in self.started:
            node.stop()
        if self.url == REDIS:
            forget(self.prefix)


def forget(prefix: str) -> None:
    """Delete every key under ``prefix`` on the shared Redis."""
    keys = subprocess.run(
        ["redis-cli", "--scan", "--pattern", f"{prefix}*"], capture_output=True, text=True
    ).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "DEL", *keys], capture_output=True)


@contextmanager
def redis_nodes(
    tmp_path: Path, url: str = REDIS, kind: type[ServerProcess] = ServerProcess
) -> Iterator[RedisNodes]:
    nodes = RedisNodes(tmp_path, url, kind)
    try:
        yield nodes
    finally:
        nodes.stop()
