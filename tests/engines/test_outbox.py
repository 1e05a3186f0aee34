"""The ``EventOutbox`` contract (webhook events waiting for delivery), run against the
embedded engine (SQLite), Redis and Redis Cluster.

Only the Protocol's methods are used, plus ``restart()`` (close the engine, open the same
durable storage again) and, for engines shared by nodes, ``node()`` (another node's engine).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rtm2.server.engines.base import EventOutbox
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.engines.redis.engine import RedisEngine

from .conftest import REDIS_URL, delete_keys, new_prefix, started


class Harness:
    def __init__(self, make: Any, shared: bool) -> None:
        self._make = make
        self.shared = shared
        self.engines: list[Any] = []
        self.engine: Any = None

    @property
    def outbox(self) -> EventOutbox:
        return self.engine.event_outbox  # type: ignore[no-any-return]

    async def start(self) -> None:
        self.engine = await self.node_engine()

    async def node_engine(self) -> Any:
        engine = self._make()
        await engine.start()
        self.engines.append(engine)
        return engine

    async def node(self) -> EventOutbox:
        return (await self.node_engine()).event_outbox  # type: ignore[no-any-return]

    async def restart(self) -> None:
        await self.engine.close()
        self.engines.remove(self.engine)
        await self.start()

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ]
)
async def box(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    prefix = new_prefix()
    if request.param == "sqlite":
        harness = Harness(lambda: MemoryEngine(tmp_path), shared=False)
    else:
        url = REDIS_URL if request.param == "redis" else request.getfixturevalue("cluster").url
        harness = Harness(lambda: RedisEngine(f"{url}?prefix={prefix}"), shared=True)
    try:
        async with started(harness):
            yield harness
    finally:
        if request.param == "redis":  # an async fixture cannot ask for ``redis_prefix`` here
            await delete_keys(prefix)


async def drain(outbox: EventOutbox, hook: str, part: int, node: str = "n1") -> list[bytes]:
    """Every event of the queue in delivery order, acknowledged one by one."""
    bodies = []
    while (entry := await outbox.peek(hook, part, node)) is not None:
        bodies.append(entry.body)
        await outbox.ack(hook, part, entry.id)
    return bodies


async def test_events_come_out_of_their_queue_in_order_until_acknowledged(box: Harness) -> None:
    outbox = box.outbox
    before = int(time.time() * 1000)
    assert await outbox.put([("h", 0, b"1"), ("h", 0, b"2"), ("h", 1, b"x")], 100) == 0
    assert await outbox.put([("h", 0, b"3")], 100) == 0
    assert await outbox.claim("h", 0, "n1", 5.0)
    head = await outbox.peek("h", 0, "n1")
    assert head is not None
    assert head.body == b"1"
    again = await outbox.peek("h", 0, "n1")  # not acknowledged: still the head
    assert again is not None
    assert again.id == head.id
    count, oldest = await outbox.depth("h", 0)
    assert count == 3
    assert before - 5 <= oldest <= int(time.time() * 1000) + 5
    assert await drain(outbox, "h", 0) == [b"1", b"2", b"3"]
    assert await outbox.depth("h", 0) == (0, 0)
    assert await drain(outbox, "h", 1) == [b"x"]  # queues are independent
    assert await outbox.peek("other", 0, "n1") is None


async def test_a_full_queue_drops_its_oldest_events_and_says_how_many(box: Harness) -> None:
    outbox = box.outbox
    assert await outbox.put([("h", 2, str(i).encode()) for i in range(5)], 3) == 2
    assert await outbox.put([("h", 2, b"5")], 3) == 1
    assert (await outbox.depth("h", 2))[0] == 3
    assert await drain(outbox, "h", 2) == [b"3", b"4", b"5"]


async def test_queued_events_survive_a_restart_and_acknowledged_ones_do_not_come_back(
    box: Harness,
) -> None:
    await box.outbox.put([("h", 3, b"a"), ("h", 3, b"b"), ("h", 3, b"c")], 100)
    head = await box.outbox.peek("h", 3, "n1")
    assert head is not None
    await box.outbox.ack("h", 3, head.id)
    await box.restart()
    assert await drain(box.outbox, "h", 3) == [b"b", b"c"]
    await box.outbox.put([("h", 3, b"d")], 100)  # ids go on after a restart
    assert await drain(box.outbox, "h", 3) == [b"d"]


async def test_one_node_delivers_a_queue_and_another_takes_over_what_a_dead_one_had_taken(
    box: Harness,
) -> None:
    if not box.shared:
        assert await box.outbox.claim("h", 0, "n1", 0.2)
        assert await box.outbox.claim("h", 0, "n2", 0.2)  # one node: always its own
        return
    a, b = box.outbox, await box.node()
    await a.put([("h", 4, b"1"), ("h", 4, b"2")], 100)
    assert await a.claim("h", 4, "na", 0.5)
    assert not await b.claim("h", 4, "nb", 0.5)
    taken = await a.peek("h", 4, "na")  # node a takes the first event, then dies
    assert taken is not None
    assert taken.body == b"1"
    assert await a.claim("h", 4, "na", 0.5)  # renewing its own claim
    await asyncio.sleep(0.7)
    assert await b.claim("h", 4, "nb", 5.0)
    assert await drain(b, "h", 4, "nb") == [b"1", b"2"]


async def test_a_node_that_stops_releases_its_queue_to_the_next_at_once(box: Harness) -> None:
    other = await box.node() if box.shared else box.outbox
    assert await box.outbox.claim("h", 5, "na", 60.0)
    await box.outbox.release("h", 5, "nb")  # not its claim: nothing changes
    assert await other.claim("h", 5, "nb", 60.0) is not box.shared
    await box.outbox.release("h", 5, "na")
    assert await other.claim("h", 5, "nb", 60.0)
