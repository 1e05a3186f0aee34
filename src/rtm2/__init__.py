"""rtm2: self-hosted real-time messaging with the Agora RTM 2 model.

The SDK (``RTMClient``) and the shared types live at the top level; the server is
``rtm2.server`` and tokens are built and checked with ``rtm2.tokens``.
"""

import logging as _logging

from ._version import __version__
from .client import (
    PARAM_ENDPOINT,
    EventStream,
    JoinResult,
    LoginStreams,
    RTMClient,
    RTMConfig,
    StreamChannel,
)
from .errors import ErrorCode, RTMError
from .tokens import build_rtm_token, build_stream_token
from .types import (
    ChannelType,
    ConnectionChangeReason,
    ConnectionEvent,
    ConnectionState,
    Message,
    MessageType,
    StreamPriority,
    StreamQos,
    TopicEvent,
    TopicEventType,
)

__all__ = [
    "PARAM_ENDPOINT",
    "ChannelType",
    "ConnectionChangeReason",
    "ConnectionEvent",
    "ConnectionState",
    "ErrorCode",
    "EventStream",
    "JoinResult",
    "LoginStreams",
    "Message",
    "MessageType",
    "RTMClient",
    "RTMConfig",
    "RTMError",
    "StreamPriority",
    "StreamChannel",
    "StreamQos",
    "TopicEvent",
    "TopicEventType",
    "__version__",
    "build_rtm_token",
    "build_stream_token",
]

# A library logs only where the application asks it to.
_logging.getLogger("rtm2").addHandler(_logging.NullHandler())
