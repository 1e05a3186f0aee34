"""Redis Cluster support on top of the thin RESP client in ``resp``.

Why: one Redis is a ceiling on both memory and CPU. A Redis Cluster spreads the 16384 hash
slots over several masters; a client must send each command to the master owning the slot of
its key and follow ``MOVED``/``ASK`` redirections. redis-py's cluster client would cost the
per-command overhead ``resp`` exists to avoid, so this module routes commands itself and
keeps one pipelined ``RedisClient`` (and, for pub/sub, one sharded ``RedisSubscriber``) per
master.

- ``RedisClusterClient`` has ``RedisClient``'s interface (``send``, ``call``, ``connect``,
  ``close``, ``connected``, ``url``), so code written for one Redis runs unchanged as long as
  every command's keys share a slot (the engine's keys carry ``{hash tags}`` for that).
  Routing: EVAL/EVALSHA(_RO)/FCALL(_RO) by their first key (any master without keys);
  PUBLISH/SPUBLISH by the channel; keyless commands (TIME, PING, INFO...) to any master;
  SCRIPT LOAD/FLUSH, FLUSHALL and FLUSHDB to every master (``send`` returns the first
  master's future, the others are only logged if they fail); SCAN is refused: use
  ``scan_all``; anything else by ``args[1]``. A multi-key command whose keys are in
  different slots gets Redis's CROSSSLOT error.
- On a ``MOVED`` reply the slot map is fetched again (``CLUSTER SLOTS``, one refresh shared
  by every command that needs it) and the command is sent once more; on ``ASK`` it is sent
  once more, after ``ASKING``, to the node named. A second redirection is the caller's error.
  ``TRYAGAIN`` (a multi-key command while its slot's keys are half migrated) is retried a
  moment later, for up to a second.
- ``RedisClusterSubscriber`` has ``RedisSubscriber``'s interface and SSUBSCRIBEs each
  channel on the master owning its slot (sharded pub/sub: a message is published on, and only
  travels within, that master's shard; ordinary PUBLISH would go to every node). It follows a
  channel whose slot moves to another master.

URLs: ``redis-cluster://[:password@]host:port,host:port[/0][?query]`` (seed nodes; the rest
are found with CLUSTER SLOTS; the query is ignored; a cluster has only database 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from .resp import Arg, RedisClient, RedisError, RedisSubscriber, script_sha
from .slots import (
    SLOTS,
    SlotRange,
    fetch_slots,
    key_slot,
    node_url,
    split_cluster_url,
)

__all__ = ["RedisClusterClient", "RedisClusterSubscriber"]

log = logging.getLogger("rtm2.server")

# A command refused with TRYAGAIN (its keys are in a slot being migrated) is sent again this
# many times, this long apart.
_TRYAGAIN_TIMES, _TRYAGAIN_DELAY = 50, 0.02


def _name(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value.upper()
    return str(value).upper().encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_EVAL = {b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"}
_KEYLESS = {
    b"TIME", b"PING", b"ECHO", b"INFO", b"DBSIZE", b"SCRIPT", b"FUNCTION", b"CLUSTER",
    b"CONFIG", b"COMMAND", b"CLIENT", b"MEMORY", b"LASTSAVE", b"ROLE", b"WAIT",
}  # fmt: skip
_BROADCAST = {b"FLUSHALL", b"FLUSHDB"}
_BROADCAST_SCRIPT = {b"LOAD", b"FLUSH"}


class RedisClusterClient:
    """``RedisClient``'s interface over a Redis Cluster: one pipelined connection per master."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._seeds, self._password = split_cluster_url(url)
        self._nodes: dict[str, RedisClient] = {}  # "host:port" -> connection
        self._slots: list[RedisClient] = []  # slot -> its master's connection
        self._order: list[str] = []  # masters by their first slot
        self._refreshing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.scripts: list[str] = []  # shared with every master's connection
        # Slots whose new commands wait behind redirections (see _hold), and per slot the end
        # of the latest redirection under way: the next one waits for it (see _redirect).
        self._held: dict[int, list[tuple[Sequence[Arg], asyncio.Future[Any]]]] = {}
        self._last_redirect: dict[int, asyncio.Future[None]] = {}

    @property
    def connected(self) -> bool:
        return bool(self._nodes) and all(node.connected for node in self._nodes.values())

    def preload(self, script: str) -> str:
        if script not in self.scripts:
            self.scripts.append(script)
        return script_sha(script)

    def masters(self) -> list[str]:
        """Every master as "host:port", in the order of their first slots."""
        return list(self._order)

    async def connect(self) -> None:
        self._closing = False
        await self._apply(await fetch_slots(self._seeds, self._password))

    async def refresh(self) -> None:
        """Fetch the slot map again (concurrent callers share one CLUSTER SLOTS)."""
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        task = self._refreshing
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._refreshing is task:
                self._refreshing = None

    async def _refresh(self) -> None:
        known = [(h, int(p)) for h, _, p in (n.rpartition(":") for n in self._order)]
        await self._apply(await fetch_slots(known + self._seeds, self._password))

    async def _apply(self, ranges: list[SlotRange]) -> None:
        nodes: dict[str, RedisClient] = {}
        order: list[str] = []
        slots: list[RedisClient | None] = [None] * SLOTS
        for start, end, host, port in ranges:
            name = f"{host}:{port}"
            if name not in nodes:
                node = self._nodes.get(name)
                if node is None:
                    node = RedisClient(node_url(host, port, self._password), self.scripts)
                    await node.connect()
                nodes[name] = node
                order.append(name)
            slots[start : end + 1] = [nodes[name]] * (end - start + 1)
        if any(s is None for s in slots):
            raise RedisError("the Redis Cluster does not serve every slot")
        for name, old in self._nodes.items():
            if name not in nodes:
                self._spawn(self._retire(old))
        self._nodes, self._order = nodes, order
        self._slots = [s for s in slots if s is not None]

    async def _retire(self, node: RedisClient) -> None:
        """Close a former master's connection once the replies already asked of it are in."""
        with contextlib.suppress(RedisError):
            if node.connected:
                await node.call("PING")  # pipelined: answered after everything before it
        await node.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing = True
        for task in [*self._tasks, self._refreshing]:
            if task is not None:
                task.cancel()
        self._refreshing = None
        for node in self._nodes.values():
            await node.close()
        self._nodes, self._slots, self._order = {}, [], []

    def _key(self, args: Sequence[Arg]) -> Arg | None:
        """The key deciding where ``args`` go; None: any master will do."""
        name = _name(args[0])
        if name in _EVAL:
            return args[3] if len(args) > 3 and int(args[2]) > 0 else None
        if name in _KEYLESS or len(args) < 2:
            return None
        if name == b"SCAN":
            raise RedisError("SCAN is per master in a Redis Cluster: use scan_all()")
        return args[1]

    def _slot_of(self, args: Sequence[Arg]) -> int | None:
        key = self._key(args)
        return None if key is None else key_slot(key)

    def _node_for(self, args: Sequence[Arg]) -> RedisClient:
        if not self._slots:
            raise RedisError("not connected to Redis")
        slot = self._slot_of(args)
        return self._slots[0 if slot is None else slot]

    def send(self, *args: Arg) -> asyncio.Future[Any]:
        """Queue a command on its master; its reply (after one redirection at most) resolves
        the returned future.

        SCRIPT LOAD/FLUSH, FLUSHALL and FLUSHDB go to every master; the future is the first
        master's, failures elsewhere are logged.
        """
        if not args:
            raise ValueError("no command")
        name = _name(args[0])
        if name in _BROADCAST or (
            name == b"SCRIPT" and len(args) > 1 and _name(args[1]) in _BROADCAST_SCRIPT
        ):
            return self._broadcast(args)
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        slot = self._slot_of(args)
        held = self._held.get(slot) if slot is not None else None
        if held is not None:  # behind a redirection: keep the order of this slot's commands
            held.append((args, result))
            return result
        self._send_to(args, result)
        return result

    def _send_to(self, args: Sequence[Arg], result: asyncio.Future[Any]) -> None:
        node = self._node_for(args)
        first = node.send(*args)
        first.add_done_callback(lambda done: self._settle(done, result, args, node))

    def _broadcast(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        if not self._order:
            raise RedisError("not connected to Redis")
        futures = [self._nodes[name].send(*args) for name in self._order]
        for name, future in zip(self._order[1:], futures[1:], strict=True):
            future.add_done_callback(functools.partial(_log_failure, name=name, args=args))
        return futures[0]

    def _settle(
        self,
        done: asyncio.Future[Any],
        result: asyncio.Future[Any],
        args: Sequence[Arg],
        node: RedisClient,
    ) -> None:
        if result.done():
            return
        if done.cancelled():
            result.cancel()
            return
        exc = done.exception()
        if exc is None:
            result.set_result(done.result())
        elif isinstance(exc, RedisError) and str(exc).startswith(("MOVED ", "ASK ", "TRYAGAIN")):
            error = str(exc)
            slot = self._slot_of(args)
            if slot is not None and not error.startswith("ASK "):
                self._hold(slot, node)
            previous = self._last_redirect.get(slot) if slot is not None else None
            mine: asyncio.Future[None] | None = None
            if slot is not None:
                mine = self._last_redirect[slot] = asyncio.get_running_loop().create_future()
            self._spawn(self._redirect(error, result, args, slot, previous, mine))
        else:
            result.set_exception(exc)

    def _hold(self, slot: int, old: RedisClient) -> None:
        """The slot moved (MOVED) or its keys are moving (TRYAGAIN): new commands for it wait
        until every command sent before has been redirected, so none overtakes another (a
        publisher's messages keep their order through a resharding). ASK needs no hold: the
        old master answers each command in order, and each is redirected in that order."""
        if slot not in self._held:
            self._held[slot] = []
            self._spawn(self._release(slot, old))

    async def _release(self, slot: int, old: RedisClient) -> None:
        with contextlib.suppress(RedisError):
            await old.call("PING")  # answered after everything sent to it before
        # Redirections run one after another: once the latest is over, all are.
        while (last := self._last_redirect.get(slot)) is not None:
            await asyncio.shield(last)
        for args, result in self._held.pop(slot, []):
            if result.done():
                continue
            try:
                self._send_to(args, result)
            except RedisError as exc:
                result.set_exception(exc)

    async def _redirect(
        self,
        error: str,
        result: asyncio.Future[Any],
        args: Sequence[Arg],
        slot: int | None,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None] | None,
    ) -> None:
        """Redirect ``args`` once the slot's previous redirection is over: the commands of a
        slot are redirected one at a time, in the order their refusals came. Otherwise a
        command answered TRYAGAIN (retried a moment later) would be overtaken by one sent
        after it and answered ASK (its keys all moved already), and a publisher's messages
        would be numbered out of order during a resharding."""
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._redirect_once(error, result, args)
        finally:
            if mine is not None:
                if not mine.done():
                    mine.set_result(None)
                if slot is not None and self._last_redirect.get(slot) is mine:
                    del self._last_redirect[slot]

    async def _redirect_once(
        self, error: str, result: asyncio.Future[Any], args: Sequence[Arg]
    ) -> None:
        """Send ``args`` once more where the MOVED/ASK ``error`` says (or again a moment
        later after TRYAGAIN); settle ``result``."""
        kind, target = error.partition(" ")[0], error.rsplit(" ", 1)[-1]
        node: RedisClient | None
        try:
            if kind == "TRYAGAIN":  # keys of the slot half migrated: a moment later
                reply = await self._try_again(args)
            elif kind == "MOVED":
                await self.refresh()
                node = self._nodes.get(target) or self._node_for(args)
                reply = await node.call(*args)
            else:
                node = self._nodes.get(target)
                if node is None:
                    await self.refresh()
                    node = self._nodes.get(target)
                if node is None:
                    raise RedisError(error)
                asking = node.send("ASKING")
                reply = await node.send(*args)
                await asking
        except asyncio.CancelledError:
            if not result.done():
                result.cancel()
            raise
        except Exception as exc:
            if not result.done():
                result.set_exception(exc)
            return
        if not result.done():
            result.set_result(reply)

    async def _try_again(self, args: Sequence[Arg]) -> Any:
        """Send ``args`` again until its keys are on one node (following MOVED and ASK)."""
        for _ in range(_TRYAGAIN_TIMES):
            await asyncio.sleep(_TRYAGAIN_DELAY)
            try:
                return await self._node_for(args).call(*args)
            except RedisError as exc:
                error = str(exc)
                if error.startswith("MOVED "):
                    await self.refresh()
                elif error.startswith("ASK "):
                    node = self._nodes.get(error.rsplit(" ", 1)[-1])
                    if node is None:
                        raise
                    asking = node.send("ASKING")
                    try:
                        return await node.send(*args)
                    except RedisError as again:
                        if not str(again).startswith("TRYAGAIN"):
                            raise
                    finally:
                        with contextlib.suppress(RedisError):
                            await asking
                elif not error.startswith("TRYAGAIN"):
                    raise
        raise RedisError("TRYAGAIN: the keys stayed split between two masters")

    async def call(self, *args: Arg) -> Any:
        return await self.send(*args)

    async def scan_all(self, match: str, count: int = 1000) -> list[bytes]:
        """Every key matching ``match`` on every master (SCAN each to its end)."""

        async def scan(node: RedisClient) -> list[bytes]:
            keys: list[bytes] = []
            cursor: Arg = 0
            while True:
                cursor, found = await node.call("SCAN", cursor, "MATCH", match, "COUNT", count)
                keys.extend(found)
                if int(cursor) == 0:
                    return keys

        nodes = [self._nodes[name] for name in self._order]
        if not nodes:
            raise RedisError("not connected to Redis")
        return [key for keys in await asyncio.gather(*map(scan, nodes)) for key in keys]


def _log_failure(done: asyncio.Future[Any], name: str, args: Sequence[Arg]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.error("redis: %s failed on %s: %s", _text(args[0]), name, exc)


class RedisClusterSubscriber:
    """``RedisSubscriber``'s interface over a Redis Cluster: one sharded subscriber per master.

    Each channel is SSUBSCRIBEd on the master owning its slot; ``on_message(channel, data)``
    gets every message of every master, ``on_lost()`` hears of any master's connection lost
    (each reconnects and subscribes again by itself).

    A channel whose slot moves to another master (resharding, a failover) is followed: the old
    master unsubscribes us by itself (or refuses the subscription with MOVED); the slot map is
    read again and the channel subscribed on its new master. ``on_moved(channel)`` is told at
    once, since messages published meanwhile did not reach us; ``ready(channel)`` waits for
    the new subscription.
    """

    def __init__(
        self,
        url: str,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[], None],
        sharded: bool = True,
        on_moved: Callable[[str], None] | None = None,
    ) -> None:
        if not sharded:
            raise ValueError("a Redis Cluster subscriber is always sharded (SSUBSCRIBE)")
        self.url = url
        self._seeds, self._password = split_cluster_url(url)
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_moved = on_moved
        self._shards: dict[str, RedisSubscriber] = {}
        self._slots: list[RedisSubscriber] = []
        self._where: dict[str, RedisSubscriber] = {}
        # Channels between masters, each with what ``ready`` waits for; the task moving them.
        self._moving: dict[str, asyncio.Future[None]] = {}
        self._following: asyncio.Task[None] | None = None
        self._closing = False

    async def connect(self) -> None:
        self._closing = False
        await self._apply(await fetch_slots(self._seeds, self._password))

    async def _apply(self, ranges: list[SlotRange]) -> None:
        """Use this slot map: a subscriber per master (new ones connected, known ones kept)."""
        shards = dict(self._shards)
        slots: list[RedisSubscriber] = []
        created: list[RedisSubscriber] = []
        try:
            for start, end, host, port in ranges:
                name = f"{host}:{port}"
                if name not in shards:
                    shards[name] = self._shard(host, port)
                    created.append(shards[name])
                    await shards[name].connect()
                slots.extend([shards[name]] * (end - start + 1))
        except BaseException:
            for shard in created:
                await shard.close()
            raise
        self._shards, self._slots = shards, slots

    def _shard(self, host: str, port: int) -> RedisSubscriber:
        shard: RedisSubscriber
        shard = RedisSubscriber(
            node_url(host, port, self._password),
            self._on_message,
            self._on_lost,
            sharded=True,
            on_dropped=self._dropped,
            on_refused=lambda error: self._refused(shard, error),
        )
        return shard

    def masters(self) -> list[str]:
        return list(self._shards)

    def subscribe(self, channel: str) -> None:
        if not self._slots:
            raise RedisError("not connected to Redis")
        if channel in self._moving:  # subscribed again while between masters: it follows
            return
        shard = self._slots[key_slot(channel)]
        self._where[channel] = shard
        shard.subscribe(channel)

    async def ready(self, channel: str) -> None:
        for _ in range(10):  # a slot map read mid-move may name the old master once more
            while (moving := self._moving.get(channel)) is not None:
                await asyncio.shield(moving)
            shard = self._where.get(channel)
            if shard is None:
                raise RedisError(f"not subscribed to {channel}")
            try:
                await shard.ready(channel)
            except RedisError:
                if channel in self._moving:
                    continue
                raise
            return
        raise RedisError(f"{channel} keeps moving")

    def unsubscribe(self, channel: str) -> None:
        moving = self._moving.pop(channel, None)
        if moving is not None and not moving.done():
            moving.set_result(None)
        shard = self._where.pop(channel, None)
        if shard is not None:
            shard.unsubscribe(channel)

    # --- following moved slots ------------------------------------------------------------

    def _dropped(self, channel: str) -> None:
        """A master unsubscribed us from ``channel`` by itself: its slot moved."""
        if self._where.pop(channel, None) is not None:
            self._move(channel)

    def _refused(self, shard: RedisSubscriber, error: str) -> None:
        """A master refused a subscription: MOVED <slot> <where> names the slot."""
        if not error.startswith("MOVED "):
            return
        slot = int(error.split(" ", 2)[1])
        for channel, where in list(self._where.items()):
            if where is shard and key_slot(channel) == slot:
                shard.forget(channel)
                del self._where[channel]
                self._move(channel)

    def _move(self, channel: str) -> None:
        log.warning("redis: %s moved to another master; following it", channel)
        if channel not in self._moving:
            self._moving[channel] = asyncio.get_running_loop().create_future()
        if self._on_moved is not None:
            self._on_moved(channel)
        if self._following is None and not self._closing:
            self._following = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        """Read the slot map again and subscribe the moved channels where they are now."""
        delay = 0.05
        try:
            while self._moving and not self._closing:
                await asyncio.sleep(delay)  # let the masters agree on the new owner first
                known = [(h, int(p)) for h, _, p in (n.rpartition(":") for n in self._shards)]
                try:
                    await self._apply(await fetch_slots(known + self._seeds, self._password))
                except RedisError as exc:
                    log.warning("redis: cannot read the slot map to follow moves: %s", exc)
                    delay = min(delay * 2, 2.0)
                    continue
                moving, self._moving = self._moving, {}
                for channel, done in moving.items():
                    shard = self._slots[key_slot(channel)]
                    self._where[channel] = shard
                    shard.subscribe(channel)
                    if not done.done():
                        done.set_result(None)
        finally:
            self._following = None

    async def close(self) -> None:
        self._closing = True
        if self._following is not None:
            self._following.cancel()
        for done in self._moving.values():
            if not done.done():
                done.cancel()
        for shard in self._shards.values():
            await shard.close()
        self._shards, self._slots, self._where, self._moving = {}, [], {}, {}
