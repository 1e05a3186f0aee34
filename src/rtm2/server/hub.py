"""A server node's hub: it builds the services, registers the sessions, takes the bus's
events, and runs the one periodic sweep that keeps sessions honest.

The hub is the composition root: each service gets the narrow roles it uses (``roles``), and
the hub itself plays the session registry, the peer directory and the bus listener (one
method per ``BusKind``). Requests do not pass through it: ``table`` binds each frame type to
its service's handler once, and sessions call those directly.

No connection has a timer of its own: a single sweep checks keepalive, login deadlines and
token expiry of every connection, which keeps idle connections cheap in CPU and memory.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, assert_never

from ..errors import ErrorCode, RTMError
from ..protocol.codec import ws_binary_frame
from ..protocol.codes import CLOSE_GOING_AWAY, CLOSE_POLICY
from ..protocol.frames import Resume, TokenWillExpire
from ..protocol.names import is_valid_user_id
from ..types import ConnectionChangeReason
from .admission import Admission
from .auth import check_login_token
from .config import AppConfig, ServerConfig
from .engines.base import Ban, BusEvent, BusKind, Engine, EngineUnavailable, bus_routes
from .features import Features
from .gateway import Connection, Outbox
from .handshake import Handshake
from .history import HistoryService
from .interest import Interest
from .locks import LockService
from .messages import MessageService
from .metrics import Counts, Metrics
from .orphans import LockOrphan, PresenceOrphan, StreamOrphan, WaitOrphan, parse_orphans
from .presence import PresenceService
from .recovery import Recovery
from .replay import Replay
from .session import Session
from .storage import StorageService
from .stream import StreamService
from .subjects import SubjectKind, session_subject
from .table import Routes, SessionState, bind
from .webhooks.sink import Webhooks

if TYPE_CHECKING:
    from .roles import SessionListener

__all__ = ["LAG_SUBJECT", "Hub"]

# Where nodes sharing an engine publish a timestamp each sweep (``rtm2_bus_lag_seconds``).
LAG_SUBJECT = "nodes:lag"

log = logging.getLogger("rtm2.server")

# Read per message: an enum member through its class costs a ``__getattr__`` hook call (3.11).
_STREAM = SubjectKind.STREAM
_MESSAGE = SubjectKind.MESSAGE
# ... and per session in every sweep (each second, over all sessions).
_DETACHED = SessionState.DETACHED
_LOGGED_IN = SessionState.LOGGED_IN


class Hub:
    def __init__(
        self, config: ServerConfig, loop: asyncio.AbstractEventLoop, engine: Engine
    ) -> None:
        self.config = config
        self.loop = loop
        self.clock = loop.time
        t = config.timers
        self.outbox = Outbox(
            loop,
            config.max_send_buffer,
            config.max_frame_size,
            user_timeout=t.heartbeat_interval + t.heartbeat_grace,
            max_queued=config.max_queued_frames,
        )
        self.admission = Admission(
            config.max_connections,
            config.max_connections_per_ip,
            config.max_pending_connections,
            config.max_pending_connections_per_ip,
            config.allowed_origins,
        )
        self.apps: dict[str, AppConfig] = {a.app_id: a for a in config.apps}
        # Every open connection's session, logged in or not.
        self.sessions: set[Session] = set()
        # Logged-in sessions by (app id, user id): one per user, the newest wins.
        self.users: dict[tuple[str, str], Session] = {}
        # The same sessions by id, for Resume.
        self.by_id: dict[str, Session] = {}
        self.engine = engine
        # Counters the services bump on the hot path; ``metrics`` reads them when scraped.
        self.counts = Counts()
        # Bus gaps: of every subject (the engine link was lost), of one (a channel moved).
        self.bus_gaps_all = 0
        self.bus_gaps_channel = 0
        self.node_id = os.urandom(3).hex()
        # This node's descriptor for its heartbeat (``nodeinfo``); the server sets it once
        # it knows its addresses.
        self.describe: Callable[[], bytes] = bytes
        # Events for the apps' backends (docs/WEBHOOKS.md); the broker is tapped only when
        # some app has a webhook.
        self.webhooks = Webhooks(self.apps, engine.event_outbox, self.node_id)
        self.broker = self.webhooks.tap(self.engine.make_broker(self._on_bus, self._on_bus_gap))
        self.recovery = Recovery(self._recovery_limits)
        self.replayer = Replay(
            self.recovery, engine.recovery_store, self.broker, self._recovery_limits
        )
        self.interest = Interest(self.broker, self.recovery.forget)
        self._subject_kinds = self.interest.kinds
        self._bus = bus_routes(self)
        self.presence = PresenceService(self.engine.presence_store, self.broker, config.timers)
        self.storage = StorageService(self.engine.metadata_store, self.broker, self.interest)
        self.locks = LockService(
            self.engine.lock_store,
            self.broker,
            self.interest,
            self._present,
            lambda fields: engine.note(self.node_id, fields),
            lambda fields: engine.unnote(self.node_id, fields),
        )
        self.webhooks.freeing = self.locks.freeing
        features = Features(self.presence, self.storage, self.locks)
        self.stream = StreamService(
            self.engine.stream_store,
            self.broker,
            self.interest,
            features,
            self.replayer,
            self.recovery,
            self.counts,
        )
        self.messages = MessageService(
            self.broker,
            self.interest,
            features,
            self.replayer,
            self.recovery,
            peers=self,
            counts=self.counts,
        )
        self.history = HistoryService(engine.history_store, self.apps.get)
        self.messages.history = self.history
        # Deliveries are queued by the outbox's fan-out loop (one Python call less each).
        self.messages.fan_out = self.stream.fan_out = self.outbox.send_all
        self._listeners: list[SessionListener] = []
        # Told of a session's end in this order: locks count down before the channels are
        # left, and the presence leave comes last, announced as a timeout when it was one.
        for listener in (self.locks, self.storage, self.stream, self.messages, self.presence):
            self.add_listener(listener)
        self.handshake = Handshake(
            config, self, self.replayer, self.stream.renew, engine.recovery_store
        )
        # Every request's handler, bound to this node's services once for all sessions.
        self.routes: Routes = bind(self)
        self._ids = itertools.count(1)
        # Probes of the HTTP API's user lookup waiting for the node holding the session to
        # answer, on this node's own subject (subscribed at the first probe).
        self._answers = f"node:{self.node_id}"
        self._answers_ready = False
        self._probe_ids = itertools.count(1)
        self._probes: dict[str, asyncio.Future[tuple[str, float]]] = {}
        # Last: it reads the rest of the hub at scrape time.
        self.metrics = Metrics(self)

    async def _present(self, subject: str, user: str) -> bool:
        return user in await self.engine.presence_store.members(subject)

    def new_session(self, conn: Connection) -> Session:
        return Session(self, conn)

    # --- session lifecycle -----------------------------------------------------------------

    def add_listener(self, listener: SessionListener) -> None:
        """Tell ``listener`` of every session's end from now on."""
        self._listeners.append(listener)

    def attach(self, session: Session) -> None:
        self.sessions.add(session)

    def connection_lost(self, session: Session, reason: str = "connection lost") -> None:
        """The connection ended. A logged-in session stays (present, holding its channels)
        for its presence timeout, so a user whose network blinks does not leave."""
        if session.state is SessionState.DETACHED:
            return  # already known (the sweep dropped it before the socket closed)
        if session.state is SessionState.LOGGED_IN:
            session.become(SessionState.DETACHED)
            session.detached_at = self.clock()
            self.locks.connection_lost(session)
            self.interest.remove(_session_subject(session))  # peers now find it offline
            if self.webhooks.active:
                self.webhooks.user(
                    session.app_config.app_id, "user.disconnected", session.user_id, reason=reason
                )
            log.info(
                "%r connection lost; keeping the session for %d s",
                session,
                session.presence_timeout,
            )
        else:
            self.end(session)

    def end(self, session: Session, timed_out: bool = False) -> None:
        """Forget a session for good: it logged out, was evicted, expired or timed out."""
        if session.state is SessionState.CLOSED:
            return
        was_logged_in = session.alive
        if session.state is SessionState.LOGGED_IN:
            self.interest.remove(_session_subject(session))
        session.become(SessionState.CLOSED)
        self.sessions.discard(session)
        if session.app is not None:
            key = (session.app.app_id, session.user_id)
            if self.users.get(key) is session:
                del self.users[key]
        if self.by_id.get(session.session_id) is session:
            del self.by_id[session.session_id]
        if was_logged_in:
            log.info("%r session ended%s", session, " (presence timeout)" if timed_out else "")
            if timed_out and self.webhooks.active:
                self.webhooks.user(session.app_config.app_id, "user.timeout", session.user_id)
        for listener in self._listeners:
            listener.on_session_end(session, timed_out)

    # --- the bus: one method per kind of event (``engines.base.BusListener``) ------------

    def _on_bus(self, subject: str, event: BusEvent) -> None:
        try:
            route = self._bus[event.kind]
        except KeyError:
            return  # a kind from a newer node
        route(subject, event)

    def _on_bus_gap(self, subject: str | None) -> None:
        if subject is None:
            self.bus_gaps_all += 1
        else:
            self.bus_gaps_channel += 1
        self.replayer.on_gap(subject)

    def on_message(self, subject: str, event: BusEvent) -> None:
        kind = self._subject_kinds.get(subject)
        if kind is _STREAM:
            self.stream.on_message(subject, event)
        elif kind is _MESSAGE:
            self.messages.on_message(subject, event)

    def on_topic_event(self, subject: str, event: BusEvent) -> None:
        self.stream.on_topic_event(subject, event)

    def on_presence(self, subject: str, event: BusEvent) -> None:
        self.presence.on_bus(subject, event)

    def on_storage(self, subject: str, event: BusEvent) -> None:
        self.storage.on_bus(subject, event)

    def on_lock(self, subject: str, event: BusEvent) -> None:
        self.locks.on_bus(subject, event)

    def on_lock_queue(self, subject: str, event: BusEvent) -> None:
        self.locks.on_queue(subject, event.topic)

    def on_peer(self, subject: str, event: BusEvent) -> None:
        """A peer message for a user whose session may be here."""
        session = self._user_session(subject)
        if session is not None and session.attached:
            session.conn.send(ws_binary_frame(event.frame))
            self.counts.delivered_user += 1
            self.counts.delivered_by_app[session.app_config.app_id] += 1

    def on_login(self, subject: str, event: BusEvent) -> None:
        """The user logged in on another node: its session here (if any, and older) goes."""
        session = self._user_session(subject)
        if session is not None and event.user != session.session_id:
            log.info("%r evicted by a newer login of the same user on another node", session)
            self.end(session)
            session.kick(
                ConnectionChangeReason.SAME_UID_LOGIN,
                ErrorCode.LOGIN_ABORTED,
                "the same user id logged in elsewhere",
            )

    def on_kick(self, subject: str, event: BusEvent) -> None:
        """The app's backend kicked the user on another node: its session here goes."""
        _, app, user = subject.split(":", 2)
        self._kick_here(app, user, event.topic)  # the ban is in the engine's ``BanStore``

    def on_probe(self, subject: str, event: BusEvent) -> None:
        """Another node asks whether a user is online: being subscribed is the answer; with a
        subject to answer on (``topic``), the node holding the session says which it is and
        when the user logged in. On this node's answer subject: such an answer."""
        if subject == LAG_SUBJECT:  # a node's timestamp (``run_sweeper``): the bus's lag
            if event.user != self.node_id:
                self.counts.bus_lag.observe(max(time.time() - float(event.frame), 0.0))
            return
        if subject == self._answers:
            waiting = self._probes.get(event.user)
            if waiting is not None and not waiting.done():
                node, _, since = event.frame.decode().partition(" ")
                waiting.set_result((node, float(since)))
            return
        session = self._user_session(subject)
        if event.topic and session is not None and session.attached:
            answer = f"{self.node_id} {session.logged_in_at!r}".encode()
            try:
                self.broker.publish(event.topic, BusEvent(BusKind.PROBE, "", event.user, answer))
            except EngineUnavailable as exc:
                log.warning("cannot answer a probe: %s", exc)

    # --- the app's backend (the HTTP API) ---------------------------------------------------

    async def session_elsewhere(
        self, app: str, user: str, timeout: float = 2.0
    ) -> tuple[bool, str | None, float | None]:
        """Whether another node holds a live session of the user and, when that node answers
        within ``timeout``, its id and the login's Unix time."""
        if not self._answers_ready:
            self.broker.subscribe(self._answers)
            await self.broker.ready(self._answers)
            self._answers_ready = True
        probe = str(next(self._probe_ids))
        waiting: asyncio.Future[tuple[str, float]] = self.loop.create_future()
        self._probes[probe] = waiting
        try:
            event = BusEvent(BusKind.PROBE, self._answers, probe, b"")
            if not await self.broker.publish_counted(session_subject(app, user), event):
                return False, None, None
            try:
                node, since = await asyncio.wait_for(waiting, timeout)
            except TimeoutError:  # an older node, or one too busy: online is known anyway
                return True, None, None
            return True, node, since
        finally:
            del self._probes[probe]

    async def kick(self, app: str, user: str, reason: str, ban_seconds: float) -> bool:
        """End the user's session on whichever node holds it; refuse its logins here for
        ``ban_seconds`` on every node (durably, before this returns). Whether a session was
        found."""
        if ban_seconds > 0:
            until_ms = int((time.time() + ban_seconds) * 1000)
            await self.engine.ban_store.ban(app, user, until_ms, reason)
        if self._kick_here(app, user, reason):
            return True
        event = BusEvent(BusKind.KICK, reason, "", repr(float(ban_seconds)).encode())
        return bool(await self.broker.publish_counted(session_subject(app, user), event))

    def _kick_here(self, app: str, user: str, reason: str) -> bool:
        session = self.find(app, user)
        if session is None:
            return False
        log.info("%r kicked by the app's backend", session)
        if self.webhooks.active:
            self.webhooks.user(app, "user.kicked", user, reason=reason)
        attached = session.attached
        self.end(session)
        if attached:
            session.kick(
                ConnectionChangeReason.BANNED_BY_SERVER,
                ErrorCode.LOGIN_REJECTED,
                reason or "kicked by the server",
            )
        return True

    # --- the users here (``roles.PeerDirectory``) -------------------------------------------

    def find(self, app: str, user: str) -> Session | None:
        """The user's logged-in session on this node (``roles.PeerDirectory``)."""
        return self.users.get((app, user))

    def _user_session(self, subject: str) -> Session | None:
        _, app, user = subject.split(":", 2)
        return self.find(app, user)

    # --- login, logout, resume (with the lifecycle above: ``roles.SessionRegistry``) -------

    def authenticate(self, app_id: str, user_id: str, token: str) -> tuple[AppConfig, int]:
        """Check a login; return the app and when the token's login right ends (0 = never)."""
        if not is_valid_user_id(user_id):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {user_id!r}")
        app = self.apps.get(app_id)
        if app is None:
            raise RTMError(ErrorCode.INVALID_APP_ID, f"unknown app id {app_id!r}")
        expires = check_login_token(app, token, user_id, int(time.time()))
        _refuse_banned(self.engine.ban_store.known(app_id, user_id))
        return app, expires

    def check_ban(self, app_id: str, user_id: str) -> Awaitable[None] | None:
        """After ``authenticate``: None when it knew every ban, else the engine's answer to
        await (a ban set through another node, maybe before this one started)."""
        store = self.engine.ban_store
        if store.local:
            return None

        async def check() -> None:
            _refuse_banned(await store.banned_until(app_id, user_id))

        return check()

    async def unban(self, app: str, user: str) -> bool:
        """Lift the user's ban on every node; whether there was one."""
        return await self.engine.ban_store.unban(app, user)

    def login(self, session: Session) -> None:
        assert session.app is not None
        session.session_id = f"{self.node_id}-{next(self._ids)}"
        session.logged_in_at = time.time()
        session.resume_token = secrets.token_urlsafe(16)
        self.by_id[session.session_id] = session
        session.conn.logged_in()
        key = (session.app.app_id, session.user_id)
        old = self.users.get(key)
        self.users[key] = session
        if old is not None and old is not session:
            log.info("%r evicted by a newer login of the same user from %s", old, session.conn.peer)
            self.end(old)
            old.kick(
                ConnectionChangeReason.SAME_UID_LOGIN,
                ErrorCode.LOGIN_ABORTED,
                "the same user id logged in elsewhere",
            )
        # This node takes the user's peer messages from now on, and other nodes drop their
        # session of this user (SAME_UID_LOGIN).
        subject = _session_subject(session)
        self.interest.add(subject)
        try:
            self.broker.publish(subject, BusEvent(BusKind.LOGIN, "", session.session_id, b""))
        except EngineUnavailable as exc:  # other nodes learn of it when the engine is back
            log.warning("%r: cannot tell other nodes about this login: %s", session, exc)
        log.info("%r logged in (%s)", session, session.lifetime())
        if self.webhooks.active:
            self.webhooks.user(
                session.app.app_id, "user.login", session.user_id, session_id=session.session_id
            )

    def logout(self, session: Session) -> None:
        log.info("%r logged out", session)
        if self.webhooks.active and session.app is not None:
            self.webhooks.user(session.app.app_id, "user.logout", session.user_id)
        self.end(session)

    def resume(self, fresh: Session, f: Resume) -> Session:
        """Hand a logged-in session whose connection was lost the connection of ``fresh``.

        Raises LOGIN_REJECTED when there is no such session to take over (it ended, or the
        server restarted), TOKEN_EXPIRED when its login token expired meanwhile.
        """
        s = self.by_id.get(f.session_id)
        if (
            s is None
            or not s.alive
            or s.app is None
            or s.app.app_id != f.app_id
            or s.user_id != f.user_id
            # As bytes: compare_digest refuses str with non-ASCII characters (TypeError).
            or not hmac.compare_digest(s.resume_token.encode(), f.resume_token.encode())
        ):
            raise RTMError(ErrorCode.LOGIN_REJECTED, "no session to resume: log in")
        if s.expires_at and time.time() >= s.expires_at:
            raise RTMError(ErrorCode.TOKEN_EXPIRED, "the session's login token expired")
        # A new token per resume: one seen on the way (a log, a proxy) cannot be replayed.
        s.resume_token = secrets.token_urlsafe(16)
        self.sessions.discard(fresh)
        if s.take_over(fresh):
            self.locks.connection_lost(s)  # the old connection's waits end there
        else:
            self.interest.add(_session_subject(s))  # peers find it online again
        s.conn.last_seen = self.clock()
        s.conn.logged_in()
        self.sessions.add(s)
        self.locks.connection_back(s)
        log.info("%r resumed its session", s)
        return s

    # --- recovery ---------------------------------------------------------------------------

    def _recovery_limits(self, subject: str) -> tuple[int, float]:
        """How many messages of ``subject`` to keep, for how long (its app's limits)."""
        app = self.apps.get(subject.split(":", 2)[1])
        if app is None:  # another node's app, unknown here: nobody here to serve
            return 0, 0.0
        return app.limits.recovery_messages, app.limits.recovery_seconds

    # --- the sweep -------------------------------------------------------------------------

    def sweep(self) -> None:
        """Drop silent connections, close unauthenticated ones, warn and expire tokens."""
        t = self.config.timers
        mono = self.clock()
        now = time.time()
        silent_after = t.heartbeat_interval + t.heartbeat_grace
        for session in list(self.sessions):
            if session.state is _DETACHED:
                # A session nobody can renew the token of ends with its token, too.
                expired = bool(session.expires_at) and now >= session.expires_at
                if expired or mono - session.detached_at > session.presence_timeout:
                    self.end(session, timed_out=True)
                continue
            if mono - session.conn.last_seen > silent_after:
                log.info("%r silent for %.1f s, dropping", session, mono - session.conn.last_seen)
                session.conn.cut(CLOSE_POLICY, "keepalive timeout")
                self.connection_lost(session, "keepalive timeout")
            elif session.state is not _LOGGED_IN:
                if mono - session.opened_at > t.login_timeout:
                    log.info("%r did not log in within %.0f s", session, t.login_timeout)
                    self.end(session)
                    session.conn.cut(CLOSE_POLICY, "login timeout")
            elif session.expires_at:
                if now >= session.expires_at:
                    log.info("%r token expired, closing", session)
                    if self.webhooks.active:
                        self.webhooks.user(
                            session.app_config.app_id,
                            "user.logout",
                            session.user_id,
                            reason="token expired",
                        )
                    self.end(session)
                    session.kick(
                        ConnectionChangeReason.TOKEN_EXPIRED,
                        ErrorCode.TOKEN_EXPIRED,
                        "the login token expired",
                    )
                elif not session.warned and now >= session.expires_at - t.token_warning:
                    session.warned = True
                    session.send(TokenWillExpire("", session.expires_at))
            if session.stream and session.state is _LOGGED_IN:
                self._sweep_stream_tokens(session, now)
        self.presence.sweep()
        self.locks.sweep()
        self.recovery.prune()
        self.history.sweep()

    def _sweep_stream_tokens(self, session: Session, now: float) -> None:
        warning = self.config.timers.token_warning
        for member in list(session.stream.values()):
            if not member.expires_at:
                continue
            if now >= member.expires_at:
                self.stream.expire(session, member)
            elif not member.warned and now >= member.expires_at - warning:
                member.warned = True
                session.send(TokenWillExpire(member.channel, member.expires_at))

    async def run_sweeper(self) -> None:
        timers = self.config.timers
        interval = timers.sweep_interval
        next_orphan_check = self.clock()
        shared = self.engine.shared
        if shared:  # every node stamps an event per sweep: the others time its trip
            self.broker.subscribe(LAG_SUBJECT)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
                keep = timers.node_timeout + 2 * interval  # a bit longer than it is alive
                await self.engine.heartbeat(self.node_id, self.describe(), keep)
                if shared:
                    stamp = repr(time.time()).encode()
                    self.broker.publish(
                        LAG_SUBJECT, BusEvent(BusKind.PROBE, "", self.node_id, stamp)
                    )
                if self.clock() >= next_orphan_check:
                    next_orphan_check = self.clock() + timers.node_timeout / 3
                    await self._adopt_orphans()
            except Exception:  # the sweep must outlive any one bad session
                log.exception("sweep failed")

    async def _adopt_orphans(self) -> None:
        """Clean up after nodes that died without closing their sessions."""
        entries = await self.engine.orphans(self.node_id, self.config.timers.node_timeout)
        timed_out: dict[tuple[str, str, str], None] = {}  # (app, user, session): in order
        for orphan in parse_orphans(entries):
            match orphan:
                case PresenceOrphan(subject, user, member):
                    timed_out[(subject.split(":", 2)[1], user, member)] = None
                    await self.presence.remove_orphan(subject, user, member)
                case StreamOrphan(app, channel, user, member):
                    timed_out[(app, user, member)] = None
                    await self.stream.remove_orphan(app, channel, user, member)
                case WaitOrphan(scope, name, ticket):
                    await self.locks.withdraw_orphan(scope, name, ticket)
                case LockOrphan(scope, name, owner):
                    await self.locks.adopt(scope, name, owner)
                case _:
                    assert_never(orphan)
        if self.webhooks.active:  # the dead node's users that were in channels timed out
            for app, user, member in timed_out:
                self.webhooks.user(app, "user.timeout", user, session_id=member, node_died=True)

    def shutdown(self, message: str) -> None:
        """Tell every client the server is going away and close its connection."""
        for session in list(self.sessions):
            self.end(session)
            session.kick(
                ConnectionChangeReason.INTERRUPTED, ErrorCode.OK, message, CLOSE_GOING_AWAY
            )


def _refuse_banned(ban: Ban | None) -> None:
    if ban is not None:
        left = max(ban.until_ms / 1000 - time.time(), 1.0)
        reason = f"banned by the server for {left:.0f} more seconds"
        raise RTMError(ErrorCode.LOGIN_REJECTED, reason)


def _session_subject(session: Session) -> str:
    """Where a user's peer messages and login notices travel between nodes."""
    return session_subject(session.app_config.app_id, session.user_id)
