"""Bans in Redis: one key per banned user, under the user's hash tag (as its where_now set),
holding the ban's end and reason and expiring with it (``PXAT``): nothing to sweep, and every
node, one started after the ban too, reads the same key.

On one Redis (not a Cluster) a login of a user never banned costs no GET. Every ban and unban
publishes a notice (app, user) on ``<prefix>bans`` in the same script as its write, so no write
goes unannounced. A started store subscribes to the notices, then SCANs the ban keys: from then
on it knows the users that may be banned (``_suspects``: found by the SCAN or named in a notice
since) and answers "not banned" for any other user at once. A suspect's login still GETs its
key, so a ban lifted through another node lets the user in here at once; a GET that finds no
ban clears the suspicion, unless a notice came while it was on its way.

The store trusts what it knows only while its notices are heard: it publishes a ping every
``PING_EVERY`` seconds, and when the latest of its pings to come back was sent over
``TRUST_SECONDS`` ago, or once its subscription is lost, it asks Redis at every login until it
has subscribed and SCANned anew. So a ban set through another node refuses logins here once
its notice arrives (pub/sub: normally before the kick's answer reaches the caller), and at
worst ``TRUST_SECONDS`` after it was stored. On a Cluster every login GETs, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import msgspec

from ...redisio import Arg, Commands, RedisSubscriber, Script, hash_tag, run, unescape_tag
from ..base import Ban
from .common import glob_escape, guard, scan, tagged

__all__ = ["PING_EVERY", "TRUST_SECONDS", "RedisBanStore"]

log = logging.getLogger("rtm2.server")

_encode = msgspec.msgpack.Encoder().encode

PING_EVERY = 1.0  # seconds between a store's pings on the notice channel
TRUST_SECONDS = 3.0  # the longest a store trusts what it knows without hearing a message
_RESYNC_AFTER = 1.0  # seconds before a failed subscribe-and-SCAN is tried again

BAN_SET = Script(
    "ban_set",
    """\
-- KEYS[1]  the user's ban key; ARGV  the ban (MessagePack), its end (Unix ms), the notice
--          channel and the notice: the write and its notice are one
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
""",
)
BAN_LIFT = Script(
    "ban_lift",
    """\
-- KEYS[1]  the user's ban key; ARGV  the notice channel and the notice
-- returns  1 if there was a ban, else 0
local gone = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return gone
""",
)


class RedisBanStore:
    local = False  # other nodes ban too: ``banned_until`` is the answer (often without a GET)

    def __init__(self, client: Commands, prefix: str, url: str = "", cluster: bool = False) -> None:
        self._client = client
        self._prefix = prefix
        # Notices on one Redis only: a Cluster's classic pub/sub would need a subscriber of
        # its own, on one master, there; a login on a Cluster asks Redis every time.
        self._notices = not cluster
        self._channel = f"{prefix}bans"
        self._url = url
        self._subscriber: RedisSubscriber | None = None
        self._task: asyncio.Task[None] | None = None
        # (app, user) -> the mark put by the SCAN or by the latest notice naming the user.
        self._suspects: dict[tuple[str, str], int] = {}
        self._marks = 0
        self._synced = False  # subscribed, then SCANned, and nothing lost since
        self._losses = 0  # subscriptions lost: one lost during a SCAN voids the SCAN
        # When this store sent the latest of its pings that came back (time.monotonic):
        # every notice Redis published before that ping has come too (one connection, in
        # order). Other nodes' pings and a backlog of old messages prove nothing newer.
        self._heard = 0.0
        self._ping = f"ping {secrets.token_hex(8)} "
        self.reads = 0  # GETs of a ban key: what the notices save

    def _key(self, app: str, user: str) -> str:
        return f"{tagged(self._prefix, f'user:{app}:{user}')}:ban"

    def known(self, app: str, user: str) -> Ban | None:
        return None  # see ``local``: a ban set or lifted elsewhere is only in Redis

    # --- notices --------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the notices (one Redis): until subscribed and SCANned, logins ask Redis."""
        if not self._notices or not self._url or self._subscriber is not None:
            return
        self._subscriber = RedisSubscriber(self._url, self._noticed, self._lost)
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="rtm2-bans")

    async def close(self) -> None:
        self._synced = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._subscriber is not None:
            await self._subscriber.close()
            self._subscriber = None

    @property
    def trusted(self) -> bool:
        """Whether a user who is no suspect is not banned, without asking Redis."""
        return self._synced and time.monotonic() - self._heard < TRUST_SECONDS

    async def _follow(self) -> None:
        subscriber = self._subscriber
        assert subscriber is not None
        connected = False
        while True:
            try:
                if not connected:
                    await subscriber.connect()
                    subscriber.subscribe(self._channel)
                    connected = True  # it reconnects by itself from now on
                if not self._synced:
                    losses = self._losses
                    await subscriber.ready(self._channel)
                    self._heard = time.monotonic()
                    for key in await scan(self._client, self._pattern()):
                        self._suspect(self._user_of(key))
                    self._synced = losses == self._losses
                ping = f"{self._ping}{time.monotonic()!r}".encode()
                await self._client.call("PUBLISH", self._channel, ping)
                await asyncio.sleep(PING_EVERY)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis is away: logins ask it (and fail) meanwhile
                log.debug("bans: notices not followed yet: %s", exc)
                self._synced = False
                await asyncio.sleep(_RESYNC_AFTER)

    def _noticed(self, channel: bytes, data: bytes) -> None:
        if data.startswith(b"ping "):
            mine, _, sent = data.decode().rpartition(" ")
            if mine + " " == self._ping:
                self._heard = max(self._heard, float(sent))
            return
        app, user = msgspec.msgpack.decode(data)
        self._suspect((str(app), str(user)))

    def _lost(self) -> None:
        self._losses += 1
        self._synced = False  # notices may be missed until subscribed and SCANned again

    def _suspect(self, who: tuple[str, str]) -> None:
        self._marks += 1
        self._suspects[who] = self._marks

    def _pattern(self) -> str:
        head, tail = self._prefix + "{", "}:ban"
        return f"{glob_escape(head + hash_tag('user:'))}*{tail}"

    def _user_of(self, key: bytes) -> tuple[str, str]:
        head, tail = self._prefix + "{", "}:ban"
        _, app, user = unescape_tag(key.decode()[len(head) : -len(tail)]).split(":", 2)
        return app, user

    # --- the BanStore role ------------------------------------------------------------------

    async def ban(self, app: str, user: str, until_ms: int, reason: str) -> None:
        if until_ms <= int(time.time() * 1000):
            await self.unban(app, user)
            return
        value = _encode([until_ms, reason])
        if self._notices:
            args: list[Arg] = [value, until_ms, self._channel, _encode([app, user])]
            await guard(run(self._client, BAN_SET, [self._key(app, user)], args))
        else:
            await guard(self._client.call("SET", self._key(app, user), value, "PXAT", until_ms))

    async def unban(self, app: str, user: str) -> bool:
        if self._notices:
            notice: list[Arg] = [self._channel, _encode([app, user])]
            return bool(await guard(run(self._client, BAN_LIFT, [self._key(app, user)], notice)))
        return bool(await guard(self._client.call("DEL", self._key(app, user))))

    async def banned_until(self, app: str, user: str) -> Ban | None:
        who = (app, user)
        mark = self._suspects.get(who)
        trusted = self.trusted
        if trusted and mark is None:
            return None
        self.reads += 1
        raw = await guard(self._client.call("GET", self._key(app, user)))
        ban = _ban(user, raw)
        if ban is None and trusted and mark is not None and self._suspects.get(who) == mark:
            del self._suspects[who]  # no notice came meanwhile: no longer a suspect
        return ban

    async def bans(self, app: str, limit: int) -> list[Ban]:
        head, tail = self._prefix + "{", "}:ban"
        pattern = f"{glob_escape(head + hash_tag(f'user:{app}:'))}*{tail}"
        found = []
        for key in await guard(scan(self._client, pattern)):
            user = unescape_tag(key.decode()[len(head) : -len(tail)]).split(":", 2)[2]
            ban = _ban(user, await guard(self._client.call("GET", key)))
            if ban is not None:  # expired between the SCAN and the GET
                found.append(ban)
        found.sort(key=lambda b: (b.until_ms, b.user))
        return found[:limit]


def _ban(user: str, raw: bytes | None) -> Ban | None:
    if not raw:
        return None
    until_ms, reason = msgspec.msgpack.decode(raw)
    if until_ms <= int(time.time() * 1000):
        return None  # Redis expires keys a little late
    return Ban(user, int(until_ms), str(reason))
