"""Live routes (issue 18): Server-Sent Event streams of the node's counters and of a channel's
messages, an app's public settings, and a stream topic's publishers. The web console
(``http/console``) shows what these give; it has no routes of its own to the node's data.

Kept apart from ``app.py`` as ``listing.py`` is: ``make_app`` passes its key checks in.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, Protocol

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ...errors import ErrorCode, RTMError
from ...protocol.codec import decode_server
from ...protocol.frames import ChannelMessage, StreamMessage
from ...protocol.names import is_valid_channel_name, is_valid_topic_name, is_valid_user_id
from ...types import ChannelType, MessageType
from ..config import AppConfig
from ..taps import Tap

__all__ = [
    "AppSample",
    "AppSettings",
    "LiveBackend",
    "LockWaiters",
    "Publishers",
    "Sample",
    "TailMessage",
    "Waiters",
    "live_routes",
    "tail_message",
]

SAMPLE_EVERY = 1.0  # seconds between two samples of the node's counters
TAIL_SIZE = 256  # messages a tail may hold for a slow reader before it is dropped
KEEPALIVE = 15.0  # seconds of quiet before a comment line, so proxies keep the stream


class AppSample(msgspec.Struct):
    app_id: str
    users_online: int  # attached sessions of the app on this node


class Sample(msgspec.Struct):
    """The node's counters now: a client takes the difference of two samples for rates."""

    time: float  # Unix time
    node: str
    connections: int  # attached sessions on this node
    published: int  # messages clients published here (channels, topics, peers), ever
    delivered: int  # messages queued for recipients here, one per recipient, ever
    errors: int  # requests answered with an error here, ever
    apps: list[AppSample]


class TailMessage(msgspec.Struct):
    """One message of a tailed channel, as its subscribers got it."""

    channel: str
    topic: str  # "" in a message channel
    publisher: str
    message_type: str  # "string" or "binary"
    custom_type: str
    timestamp: int  # server time, ms
    offset: int
    payload_b64: str  # the payload, always
    text: str | None  # the payload as UTF-8 text, when it is


class AppSettings(msgspec.Struct):
    """An app's public settings: limits and policies, never its certificates or keys."""

    app_id: str
    stream_join_policy: str
    user_metadata_write: str
    lock_admin: str
    certificates: int  # how many (a token is needed when any)
    api_keys: int  # how many
    limits: dict[str, float]


class Publishers(msgspec.Struct):
    topic: str
    publishers: list[str]


class LockWaiters(msgspec.Struct):
    lock: str
    users: list[str]  # in queue order


class Waiters(msgspec.Struct):
    node: str  # the node answering: each node queues the requests of its own sessions
    waiters: list[LockWaiters]


class LiveBackend(Protocol):
    def sample(self, app_id: str | None) -> Sample:
        """The node's counters; ``apps`` of ``app_id`` only, or every app's when None."""

    async def open_tail(self, app: AppConfig, channel_type: int, channel: str, size: int) -> Tap:
        """A tap on the channel's messages, wherever they are published."""

    def close_tail(self, tap: Tap) -> None: ...

    async def publishers(self, app: AppConfig, channel: str, topic: str) -> list[str]:
        """The users publishing in ``topic`` of the stream channel, on every node."""

    def lock_waiters(self, app: AppConfig, channel_type: int, channel: str) -> dict[str, list[str]]:
        """Users of this node's sessions waiting for each lock of the channel, in order."""

    def node_id(self) -> str: ...

    def stopping(self) -> bool:
        """Whether the node is shutting down (streams end then)."""

    async def pause(self, seconds: float) -> None:
        """Sleep, or less when the node starts shutting down."""


def tail_message(frame: bytes) -> TailMessage | None:
    """A tap's frame as the API shows it (None: not a message frame)."""
    f = decode_server(frame)
    if isinstance(f, StreamMessage):
        topic = f.topic
    elif isinstance(f, ChannelMessage):
        topic = ""
    else:
        return None
    text: str | None = None
    if f.message_type != MessageType.BINARY:
        try:
            text = f.payload.decode()
        except UnicodeDecodeError:
            text = None
    return TailMessage(
        f.channel,
        topic,
        f.publisher,
        "binary" if f.message_type == MessageType.BINARY else "string",
        f.custom_type,
        f.timestamp,
        f.offset,
        base64.b64encode(f.payload).decode(),
        text,
    )


def settings_of(app: AppConfig) -> AppSettings:
    return AppSettings(
        app.app_id,
        app.stream_join_policy,
        app.user_metadata_write,
        app.lock_admin,
        len(app.certificates),
        len(app.api_keys),
        {k: float(v) for k, v in asdict(app.limits).items()},
    )


def _channel_type(name: str) -> int:
    if name == "message":
        return ChannelType.MESSAGE
    if name == "stream":
        return ChannelType.STREAM
    raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "channel type: message or stream")


def _channel(name: str) -> str:
    if not is_valid_channel_name(name):
        raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {name!r}")
    return name


_SSE_DOC = (
    "A `text/event-stream` (Server-Sent Events) that does not end by itself: read it with an "
    "EventSource or `curl -N`."
)


def _events(data: type[msgspec.Struct], what: str) -> dict[int, ResponseSpec]:
    """The 200 of a stream: the document names the JSON each event carries."""
    return {
        200: ResponseSpec(
            data,
            media_type="text/event-stream",
            description=f"Server-Sent Events; the data of each {what} is this, as JSON",
            generate_examples=False,
        )
    }


def live_routes(
    authorized: Callable[[Request[Any, Any, Any], str], AppConfig],
    admin: Callable[[Request[Any, Any, Any]], None],
    backend: LiveBackend,
    security: list[dict[str, list[str]]],
    errors: Callable[..., dict[int, ResponseSpec]],
) -> list[HTTPRouteHandler]:
    async def samples(app_id: str | None) -> AsyncIterator[ServerSentEventMessage]:
        while not backend.stopping():
            data = msgspec.json.encode(backend.sample(app_id)).decode()
            yield ServerSentEventMessage(data, event="sample")
            await backend.pause(SAMPLE_EVERY)

    @get(
        "/v1/live",
        summary="The node's counters every second, as Server-Sent Events (admin key)",
        description=f"{_SSE_DOC} Each `sample` event is a `Sample`: rates come from the "
        "difference of two samples.",
        tags=["live"],
        security=security,
        responses=errors(401, 403) | _events(Sample, "`sample` event"),
        media_type="text/event-stream",
    )
    async def live(request: Request[Any, Any, Any]) -> ServerSentEvent:
        admin(request)
        return ServerSentEvent(samples(None))

    @get(
        "/v1/apps/{app_id:str}/live",
        summary="The node's counters every second, with this app's figures, as Server-Sent Events",
        description=f"{_SSE_DOC} As `/v1/live`, with `apps` holding this app only.",
        tags=["live"],
        security=security,
        responses=errors(401, 403, 404) | _events(Sample, "`sample` event"),
        media_type="text/event-stream",
    )
    async def app_live(request: Request[Any, Any, Any], app_id: FromPath[str]) -> ServerSentEvent:
        app = authorized(request, app_id)
        return ServerSentEvent(samples(app.app_id))

    @get(
        "/v1/apps/{app_id:str}/channels/{channel_type:str}/{channel:str}/tail",
        summary="A channel's messages as they are published, as Server-Sent Events",
        description=f"{_SSE_DOC} A `ready` event comes once the node listens to the channel; "
        "then each `message` event is a `TailMessage`, from whichever node it was published "
        f"on, and a `keepalive` event after {KEEPALIVE:.0f} s of quiet. A reader more than "
        f"{TAIL_SIZE} messages behind gets a `dropped` event and the stream ends (reconnect "
        "to go on).",
        tags=["live"],
        security=security,
        responses=errors(400, 401, 403, 404) | _events(TailMessage, "`message` event"),
        media_type="text/event-stream",
    )
    async def tail(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
    ) -> ServerSentEvent:
        app = authorized(request, app_id)
        ctype = _channel_type(channel_type)
        tap = await backend.open_tail(app, ctype, _channel(channel), TAIL_SIZE)

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            try:
                yield ServerSentEventMessage("subscribed", event="ready")
                quiet = time.monotonic()
                while not backend.stopping():
                    await tap.wait(1.0)
                    if tap.overflowed:
                        yield ServerSentEventMessage("too slow", event="dropped")
                        return
                    if tap.closed:  # the node is stopping
                        return
                    frames = tap.take()
                    for frame in frames:
                        message = tail_message(frame)
                        if message is not None:
                            data = msgspec.json.encode(message).decode()
                            yield ServerSentEventMessage(data, event="message")
                    now = time.monotonic()
                    if frames:
                        quiet = now
                    elif now - quiet > KEEPALIVE:
                        quiet = now
                        yield ServerSentEventMessage("", event="keepalive")
            finally:
                backend.close_tail(tap)

        return ServerSentEvent(messages())

    @get(
        "/v1/apps/{app_id:str}/settings",
        summary="The app's limits and policies (never its certificates or keys)",
        tags=["apps"],
        security=security,
        responses=errors(401, 403, 404),
    )
    async def settings(request: Request[Any, Any, Any], app_id: FromPath[str]) -> AppSettings:
        return settings_of(authorized(request, app_id))

    @get(
        # {channel_type}, not "stream": a static segment there would take every path of a
        # stream channel away from the routes with {channel_type} (Litestar does not backtrack).
        "/v1/apps/{app_id:str}/channels/{channel_type:str}/{channel:str}/topics/{topic:str}"
        "/publishers",
        summary="Who publishes in a topic of a stream channel, on every node",
        description="`channel_type` is `stream`: message channels have no topics.",
        tags=["presence"],
        security=security,
        responses=errors(400, 401, 403, 404),
    )
    async def publishers(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        topic: FromPath[str],
    ) -> Publishers:
        app = authorized(request, app_id)
        if _channel_type(channel_type) != ChannelType.STREAM:
            raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "topics are a stream channel's")
        if not is_valid_topic_name(topic):
            raise RTMError(ErrorCode.CHANNEL_INVALID_TOPIC_NAME, f"invalid topic name {topic!r}")
        found = await backend.publishers(app, _channel(channel), topic)
        return Publishers(topic, sorted(u for u in found if is_valid_user_id(u)))

    @get(
        "/v1/apps/{app_id:str}/channels/{channel_type:str}/{channel:str}/lock-waiters",
        summary="Users waiting for the channel's locks through this node",
        description="Each node queues its own sessions' waiting acquires (the engine's queue "
        "holds tickets, not users): on several nodes, ask each one.",
        tags=["locks"],
        security=security,
        responses=errors(400, 401, 403, 404),
    )
    async def lock_waiters(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
    ) -> Waiters:
        app = authorized(request, app_id)
        found = backend.lock_waiters(app, _channel_type(channel_type), _channel(channel))
        return Waiters(
            backend.node_id(), [LockWaiters(name, users) for name, users in sorted(found.items())]
        )

    return [live, app_live, tail, settings, publishers, lock_waiters]
