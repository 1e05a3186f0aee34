"""The RTM code a request gets when the engine is unavailable: one table, one place.

Engines raise one ``EngineUnavailable`` whatever failed; what it means to a client depends on
what the client asked for. Each code is the one clients of this request type got before the
engines stopped choosing codes themselves (the code of the first engine call the request
makes), so clients see the same codes. Requests that make no engine call that can raise, or
whose engine answers with an outcome value (metadata writes, lock changes), are not listed:
they get ``INIT_SERVICE_FAILED``, as any other unexpected failure.
"""

from __future__ import annotations

from ..errors import ErrorCode
from ..protocol.frames import (
    ClientFrame,
    GetHistory,
    GetState,
    JoinTopic,
    LeaveTopic,
    Publish,
    PublishTopic,
    RemoveState,
    SetState,
    StreamJoin,
    StreamLeave,
    Subscribe,
    SubscribeTopic,
    WhereNow,
    WhoNow,
)

__all__ = ["UNAVAILABLE", "unavailable_code"]

UNAVAILABLE: dict[type[ClientFrame], ErrorCode] = {
    # Publishing: never acknowledge what the engine did not take.
    Publish: ErrorCode.CHANNEL_PUBLISH_MESSAGE_FAILED,
    PublishTopic: ErrorCode.CHANNEL_PUBLISH_MESSAGE_FAILED,
    # Channel membership, topics and presence live in the engine's shared state.
    Subscribe: ErrorCode.PRESENCE_NOT_CONNECTED,
    StreamJoin: ErrorCode.PRESENCE_NOT_CONNECTED,
    StreamLeave: ErrorCode.PRESENCE_NOT_CONNECTED,
    JoinTopic: ErrorCode.PRESENCE_NOT_CONNECTED,
    LeaveTopic: ErrorCode.PRESENCE_NOT_CONNECTED,
    SubscribeTopic: ErrorCode.PRESENCE_NOT_CONNECTED,
    WhoNow: ErrorCode.PRESENCE_NOT_CONNECTED,
    WhereNow: ErrorCode.PRESENCE_NOT_CONNECTED,
    GetState: ErrorCode.PRESENCE_NOT_CONNECTED,
    SetState: ErrorCode.PRESENCE_NOT_CONNECTED,
    RemoveState: ErrorCode.PRESENCE_NOT_CONNECTED,
    GetHistory: ErrorCode.HISTORY_NOT_AVAILABLE,
}


def unavailable_code(frame: ClientFrame) -> ErrorCode:
    """The code to answer ``frame`` with when the engine raised ``EngineUnavailable``."""
    return UNAVAILABLE.get(type(frame), ErrorCode.INIT_SERVICE_FAILED)
