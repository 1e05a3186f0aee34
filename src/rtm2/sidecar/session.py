"""One Go SDK connection: its frames in, one ``rtm2.RTMClient`` session, its replies and events out.

Every request gets exactly one reply carrying its ``seqId`` (errors as official RTM 2.1 codes
in ``errCode``), written at once: a reply never queues behind events. Events go through one
bounded queue in the order the SDK's streams deliver them, and leave as fast as the Go side
reads; when the Go side falls so far behind that the queue is full, the connection is closed
(and the rtm2 session logged out) rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from ..client import PARAM_ENDPOINT, EventStream, RTMClient, RTMConfig
from ..errors import ErrorCode, RTMError
from ..types import ChannelType, StreamQos
from . import convert
from .convert import Event
from .dialect import Uri, go_error_code, rtm2_priority
from .framing import FrameDecoder, FrameError, encode_frame
from .proto import gosdk_pb2 as pb

__all__ = ["ENDPOINT_PARAMS", "GoSession", "Limits"]

T = TypeVar("T")

# LoginReq params naming the rtm2 server (the Go SDK sends every parameter without the
# ``golang_`` prefix there, so ``client.SetParameters({"rtm2_endpoint": ...})`` reaches us).
ENDPOINT_PARAMS = ("rtm2_endpoint", "endpoint")

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection bounds.

    Attributes:
        max_queued_events: events waiting for the Go side to read them; one more closes it.
        max_queued_bytes: the same, counted in bytes.
        max_unread_replies: bytes of replies the Go side has not read; more closes it.
        max_inflight: requests handled at once; the next waits (TCP back-pressure).
        request_timeout: seconds an upstream request may take; below the Go SDK's 5 s, so
            the Go side gets our code instead of its own timeout.
    """

    max_queued_events: int = 10_000
    max_queued_bytes: int = 32 << 20
    max_unread_replies: int = 32 << 20
    max_inflight: int = 256
    request_timeout: float = 4.5


Handler = Callable[[Any], Awaitable[ProtoMessage | None]]


class GoSession:
    """The bridge for one TCP connection from the Go SDK."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: str | None,
        limits: Limits,
        log: logging.Logger,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._endpoint = endpoint
        self._limits = limits
        self._log = log
        self._params: dict[str, Any] = {}
        self._client: RTMClient | None = None
        self._pumps: dict[int, asyncio.Task[None]] = {}  # by id() of the stream pumped
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight = asyncio.Semaphore(limits.max_inflight)
        self._events: deque[bytes] = deque()
        self._replies: list[bytes] = []
        self._event_bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._handlers: dict[int, tuple[type[ProtoMessage], Handler]] = self._routes()

    # --- the connection ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the Go side closes it (or breaks a rule); then log out."""
        writer_task = asyncio.get_running_loop().create_task(self._write_events())
        decoder = FrameDecoder()
        try:
            while not self._closing:
                data = await self._reader.read(_CHUNK)
                if not data:
                    break
                for raw in decoder.feed(data):
                    header = pb.Header()
                    header.ParseFromString(raw)
                    await self._inflight.acquire()
                    if self._closing:
                        break
                    task = asyncio.get_running_loop().create_task(self._handle(header))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except (FrameError, DecodeError) as exc:
            self._log.warning("closing a connection that does not speak the protocol: %s", exc)
        except ConnectionError as exc:
            self._log.info("connection lost: %s", exc)
        finally:
            self._closing = True
            writer_task.cancel()
            await self._shutdown()

    async def _shutdown(self) -> None:
        for task in [*self._tasks, *self._pumps.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._pumps.values(), return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RTMError):
                await client.logout()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._log.info("connection closed")

    def _close(self, why: str) -> None:
        if not self._closing:
            self._log.warning("closing the connection: %s", why)
            self._closing = True
            self._writer.transport.abort()

    # --- writing -----------------------------------------------------------------------------

    def _reply(self, seq_id: int, uri: int, code: int, message: ProtoMessage | None) -> None:
        body = message.SerializeToString() if message is not None else b""
        header = pb.Header(seqId=seq_id, uri=uri, message=body, errCode=code)
        if self._closing:
            return
        # Straight to the socket, past any queued events; the replies of one loop pass leave
        # in one write.
        if not self._replies:
            asyncio.get_running_loop().call_soon(self._flush_replies)
        self._replies.append(encode_frame(header.SerializeToString()))

    def _flush_replies(self) -> None:
        replies = b"".join(self._replies)
        self._replies.clear()
        if self._closing:
            return
        self._writer.write(replies)
        if self._writer.transport.get_write_buffer_size() > self._limits.max_unread_replies:
            self._close("the Go side does not read its replies")

    def _event(self, event: Event) -> None:
        if self._closing:
            return
        uri, body = event
        frame = encode_frame(pb.Header(uri=uri, message=body).SerializeToString())
        self._events.append(frame)
        self._event_bytes += len(frame)
        limits = self._limits
        if len(self._events) > limits.max_queued_events or (
            self._event_bytes > limits.max_queued_bytes
        ):
            self._close(
                f"event queue overflow ({len(self._events)} events, {self._event_bytes} bytes):"
                " the Go side is not reading"
            )
            return
        self._wake.set()

    async def _write_events(self) -> None:
        """Write queued events in order, a batch per pass, as fast as the Go side reads."""
        writer = self._writer
        with contextlib.suppress(ConnectionError):
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._events and not self._closing:
                    batch = b"".join(self._events)
                    self._events.clear()
                    self._event_bytes = 0
                    writer.write(batch)
                    await writer.drain()

    def _pump(self, stream: EventStream[T], convert_one: Callable[[T], Event]) -> None:
        """Forward ``stream``'s events to the Go side until it ends (once per stream)."""
        key = id(stream)
        if key in self._pumps and not self._pumps[key].done():
            return

        async def pump() -> None:
            async for item in stream:
                self._event(convert_one(item))

        task = self._pumps[key] = asyncio.get_running_loop().create_task(pump())
        task.add_done_callback(lambda t: self._forget_pump(key, t))

    def _forget_pump(self, key: int, task: asyncio.Task[None]) -> None:
        if self._pumps.get(key) is task:
            del self._pumps[key]

    # --- requests ----------------------------------------------------------------------------

    async def _handle(self, header: pb.Header) -> None:
        try:
            code, response = await self._dispatch(header)
            self._reply(header.seqId, header.uri, code, response)
        finally:
            self._inflight.release()

    async def _dispatch(self, header: pb.Header) -> tuple[int, ProtoMessage | None]:
        route = self._handlers.get(header.uri)
        try:
            if route is None:
                raise RTMError(ErrorCode.INVALID_PARAMETER, f"unknown request uri {header.uri}")
            kind, handler = route
            request = kind()
            try:
                request.ParseFromString(header.message)
            except DecodeError:
                raise RTMError(ErrorCode.INVALID_PARAMETER, "undecodable request") from None
            if header.uri != Uri.LOGIN and self._client is None:
                raise RTMError(ErrorCode.NOT_LOGIN, "not logged in")
            self._log.debug("request %d %s", header.seqId, _uri_name(header.uri))
            return 0, await handler(request)
        except RTMError as exc:
            self._log.debug("request %d failed: %s", header.seqId, exc.code)
            return go_error_code(exc.code), None
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("request %d (%s) failed", header.seqId, _uri_name(header.uri))
            return int(ErrorCode.INIT_SERVICE_FAILED), None

    def _routes(self) -> dict[int, tuple[type[ProtoMessage], Handler]]:
        return {
            Uri.LOGIN: (pb.LoginReq, self._login),
            Uri.LOGOUT: (pb.LogoutReq, self._logout),
            Uri.SET_PARAMS: (pb.SetParamsReq, self._set_params),
            Uri.RENEW_TOKEN: (pb.RenewTokenReq, self._renew_token),
            Uri.MESSAGE_SUBSCRIBE: (pb.MessageSubReq, self._subscribe),
            Uri.MESSAGE_UNSUBSCRIBE: (pb.MessageUnsubReq, self._unsubscribe),
            Uri.MESSAGE_PUBLISH: (pb.MessagePublishReq, self._publish),
            Uri.STREAM_JOIN: (pb.StreamJoinReq, self._join),
            Uri.STREAM_LEAVE: (pb.StreamLeaveReq, self._leave),
            Uri.STREAM_JOIN_TOPIC: (pb.StreamJoinTopicReq, self._join_topic),
            Uri.STREAM_LEAVE_TOPIC: (pb.StreamLeaveTopicReq, self._leave_topic),
            Uri.STREAM_PUBLISH: (pb.StreamMessageReq, self._publish_topic),
            Uri.STREAM_SUB_TOPIC: (pb.StreamSubTopicReq, self._subscribe_topic),
            Uri.STREAM_UNSUB_TOPIC: (pb.StreamUnsubTopicReq, self._unsubscribe_topic),
            Uri.STORAGE_OP_CHANNEL: (pb.StorageChannelReq, self._channel_metadata),
            Uri.STORAGE_GET_CHANNEL: (pb.StorageChannelGetReq, self._get_channel_metadata),
            Uri.STORAGE_OP_USER: (pb.StorageUserReq, self._user_metadata),
            Uri.STORAGE_GET_USER: (pb.StorageUserGetReq, self._get_user_metadata),
            Uri.STORAGE_SUBSCRIBE_USER: (pb.StorageUserSubReq, self._subscribe_user_metadata),
            Uri.STORAGE_UNSUBSCRIBE_USER: (
                pb.StorageUserUnsubReq,
                self._unsubscribe_user_metadata,
            ),
            Uri.PRESENCE_WHERE_NOW: (pb.PresenceWhereNowReq, self._where_now),
            Uri.PRESENCE_WHO_NOW: (pb.PresenceWhoNowReq, self._who_now),
            Uri.PRESENCE_SET_STATE: (pb.PresenceSetStateReq, self._set_state),
            Uri.PRESENCE_GET_STATE: (pb.PresenceGetStateReq, self._get_state),
            Uri.PRESENCE_REMOVE_STATE: (pb.PresenceRemoveStateReq, self._remove_state),
            Uri.LOCK_ACQUIRE: (pb.LockAcquireReq, self._lock_acquire),
            Uri.LOCK_GET: (pb.LockGetReq, self._lock_get),
            Uri.LOCK_RELEASE: (pb.LockReleaseReq, self._lock_release),
            Uri.LOCK_REMOVE: (pb.LockRemoveReq, self._lock_remove),
            Uri.LOCK_REVOKE: (pb.LockRevokeReq, self._lock_revoke),
            Uri.LOCK_SET: (pb.LockSetReq, self._lock_set),
        }

    @property
    def client(self) -> RTMClient:
        assert self._client is not None  # _dispatch refuses other requests before login
        return self._client

    # --- session -----------------------------------------------------------------------------

    def _endpoint_for_login(self) -> str:
        if self._endpoint:
            return self._endpoint
        for name in ENDPOINT_PARAMS:
            value = self._params.get(name)
            if isinstance(value, str) and value:
                return value
        raise RTMError(
            ErrorCode.INVALID_PARAMETER,
            "no rtm2 server: start the sidecar with --endpoint (or RTM2_ENDPOINT), or set the"
            " client parameter rtm2_endpoint",
        )

    def _merge_params(self, text: str) -> None:
        if not text:
            return
        try:
            params = json.loads(text)
        except ValueError:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "params are not JSON") from None
        if not isinstance(params, dict):
            raise RTMError(ErrorCode.INVALID_PARAMETER, "params are not a JSON object")
        self._params.update(params)

    async def _login(self, req: pb.LoginReq) -> None:
        if self._client is not None:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "already logged in")
        self._merge_params(req.params)
        config = RTMConfig(
            app_id=req.appId,
            user_id=req.userId,
            request_timeout=self._limits.request_timeout,
            presence_timeout=req.presenceTimeout or 300,
            logger=self._log.getChild("sdk"),
        )
        client = RTMClient(config)
        client.set_parameters({PARAM_ENDPOINT: self._endpoint_for_login()})
        self._client = client  # requests racing the login wait on it, not NOT_LOGIN
        try:
            streams = await client.login(req.token)
        except BaseException:
            self._client = None
            with contextlib.suppress(RTMError):
                await client.logout()
            raise
        self._log.info("logged in as %s", req.userId)
        self._pump(streams.conn_events, convert.connection_event)
        self._pump(streams.token_events, convert.token_event)
        self._pump(client.peer_messages, convert.message_event)

    async def _logout(self, _: pb.LogoutReq) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.logout()

    async def _set_params(self, req: pb.SetParamsReq) -> None:
        self._merge_params(req.params)

    async def _renew_token(self, req: pb.RenewTokenReq) -> None:
        if req.channel:
            await self.client.stream_channel(req.channel).renew_token(req.token)
        else:
            await self.client.renew_token(req.token)

    # --- views a channel was entered with ------------------------------------------------------

    async def _follow(
        self, channel: str, kind: ChannelType, presence: bool, metadata: bool, lock: bool
    ) -> None:
        """Forward the presence, metadata and lock events of a channel just entered: each
        stream starts with the SNAPSHOT the Go SDK waits for."""
        client = self.client
        if presence:
            _, p_stream = await client.presence.get_presence_events(channel, kind)
            self._pump(p_stream, convert.presence_event)
        if metadata:
            _, s_stream = await client.storage.get_channel_metadata_events(channel, kind)
            self._pump(s_stream, convert.storage_event)
        if lock:
            _, l_stream = await client.lock.get_lock_events(channel, kind)
            self._pump(l_stream, convert.lock_event)

    # --- message channels and peer messages ------------------------------------------------------

    async def _subscribe(self, req: pb.MessageSubReq) -> None:
        if _has_unknown_fields(req):
            # The Go SDK sends GetSubscribedUsers' StreamSubListReq on this URI (a known bug):
            # answer with an error instead of subscribing to a channel named like the stream.
            raise RTMError(
                ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED, "get_subscribed_users is answered locally"
            )
        stream = await self.client.subscribe(
            req.channel,
            with_message=req.message,
            with_presence=req.presence,
            with_metadata=req.metadata,
            with_lock=req.lock,
        )
        self._pump(stream, convert.message_event)
        await self._follow(req.channel, ChannelType.MESSAGE, req.presence, req.metadata, req.lock)

    async def _unsubscribe(self, req: pb.MessageUnsubReq) -> None:
        await self.client.unsubscribe(req.channel)

    async def _publish(self, req: pb.MessagePublishReq) -> None:
        kind = ChannelType.USER if req.channelType == ChannelType.USER else ChannelType.MESSAGE
        await self.client.publish(
            req.channel,
            convert.payload(req.message, req.type),
            channel_type=kind,
            custom_type=req.customType,
        )

    # --- stream channels -------------------------------------------------------------------------

    async def _join(self, req: pb.StreamJoinReq) -> None:
        channel = self.client.stream_channel(req.channel)
        result = await channel.join(
            req.token or None,
            with_presence=req.presence,
            with_metadata=req.metadata,
            with_lock=req.lock,
        )
        self._pump(result.topic_events, convert.topic_event)
        name = req.channel
        self._pump(result.token_events, lambda _: convert.token_event(name))
        await self._follow(name, ChannelType.STREAM, req.presence, req.metadata, req.lock)

    async def _leave(self, req: pb.StreamLeaveReq) -> None:
        await self.client.stream_channel(req.channel).leave()

    async def _join_topic(self, req: pb.StreamJoinTopicReq) -> None:
        await self.client.stream_channel(req.channel).join_topic(
            req.topic,
            qos=StreamQos.ORDERED if req.qos == StreamQos.ORDERED else StreamQos.UNORDERED,
            priority=rtm2_priority(req.priority),
            meta=req.meta,
            sync_media=req.syncMedia,
        )

    async def _leave_topic(self, req: pb.StreamLeaveTopicReq) -> None:
        await self.client.stream_channel(req.channel).leave_topic(req.topic)

    async def _publish_topic(self, req: pb.StreamMessageReq) -> None:
        await self.client.stream_channel(req.channel).publish_topic(
            req.topic,
            convert.payload(req.message, req.type),
            custom_type=req.customType,
            send_ts=req.sendTs,
        )

    async def _subscribe_topic(self, req: pb.StreamSubTopicReq) -> pb.StreamSubTopicResp:
        channel = self.client.stream_channel(req.channel)
        stream = await channel.subscribe_topic(req.topic, req.userIds)
        self._pump(stream, convert.stream_message_event)
        picked = set(await channel.get_subscribed_users(req.topic))
        wanted = list(req.userIds) or sorted(picked)
        return pb.StreamSubTopicResp(
            channel=req.channel,
            topic=req.topic,
            succeed=[u for u in wanted if u in picked],
            failed=[u for u in wanted if u not in picked],
        )

    async def _unsubscribe_topic(self, req: pb.StreamUnsubTopicReq) -> None:
        await self.client.stream_channel(req.channel).unsubscribe_topic(req.topic, req.userIds)

    # --- storage ---------------------------------------------------------------------------------

    async def _channel_metadata(self, req: pb.StorageChannelReq) -> None:
        storage = self.client.storage
        write = {
            pb.SET: storage.set_channel_metadata,
            pb.UPDATE: storage.update_channel_metadata,
            pb.REMOVE: storage.remove_channel_metadata,
        }.get(req.opType)
        if write is None:
            raise RTMError(ErrorCode.STORAGE_INVALID_ARGUMENT, f"unknown operation {req.opType}")
        await write(
            req.channel,
            convert.channel_type(req.channelType),
            convert.rtm2_items(req.items),
            major_revision=req.majorRev,
            lock_name=req.lock,
            record_ts=req.recordTs,
            record_author=req.recordUid,
        )

    async def _get_channel_metadata(self, req: pb.StorageChannelGetReq) -> ProtoMessage:
        kind = convert.channel_type(req.channelType)
        metadata = await self.client.storage.get_channel_metadata(req.channel, kind)
        return pb.StorageChannelGetResp(
            channel=req.channel,
            channelType=int(kind),
            items=convert.metadata_items(metadata.items),
            majorRev=metadata.major_revision,
        )

    async def _user_metadata(self, req: pb.StorageUserReq) -> None:
        storage = self.client.storage
        write = {
            pb.SET: storage.set_user_metadata,
            pb.UPDATE: storage.update_user_metadata,
            pb.REMOVE: storage.remove_user_metadata,
        }.get(req.opType)
        if write is None:
            raise RTMError(ErrorCode.STORAGE_INVALID_ARGUMENT, f"unknown operation {req.opType}")
        await write(
            req.userId,
            convert.rtm2_items(req.items),
            major_revision=req.majorRev,
            record_ts=req.recordTs,
            record_author=req.recordUid,
        )

    async def _get_user_metadata(self, req: pb.StorageUserGetReq) -> ProtoMessage:
        metadata = await self.client.storage.get_user_metadata(req.userId)
        return pb.StorageUserGetResp(
            userId=req.userId,
            items=convert.metadata_items(metadata.items),
            majorRev=metadata.major_revision,
        )

    async def _subscribe_user_metadata(self, req: pb.StorageUserSubReq) -> None:
        _, stream = await self.client.storage.subscribe_user_metadata(req.userId)
        self._pump(stream, convert.storage_event)

    async def _unsubscribe_user_metadata(self, req: pb.StorageUserUnsubReq) -> None:
        await self.client.storage.unsubscribe_user_metadata(req.userId)

    # --- presence --------------------------------------------------------------------------------

    async def _where_now(self, req: pb.PresenceWhereNowReq) -> ProtoMessage:
        channels = await self.client.presence.where_now(req.userId)
        return pb.PresenceWhereNowResp(
            userId=req.userId,
            channels=[
                pb.ChannelInfo(channel=c.channel, channelType=int(c.channel_type)) for c in channels
            ],
        )

    async def _who_now(self, req: pb.PresenceWhoNowReq) -> ProtoMessage:
        kind = convert.channel_type(req.channelType)
        result = await self.client.presence.who_now(
            req.channel,
            kind,
            include_user_id=req.withUserId,
            include_state=req.withState,
            page=req.page or None,
        )
        return pb.PresenceWhoNowResp(
            channel=req.channel,
            channelType=int(kind),
            users=convert.user_states({u.user_id: u.state for u in result.users}),
            count=result.users.total,
            nextPage=result.next_page or "",
        )

    async def _set_state(self, req: pb.PresenceSetStateReq) -> None:
        await self.client.presence.set_state(
            req.channel, convert.channel_type(req.channelType), _pairs(req.items)
        )

    async def _get_state(self, req: pb.PresenceGetStateReq) -> ProtoMessage:
        kind = convert.channel_type(req.channelType)
        state = await self.client.presence.get_state(req.channel, kind, req.userId)
        return pb.PresenceGetStateResp(
            channel=req.channel,
            channelType=int(kind),
            userId=req.userId,
            items=[pb.UserStateItem(key=k, value=v) for k, v in state.items()],
        )

    async def _remove_state(self, req: pb.PresenceRemoveStateReq) -> None:
        await self.client.presence.remove_state(
            req.channel, convert.channel_type(req.channelType), req.keys
        )

    # --- locks -----------------------------------------------------------------------------------

    async def _lock_acquire(self, req: pb.LockAcquireReq) -> None:
        kind = convert.channel_type(req.channelType)
        if not req.retry:
            await self.client.lock.acquire(req.channel, kind, req.lock)
            return
        # A waiting acquire must end before the Go SDK stops waiting for it: cancelling the
        # SDK's wait withdraws it (and gives the lock back if it was granted meanwhile), so
        # the Go side never holds a lock it was told it did not get.
        try:
            async with asyncio.timeout(self._limits.request_timeout):
                await self.client.lock.acquire(req.channel, kind, req.lock, retry=True)
        except TimeoutError:
            raise RTMError(ErrorCode.LOCK_OPERATION_TIMEOUT, "lock still held by another") from None

    async def _lock_get(self, req: pb.LockGetReq) -> ProtoMessage:
        kind = convert.channel_type(req.channelType)
        locks = await self.client.lock.get(req.channel, kind)
        return pb.LockGetResp(
            channel=req.channel, channelType=int(kind), locks=convert.lock_details(locks)
        )

    async def _lock_release(self, req: pb.LockReleaseReq) -> None:
        await self.client.lock.release(req.channel, convert.channel_type(req.channelType), req.lock)

    async def _lock_remove(self, req: pb.LockRemoveReq) -> None:
        await self.client.lock.remove(req.channel, convert.channel_type(req.channelType), req.lock)

    async def _lock_revoke(self, req: pb.LockRevokeReq) -> None:
        await self.client.lock.revoke(
            req.channel, convert.channel_type(req.channelType), req.lock, req.owner
        )

    async def _lock_set(self, req: pb.LockSetReq) -> None:
        await self.client.lock.set(
            req.channel, convert.channel_type(req.channelType), req.lock, req.ttl
        )


def _pairs(items: Any) -> dict[str, str]:
    return {i.key: i.value for i in items}


def _has_unknown_fields(message: ProtoMessage) -> bool:
    """Whether ``message`` was parsed from bytes carrying fields it does not define."""
    known = type(message)()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    return known.ByteSize() != message.ByteSize()


def _uri_name(uri: int) -> str:
    try:
        return Uri(uri).name
    except ValueError:
        return str(uri)
