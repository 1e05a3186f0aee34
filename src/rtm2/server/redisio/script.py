"""Lua scripts: the one way this package runs them.

Redis runs a script atomically, and names it by the SHA1 of its source (EVALSHA), so a
script is sent whole only when Redis does not know it: after a restart, a failover or
SCRIPT FLUSH it answers NOSCRIPT, and ``run`` sends the source with EVAL, which caches it
again. ``send`` queues a script without waiting for it (a hot path that cannot afford a task
per call); it needs the script in the cache, which ``Commands.preload`` puts there on every
connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .resp import Arg, Commands, RedisError, script_sha

__all__ = ["Script", "load", "run", "send"]


class Script:
    """A Lua script and its SHA1, which is how Redis names it in EVALSHA."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = script_sha(source)

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha})"


async def load(client: Commands, scripts: Sequence[Script]) -> None:
    """Put ``scripts`` into the Redis script cache (so that EVALSHA finds them)."""
    shas = [client.send("SCRIPT", "LOAD", script.source) for script in scripts]
    for script, future in zip(scripts, shas, strict=True):
        sha = await future
        if (sha.decode() if isinstance(sha, bytes) else sha) != script.sha:
            raise RedisError(f"Redis named script {script.name} {sha!r}, not {script.sha}")


async def run(client: Commands, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run ``script`` by SHA1, sending its source only if Redis does not know it."""
    try:
        return await client.call("EVALSHA", script.sha, len(keys), *keys, *args)
    except RedisError as exc:
        if not str(exc).startswith("NOSCRIPT"):
            raise
    return await client.call("EVAL", script.source, len(keys), *keys, *args)


def send(
    client: Commands, script: Script, keys: Sequence[str], args: Sequence[Arg]
) -> asyncio.Future[Any]:
    """Queue ``script`` by SHA1; the future holds its reply. For scripts preloaded on the
    client. Raises ``RedisError`` at once when the client is not connected."""
    return client.send("EVALSHA", script.sha, len(keys), *keys, *args)
