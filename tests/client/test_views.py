"""ChannelViews: one followed channel's snapshot and event stream, from open to close."""

from __future__ import annotations

import pytest

from rtm2.client.views import ChannelViews
from rtm2.errors import ErrorCode, RTMError


def views() -> ChannelViews[str, dict[str, int], str]:
    return ChannelViews(lambda key: f"{key}/things")


def test_an_opened_view_holds_the_snapshot_and_its_stream_starts_with_the_snapshot_event() -> None:
    v = views()
    view = v.open("room", {"a": 1}, "SNAPSHOT")
    assert "room" in v
    assert v.get("room") is view
    assert view.snapshot == {"a": 1}
    assert view.stream.name == "room/things"
    assert view.stream.get_nowait() == "SNAPSHOT"


def test_opening_again_keeps_the_stream_and_takes_the_new_snapshot() -> None:
    v = views()
    first = v.open("room", {"a": 1}, "SNAPSHOT 1")
    stream = first.stream
    again = v.open("room", {"b": 2}, "SNAPSHOT 2")
    assert again is first
    assert again.stream is stream
    assert again.snapshot == {"b": 2}
    assert [stream.get_nowait(), stream.get_nowait()] == ["SNAPSHOT 1", "SNAPSHOT 2"]


async def test_closing_a_view_ends_its_stream_with_the_code_after_what_was_queued() -> None:
    v = views()
    stream = v.open("room", {}, "SNAPSHOT").stream
    v.close("room", ErrorCode.CHANNEL_NOT_JOINED)
    assert "room" not in v
    assert v.get("room") is None
    assert await stream.get() == "SNAPSHOT"
    with pytest.raises(RTMError) as info:
        await stream.get()
    assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED


def test_closing_a_view_that_is_not_open_does_nothing() -> None:
    v = views()
    v.close("nowhere", ErrorCode.CHANNEL_NOT_JOINED)
    assert list(v) == []


async def test_reset_ends_every_view_with_not_login() -> None:
    v = views()
    streams = [v.open(key, {}, "SNAPSHOT").stream for key in ("a", "b")]
    assert sorted(v) == ["a", "b"]
    v.reset()
    assert list(v) == []
    for stream in streams:
        assert stream.closed
        stream.get_nowait()
        with pytest.raises(RTMError) as info:
            await stream.get()
        assert info.value.code == ErrorCode.NOT_LOGIN


def test_a_reopened_view_after_close_has_a_new_stream() -> None:
    v = views()
    old = v.open("room", {}, "SNAPSHOT").stream
    v.close("room", ErrorCode.CHANNEL_NOT_JOINED)
    new = v.open("room", {}, "SNAPSHOT").stream
    assert new is not old
    assert not new.closed
