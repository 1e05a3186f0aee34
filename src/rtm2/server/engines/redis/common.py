"""What the Redis engine's roles share: key names and the one Redis-failure guard.

Every key of a channel (or user, or lock scope) carries its name as the hash tag, escaped
(``redisio.hash_tag``), so that with Redis Cluster a channel's keys, scripts and sharded
pub/sub all live in one slot and every script touches one slot only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from ...redisio import Arg, Commands, RedisError, Script, hash_tag, load, run
from ..base import EngineUnavailable, subject_app
from .nodes import NodeIndex

__all__ = ["ScriptedStore", "glob_escape", "guard", "scan", "tagged"]

log = logging.getLogger("rtm2.server")

T = TypeVar("T")


def tagged(prefix: str, name: str) -> str:
    """The start of every key (and the pub/sub channel) of ``name``: ``{prefix}{<tag>}``."""
    return f"{prefix}{{{hash_tag(name)}}}"


def glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN ``MATCH`` pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


async def scan(client: Commands, pattern: str, count: int = 1000) -> list[bytes]:
    """Every key matching ``pattern``: on a Redis Cluster client (``scan_all``) on every
    master, else with SCAN's cursor. A key may come twice from SCAN: made unique here."""
    scan_all = getattr(client, "scan_all", None)
    if scan_all is not None:
        keys: list[bytes] = await scan_all(pattern)
        return list(dict.fromkeys(keys))
    found: dict[bytes, None] = {}
    cursor: Any = 0
    while True:
        cursor, batch = await client.call("SCAN", cursor, "MATCH", pattern, "COUNT", count)
        found.update(dict.fromkeys(batch))
        if cursor in (b"0", 0):
            return list(found)


async def guard(pending: Awaitable[T]) -> T:
    """Await a Redis call; a Redis failure is the engine's one error."""
    try:
        return await pending
    except RedisError as exc:
        raise EngineUnavailable(f"redis: {exc}") from None


class ScriptedStore:
    """The base of the metadata and lock stores: keys named by target (or lock scope), and
    compare-and-set scripts whose failure to run is an outcome, not an exception.

    The client belongs to the caller (the engine), which connects and closes it; ``open()``
    loads the store's scripts once connected.
    """

    scripts: Sequence[Script] = ()

    def __init__(self, client: Commands, prefix: str = "rtm2:", cluster: bool = False) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a key prefix may not contain braces: {prefix!r}")
        self.client = client
        self.prefix = prefix
        self.cluster = cluster
        # One counter for all sets: revisions grow across sets too.
        self._revision_key = f"{prefix}revision"
        self.index = NodeIndex(client, prefix)

    async def open(self) -> None:
        await load(self.client, self.scripts)

    def app_key(self, subject: str) -> str:
        """The hash of the app of ``subject`` (a target or lock scope): its row counts
        ("locks", "metadata") and the fencing floor of its removed locks ("fence"). Its
        hash tag is the app's, which no channel's is: with Redis Cluster it is in another
        slot than any channel's keys, and in one slot with the app's other keys."""
        return f"{self.prefix}{{app:{hash_tag(subject_app(subject))}}}"

    def key(self, target: str, kind: str) -> str:
        """The key of ``kind`` ("meta", "locks", "fences") of a target or lock scope."""
        return f"{self.prefix}{{{hash_tag(target)}}}:{kind}"

    async def _run(self, script: Script, keys: list[str], args: list[Arg]) -> list[Any] | str:
        """The script's reply, or why Redis could not run it."""
        try:
            reply: list[Any] = await run(self.client, script, keys, args)
        except RedisError as exc:
            log.error("storage: Redis failed running %s: %s", script.name, exc)
            return f"Redis is not available ({exc}); the change may or may not have been made"
        return reply
