"""The sub-APIs need only the narrow Session role: they work against a fake one, no socket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from rtm2.client.config import RTMConfig
from rtm2.client.connection import Link
from rtm2.client.lock import Lock
from rtm2.client.offsets import OffsetBook
from rtm2.client.presence import Presence
from rtm2.client.session import Session
from rtm2.client.streams import EventStream
from rtm2.errors import ErrorCode, RTMError
from rtm2.protocol import frames as f
from rtm2.types import ChannelType, LockDetail, LockEventType, PresenceEventType

T = TypeVar("T")
CHAT = (ChannelType.MESSAGE, "chat")


class FakeSession:
    """Answers every request with ``answer`` (None by default) and records what was sent."""

    def __init__(self, logged_in: bool = True) -> None:
        self._config = RTMConfig(app_id="a" * 32, user_id="me")
        self._offsets = OffsetBook()
        self.logged_in = logged_in
        self.sent: list[f.Request] = []
        self.answer: Any = None

    @property
    def config(self) -> RTMConfig:
        return self._config

    @property
    def offsets(self) -> OffsetBook:
        return self._offsets

    def require_login(self) -> None:
        if not self.logged_in:
            raise RTMError(ErrorCode.NOT_LOGIN, "log in first")

    async def request(
        self,
        make: Callable[[int], f.Request],
        result_type: type[T] | None,
        apply: Callable[[T | None], None] | None = None,
    ) -> T | None:
        self.require_login()
        self.sent.append(make(len(self.sent) + 1))
        if apply is not None:
            apply(self.answer)
        return self.answer  # type: ignore[no-any-return]

    async def live_link(self) -> Link:
        raise RTMError(ErrorCode.NOT_CONNECTED, "no link in a unit test")

    def reconnectable(self) -> bool:
        return False


def kinds(events: EventStream[Any]) -> list[Any]:
    """The types of the events queued in a stream (which it hands over)."""
    out = []
    while (event := events.get_nowait()) is not None:
        out.append(event.type)
    return out


def test_the_fake_session_fills_the_session_role() -> None:
    session: Session = FakeSession()  # mypy checks the role; the suite checks it runs
    assert session.config.user_id == "me"


async def test_presence_state_set_before_entering_is_cached_without_a_request() -> None:
    session = FakeSession()
    presence = Presence(session)
    await presence.set_state("chat", ChannelType.MESSAGE, {"mood": "ok"})
    assert session.sent == []
    assert presence.state_for(CHAT) == {"mood": "ok"}


async def test_presence_state_set_inside_a_channel_is_sent_and_shows_in_the_snapshot() -> None:
    session = FakeSession()
    presence = Presence(session)
    presence.entered(CHAT, {"bob": {}}, listen=True)
    await presence.set_state("chat", ChannelType.MESSAGE, {"mood": "ok"})
    assert [type(r) for r in session.sent] == [f.SetState]
    snapshot, _ = await presence.get_presence_events("chat", ChannelType.MESSAGE)
    assert snapshot == {"bob": {}, "me": {"mood": "ok"}}


async def test_presence_events_follow_a_channel_until_it_is_left() -> None:
    presence = Presence(FakeSession())
    presence.entered(CHAT, {"bob": {}}, listen=True)
    presence._on_event(
        f.PresenceEvent(PresenceEventType.REMOTE_JOIN, "chat", ChannelType.MESSAGE, "amy")
    )
    snapshot, events = await presence.get_presence_events("chat", ChannelType.MESSAGE)
    assert snapshot == {"bob": {}, "amy": {}}
    assert kinds(events) == [
        PresenceEventType.SNAPSHOT,
        PresenceEventType.REMOTE_JOIN,
    ]
    presence.left(CHAT, ErrorCode.CHANNEL_NOT_SUBSCRIBED)
    assert events.closed
    with pytest.raises(RTMError) as info:
        await presence.get_presence_events("chat", ChannelType.MESSAGE)
    assert info.value.code == ErrorCode.CHANNEL_NOT_SUBSCRIBED


async def test_a_sub_api_of_a_session_not_logged_in_raises_not_login() -> None:
    presence = Presence(FakeSession(logged_in=False))
    with pytest.raises(RTMError) as info:
        await presence.set_state("chat", ChannelType.MESSAGE, {"k": "v"})
    assert info.value.code == ErrorCode.NOT_LOGIN


async def test_lock_views_follow_lock_events_from_their_snapshot() -> None:
    lock = Lock(FakeSession())
    lock.open_view(CHAT, [f.LockDetail("door", "", 10)])
    lock._on_event(
        f.LockEvent(
            LockEventType.ACQUIRED, "chat", ChannelType.MESSAGE, [f.LockDetail("door", "amy", 10)]
        )
    )
    locks, events = await lock.get_lock_events("chat", ChannelType.MESSAGE)
    assert locks == {"door": LockDetail("door", "amy", 10)}
    assert kinds(events) == [
        LockEventType.SNAPSHOT,
        LockEventType.ACQUIRED,
    ]
    lock.reset()
    assert events.closed
