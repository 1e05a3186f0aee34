"""rtm2: self-hosted real-time messaging with the Agora RTM 2 model.

The SDK (``RTMClient``) and the shared types live at the top level; the server is
``rtm2.server`` and tokens are built and checked with ``rtm2.tokens``.
"""

from ._version import __version__
from .client import PARAM_ENDPOINT, EventStream, LoginStreams, RTMClient, RTMConfig
from .errors import ErrorCode, RTMError
from .tokens import build_rtm_token, build_stream_token
from .types import (
    ChannelType,
    ConnectionChangeReason,
    ConnectionEvent,
    ConnectionState,
    MessageType,
    StreamPriority,
    StreamQos,
)

__all__ = [
    "PARAM_ENDPOINT",
    "ChannelType",
    "ConnectionChangeReason",
    "ConnectionEvent",
    "ConnectionState",
    "ErrorCode",
    "EventStream",
    "LoginStreams",
    "MessageType",
    "RTMClient",
    "RTMConfig",
    "RTMError",
    "StreamPriority",
    "StreamQos",
    "__version__",
    "build_rtm_token",
    "build_stream_token",
]
