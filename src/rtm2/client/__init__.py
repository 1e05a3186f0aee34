"""The rtm2 client SDK. Application code imports these names from ``rtm2`` directly."""

from .client import (
    PARAM_ENDPOINT,
    PARAM_SIDECAR_CERTIFICATE,
    PARAM_SIDECAR_PATH,
    PARAM_SIDECAR_PORT,
    LoginStreams,
    RTMClient,
    RTMConfig,
)
from .history import History
from .lock import Lock
from .presence import Presence, UserList, WhoNowResult
from .storage import Storage
from .stream_channel import JoinResult, StreamChannel
from .streams import EventStream

__all__ = [
    "PARAM_ENDPOINT",
    "PARAM_SIDECAR_CERTIFICATE",
    "PARAM_SIDECAR_PATH",
    "PARAM_SIDECAR_PORT",
    "EventStream",
    "History",
    "JoinResult",
    "Lock",
    "LoginStreams",
    "Presence",
    "RTMClient",
    "RTMConfig",
    "Storage",
    "StreamChannel",
    "UserList",
    "WhoNowResult",
]
