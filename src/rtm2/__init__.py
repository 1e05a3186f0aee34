"""rtm2: self-hosted real-time messaging with the Agora RTM 2 model.

The SDK (``RTMClient``) and the shared types live at the top level; ``rtm2.sync`` is the SDK as
blocking calls, for code without asyncio. The server is ``rtm2.server`` and tokens are built
and checked with ``rtm2.tokens``.
"""

import logging as _logging

# First: with a current ``make compile`` build, this makes the hot modules load compiled.
from . import _compiled as _compiled
from ._version import __version__
from .client import (
    PARAM_ENDPOINT,
    PARAM_SIDECAR_CERTIFICATE,
    PARAM_SIDECAR_PATH,
    PARAM_SIDECAR_PORT,
    EventStream,
    History,
    JoinResult,
    Lock,
    LoginStreams,
    Presence,
    RTMClient,
    RTMConfig,
    Storage,
    StreamChannel,
    UserList,
    WhoNowResult,
)
from .errors import ErrorCode, RTMError
from .tokens import build_rtm_token, build_stream_token
from .types import (
    ChannelInfo,
    ChannelType,
    ConnectionChangeReason,
    ConnectionEvent,
    ConnectionState,
    HistoryMessage,
    LockDetail,
    LockEvent,
    LockEventType,
    Message,
    MessageType,
    Metadata,
    MetadataItem,
    PresenceEvent,
    PresenceEventType,
    RecoveryEvent,
    StorageEvent,
    StorageEventType,
    StorageType,
    StreamPriority,
    StreamQos,
    TopicEvent,
    TopicEventType,
    UserState,
)

__all__ = [
    "PARAM_ENDPOINT",
    "PARAM_SIDECAR_CERTIFICATE",
    "PARAM_SIDECAR_PATH",
    "PARAM_SIDECAR_PORT",
    "ChannelInfo",
    "ChannelType",
    "ConnectionChangeReason",
    "ConnectionEvent",
    "ConnectionState",
    "ErrorCode",
    "EventStream",
    "History",
    "HistoryMessage",
    "JoinResult",
    "Lock",
    "LockDetail",
    "LockEvent",
    "LockEventType",
    "LoginStreams",
    "Message",
    "MessageType",
    "Metadata",
    "MetadataItem",
    "Presence",
    "PresenceEvent",
    "PresenceEventType",
    "RecoveryEvent",
    "RTMClient",
    "RTMConfig",
    "RTMError",
    "StreamPriority",
    "Storage",
    "StorageEvent",
    "StorageEventType",
    "StorageType",
    "StreamChannel",
    "StreamQos",
    "TopicEvent",
    "TopicEventType",
    "UserList",
    "UserState",
    "WhoNowResult",
    "__version__",
    "build_rtm_token",
    "build_stream_token",
]

# A library logs only where the application asks it to.
_logging.getLogger("rtm2").addHandler(_logging.NullHandler())
