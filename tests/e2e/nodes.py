"""Several ``rtm2 serve`` nodes sharing one Redis under a key prefix of their own."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..conftest import ServerProcess

__all__ = ["REDIS", "RedisNodes", "redis_nodes"]

REDIS = "redis://127.0.0.1:6379/0"


class RedisNodes:
    """Starts nodes on one Redis key prefix (each in its own folder); ``stop`` stops them all
    and deletes the prefix's keys."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
        self.started: list[ServerProcess] = []

    def start(
        self, name: str, http: bool = False, timers: dict[str, float] | None = None
    ) -> ServerProcess:
        engine = f'"{REDIS}?prefix={self.prefix}"'
        node = ServerProcess(
            self.tmp_path / name, timers=timers, server={"engine": engine}, http=http
        )
        node.workdir.mkdir()
        self.started.append(node)
        return node.start()

    def stop(self) -> None:
        for node in self.started:
            node.stop()
        keys = subprocess.run(
            ["redis-cli", "--scan", "--pattern", f"{self.prefix}*"], capture_output=True, text=True
        ).stdout.split()
        if keys:
            subprocess.run(["redis-cli", "DEL", *keys], capture_output=True)


@contextmanager
def redis_nodes(tmp_path: Path) -> Iterator[RedisNodes]:
    nodes = RedisNodes(tmp_path)
    try:
        yield nodes
    finally:
        nodes.stop()
