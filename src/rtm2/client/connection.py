"""One live WebSocket link to a server: requests with ids and timeouts, pushes, keepalive.

The read side runs in picows callbacks and never blocks: replies resolve futures, pushes go to
the owner's ``on_push`` callback (which only appends to bounded streams). Every request has a
timeout, and a timed-out request leaves nothing behind (unlike the Go SDK's pending map).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from picows import WSCloseCode, WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ..errors import ErrorCode, RTMError
from ..protocol.codec import decode_result, decode_server, encode, encode_batch
from ..protocol.codes import timeout_code
from ..protocol.frames import Kick, Ping, Pong, Reply, Request, ServerFrame
from ..types import ConnectionChangeReason

__all__ = ["Link"]

T = TypeVar("T")

PushHandler = Callable[[ServerFrame], None]
LostHandler = Callable[[ConnectionChangeReason, str], None]


class _Pending:
    """A request waiting for its reply."""

    __slots__ = ("apply", "future", "result_type")

    def __init__(
        self,
        future: asyncio.Future[Any],
        result_type: type[Any] | None,
        apply: Callable[[Any], None] | None,
    ) -> None:
        self.future = future
        self.result_type = result_type
        self.apply = apply

    def resolve(self, reply: Reply) -> None:
        if reply.code:
            self.future.set_exception(RTMError(reply.code, reply.reason))
            return
        try:
            result = None
            if self.result_type is not None:
                result = decode_result(reply.result, self.result_type)
            if self.apply is not None:
                self.apply(result)
        except Exception as exc:  # a bad result must fail its request, not the read loop
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class _Listener(WSListener):
    def __init__(self, link: Link) -> None:
        self.link = link

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.BINARY:
            self.link._on_data(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.CLOSE:
            self.link._on_close_frame(frame.get_close_reason())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.link._on_disconnected()


class Link:
    """A connection to one server endpoint. Owned by ``RTMClient``; not public API."""

    def __init__(self, on_push: PushHandler, on_lost: LostHandler, log: logging.Logger) -> None:
        self._on_push = on_push
        self._on_lost = on_lost
        self._log = log
        self._transport: WSTransport | None = None
        self._pending: dict[int, _Pending] = {}
        # The server's limit per WebSocket message (from Welcome); a safe default until then.
        self.max_frame_size = 64 * 1024
        self._out: list[bytes] = []
        self._next_rid = 0
        self._last_received = 0.0
        self._keepalive: asyncio.Task[None] | None = None
        self._closing = False
        # Why the server is ending the session, if it said so before closing.
        self._kick: tuple[ConnectionChangeReason, str] | None = None
        self._close_reason = ""

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._closing

    async def open(
        self,
        url: str,
        ssl_context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
        max_frame_size: int = 1 << 20,
    ) -> None:
        """Connect; raises RTMError(NOT_CONNECTED) when the endpoint cannot be reached or its
        certificate is not trusted. ``ssl_context`` is used for ``wss://`` URLs only;
        ``headers`` go with the upgrade request (a sidecar's access key)."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await ws_connect(
                lambda: _Listener(self),
                url,
                ssl_context=ssl_context,
                extra_headers=headers,
                max_frame_size=max_frame_size,
                read_buffer_init_size=4096,
                websocket_handshake_timeout=None,
            )
        except ssl.SSLCertVerificationError as exc:
            # Said plainly: a private CA needs RTMConfig.tls_ca_file or ssl_context.
            raise RTMError(
                ErrorCode.NOT_CONNECTED,
                f"the TLS certificate of {url} is not trusted ({exc.verify_message}); "
                "give RTMConfig.tls_ca_file or ssl_context for a private CA",
            ) from None
        except (OSError, WSError) as exc:
            raise RTMError(ErrorCode.NOT_CONNECTED, f"cannot reach {url}: {exc}") from None
        self._transport = transport
        self._last_received = loop.time()

    def start_keepalive(self, interval: float, grace: float) -> None:
        self._keepalive = asyncio.get_running_loop().create_task(
            self._keepalive_loop(interval, grace), name="rtm2-keepalive"
        )

    async def _keepalive_loop(self, interval: float, grace: float) -> None:
        loop = asyncio.get_running_loop()
        while self.is_open:
            await asyncio.sleep(interval)
            silent = loop.time() - self._last_received
            if silent > interval + grace:
                self._log.warning("no frame from the server for %.1f s, giving up", silent)
                self._lose(ConnectionChangeReason.KEEP_ALIVE_TIMEOUT, "keepalive timeout")
                return
            self.send(Ping(loop.time()))

    # --- requests --------------------------------------------------------------------------

    def send(self, frame: Request | Ping) -> None:
        """Queue a frame; frames queued in one event-loop pass leave as one batch."""
        if self._transport is None or self._closing:
            raise RTMError(ErrorCode.NOT_CONNECTED, "the connection is closed")
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(encode(frame))

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self._transport
        if not out or transport is None or transport.is_close_frame_sent:
            return
        if len(out) == 1:
            transport.send(WSMsgType.BINARY, out[0])
            return
        # Batches stay under the server's frame limit: a larger WebSocket message would be
        # refused as a whole.
        limit = self.max_frame_size - 16
        batch: list[bytes] = []
        size = 0
        for frame in out:
            if batch and size + len(frame) > limit:
                transport.send(
                    WSMsgType.BINARY, encode_batch(batch) if len(batch) > 1 else batch[0]
                )
                batch, size = [], 0
            batch.append(frame)
            size += len(frame)
        transport.send(WSMsgType.BINARY, encode_batch(batch) if len(batch) > 1 else batch[0])

    async def request(
        self,
        make: Callable[[int], Request],
        result_type: type[T] | None,
        timeout: float,
        apply: Callable[[T | None], None] | None = None,
    ) -> T | None:
        """Send a request and wait for its reply; raise RTMError on refusal or timeout.

        ``apply``, if given, runs with the result inside the read loop, right when the reply
        arrives, so local state changes before any push that follows the reply is handled.
        """
        frame, future = self.begin(make, result_type, apply)
        try:
            async with asyncio.timeout(timeout):
                result: T | None = await future
        except TimeoutError:
            raise RTMError(
                timeout_code(frame), f"no reply to {type(frame).__name__} within {timeout:g} s"
            ) from None
        finally:
            self.forget(frame.rid)
        return result

    def begin(
        self,
        make: Callable[[int], Request],
        result_type: type[T] | None,
        apply: Callable[[T | None], None] | None = None,
    ) -> tuple[Request, asyncio.Future[T | None]]:
        """Send a request; return it and the future of its result. The caller awaits the
        future however long it likes, and calls ``forget(frame.rid)`` when it stops caring."""
        self._next_rid += 1
        rid = self._next_rid
        frame = make(rid)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(future, result_type, apply)
        try:
            self.send(frame)
        except BaseException:
            self.forget(rid)
            raise
        return frame, future

    def forget(self, rid: int) -> None:
        self._pending.pop(rid, None)

    # --- read side -------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._last_received = asyncio.get_running_loop().time()
        try:
            frame = decode_server(data)
        except RTMError as exc:
            self._log.error("dropping a frame the server should not have sent: %s", exc.reason)
            return
        if isinstance(frame, Reply):
            pending = self._pending.pop(frame.rid, None)
            if pending is not None and not pending.future.done():
                pending.resolve(frame)
        elif isinstance(frame, Kick):
            try:
                reason = ConnectionChangeReason(frame.reason)
            except ValueError:  # a newer server's reason: the session is still over
                reason = ConnectionChangeReason.REJECTED_BY_SERVER
            self._kick = (reason, frame.message)
        elif not isinstance(frame, Pong):
            self._on_push(frame)

    def _on_close_frame(self, reason: str) -> None:
        self._close_reason = reason

    def _on_disconnected(self) -> None:
        if self._closing:
            self._fail_pending()
            return
        if self._kick is not None:
            self._lose(*self._kick)
        else:
            self._lose(ConnectionChangeReason.LOST, self._close_reason or "connection lost")

    def _lose(self, reason: ConnectionChangeReason, message: str) -> None:
        if self._closing:
            return
        self.close()
        self._on_lost(reason, message)

    def _fail_pending(self) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    RTMError(ErrorCode.NOT_CONNECTED, "the connection closed")
                )
        self._pending.clear()

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close without notifying the owner (it asked for this)."""
        if self._closing:
            return
        self._closing = True
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        if self._transport is not None and not self._transport.is_disconnected:
            with contextlib.suppress(Exception):
                self._transport.send_close(WSCloseCode.OK)
            self._transport.disconnect()
        self._fail_pending()

    async def wait_closed(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._transport.wait_disconnected(), 1.0)
