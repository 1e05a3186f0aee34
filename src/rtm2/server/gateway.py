"""WebSocket I/O: one :class:`Connection` per client, and the :class:`Outbox` that batches writes.

This is the only server module that knows about picows. Outgoing frames are pre-built WebSocket
frames (``protocol.codec.ws_binary_frame``) appended to the connection's pending list; the outbox
writes every dirty connection's list with one ``write()`` per event-loop pass. Under load this
batches many frames per system call by itself; when idle it adds no delay, since the flush runs
in the same loop pass that queued the frame.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from picows import (
    WSCloseCode,
    WSFrame,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)

# From its defining module: mypyc's build refers to a base class's module by that name.
from picows.picows import WSListener

from ..protocol.codes import ACCESS_KEY_HEADER, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG

if TYPE_CHECKING:
    from .admission import Admission
    from .session import Session

__all__ = ["Connection", "Outbox", "SessionFactory", "send_each"]

log = logging.getLogger("rtm2.server")

# Enum members as module globals: on Python 3.11 reading ``WSMsgType.BINARY`` goes through the
# enum class's ``__getattr__`` hook (~850 instructions under callgrind), once per frame.
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG


def send_each(sessions: Iterable[Session], frame: bytes) -> None:
    """``session.conn.send(frame)`` for each session (what ``Outbox.send_all`` does faster)."""
    for s in sessions:
        s.conn.send(frame)


class SessionFactory(Protocol):
    def __call__(self, conn: Connection) -> Session: ...


class Outbox:
    """Connections with pending frames, flushed together once per event-loop pass."""

    __slots__ = (
        "_dirty",
        "_loop",
        "_scheduled",
        "accepted",
        "bytes_in",
        "bytes_out",
        "max_buffer",
        "max_frame",
        "max_queued",
        "slow_consumers",
        "user_timeout",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_buffer: int,
        max_frame: int,
        user_timeout: float = 0.0,
        max_queued: int = 10_000,
    ) -> None:
        self._loop = loop
        self._dirty: list[Connection] = []
        self._scheduled = False
        # A connection whose unsent bytes pass this is a slow consumer and is cut off.
        self.max_buffer = max_buffer
        # Largest message a client may send; larger ones close the connection unread.
        self.max_frame = max_frame
        # Seconds the kernel may hold unacknowledged bytes before it drops the socket (0: its
        # default, which is many minutes).
        self.user_timeout = user_timeout
        # Requests one connection may have waiting behind a slow one; more closes it.
        self.max_queued = max_queued
        # Counters for the metrics (``metrics``), here because every connection has the
        # outbox at hand: bumping them is an attribute ``+=``, not a call.
        self.accepted = 0
        self.slow_consumers = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        self._loop.call_later(delay, callback)

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        max_buffer = self.max_buffer
        total = 0  # bytes written: added to the counter once per pass
        try:
            # ``Connection.flush`` inlined (keep the two alike): one Python call less per
            # connection and pass, which at fan-out is one per delivery.
            for conn in dirty:
                out = conn._out
                raw = conn.raw
                if not out or raw is None:
                    continue
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                sent, conn._out_bytes = conn._out_bytes, 0
                if raw.is_closing():
                    continue
                total += sent
                raw.write(data)
                conn._room = room = max_buffer - raw.get_write_buffer_size()
                if room < 0:
                    conn._slow_consumer()
        finally:
            self.bytes_out += total

    def send_all(self, sessions: Iterable[Session], frame: bytes) -> None:
        """``session.conn.send(frame)`` for each session: the fan-out loop of a delivery.

        ``Connection.send`` is inlined (keep the two alike) for a connection that is open and
        not held, one Python call less per delivery; any other goes through ``send``.
        """
        size = len(frame)
        dirty = self._dirty
        queued = False
        for s in sessions:
            conn = s.conn
            raw = conn.raw
            if raw is None or conn._held is not None:
                conn.send(frame)
                continue
            if raw.is_closing():
                continue
            out = conn._out
            if not out:
                dirty.append(conn)
                queued = True
            out.append(frame)
            conn._out_bytes = pending = conn._out_bytes + size
            if pending > conn._room:
                conn._slow_consumer()
        if queued and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)


_C = TypeVar("_C")


def _python_class(cls: type[_C]) -> type[_C]:
    """Nothing at run time. For mypyc (the optional build, ``make compile``) a class with a
    decorator it does not know stays a Python class whose methods it compiles: a native class
    would lay its attributes over those of a Cython base (``WSListener``'s method table)."""
    return cls


@_python_class
class Connection(WSListener):
    """One client connection. Holds only what I/O needs; the protocol lives in ``session``."""

    __slots__ = (
        "_admission",
        "_admitted",
        "_held",
        "_ip",
        "_out",
        "_out_bytes",
        "_outbox",
        "_room",
        "last_seen",
        "peer",
        "pending",
        "raw",
        "session",
        "transport",
    )

    def __init__(
        self, outbox: Outbox, make_session: SessionFactory, admission: Admission | None = None
    ) -> None:
        self._outbox = outbox
        self._admission = admission
        # Let in (and counted by the admission, so released at the end).
        self._admitted = False
        self._ip = ""
        # Not logged in yet: counts against the tighter cap on such connections.
        self.pending = True
        self._out: list[bytes] = []
        self._out_bytes = 0  # size of ``_out``, so a growing queue is caught before the flush
        # What ``_out`` may hold before the send buffer is over its limit, as of the last flush
        # (the transport's buffer only shrinks until the next one).
        self._room = outbox.max_buffer
        # While not None, frames wait here (see ``hold``); a list inside is a hold's slot.
        self._held: list[bytes | list[bytes]] | None = None
        self.peer = "?"
        self.transport: WSTransport | None = None
        self.raw: asyncio.Transport | None = None
        self.last_seen = 0.0
        self.session = make_session(self)

    # --- picows callbacks ------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        peer = self.raw.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = f"{peer[0]}:{peer[1]}"
            self._ip = str(peer[0])
        _tune_socket(self.raw.get_extra_info("socket"), self._outbox.user_timeout)
        if self._admission is not None:
            refused = self._admission.admit(self._ip)
            if refused is not None:
                log.warning("refusing a connection from %s: %s", self.peer, refused)
                self.cut(CLOSE_POLICY, refused)
                return
        self._admitted = True
        self._outbox.accepted += 1
        self.session.on_open()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if not self._admitted:
            return  # refused, and closing: what it sends reaches no session
        msg_type = frame.msg_type
        # ``fin`` is typed bool but is an int: read untyped, or mypyc's build insists on bool.
        untyped: Any = frame
        size = frame.payload_size
        outbox = self._outbox
        outbox.bytes_in += size
        if size > outbox.max_frame:
            # picows reports the oversize but may still hand the frame over: never run it.
            self.close(CLOSE_TOO_BIG, "frame too large", flush=False)
        elif msg_type is _BINARY and untyped.fin:
            self.session.on_data(frame.get_payload_as_bytes())
        elif msg_type is _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif msg_type is _PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is not _PONG:
            self.close(CLOSE_PROTOCOL_ERROR, "only whole binary frames are accepted")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._out.clear()
        self._out_bytes = 0
        self._held = None
        if not self._admitted:
            return  # refused at the door: no session ever opened
        self._admitted = False
        if self._admission is not None:
            self._admission.release(self._ip, self.pending)
            self.pending = False
        self.session.on_close()

    def logged_in(self) -> None:
        """Its session logged in or resumed: no longer one of the connections logging in."""
        if self.pending:
            self.pending = False
            if self._admitted and self._admission is not None:
                self._admission.logged_in(self._ip)

    # --- output ----------------------------------------------------------------------------

    @property
    def max_queued(self) -> int:
        return self._outbox.max_queued

    def pause_reading(self) -> None:
        """Leave the client's next frames in the socket (and the kernel push back on it)."""
        if self.raw is not None and not self.raw.is_closing():
            self.raw.pause_reading()

    def resume_reading(self) -> None:
        if self.raw is not None and not self.raw.is_closing():
            self.raw.resume_reading()

    @property
    def closing(self) -> bool:
        """The connection is gone or going: frames sent now would never leave."""
        raw = self.raw
        return raw is None or raw.is_closing()

    def send(self, frame: bytes) -> None:
        """Queue a complete WebSocket frame; it leaves with this loop pass's flush."""
        if self.raw is None or self.raw.is_closing():
            return
        if self._held is not None:
            self._held.append(frame)
            return
        if not self._out:
            self._outbox.mark(self)
        self._out.append(frame)
        self._out_bytes += len(frame)
        # Checked here and not only at the flush: one batch of requests may queue megabytes of
        # answers within a single loop pass.
        if self._out_bytes > self._room:
            self._slow_consumer()

    def hold(self) -> list[bytes]:
        """Keep every frame sent from now on until ``release``; return the hold's slot.

        Frames put in the slot (a reply, the messages a client missed) go out ahead of
        everything sent while held, which is how a replay that has to wait for the engine still
        comes before what arrived live meanwhile. Holds nest; the last release lets all go.
        """
        slot: list[bytes] = []
        if self._held is None:
            self._held = []
        self._held.append(slot)
        return slot

    def release(self, slot: list[bytes]) -> None:
        held = self._held
        if held is None or not any(part is slot for part in held):
            return
        # The slot becomes plain frames; the hold ends when no other slot is open.
        for i, part in enumerate(held):
            if part is slot:
                held[i : i + 1] = slot
                break
        if any(isinstance(part, list) for part in held):
            return
        self._held = None
        for frame in held:
            assert isinstance(frame, bytes)
            self.send(frame)

    def flush(self) -> None:
        out = self._out
        if not out or self.raw is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        sent, self._out_bytes = self._out_bytes, 0
        if self.raw.is_closing():
            return
        self._outbox.bytes_out += sent  # once per flush: ``_out_bytes`` is the batch's size
        self.raw.write(data)
        self._room = self._outbox.max_buffer - self.raw.get_write_buffer_size()
        if self._room < 0:
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        log.warning("disconnecting slow consumer %s", self.peer)
        self._outbox.slow_consumers += 1
        # A client that does not read would never take the close frame either: the bytes
        # queued for it are dropped at once (aborting frees them; a graceful close keeps them
        # until the client reads or the kernel gives up).
        self.cut(CLOSE_POLICY, "slow consumer: send buffer full", grace=0.0)

    def cut(self, code: int, reason: str, grace: float = 1.0) -> None:
        """Close without sending what is pending, and abort the socket if the close frame has
        not left after ``grace`` seconds: a peer that does not read cannot pin memory."""
        self.close(code, reason, flush=False)
        raw = self.raw
        if raw is None:
            return
        if grace <= 0.0:
            raw.abort()
        elif raw.get_write_buffer_size():
            self._outbox.later(grace, raw.abort)

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Send what is pending (unless ``flush`` is False), a close frame, and disconnect."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        if flush:
            self.flush()
        else:
            self._out.clear()
            self._out_bytes = 0
        transport.send_close(WSCloseCode(code), reason.encode()[:120])
        transport.disconnect()


def _tune_socket(sock: socket.socket | None, user_timeout: float) -> None:
    """Let the kernel find dead peers too: keepalive probes on an idle socket, and (Linux) a
    limit on how long sent bytes may stay unacknowledged before the socket is dropped."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if user_timeout > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
            ms = max(1000, int(user_timeout * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)
            idle = max(1, int(user_timeout) // 2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError as exc:  # not fatal: the sweep's keepalive still applies
        log.debug("cannot set keepalive options: %s", exc)


def listener_factory(
    outbox: Outbox, make_session: SessionFactory, admission: Admission, access_key: str = ""
) -> Callable[[WSUpgradeRequest], Connection | WSUpgradeResponseWithListener]:
    """The picows listener factory: one :class:`Connection` per upgrade request that
    ``admission`` lets through (the caps on connections apply once the peer is known).

    With an ``access_key``, an upgrade without that key in its header is refused with 403
    before any session exists.
    """
    expected = access_key.encode()

    def factory(request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        if expected:
            presented = request.headers.get(ACCESS_KEY_HEADER, "").encode()
            if not hmac.compare_digest(presented, expected):
                refusal = WSUpgradeResponse.create_error_response(403, b"access key required")
                return WSUpgradeResponseWithListener(refusal, None)
        refused = admission.check_request(request.path, request.headers.get("origin"))
        if refused is not None:
            status, reason = refused
            response = WSUpgradeResponse.create_error_response(status, reason.encode())
            return WSUpgradeResponseWithListener(response, None)
        return Connection(outbox, make_session, admission)

    return factory
