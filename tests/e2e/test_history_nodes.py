"""History across nodes: two `rtm2 serve` on one Redis, or on a 3-master Redis Cluster, share
it: what is stored through one node is read through the other, paged the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import rtm2
from rtm2 import ChannelType

from ..conftest import ServerProcess
from .nodes import REDIS, redis_nodes
from .test_history import APP_H, HistoryServer
from .util import client_for, unique

pytestmark = pytest.mark.redis


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def nodes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes keeping history, on the Redis or on the session's Redis Cluster."""
    url = request.getfixturevalue("cluster").url if request.param == "cluster" else REDIS
    with redis_nodes(tmp_path, url, HistoryServer) as started:
        yield started.start("a"), started.start("b")


@pytest.fixture
async def clients() -> AsyncIterator[list[rtm2.RTMClient]]:
    made: list[rtm2.RTMClient] = []
    yield made
    await asyncio.gather(*(c.logout() for c in made), return_exceptions=True)


async def on(node: ServerProcess, made: list[rtm2.RTMClient], user: str) -> rtm2.RTMClient:
    client = client_for(node, user, app_id=APP_H)
    await client.login("")
    made.append(client)
    return client


async def test_messages_stored_on_one_node_are_paged_on_the_other(
    nodes: tuple[ServerProcess, ServerProcess], clients: list[rtm2.RTMClient]
) -> None:
    a, b = nodes
    alice = await on(a, clients, unique("alice"))
    bob = await on(b, clients, unique("bob"))
    channel = unique("room")
    texts = [f"m{i:03d}" for i in range(250)]
    await asyncio.gather(*(alice.publish(channel, t, store_in_history=True) for t in texts))
    await alice.publish(channel, "loose")
    found: list[rtm2.HistoryMessage] = []
    start, sizes = 0, []
    while True:
        page, start = await bob.history.get_messages(channel, ChannelType.MESSAGE, start=start)
        found += page
        sizes.append(len(page))
        if not start:
            break
    assert sizes == [100, 100, 50]
    assert [m.message for m in found] == texts[::-1]
    assert len({m.id for m in found}) == 250
    assert len({m.timestamp for m in found}) < 250, "some share a millisecond"


async def test_a_peer_conversation_is_shared_across_nodes(
    nodes: tuple[ServerProcess, ServerProcess], clients: list[rtm2.RTMClient]
) -> None:
    a, b = nodes
    alice = await on(a, clients, unique("alice"))
    bob = await on(b, clients, unique("bob"))
    to_bob = bob.config.user_id
    await alice.publish(to_bob, "across", channel_type=ChannelType.USER, store_in_history=True)
    await bob.publish(
        alice.config.user_id, "back", channel_type=ChannelType.USER, store_in_history=True
    )
    for reader, other in ((alice, to_bob), (bob, alice.config.user_id)):
        found, _ = await reader.history.get_messages(other, ChannelType.USER)
        assert [m.message for m in found] == ["back", "across"]
