"""Locks and metadata rows an app may keep across all channel names: per-app quotas that
hold across a restart, and that removals free."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, MetadataItem

from ..conftest import ServerProcess
from .nodes import REDIS, forget
from .util import client_for, fails, unique

MESSAGE = ChannelType.MESSAGE
APP_ROWS = "a8" * 16  # 3 locks and 4 metadata rows in all


class RowQuotaServer(ServerProcess):
    def write_config(self) -> Path:
        path = super().write_config()
        extra = [
            "[[apps]]",
            f'id = "{APP_ROWS}"',
            'lock_admin = "anyone"',
            "[apps.limits]",
            "lock_rows = 3",
            "metadata_rows = 4",
        ]
        path.write_text(path.read_text() + "\n".join(extra) + "\n")
        return path


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ]
)
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """A server (and the servers that follow it on its data): embedded, or on a key namespace
    of the test's own on one Redis or a Redis Cluster."""
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    options = {}
    if request.param != "embedded":
        url = request.getfixturevalue("cluster").url if request.param == "cluster" else REDIS
        options = {"engine": f'"{url}?prefix={prefix}"'}
    started = [RowQuotaServer(tmp_path, server=options).start()]
    yield started
    for srv in started:
        srv.stop()
    if request.param == "redis":
        forget(prefix)


async def login(server: ServerProcess) -> rtm2.RTMClient:
    client = client_for(server, unique("alice"), app_id=APP_ROWS)
    await client.login("")
    return client


async def test_locks_and_metadata_rows_beyond_the_apps_quotas_are_refused_across_a_restart(
    servers: list[ServerProcess],
) -> None:
    alice = await login(servers[0])
    try:
        for i in range(3):
            await alice.lock.set(f"c{i}", MESSAGE, "l")
        await fails(alice.lock.set("c3", MESSAGE, "l"), ErrorCode.LOCK_OPERATION_FAILED)
        assert await alice.lock.get("c3", MESSAGE) == {}
        await alice.storage.set_channel_metadata("c0", MESSAGE, [MetadataItem("a", "1")])
        await alice.storage.set_user_metadata(alice.config.user_id, [MetadataItem("x", "1")])
        full = ErrorCode.STORAGE_METADATA_ITEM_EXCEED_LIMITATION
        await fails(
            alice.storage.set_channel_metadata("c1", MESSAGE, [MetadataItem("b", "")]), full
        )
        assert (await alice.storage.get_channel_metadata("c1", MESSAGE)).items == {}
    finally:
        await alice.logout()
    servers[0].stop()
    servers.append(RowQuotaServer(servers[0].workdir, server=servers[0].server_options).start())
    alice = await login(servers[1])
    try:  # the counts came back with the rows
        await fails(alice.lock.set("c3", MESSAGE, "l"), ErrorCode.LOCK_OPERATION_FAILED)
        full = ErrorCode.STORAGE_METADATA_ITEM_EXCEED_LIMITATION
        await fails(
            alice.storage.set_channel_metadata("c1", MESSAGE, [MetadataItem("b", "")]), full
        )
        await alice.lock.remove("c0", MESSAGE, "l")  # removals free rows
        await alice.lock.set("c3", MESSAGE, "l")
        await alice.storage.remove_channel_metadata("c0", MESSAGE)
        await alice.storage.set_channel_metadata("c1", MESSAGE, [MetadataItem("b", "")])
    finally:
        await alice.logout()
