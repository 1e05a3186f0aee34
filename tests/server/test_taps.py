"""Taps (the console's live tail, issue 18) on a node with the in-memory engine: a tap gets
its channel's messages through the bus as sessions do, and costs nothing once closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtm2.server.config import AppConfig, ServerConfig
from rtm2.server.engines.base import BusKind
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.http.live import tail_message
from rtm2.server.hub import Hub
from rtm2.server.subjects import channel_subject
from rtm2.server.taps import Taps
from rtm2.types import ChannelType, MessageType

APP = AppConfig("ab" * 16)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    import asyncio

    engine = MemoryEngine(tmp_path)
    hub = Hub(ServerConfig(data_dir=tmp_path, apps=(APP,)), asyncio.get_running_loop(), engine)
    await engine.start()
    yield hub
    await engine.close()


def publish(hub: Hub, channel: str, text: str) -> None:
    hub.messages.publish_from_server(APP, channel, text.encode(), MessageType.STRING, "", "server")


def subject(channel: str) -> str:
    return channel_subject(APP.app_id, channel, ChannelType.MESSAGE)


async def test_a_tap_gets_the_messages_of_its_channel_only(hub: Hub) -> None:
    taps = Taps(hub)
    tap = await taps.open(subject("news"), 10)
    publish(hub, "news", "one")
    publish(hub, "other", "not for the tap")
    publish(hub, "news", "two")
    got = [tail_message(frame) for frame in tap.take()]
    assert [(m.channel, m.text, m.offset) for m in got if m is not None] == [
        ("news", "one", 1),
        ("news", "two", 2),
    ]


async def test_with_no_tap_open_the_nodes_message_route_is_its_own(hub: Hub) -> None:
    own = hub._bus[BusKind.MESSAGE]
    taps = Taps(hub)
    first = await taps.open(subject("a"), 10)
    second = await taps.open(subject("b"), 10)
    assert hub._bus[BusKind.MESSAGE] != own
    taps.close(first)
    assert hub._bus[BusKind.MESSAGE] != own  # b is still tapped
    taps.close(second)
    assert hub._bus[BusKind.MESSAGE] == own
    assert subject("a") not in hub.interest.kinds  # the node no longer listens
    assert subject("b") not in hub.interest.kinds
    taps.close(second)  # twice: nothing more happens
    assert taps.open_count == 0


async def test_a_tap_too_far_behind_is_closed_and_the_others_go_on(hub: Hub) -> None:
    taps = Taps(hub)
    slow = await taps.open(subject("busy"), 3)
    fast = await taps.open(subject("busy"), 100)
    for i in range(4):
        publish(hub, "busy", f"m{i}")
    assert (slow.overflowed, slow.closed, slow.take()) == (True, True, [])
    assert len(fast.take()) == 4
    taps.close(slow)
    publish(hub, "busy", "after")
    assert len(fast.take()) == 1
    assert subject("busy") in hub.interest.kinds
