"""One client's protocol session: handshake, login, token renewal, logout.

A session turns decoded frames into hub calls and replies. States go
NEW --hello--> OPEN --login--> LOGGED_IN --logout/kick/close--> CLOSED; a request that its state
does not allow gets a reply with the RTM code that says why, and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from enum import IntEnum
from typing import TYPE_CHECKING

from .. import _version
from ..errors import ErrorCode, RTMError
from ..protocol.codec import decode_client, encode, encode_result, ws_binary_frame
from ..protocol.codes import CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR
from ..protocol.frames import (
    NIL,
    PROTOCOL_VERSION,
    AcquireLock,
    Batch,
    CancelAcquire,
    ChannelMetadataWrite,
    ClientFrame,
    GetChannelMetadata,
    GetLocks,
    GetState,
    GetUserMetadata,
    Hello,
    JoinTopic,
    Kick,
    LeaveTopic,
    Login,
    LoginResult,
    Logout,
    Ping,
    Pong,
    Position,
    Publish,
    PublishTopic,
    ReleaseLock,
    RemoveLock,
    RemoveState,
    RenewToken,
    Reply,
    Request,
    Resume,
    ResumeResult,
    RevokeLock,
    ServerFrame,
    SetLock,
    SetState,
    StreamJoin,
    StreamLeave,
    Subscribe,
    SubscribeTopic,
    SubscribeUserMetadata,
    Unsubscribe,
    UnsubscribeTopic,
    UnsubscribeUserMetadata,
    UserMetadataWrite,
    Welcome,
    WhereNow,
    WhoNow,
)
from ..types import ConnectionChangeReason
from .auth import check_login_token
from .config import AppConfig
from .engines.base import EngineUnavailable
from .unavailable import unavailable_code

if TYPE_CHECKING:
    import msgspec

    from .gateway import Connection
    from .hub import Hub
    from .messages import Subscription
    from .ratelimit import RateBucket
    from .stream import Member

__all__ = ["Session", "SessionState", "reply_frame"]

log = logging.getLogger("rtm2.server")


class SessionState(IntEnum):
    NEW = 0
    OPEN = 1
    LOGGED_IN = 2
    # Logged in, but the connection is gone: kept (and present) for the presence timeout.
    DETACHED = 3
    CLOSED = 4


class Session:
    """One connection's protocol state.

    Requests are handled in arrival order. Most complete synchronously; one that must wait for
    the engine (a join, say) holds the frames behind it in ``_backlog`` until it is done, so a
    client's requests never overtake each other.
    """

    __slots__ = (
        "_backlog",
        "app",
        "conn",
        "detached_at",
        "expires_at",
        "hub",
        "locks",
        "message_bucket",
        "opened_at",
        "presence",
        "presence_timeout",
        "resume_token",
        "session_id",
        "state",
        "storage_bucket",
        "stream",
        "subscriptions",
        "user_id",
        "warned",
        "watching",
    )

    def __init__(self, hub: Hub, conn: Connection) -> None:
        self.hub = hub
        self.conn = conn
        self.state = SessionState.NEW
        self.app: AppConfig | None = None
        self.user_id = ""
        self.session_id = ""
        self.resume_token = ""
        # Unix time at which the login token's right ends; 0 = never (app without certificate).
        self.expires_at = 0
        # Whether the token-will-expire push for the current token went out.
        self.warned = False
        self.presence_timeout = 300
        self.opened_at = 0.0
        self.detached_at = 0.0
        # Stream channels this session is in, by name.
        self.stream: dict[str, Member] = {}
        # Message channels it subscribes to, by name.
        self.subscriptions: dict[str, Subscription] = {}
        # Channels (by subject) where its user is present -> whether quietly.
        self.presence: dict[str, bool] = {}
        # Publish-rate bucket for message channels and peers, made on first use.
        self.message_bucket: RateBucket | None = None
        self.storage_bucket: RateBucket | None = None
        # Locks its user holds through this session: (channel subject, lock name) -> TTL.
        self.locks: dict[tuple[str, str], int] = {}
        # User-metadata targets it follows.
        self.watching: set[str] = set()
        # Frames waiting behind a request that is still running; None when none is.
        self._backlog: deque[ClientFrame] | None = None

    @property
    def alive(self) -> bool:
        """Logged in, whether or not its connection is there right now."""
        return self.state is SessionState.LOGGED_IN or self.state is SessionState.DETACHED

    @property
    def attached(self) -> bool:
        """Logged in and connected."""
        return self.state is SessionState.LOGGED_IN

    @property
    def app_config(self) -> AppConfig:
        assert self.app is not None, "not logged in"
        return self.app

    def __repr__(self) -> str:
        who = f"{self.user_id}@{self.app.app_id[:8]}" if self.app else "-"
        return f"<session {self.session_id or '-'} {who} from {self.conn.peer}>"

    # --- from the gateway ------------------------------------------------------------------

    def on_open(self) -> None:
        self.opened_at = self.conn.last_seen = self.hub.clock()
        self.hub.attach(self)

    def on_close(self) -> None:
        self.hub.connection_lost(self)

    def on_data(self, data: bytes) -> None:
        self.conn.last_seen = self.hub.clock()
        try:
            frame = decode_client(data)
        except RTMError as exc:
            log.warning("%r sent a bad frame, closing: %s", self, exc.reason)
            self.conn.close(CLOSE_PROTOCOL_ERROR, "malformed frame")
            return
        if isinstance(frame, Batch):
            for one in frame.frames:
                if self._backlog is not None:
                    self._backlog.append(one)
                else:
                    self._handle(one)
        elif self._backlog is not None:
            self._backlog.append(frame)
        else:
            self._handle(frame)

    def _handle(self, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            self.send(Pong(frame.ts))
            return
        try:
            pending = self._dispatch(frame)
        except RTMError as exc:
            self.reply(frame.rid, exc.code, exc.reason)
        except EngineUnavailable as exc:
            self.reply(frame.rid, unavailable_code(frame), str(exc))
        except Exception:
            log.exception("%r: internal error handling %s", self, type(frame).__name__)
            self.reply(frame.rid, ErrorCode.INIT_SERVICE_FAILED, "internal server error")
        else:
            if pending is not None:
                self._backlog = deque()
                asyncio.get_running_loop().create_task(self._finish(frame, pending))

    async def _finish(self, frame: Request, pending: Awaitable[None]) -> None:
        try:
            await pending
        except RTMError as exc:
            self.reply(frame.rid, exc.code, exc.reason)
        except EngineUnavailable as exc:
            self.reply(frame.rid, unavailable_code(frame), str(exc))
        except Exception:
            log.exception("%r: internal error handling %s", self, type(frame).__name__)
            self.reply(frame.rid, ErrorCode.INIT_SERVICE_FAILED, "internal server error")
        backlog, self._backlog = self._backlog, None
        while backlog:
            self._handle(backlog.popleft())
            if self._backlog is not None:  # another request is waiting now; it keeps the rest
                self._backlog.extend(backlog)
                return

    # --- requests --------------------------------------------------------------------------

    def _dispatch(self, frame: Request) -> Awaitable[None] | None:
        """Handle a request; return an awaitable when it completes later."""
        if self.state is SessionState.LOGGED_IN:  # the hot paths first
            if isinstance(frame, PublishTopic):
                self.hub.stream.publish(self, frame)
                return None
            if isinstance(frame, Publish):
                return self.hub.messages.publish(self, frame)
        if isinstance(frame, Hello):
            self._hello(frame)
        elif self.state is SessionState.NEW:
            self.reply(frame.rid, ErrorCode.INVALID_PARAMETER, "send hello first")
            self.conn.close(CLOSE_PROTOCOL_ERROR, "no hello")
        elif isinstance(frame, Login):
            self._login(frame)
        elif isinstance(frame, Resume):
            return self._resume(frame)
        elif self.state is not SessionState.LOGGED_IN:
            raise RTMError(ErrorCode.NOT_LOGIN, "log in first")
        elif isinstance(frame, StreamJoin):
            return self.hub.stream.join(self, frame)
        elif isinstance(frame, JoinTopic):
            return self.hub.stream.join_topic(self, frame)
        elif isinstance(frame, SubscribeTopic):
            return self.hub.stream.subscribe(self, frame)
        elif isinstance(frame, UnsubscribeTopic):
            self.hub.stream.unsubscribe(self, frame)
        elif isinstance(frame, LeaveTopic):
            return self.hub.stream.leave_topic(self, frame)
        elif isinstance(frame, StreamLeave):
            return self.hub.stream.leave(self, frame)
        elif isinstance(frame, Subscribe):
            return self.hub.messages.subscribe(self, frame)
        elif isinstance(frame, Unsubscribe):
            self.hub.messages.unsubscribe(self, frame)
        elif isinstance(frame, WhoNow):
            return self.hub.presence.who_now(self, frame)
        elif isinstance(frame, WhereNow):
            return self.hub.presence.where_now(self, frame)
        elif isinstance(frame, SetState | RemoveState):
            return self.hub.presence.set_state(self, frame)
        elif isinstance(frame, GetState):
            return self.hub.presence.get_state(self, frame)
        elif isinstance(frame, ChannelMetadataWrite):
            return self.hub.storage.write_channel(self, frame)
        elif isinstance(frame, UserMetadataWrite):
            return self.hub.storage.write_user(self, frame)
        elif isinstance(frame, GetChannelMetadata):
            return self.hub.storage.get_channel(self, frame)
        elif isinstance(frame, GetUserMetadata):
            return self.hub.storage.get_user(self, frame)
        elif isinstance(frame, SubscribeUserMetadata):
            return self.hub.storage.subscribe_user(self, frame)
        elif isinstance(frame, UnsubscribeUserMetadata):
            self.hub.storage.unsubscribe_user(self, frame)
        elif isinstance(frame, SetLock):
            return self.hub.locks.set(self, frame)
        elif isinstance(frame, RemoveLock):
            return self.hub.locks.remove(self, frame)
        elif isinstance(frame, AcquireLock):
            return self.hub.locks.acquire(self, frame)
        elif isinstance(frame, ReleaseLock):
            return self.hub.locks.release(self, frame)
        elif isinstance(frame, RevokeLock):
            return self.hub.locks.revoke(self, frame)
        elif isinstance(frame, GetLocks):
            return self.hub.locks.get(self, frame)
        elif isinstance(frame, CancelAcquire):
            self.hub.locks.cancel(self, frame)
        elif isinstance(frame, RenewToken):
            self._renew(frame)
        elif isinstance(frame, Logout):
            self.reply(frame.rid)
            self.hub.logout(self)
            self.conn.close(CLOSE_NORMAL, "logout")
        return None

    def _hello(self, frame: Hello) -> None:
        if self.state is not SessionState.NEW:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "hello was already sent")
        if frame.version != PROTOCOL_VERSION:
            self.reply(
                frame.rid,
                ErrorCode.SERVICE_NOT_SUPPORTED,
                f"protocol version {frame.version} is not supported (server speaks "
                f"{PROTOCOL_VERSION})",
            )
            self.conn.close(CLOSE_PROTOCOL_ERROR, "unsupported protocol version")
            return
        self.state = SessionState.OPEN
        t = self.hub.config.timers
        welcome = Welcome(
            version=PROTOCOL_VERSION,
            server=f"rtm2/{_version.__version__}",
            heartbeat_interval=t.heartbeat_interval,
            heartbeat_grace=t.heartbeat_grace,
            max_frame_size=self.hub.config.max_frame_size,
        )
        self.reply(frame.rid, result=encode_result(welcome))

    def _login(self, frame: Login) -> None:
        if self.state is SessionState.LOGGED_IN:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "already logged in")
        app, expires_at = self.hub.authenticate(frame.app_id, frame.user_id, frame.token)
        self.app = app
        self.user_id = frame.user_id
        self.expires_at = expires_at
        self.warned = False
        self.presence_timeout = frame.presence_timeout
        self.state = SessionState.LOGGED_IN
        self.hub.login(self)
        self.reply(frame.rid, result=encode_result(self._login_result()))

    def _resume(self, frame: Resume) -> Awaitable[None] | None:
        if self.state is not SessionState.OPEN:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "already logged in")
        s = self.hub.resume(self, frame)

        # From here on this connection belongs to the resumed session ``s``: the reply, then
        # the missed messages, all before anything live.
        def answer(lost: list[Position]) -> bytes:
            result = ResumeResult(s.session_id, int(time.time() * 1000), s.expires_at, lost)
            return reply_frame(frame.rid, result=encode_result(result))

        return self.hub.replay(s, frame.positions, answer)

    def _renew(self, frame: RenewToken) -> None:
        if frame.channel:
            expires_at = self.hub.stream.renew(self, frame.channel, frame.token)
            log.info("%r renewed its token for stream channel %s", self, frame.channel)
            result = LoginResult(self.session_id, int(time.time() * 1000), expires_at)
            self.reply(frame.rid, result=encode_result(result))
            return
        self.expires_at = check_login_token(
            self.app_config, frame.token, self.user_id, int(time.time())
        )
        self.warned = False
        log.info("%r renewed its token (%s)", self, self._lifetime())
        self.reply(frame.rid, result=encode_result(self._login_result()))

    def _login_result(self) -> LoginResult:
        return LoginResult(
            self.session_id,
            int(time.time() * 1000),
            self.expires_at,
            self.resume_token,
            self.hub.recovery_store.epoch,
        )

    def _lifetime(self) -> str:
        if not self.expires_at:
            return "token never expires"
        return f"token valid for {self.expires_at - int(time.time())} s"

    # --- output ----------------------------------------------------------------------------

    def send(self, frame: ServerFrame) -> None:
        self.conn.send(ws_binary_frame(encode(frame)))

    def reply(self, rid: int, code: int = 0, reason: str = "", result: msgspec.Raw = NIL) -> None:
        self.conn.send(reply_frame(rid, code, reason, result))

    def kick(
        self,
        reason: ConnectionChangeReason,
        code: ErrorCode,
        message: str,
        close_code: int = CLOSE_NORMAL,
    ) -> None:
        """Tell the client why its session ends, then close the connection."""
        self.send(Kick(int(reason), int(code), message))
        self.conn.close(close_code, message)


def reply_frame(rid: int, code: int = 0, reason: str = "", result: msgspec.Raw = NIL) -> bytes:
    """A reply, framed for the wire (to send now, or to put in a held connection's slot)."""
    return ws_binary_frame(encode(Reply(rid, int(code), reason, result)))
