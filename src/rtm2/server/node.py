"""A server node: the hub, the WebSocket listener and the sweeper, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from picows import ws_create_server

from .._version import __version__
from ..protocol.frames import LockDetail, MetadataItem, MetadataResult
from ..types import ChannelType
from .config import REDIS_SCHEMES, AppConfig, ConfigError, ServerConfig
from .engines.base import Engine, EngineUnavailable
from .engines.memory import MemoryEngine
from .gateway import listener_factory
from .http import HttpListener, make_app
from .http.app import BanInfo, Bans, ChannelRef, Presence, PresentUser, UserInfo
from .http.console import Console
from .http.keys import Keyring
from .http.listing import AppInfo, Info
from .hub import Hub
from .livefeed import NodeLive
from .messages import MessageService
from .nodeinfo import NodeDescriber, Rates, decode_descriptor
from .subjects import channel_subject, parse_subject, subject
from .webhooks.delivery import Delivery

__all__ = ["Server", "server_ssl_context"]

log = logging.getLogger("rtm2.server")


class _PeerFaultsAsWarnings(logging.LoggerAdapter[logging.Logger]):
    """picows logs a peer's WebSocket protocol violation (an oversized frame, a bad opcode) at
    ERROR. It is the peer's fault, not the server's, and the connection is closed anyway: at
    ERROR, any peer could fill an operator's error log and page someone at will."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level == logging.ERROR and str(msg).startswith("WS parser error"):
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)


# picows reads into a buffer of this size per connection; its 16 KiB default doubles the memory
# of an idle connection, and the buffer grows by itself for larger frames.
_READ_BUFFER = 2048
# picows runs over aiofastnet's transports when that package is installed (a picows dependency);
# the event loop's own transport (uvloop's) holds ~5 KiB less per idle connection (tracemalloc:
# what aiofastnet's transport makes at accept) for the same instructions per publish under
# callgrind (`bench/callgrind_publish.py`), so connections use the loop's.
_USE_AIOFASTNET = False

# glibc's mallopt parameter, and the size from which allocations get pages of their own.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 * 1024


def _return_large_buffers_to_the_system() -> None:
    """Fix glibc's mmap threshold at its initial 128 KiB.

    By default glibc raises the threshold each time a large block is freed, so the send
    buffers of clients that were cut off end up on the heap, where fragmentation keeps them
    out of reach of the system long after they were freed: a few clients that never read left
    the server tens of MiB larger for good (issue 13, finding 1). With the threshold fixed,
    every buffer above it is unmapped when freed.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc (musl, say): nothing to tune
        pass


def server_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The listener's TLS context when a certificate and key are configured, else None.

    Raises ConfigError naming the file when the pair cannot be loaded, so a typo stops the
    server at start instead of failing every handshake later.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {config.tls_cert} and key {config.tls_key}: {exc}"
        ) from None
    return context


class _NodeApi:
    """The HTTP API's view of the node: the message service, and the engine's health."""

    def __init__(self, hub: Hub, describer: NodeDescriber) -> None:
        self._hub = hub
        self._describer = describer
        self._rates = Rates(hub.counts, describer.started)  # for info(): since the previous call
        messages: MessageService = hub.messages
        self.publish_from_server = messages.publish_from_server
        self.send_from_server = messages.send_from_server
        self.history_page = hub.history.page

    async def publish_stored_from_server(
        self,
        app: AppConfig,
        channel: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None:
        await self._hub.history.publish_from_server(
            self._hub.messages, app, channel, payload, message_type, custom_type, publisher
        )

    async def send_stored_from_server(
        self,
        app: AppConfig,
        user: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None:
        await self._hub.history.send_from_server(
            self._hub.messages, app, user, payload, message_type, custom_type, publisher
        )

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self._hub.engine.ping(), 2.0)
        except Exception:  # unreachable, refusing, or too slow: not ready, whatever the cause
            return False
        return True

    async def kick(self, app: AppConfig, user: str, reason: str, ban_seconds: float) -> bool:
        return await self._hub.kick(app.app_id, user, reason, ban_seconds)

    async def unban(self, app: AppConfig, user: str) -> bool:
        return await self._hub.unban(app.app_id, user)

    async def bans(self, app: AppConfig, limit: int) -> Bans:
        found = await self._hub.engine.ban_store.bans(app.app_id, limit)
        return Bans([BanInfo(b.user, b.until_ms / 1000, b.reason) for b in found])

    def metrics(self) -> tuple[bytes, str]:
        return self._hub.metrics.render()

    async def user_info(self, app: AppConfig, user: str) -> UserInfo:
        hub = self._hub
        session = hub.find(app.app_id, user)
        online: bool
        node: str | None
        since: float | None
        if session is not None and session.attached:
            online, node, since = True, hub.node_id, session.logged_in_at
        else:
            online, node, since = await hub.session_elsewhere(app.app_id, user)
        found = await hub.engine.presence_store.where_now(app.app_id, user)
        channels = []
        for subj, quiet in found:
            if not quiet:  # as where_now shows it to clients
                _, ctype, channel = parse_subject(subj)
                kind = "message" if ctype == ChannelType.MESSAGE else "stream"
                channels.append(ChannelRef(channel, kind))
        return UserInfo(online, since, node, channels)

    async def who_now(
        self, app: AppConfig, channel_type: str, channel: str, include_state: bool, page: str
    ) -> Presence:
        ctype = ChannelType.MESSAGE if channel_type == "message" else ChannelType.STREAM
        subj = channel_subject(app.app_id, channel, ctype)
        found = await self._hub.presence.who_now_page(subj, True, include_state, page)
        return Presence(
            [PresentUser(u.user, u.state) for u in found.users], found.total, found.next_page
        )

    # Metadata and locks (http/storage.py): the services' server-side entry points.

    async def metadata_read(self, app: AppConfig, target: str) -> MetadataResult:
        return await self._hub.storage.read(target)

    async def metadata_write(
        self,
        app: AppConfig,
        target: str,
        op: int,
        items: list[MetadataItem],
        major_revision: int,
        lock: tuple[str, str] | None,
        record_ts: bool,
        record_author: bool,
    ) -> MetadataResult:
        return await self._hub.storage.write_from_server(
            app, target, op, items, major_revision, lock, record_ts, record_author
        )

    async def locks_of(self, app: AppConfig, channel: str, channel_type: int) -> list[LockDetail]:
        return await self._hub.locks.locks_of(app, channel, channel_type)

    async def set_lock(
        self, app: AppConfig, channel: str, channel_type: int, name: str, ttl: int
    ) -> None:
        await self._hub.locks.set_from_server(app, channel, channel_type, name, ttl)

    async def remove_lock(self, app: AppConfig, channel: str, channel_type: int, name: str) -> None:
        await self._hub.locks.remove_from_server(app, channel, channel_type, name)

    async def revoke_lock(
        self, app: AppConfig, channel: str, channel_type: int, name: str, owner: str
    ) -> None:
        await self._hub.locks.revoke_from_server(app, channel, channel_type, name, owner)

    async def channels(self, app: AppConfig, channel_type: str, prefix: str) -> dict[str, int]:
        ctype = ChannelType.MESSAGE if channel_type == "message" else ChannelType.STREAM
        head = subject(app.app_id, ctype, "")
        found = await self._hub.engine.presence_store.channels(head + prefix)
        return {subj[len(head) :]: users for subj, users in found.items()}

    async def pull_events(self, app: AppConfig, queue: str, limit: int) -> list[dict[str, Any]]:
        return await self._hub.webhooks.pull(app.app_id, queue, limit)

    async def info(self) -> Info:
        hub = self._hub
        # This node as it is now; the others as they told at their last sweep.
        node = self._describer.describe(self._rates)
        timeout = hub.config.timers.node_timeout  # as the sweeper: silent longer = dead
        nodes = {node.id: node}
        for node_id, raw in (await hub.engine.node_descriptors(timeout)).items():
            other = decode_descriptor(raw)
            if node_id != node.id and other is not None:
                nodes[node_id] = other
        users: Counter[str] = Counter()
        rates: dict[str, float] = {}
        out: dict[str, float] = {}
        for each in nodes.values():
            for a in each.apps:
                users[a.app_id] += a.users_online
                rates[a.app_id] = rates.get(a.app_id, 0.0) + a.messages_per_second
                out[a.app_id] = out.get(a.app_id, 0.0) + a.delivered_per_second
        apps = []
        for app_id in hub.apps:
            live = 0
            for ctype in (ChannelType.MESSAGE, ChannelType.STREAM):
                live += len(await hub.engine.presence_store.channels(subject(app_id, ctype, "")))
            apps.append(
                AppInfo(
                    app_id,
                    users[app_id],
                    live,
                    round(rates.get(app_id, 0.0), 3),
                    round(out.get(app_id, 0.0), 3),
                )
            )
        return Info(
            __version__,
            node,
            [nodes[n] for n in sorted(nodes)],
            apps,
            round(sum(n.messages_per_second for n in nodes.values()), 3),
        )


class Server:
    """An rtm2 server. ``await start()``, then ``await stop()`` (or ``serve_forever()``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._hub: Hub | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._delivery: Delivery | None = None
        self.http: HttpListener | None = None
        self.live: NodeLive | None = None  # the console's live streams (issue 18)
        self.port = config.port
        self._ssl = server_ssl_context(config)

    @property
    def hub(self) -> Hub:
        assert self._hub is not None, "server not started"
        return self._hub

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self.config.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.time()
        _return_large_buffers_to_the_system()
        engine: Engine
        if self.config.engine.startswith(REDIS_SCHEMES):
            from .engines.redis.engine import RedisEngine  # only deployments that use it

            engine = RedisEngine(self.config.engine)
        else:
            engine = MemoryEngine(self.config.data_dir, self.config.timers.offsets_idle)
        hub = self._hub = Hub(self.config, loop, engine)
        try:
            await engine.start()
        except EngineUnavailable:
            raise
        except Exception as exc:  # a Redis refusing the URL's credentials, say
            raise EngineUnavailable(f"the engine did not start: {exc}") from None
        # Alive before any session exists: a node that dies at once still gets swept.
        await engine.heartbeat(hub.node_id)
        if not engine.shared:  # other nodes' locks are theirs: a dead node's are adopted
            await hub.locks.start()
        if hub.webhooks.active:
            hub.webhooks.start()
            # A queue's claim outlives a request to its receiver; a dead node's runs out soon
            # after the node is declared dead.
            lease = self.config.timers.node_timeout + max(
                (h.config.timeout for h in hub.webhooks.all_hooks), default=0.0
            )
            self._delivery = Delivery(hub.webhooks, engine.shared, lease)
            self._delivery.register(hub.metrics.registry)
            self._delivery.start()
        self._server = await ws_create_server(
            listener_factory(hub.outbox, hub.new_session, hub.admission, self.config.access_key),
            self.config.host,
            self.config.port,
            max_frame_size=self.config.max_frame_size,
            read_buffer_init_size=_READ_BUFFER,
            use_aiofastnet=_USE_AIOFASTNET,
            websocket_handshake_timeout=self.config.timers.login_timeout,
            enable_auto_pong=False,
            ssl=self._ssl,
            ssl_handshake_timeout=self.config.timers.login_timeout if self._ssl else None,
            logger_name=_PeerFaultsAsWarnings(logging.getLogger("picows.server")),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(hub.run_sweeper(), name="rtm2-sweeper")
        describer = NodeDescriber(hub, self.url, "", started)
        hub.describe = describer.descriptor  # the HTTP address joins it once known
        log.info("listening on %s", self.url)
        http = self.config.http
        if http.enabled:
            keyring = Keyring(self.config.apps, http.admin_key)
            self.live = NodeLive(hub)
            self.http = HttpListener(
                make_app(hub.apps, keyring, _NodeApi(hub, describer), Console(self.live)),
                http.host,
                http.port,
                hub.counts.observe_http,
            )
            await self.http.start()
            describer.http_address = self.http.url
        # Described from the start, not from the first sweep on.
        timers = self.config.timers
        keep = timers.node_timeout + 2 * timers.sweep_interval  # as the sweeper's
        await engine.heartbeat(hub.node_id, describer.descriptor(), keep)

    async def stop(self, message: str = "server shutting down") -> None:
        """Stop accepting, tell every client why, and close all connections."""
        if self.live is not None:
            self.live.stop()  # its streams end, so the HTTP listener need not wait for them
        if self.http is not None:
            await self.http.stop()
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._hub is not None:
            self._hub.shutdown(message)
            self._hub.outbox.flush()
            # Give close frames a moment to leave before the process goes away.
            await asyncio.sleep(0.05)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._hub is not None:
            await self._hub.webhooks.stop()  # what was emitted is queued before the engine goes
            if self._delivery is not None:
                await self._delivery.stop()
            await self._hub.engine.close()
        log.info("stopped")

    async def serve_forever(self, on_ready: Callable[[Server], None] | None = None) -> None:
        """Start, run until SIGTERM or SIGINT, then stop cleanly.

        The signal handlers are in place before the server starts, so a signal that arrives
        while it starts still stops it cleanly. ``on_ready`` runs once it listens.
        """
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        try:
            await self.start()
            if on_ready is not None:
                on_ready(self)
            await done.wait()
            log.info("signal received, shutting down")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()
