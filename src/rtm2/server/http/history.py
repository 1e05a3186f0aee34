"""The API's message-history routes (docs/HISTORY.md, "HTTP").

Two shapes of the same read, through the same ``HistoryService.page`` as the SDK's
``get_messages`` (same checks, bounds and codes):

- ``GET /v1/apps/{app}/channels/{message|user}/{channel}/history?start=&end=&count=``, in the
  style of the rest of this API; a user channel names the other user with ``user=``;
- ``GET /rtm/v2/history/{appId}/userId/{userId}/channelType/{message|user}/channel/{name}
  ?start=&end=&messageCount=``, Agora's RTM 2 REST path and answer (``data.messageList``,
  ``data.newStart``), so a backend written for Agora switches by changing its base URL (and
  its key: these routes take this API's keys).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol, cast

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from ...errors import ErrorCode, RTMError
from ...protocol.frames import HistoryMessage, HistoryResult
from ...types import ChannelType, MessageType
from ..auth import check_login_token
from ..config import AppConfig

__all__ = ["HistoryBackend", "history_routes"]

Authorize = Callable[[Request[Any, Any, Any], str], AppConfig]
StatusOf = Callable[[int], int]

_TYPES = {"message": ChannelType.MESSAGE, "user": ChannelType.USER, "stream": ChannelType.STREAM}
_BOUND = QueryParameter(ge=0, le=2**53 - 1)


class HistoryBackend(Protocol):
    """What these routes ask of the node (``ApiBackend`` has it too)."""

    async def history_page(
        self,
        app: AppConfig,
        channel_type: int,
        channel: str,
        user: str,
        count: int,
        start: int,
        end: int,
    ) -> HistoryResult: ...


class StoredMessage(msgspec.Struct):
    id: int  # unique within the channel; a newer message has a larger one
    publisher: str
    message_type: int  # 1 STRING: text in ``message``; 0 BINARY: base64 in ``message_b64``
    custom_type: str
    timestamp: int  # server time in ms
    message: str | None = None
    message_b64: str | None = None


class HistoryPage(msgspec.Struct):
    messages: list[StoredMessage]  # newest first
    new_start: int  # pass as ``start`` for the next, older page; 0: there is none


class AgoraMessage(msgspec.Struct):
    publisher: str
    message: str  # text; base64 for a BINARY message
    messageType: str  # "STRING" or "BINARY"
    customType: str
    timestamp: int
    messageId: int  # rtm2's id: unique within the channel


class AgoraData(msgspec.Struct):
    messageList: list[AgoraMessage]
    count: int
    newStart: int


class AgoraHistory(msgspec.Struct):
    errorCode: int
    error: bool
    requestId: str
    operation: str
    reason: str
    timestamp: int
    data: AgoraData | None = None


class _Refused(msgspec.Struct):
    """The API's error body (``app.Error``)."""

    code: int
    reason: str


def _text(m: HistoryMessage) -> bool:
    return m.message_type == MessageType.STRING


def _stored(m: HistoryMessage) -> StoredMessage:
    if _text(m):
        return StoredMessage(
            m.id, m.publisher, m.message_type, m.custom_type, m.timestamp, m.payload.decode()
        )
    return StoredMessage(
        m.id,
        m.publisher,
        m.message_type,
        m.custom_type,
        m.timestamp,
        None,
        base64.b64encode(m.payload).decode(),
    )


def _agora(m: HistoryMessage) -> AgoraMessage:
    text = _text(m)
    return AgoraMessage(
        m.publisher,
        m.payload.decode(errors="replace") if text else base64.b64encode(m.payload).decode(),
        "STRING" if text else "BINARY",
        m.custom_type,
        m.timestamp,
        m.id,
    )


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RTMError(ErrorCode.INVALID_PARAMETER, f"{name} must be an integer") from None


def _channel_type(name: str) -> int:
    ctype = _TYPES.get(name)
    if ctype is None:
        raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "channel type: message or user")
    return ctype


def history_routes(
    authorized: Authorize,
    backend: HistoryBackend,
    security: list[dict[str, list[str]]],
    responses: dict[int, ResponseSpec],
    status_of: StatusOf,
    apps: Mapping[str, AppConfig],
) -> list[HTTPRouteHandler]:
    """The routes; ``security`` and ``responses`` as the other routes'; ``status_of`` maps an
    RTM code to the HTTP status the API answers it with; ``apps`` by id (Agora's token)."""

    def as_user(request: Request[Any, Any, Any], app_id: str, user_id: str) -> AppConfig | None:
        """The app, when the request presents Agora's ``Authorization: agora token=<token>``
        with a valid RTM token of ``user_id`` (None: no such header)."""
        scheme, _, rest = request.headers.get("Authorization", "").partition(" ")
        name, _, token = rest.strip().partition("=")
        if scheme.lower() != "agora" or name != "token":
            return None
        app = apps.get(app_id)
        if app is None:
            raise RTMError(ErrorCode.INVALID_APP_ID, "unknown app id")
        check_login_token(app, token, user_id, int(time.time()))
        return app

    @get(
        "/v1/apps/{app_id:str}/channels/{channel_type:str}/{channel:str}/history",
        summary="Stored messages of a channel or peer conversation, newest first",
        description="`channel_type` is `message`, or `user` for the conversation between "
        "`user` and the user `channel`. `start` (excluded) and `end` (included) are server "
        "times in ms or a `new_start`; 0 = no bound. `count` 1-100. docs/HISTORY.md.",
        tags=["history"],
        security=security,
        responses=responses,
    )
    async def channel_history(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        start: Annotated[int, _BOUND] = 0,
        end: Annotated[int, _BOUND] = 0,
        count: Annotated[int, QueryParameter(ge=1, le=100)] = 100,
        user: FromQuery[str] = "",
    ) -> HistoryPage:
        app = authorized(request, app_id)
        ctype = _channel_type(channel_type)
        if ctype == ChannelType.USER and not user:
            raise RTMError(ErrorCode.INVALID_USER_ID, "a user channel needs user=<the other user>")
        page = await backend.history_page(app, ctype, channel, user, count, start, end)
        return HistoryPage([_stored(m) for m in page.messages], page.new_start)

    @get(
        "/rtm/v2/history/{app_id:str}/userId/{user_id:str}/channelType/{channel_type:str}"
        "/channel/{channel:str}",
        summary="Agora RTM 2's history REST call (same path, parameters and answer)",
        description="As Agora documents it: `data.messageList` newest first and "
        "`data.newStart` (0: no more). A user channel is the conversation between `userId` "
        "and the user `channel`. Authenticated with this API's keys, or as Agora does with "
        "`Authorization: agora token=<RTM token of userId>`. Errors come as "
        "`{errorCode, error: true, reason}`.",
        tags=["history"],
        security=security,
        # Bad arguments are answered in Agora's shape; a missing or wrong key as the API's
        # other routes answer it.
        responses={
            **responses,
            400: ResponseSpec(AgoraHistory, description="Invalid request: errorCode says what"),
        },
    )
    async def agora_history(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        user_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        # Integers, read by hand so that a bad one is answered in Agora's shape too.
        start: FromQuery[str] = "0",
        end: FromQuery[str] = "0",
        messageCount: FromQuery[str] = "100",
    ) -> Response[AgoraHistory]:
        try:
            user_app = as_user(request, app_id, user_id)
        except RTMError as exc:  # as a wrong API key is answered
            status = 404 if exc.code == ErrorCode.INVALID_APP_ID else 401
            refused = Response(_Refused(exc.code, exc.reason), status_code=status)
            return cast("Response[AgoraHistory]", refused)  # the 401/404 body, as documented
        app = user_app or authorized(request, app_id)
        request_id = uuid.uuid4().hex
        now = int(time.time() * 1000)
        try:
            ctype = _channel_type(channel_type)
            if ctype == ChannelType.STREAM:
                raise RTMError(ErrorCode.INVALID_PARAMETER, "stream channels keep no history")
            if (
                user_app is not None
                and ctype == ChannelType.MESSAGE
                and app.history.history_read == "subscribers"
            ):
                raise RTMError(
                    ErrorCode.HISTORY_OPERATION_NOT_PERMITTED,
                    "this app lets only subscribers read a channel's history: use an API key",
                )
            page = await backend.history_page(
                app,
                ctype,
                channel,
                user_id,
                _integer(messageCount, "messageCount"),
                _integer(start, "start"),
                _integer(end, "end"),
            )
        except RTMError as exc:
            body = AgoraHistory(exc.code, True, request_id, "get-history", exc.reason, now)
            return Response(body, status_code=status_of(exc.code))
        messages = [_agora(m) for m in page.messages]
        data = AgoraData(messages, len(messages), page.new_start)
        return Response(AgoraHistory(0, False, request_id, "get-history", "success", now, data))

    return [channel_history, agora_history]
