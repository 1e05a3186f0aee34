"""Metadata and locks through the HTTP API on two nodes sharing a Redis: a write on one node
reaches the subscribers on the other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

import rtm2
from rtm2 import ChannelType
from rtm2 import LockEventType as LockKind
from rtm2 import StorageEventType as Kind

from ..conftest import APP_SMALL, CERT_SMALL, ServerProcess
from .util import client_for, unique

pytestmark = pytest.mark.redis

MESSAGE = ChannelType.MESSAGE


@pytest.fixture
async def api(nodes: tuple[ServerProcess, ServerProcess]) -> AsyncIterator[httpx.AsyncClient]:
    a, _ = nodes
    async with httpx.AsyncClient(
        base_url=f"{a.http_url}/v1/apps/{APP_SMALL}", headers={"X-API-Key": a.admin_key}
    ) as client:
        yield client


async def test_http_metadata_and_lock_changes_on_one_node_reach_subscribers_on_the_other(
    nodes: tuple[ServerProcess, ServerProcess], api: httpx.AsyncClient
) -> None:
    _, b = nodes
    bob = client_for(b, unique("u"), app_id=APP_SMALL)
    await bob.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, bob.config.user_id))
    try:
        channel = unique("room")
        await bob.subscribe(channel, with_metadata=True, with_lock=True, with_presence=False)
        _, metadata = await bob.storage.get_channel_metadata_events(channel, MESSAGE)
        _, locks = await bob.lock.get_lock_events(channel, MESSAGE)
        assert (await metadata.get(timeout=5)).type is Kind.SNAPSHOT
        assert (await locks.get(timeout=5)).type is LockKind.SNAPSHOT

        written = await api.put(
            f"/channels/message/{channel}/metadata",
            json={"items": [{"key": "topic", "value": "x"}], "record_author": True},
        )
        assert written.status_code == 200, written.text
        event = await metadata.get(timeout=5)
        assert (event.type, event.items["topic"].author) == (Kind.UPDATE, "server")

        lock = await api.put(f"/channels/message/{channel}/locks/editor", json={"ttl": 20})
        assert lock.status_code == 200, lock.text
        assert (await locks.get(timeout=5)).type is LockKind.SET
    finally:
        await bob.logout()
