"""One client's protocol session: the connection's frames in, replies and pushes out.

A session decodes each frame, looks it up in ``table`` (which states allow it, who handles
it), and either runs the handler or answers with the refusal the table names. Its state moves
NEW -> OPEN -> LOGGED_IN <-> DETACHED -> CLOSED, only through ``become`` (``table`` lists the
legal changes); DETACHED is a logged-in session whose connection is gone, kept for its
presence timeout so that a Resume can take it back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.codec import decode_client, encode, ws_binary_frame
from ..protocol.codes import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR
from ..protocol.frames import (
    NIL,
    Batch,
    ClientFrame,
    Kick,
    Ping,
    Publish,
    PublishTopic,
    Reply,
    ServerFrame,
)
from ..types import ConnectionChangeReason
from .config import AppConfig
from .engines.base import EngineUnavailable
from .ratelimit import RateBucket
from .table import SessionState, check_transition, refusal
from .unavailable import unavailable_code

if TYPE_CHECKING:
    import msgspec

    from .gateway import Connection
    from .messages import Subscription
    from .roles import SessionRegistry
    from .stream import Member
    from .table import Routes

__all__ = ["Session", "SessionState", "reply_frame"]

log = logging.getLogger("rtm2.server")

_perf_counter = time.perf_counter

# Frames that ``request_rate`` does not count: their own per-app rate limits them.
_OWN_RATE = (Publish, PublishTopic)

# Publishes are the hot path: timing each one cost ~2 µs of server CPU per message in
# `rtm2 bench fanout` at 1 and 10 subscribers, so only one in 64 is timed (their count is
# rtm2_messages_published_total); every other request is timed.
_PUBLISH_SAMPLE = 63
_publishes = itertools.count()
# Read once per request: an enum member through its class costs a ``__getattr__`` hook call.
_CLOSED = SessionState.CLOSED
_LOGGED_IN = SessionState.LOGGED_IN


class Session:
    """One connection's protocol state.

    Requests are handled in arrival order. Most complete synchronously; one that must wait for
    the engine (a join, say) holds the frames behind it in ``_backlog`` until it is done, so a
    client's requests never overtake each other.

    Services keep their per-session state themselves (presence, locks held, metadata
    followed, storage rate), keyed by session; only what the publish path reads on every
    message stays here, one attribute away: stream memberships, subscriptions, and the
    message rate bucket.
    """

    __slots__ = (
        "_backlog",
        "_counts",
        "_heir",
        "_routes",
        "app",
        "conn",
        "detached_at",
        "expires_at",
        "logged_in_at",
        "message_bucket",
        "opened_at",
        "presence_timeout",
        "registry",
        "request_bucket",
        "resume_token",
        "session_id",
        "state",
        "stream",
        "subscriptions",
        "user_id",
        "warned",
    )

    def __init__(self, registry: SessionRegistry, conn: Connection) -> None:
        self.registry = registry
        self.conn = conn
        self._routes: Routes = registry.routes
        # The node's counters (``metrics``): request durations, error replies.
        self._counts = registry.counts
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
        self.logged_in_at = 0.0  # Unix time of the login (a resume keeps it)
        self.detached_at = 0.0
        # Stream channels this session is in, by name.
        self.stream: dict[str, Member] = {}
        # Message channels it subscribes to, by name.
        self.subscriptions: dict[str, Subscription] = {}
        # Publish-rate bucket for message channels and peers, made on first use.
        self.message_bucket: RateBucket | None = None
        # Every request's rate bucket (the app's ``request_rate``), made on first use.
        self.request_bucket: RateBucket | None = None
        # Frames waiting behind a request that is still running; None when none is. While
        # there are some, the connection is not read (its own frames wait in the socket).
        self._backlog: deque[ClientFrame] | None = None
        # The session this one's connection went to by a Resume; it takes the frames that
        # were waiting behind that Resume.
        self._heir: Session | None = None

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
        self.opened_at = self.conn.last_seen = self.registry.clock()
        self.registry.attach(self)

    def on_close(self) -> None:
        self.registry.connection_lost(self)

    def on_data(self, data: bytes) -> None:
        self.conn.last_seen = self.registry.clock()
        try:
            frame = decode_client(data)
        except RTMError as exc:
            log.warning("%r sent a bad frame, closing: %s", self, exc.reason)
            self.conn.close(CLOSE_PROTOCOL_ERROR, "malformed frame")
            return
        if not isinstance(frame, Batch):
            self._take(frame)
            return
        conn, session = self.conn, self
        for one in frame.frames:
            if session.state is SessionState.CLOSED:
                if session._heir is None:
                    # It ended halfway through (a Logout, say): the rest is dropped.
                    return
                session = session._heir  # a Resume: the rest is the resumed session's
            if conn.closing:  # a refusal that closes, a send buffer past its limit
                return
            if isinstance(one, Ping) and session.state is not SessionState.LOGGED_IN:
                continue  # pings in a batch before login only buy a stranger answers
            session._take(one)

    def _take(self, frame: ClientFrame) -> None:
        if self._backlog is not None:
            self._queue(self._backlog, frame)
        else:
            self._handle(frame)

    def _queue(self, backlog: deque[ClientFrame], frame: ClientFrame) -> None:
        conn = self.conn
        if len(backlog) >= conn.max_queued:
            if not conn.closing:
                log.warning("%r queued more than %d requests, closing", self, conn.max_queued)
                conn.cut(CLOSE_POLICY, "too many requests queued")
            return
        backlog.append(frame)

    def _handle(self, frame: ClientFrame) -> None:
        if self.state is _CLOSED:
            return  # a session that ended answers nothing, and nothing brings it back
        states, handler = self._routes[type(frame)]
        if self.state not in states:
            self._refuse(frame)
            return
        if (
            self.state is _LOGGED_IN
            and not isinstance(frame, _OWN_RATE)
            and not self._within_budget(frame)
        ):
            return
        # One clock read before and after a request, never per message it delivers; 0.0: untimed.
        timed = not isinstance(frame, _OWN_RATE) or not next(_publishes) & _PUBLISH_SAMPLE
        start = _perf_counter() if timed else 0.0
        try:
            pending = handler(self, frame)
        except Exception as exc:
            self._failed(frame, exc)
        else:
            if pending is not None:
                self._backlog = deque()
                self.conn.pause_reading()
                asyncio.get_running_loop().create_task(self._finish(frame, pending, start))
                return
        if timed:
            self._counts.timings[type(frame)].observe(_perf_counter() - start)

    def _within_budget(self, frame: ClientFrame) -> bool:
        """A logged-in session's requests count against the app's ``request_rate`` (on top of
        a feature's own limit, as storage's); one over it is refused (a ping, dropped).
        Publishes are left to their own rates, which operators raise for heavy publishers."""
        if self.app is None:
            return True
        now = self.registry.clock()
        rate = self.app.limits.request_rate
        bucket = self.request_bucket
        if bucket is None:
            bucket = self.request_bucket = RateBucket(rate, now)
        if bucket.allow(now, rate):
            return True
        if not isinstance(frame, Ping):
            self.reply(
                frame.rid, ErrorCode.OPERATION_RATE_EXCEED_LIMITATION, f"over {rate:g} requests/s"
            )
        else:
            self._counts.dropped_pings += 1
        return False

    async def _finish(self, frame: ClientFrame, pending: Awaitable[None], start: float) -> None:
        try:
            await pending
        except Exception as exc:
            self._failed(frame, exc)
        if start:
            self._counts.timings[type(frame)].observe(_perf_counter() - start)
        backlog, self._backlog = self._backlog, None
        (self._heir or self)._drain(backlog or deque())

    def _drain(self, backlog: deque[ClientFrame]) -> None:
        """Handle the frames that waited, until one of them has to wait in turn."""
        if self._backlog is not None:  # waiting already (an heir's own request)
            self._backlog.extend(backlog)
            return
        while backlog:
            self._handle(backlog.popleft())
            # Asked through a call: mypy keeps ``self._backlog`` narrowed to None across
            # ``_handle``, and mypyc's build (``make compile``) would enforce that.
            if self._waiting():
                # Another request is waiting now: the rest stays where it is, in the same
                # queue (copying it each time made a long backlog quadratic to drain).
                self._backlog = backlog
                return
        self.conn.resume_reading()

    def _waiting(self) -> bool:
        """A request is running and the frames behind it wait in ``_backlog``."""
        return self._backlog is not None

    def _failed(self, frame: ClientFrame, exc: Exception) -> None:
        """The one place where a request's failure becomes its reply."""
        rid = 0 if isinstance(frame, Ping) else frame.rid
        if isinstance(exc, RTMError):
            self.reply(rid, exc.code, exc.reason)
        elif isinstance(exc, EngineUnavailable):  # what it means depends on the request
            self.reply(rid, unavailable_code(frame), str(exc))
        else:
            log.error("%r: internal error handling %s", self, type(frame).__name__, exc_info=exc)
            self.reply(rid, ErrorCode.INIT_SERVICE_FAILED, "internal server error")

    def _refuse(self, frame: ClientFrame) -> None:
        """Answer a request the session's state does not allow, as ``table`` says."""
        code, reason, close = refusal(self.state, type(frame))
        self.reply(0 if isinstance(frame, Ping) else frame.rid, code, reason)
        if close:
            self.conn.close(CLOSE_PROTOCOL_ERROR, "no hello")

    # --- state -----------------------------------------------------------------------------

    def become(self, state: SessionState) -> None:
        """Move to ``state``; a change ``table.TRANSITIONS`` does not list is a bug."""
        self.state = check_transition(self.state, state)

    def take_over(self, fresh: Session) -> bool:
        """Resume on ``fresh``'s connection (``fresh`` sent the Resume, and closes).

        ``fresh`` keeps this session's old connection, so that the old connection's end
        concerns only the throwaway session; an old connection still open is closed. Returns
        whether it was (the session had not noticed it was gone); a DETACHED session is
        LOGGED_IN again.
        """
        new_conn, old_conn = fresh.conn, self.conn
        fresh.become(SessionState.CLOSED)
        fresh._heir = self
        fresh.conn, old_conn.session = old_conn, fresh
        self.conn, new_conn.session = new_conn, self
        if self.state is SessionState.LOGGED_IN:
            old_conn.close(CLOSE_POLICY, "resumed on another connection", flush=False)
            return True
        self.become(SessionState.LOGGED_IN)
        return False

    def lifetime(self) -> str:
        """How long the login token is valid, for the log."""
        if not self.expires_at:
            return "token never expires"
        return f"token valid for {self.expires_at - int(time.time())} s"

    # --- output ----------------------------------------------------------------------------

    def send(self, frame: ServerFrame) -> None:
        self.conn.send(ws_binary_frame(encode(frame)))

    def reply(self, rid: int, code: int = 0, reason: str = "", result: msgspec.Raw = NIL) -> None:
        if code:
            self._counts.error(code)
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
