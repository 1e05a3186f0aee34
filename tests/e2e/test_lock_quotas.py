"""Lock calls cost a durable commit each: they are rate-limited, and waits are one per lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode

from ..conftest import ServerProcess
from .util import client_for, fails, unique

MESSAGE = ChannelType.MESSAGE
APP_QUOTA = "a7" * 16  # 5 lock calls per second per client


class QuotaServer(ServerProcess):
    def write_config(self) -> Path:
        path = super().write_config()
        extra = [
            "[[apps]]",
            f'id = "{APP_QUOTA}"',
            'lock_admin = "anyone"',
            "[apps.limits]",
            "lock_rate = 5",
        ]
        path.write_text(path.read_text() + "\n".join(extra) + "\n")
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = QuotaServer(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@pytest.fixture
async def pair(server: ServerProcess) -> AsyncIterator[tuple[rtm2.RTMClient, rtm2.RTMClient]]:
    clients = [client_for(server, unique(n), app_id=APP_QUOTA) for n in ("alice", "bob")]
    for client in clients:
        await client.login("")
    yield clients[0], clients[1]
    for client in clients:
        await client.logout()


async def test_lock_calls_over_the_apps_rate_are_refused_and_create_nothing(
    pair: tuple[rtm2.RTMClient, rtm2.RTMClient],
) -> None:
    alice, bob = pair
    channel = unique("rate")
    results = await asyncio.gather(
        *(alice.lock.set(channel, MESSAGE, f"l{i}") for i in range(12)), return_exceptions=True
    )
    made = {f"l{i}" for i, r in enumerate(results) if r is None}
    refused = [r for r in results if r is not None]
    assert 5 <= len(made) <= 7, results
    assert refused
    assert all(
        isinstance(r, rtm2.RTMError) and r.code == ErrorCode.OPERATION_RATE_EXCEED_LIMITATION
        for r in refused
    )
    assert set(await bob.lock.get(channel, MESSAGE)) == made  # bob has a rate of his own
    await asyncio.sleep(1.2)
    await alice.lock.set(channel, MESSAGE, "later")  # the rate refills


async def test_a_second_waiting_acquire_of_the_same_lock_is_refused_and_the_first_waits_on(
    pair: tuple[rtm2.RTMClient, rtm2.RTMClient],
) -> None:
    alice, bob = pair
    channel = unique("wait")
    await alice.lock.set(channel, MESSAGE, "l")
    await alice.lock.acquire(channel, MESSAGE, "l")
    first = asyncio.create_task(bob.lock.acquire(channel, MESSAGE, "l", retry=True))
    await asyncio.sleep(0.3)
    second = bob.lock.acquire(channel, MESSAGE, "l", retry=True)
    await fails(asyncio.wait_for(second, 5), ErrorCode.LOCK_OPERATION_PERFORMING)
    assert not first.done()
    await asyncio.sleep(1.2)  # under the rate
    await alice.lock.release(channel, MESSAGE, "l")
    fence = await asyncio.wait_for(first, 5)
    assert fence >= 2
    assert (await alice.lock.get(channel, MESSAGE))["l"].owner == bob.config.user_id
