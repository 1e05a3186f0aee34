"""The blocking SDK: ``rtm2.sync.RTMClient`` for code without an asyncio loop (Django, Flask,
scripts). It fronts the asyncio ``rtm2.RTMClient`` on an event-loop thread of its own; see
``rtm2.client.sync``."""

from .client.sync import (
    EventStream,
    History,
    JoinResult,
    Lock,
    LoginStreams,
    Presence,
    RTMClient,
    Storage,
    StreamChannel,
)

__all__ = [
    "EventStream",
    "History",
    "JoinResult",
    "Lock",
    "LoginStreams",
    "Presence",
    "RTMClient",
    "Storage",
    "StreamChannel",
]
