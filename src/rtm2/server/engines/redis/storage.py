"""Metadata and locks of the Redis engine: shared by every node of a deployment.

Unlike the embedded engine, no node may keep the truth in its memory: any node can write any
set or lock. So every read goes to Redis and every compare-and-set is one Lua script
(``scripts``), which Redis runs atomically; checks, error codes and their order are those of
``SQLiteStore``. A write is acknowledged once its script has returned: Redis then holds it,
and how it survives a Redis restart (AOF, RDB, replicas) is the deployment's choice.

Key layout (``prefix`` defaults to ``rtm2:``), made for Redis Cluster: every key of one
metadata set or lock scope carries the target (scope) as its hash tag, so a script touching
them stays in one slot, and a channel's metadata set and its locks (channel target == lock
scope) share one slot too, which a write bound to a lock needs::

    {prefix}{<target>}:meta     hash: "#" -> major revision, "." + key -> item (MessagePack)
    {prefix}{<scope>}:locks     hash: lock name -> [name, ttl, owner, fence] (MessagePack)
    {prefix}{<scope>}:fences    hash: removed lock name -> its last fencing number
    {prefix}{<scope>}:queue:<name>  list: tickets waiting for the lock, first come first
    {prefix}revision            the revision counter (one for all sets, see scripts.py;
                                with Redis Cluster read before the write's script)

Targets go into the tag escaped (``%`` -> ``%25``, ``{`` -> ``%7B``, ``}`` -> ``%7D``): Redis
takes the tag up to the first ``}``, so a brace in a name would otherwise cut it short. The
escape is reversible, which ``held()`` needs to name the scope of each lock key it finds, and
keeps keys readable in redis-cli (a digest would do neither).

A Redis error (connection lost, script failure) makes a write or lock change answer
STORAGE_NOT_AVAILABLE / LOCK_NOT_AVAILABLE; it may or may not have been applied. Reads
raise ``EngineUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import msgspec

from ....errors import ErrorCode
from ...redisio import Arg, Commands, RedisError, Script, hash_tag, load, run, unescape_tag
from ..base import (
    OP_REMOVE,
    OP_SET,
    OP_UPDATE,
    EngineUnavailable,
    Item,
    ItemWrite,
    LockInfo,
    LockOutcome,
    Metadata,
    WriteOutcome,
)
from .index import NodeIndex
from .scripts import (
    LOCK_ACQUIRE,
    LOCK_FREE,
    LOCK_REMOVE,
    LOCK_SET,
    LOCK_WITHDRAW,
    METADATA_WRITE,
    SCRIPTS,
)

__all__ = ["RedisStore"]

log = logging.getLogger("rtm2.server")

_ITEM = msgspec.msgpack.Decoder(Item)
_LOCK = msgspec.msgpack.Decoder(LockInfo)
_MAJOR = b"#"
_SCAN_COUNT = 1000


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


class RedisStore:
    """Implements ``MetadataStore`` and ``LockStore`` on one Redis connection.

    The client belongs to the caller (the engine), which connects and closes it; ``open()``
    loads the scripts once connected.
    """

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
        await load(self.client, SCRIPTS)

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

    # --- metadata ------------------------------------------------------------------------

    async def read(self, target: str) -> Metadata:
        return _metadata(await self._read("HGETALL", self.key(target, "meta")))

    async def write(
        self,
        target: str,
        op: int,
        items: list[ItemWrite],
        major_revision: int,
        author: str,
        update_ts: int,
        lock: tuple[str, str, str] | None = None,
        max_size: int = 0,
    ) -> WriteOutcome:
        if op not in (OP_SET, OP_UPDATE, OP_REMOVE):
            return WriteOutcome(ErrorCode.STORAGE_INVALID_ARGUMENT, f"unknown operation {op}")
        # On a Redis Cluster the counter is in another slot than the set: take a revision
        # from it first (again if a concurrent write of the set got a later one in first).
        revision_key = self.key(target, "rev") if self.cluster else self._revision_key
        keys = [self.key(target, "meta"), revision_key]
        args: list[Arg] = [op, major_revision, author, update_ts, max_size, "", "", 0]
        if lock is not None:
            scope, name, user = lock
            keys.append(self.key(scope, "locks"))
            args[5:7] = [name, user]
        for w in items:
            args += [w.key, w.value, w.revision]
        for _ in range(_REVISION_TRIES):
            if self.cluster:
                try:
                    args[7] = int(await self.client.call("INCR", self._revision_key))
                except RedisError as exc:
                    return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, f"Redis: {exc}")
            reply = await self._run(METADATA_WRITE, keys, args)
            if isinstance(reply, str):
                return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, reply)
            if reply[0] != b"stale":
                break
        else:
            return WriteOutcome(ErrorCode.STORAGE_NOT_AVAILABLE, "too many concurrent writes")
        status = reply[0]
        if status == b"ok":
            return WriteOutcome(0, "", _metadata(reply[1]))
        if status == b"major":
            return WriteOutcome(
                ErrorCode.STORAGE_OUTDATED_REVISION,
                f"major revision is {reply[1]}, not {major_revision}",
            )
        if status == b"duplicate":
            return WriteOutcome(ErrorCode.STORAGE_DUPLICATE_KEY, "a key is given twice")
        if status == b"exists":
            w = items[reply[1] - 1]
            return WriteOutcome(
                ErrorCode.STORAGE_OUTDATED_REVISION, f"item {w.key!r} exists (revision 0 given)"
            )
        if status == b"revision":
            w = items[reply[1] - 1]
            have = reply[2] if reply[2] >= 0 else "none"
            return WriteOutcome(
                ErrorCode.STORAGE_OUTDATED_REVISION,
                f"item {w.key!r} is at revision {have}, not {w.revision}",
            )
        if status == b"missing":
            w = items[reply[1] - 1]
            return WriteOutcome(
                ErrorCode.STORAGE_INVALID_METADATA_ITEM, f"item {w.key!r} does not exist"
            )
        if status == b"lock":
            assert lock is not None
            return WriteOutcome(
                ErrorCode.STORAGE_LOCK_NOT_ACQUIRED, f"the caller does not hold lock {lock[1]!r}"
            )
        if status == b"size":
            return WriteOutcome(
                ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW,
                f"the set would exceed {max_size} bytes",
            )
        raise AssertionError(f"unexpected reply of {METADATA_WRITE.name}: {reply!r}")

    # --- locks ---------------------------------------------------------------------------

    async def locks(self, scope: str) -> dict[str, LockInfo]:
        return _locks(await self._read("HGETALL", self.key(scope, "locks")))

    async def _read(self, *args: Arg) -> Any:
        try:
            return await self.client.call(*args)
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    async def held(self) -> list[tuple[str, LockInfo]]:
        """Every held lock; SCANs all lock keys of the prefix (meant for start-up only)."""
        try:
            return await self._held()
        except RedisError as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    async def _held(self) -> list[tuple[str, LockInfo]]:
        head, tail = f"{self.prefix}{{", "}:locks"
        pattern = f"{_glob_escape(head)}*{tail}"
        keys: list[bytes] = []
        scan_all = getattr(self.client, "scan_all", None)
        if scan_all is not None:  # a Redis Cluster: every master
            keys = await scan_all(pattern)
        cursor: bytes | int = 0
        while scan_all is None:
            cursor, found = await self.client.call(
                "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT
            )
            keys += found
            if cursor in (b"0", 0):
                break
        replies = await asyncio.gather(*(self.client.send("HGETALL", key) for key in keys))
        held = []
        for key, reply in zip(keys, replies, strict=True):
            scope = unescape_tag(key.decode()[len(head) : -len(tail)])
            held += [(scope, info) for info in _locks(reply).values() if info.owner]
        return held

    async def set(self, scope: str, name: str, ttl: int, max_locks: int) -> LockOutcome:
        keys = [self.key(scope, "locks"), self.key(scope, "fences")]
        reply = await self._run(LOCK_SET, keys, [name, ttl, max_locks])
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        if reply[0] == b"exists":
            return LockOutcome(ErrorCode.LOCK_ALREADY_EXIST, f"lock {name!r} already exists")
        if reply[0] == b"full":
            return LockOutcome(
                ErrorCode.LOCK_OPERATION_FAILED, f"a channel has at most {max_locks} locks"
            )
        return _lock_outcome(LOCK_SET, reply)

    def _queue(self, scope: str, name: str) -> str:
        return f"{self.key(scope, 'queue')}:{name}"

    async def remove(self, scope: str, name: str) -> LockOutcome:
        keys = [self.key(scope, "locks"), self.key(scope, "fences"), self._queue(scope, name)]
        reply = await self._run(LOCK_REMOVE, keys, [name])
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        if reply[0] == b"missing":
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        return _lock_outcome(LOCK_REMOVE, reply)

    async def acquire(
        self, scope: str, name: str, owner: str, ticket: str = "", wait: bool = False
    ) -> LockOutcome:
        keys = [self.key(scope, "locks"), self._queue(scope, name)]
        reply = await self._run(LOCK_ACQUIRE, keys, [name, owner, ticket, "1" if wait else ""])
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        status = reply[0]
        if status == b"missing":
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        if status in (b"held", b"queued"):
            if status == b"queued":  # if this node dies, another takes the ticket out
                self.index.add(_member(ticket), "lockq", scope, name, ticket)
            return LockOutcome(
                ErrorCode.LOCK_ACQUIRE_FAILED, f"lock {name!r} is held", _LOCK.decode(reply[1])
            )
        if ticket:
            self.index.remove(_member(ticket), "lockq", scope, name, ticket)
        return _lock_outcome(LOCK_ACQUIRE, reply)

    async def withdraw(self, scope: str, name: str, ticket: str) -> bool:
        try:
            first = await run(self.client, LOCK_WITHDRAW, [self._queue(scope, name)], [ticket])
        except RedisError as exc:
            log.error(
                "storage: cannot take ticket %s out of the queue of %s: %s", ticket, name, exc
            )
            return False
        self.index.remove(_member(ticket), "lockq", scope, name, ticket)
        return bool(first)

    async def release(self, scope: str, name: str, owner: str) -> LockOutcome:
        return await self.revoke(scope, name, owner)

    async def revoke(self, scope: str, name: str, owner: str) -> LockOutcome:
        reply = await self._run(LOCK_FREE, [self.key(scope, "locks")], [name, owner])
        if isinstance(reply, str):
            return LockOutcome(ErrorCode.LOCK_NOT_AVAILABLE, reply)
        if reply[0] == b"missing":
            return LockOutcome(ErrorCode.LOCK_NOT_EXIST, f"no lock {name!r}")
        if reply[0] == b"not_owner":
            return LockOutcome(
                ErrorCode.LOCK_NOT_ACQUIRED,
                f"lock {name!r} is not held by {owner!r}",
                _LOCK.decode(reply[1]),
            )
        return _lock_outcome(LOCK_FREE, reply)


_REVISION_TRIES = 20


def _member(ticket: str) -> str:
    """Tickets are ``<session id>:<request id>``."""
    return ticket.rsplit(":", 1)[0]


def _metadata(flat: list[bytes]) -> Metadata:
    """A set from its hash as HGETALL gives it (field, value, field, value, ...)."""
    major = 0
    items: dict[str, Item] = {}
    for i in range(0, len(flat), 2):
        if flat[i] == _MAJOR:
            major = int(flat[i + 1])
        else:
            item = _ITEM.decode(flat[i + 1])
            items[item.key] = item
    return Metadata(major, items)


def _locks(flat: list[bytes]) -> dict[str, LockInfo]:
    infos = (_LOCK.decode(flat[i]) for i in range(1, len(flat), 2))
    return {info.name: info for info in infos}


def _lock_outcome(script: Script, reply: list[Any]) -> LockOutcome:
    if reply[0] != b"ok":
        raise AssertionError(f"unexpected reply of {script.name}: {reply!r}")
    return LockOutcome(0, "", _LOCK.decode(reply[1]))
