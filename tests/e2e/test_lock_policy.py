"""Who may set, remove and revoke locks: the app's ``lock_admin`` policy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode

from ..conftest import ServerProcess
from .util import client_for, fails, unique

MESSAGE, STREAM = ChannelType.MESSAGE, ChannelType.STREAM
APP_MEMBERS = "a5" * 16  # lock_admin not given: "members"
APP_SERVER = "a6" * 16  # lock_admin = "server"

LogIn = Callable[[str, str], Awaitable[rtm2.RTMClient]]


class PolicyServer(ServerProcess):
    """The suite's server plus two token-less apps, one per policy under test."""

    def write_config(self) -> Path:
        path = super().write_config()
        extra = [
            "[[apps]]",
            f'id = "{APP_MEMBERS}"',
            'stream_join_policy = "login"',
            "[[apps]]",
            f'id = "{APP_SERVER}"',
            'stream_join_policy = "login"',
            'lock_admin = "server"',
        ]
        path.write_text(path.read_text() + "\n".join(extra) + "\n")
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = PolicyServer(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@pytest.fixture
async def login(server: ServerProcess) -> AsyncIterator[LogIn]:
    clients: list[rtm2.RTMClient] = []

    async def log_in(prefix: str, app_id: str) -> rtm2.RTMClient:
        client = client_for(server, unique(prefix), app_id=app_id)
        await client.login("")
        clients.append(client)
        return client

    yield log_in
    for client in clients:
        await client.logout()


async def enter(client: rtm2.RTMClient, channel: str, ctype: ChannelType) -> None:
    if ctype is MESSAGE:
        await client.subscribe(channel)
    else:
        await client.stream_channel(channel).join("")


@pytest.mark.parametrize("ctype", [MESSAGE, STREAM])
async def test_by_default_only_members_of_a_channel_set_remove_and_revoke_its_locks(
    login: LogIn, ctype: ChannelType
) -> None:
    channel = unique("members")
    owner = await login("owner", APP_MEMBERS)
    outsider = await login("outsider", APP_MEMBERS)
    not_in = ErrorCode.CHANNEL_NOT_SUBSCRIBED if ctype is MESSAGE else ErrorCode.CHANNEL_NOT_JOINED

    await fails(outsider.lock.set(channel, ctype, "l"), not_in)
    assert await owner.lock.get(channel, ctype) == {}  # refused: nothing was created
    await enter(owner, channel, ctype)
    await owner.lock.set(channel, ctype, "l")
    await owner.lock.acquire(channel, ctype, "l")

    await fails(outsider.lock.revoke(channel, ctype, "l", owner=owner.config.user_id), not_in)
    await fails(outsider.lock.remove(channel, ctype, "l"), not_in)
    assert (await owner.lock.get(channel, ctype))["l"].owner == owner.config.user_id

    await enter(outsider, channel, ctype)  # a member now: allowed
    await outsider.lock.revoke(channel, ctype, "l", owner=owner.config.user_id)
    assert (await owner.lock.get(channel, ctype))["l"].owner == ""
    await outsider.lock.remove(channel, ctype, "l")
    assert await owner.lock.get(channel, ctype) == {}


async def test_with_the_server_policy_no_client_sets_removes_or_revokes_a_lock(
    login: LogIn,
) -> None:
    channel = unique("server")
    member = await login("member", APP_SERVER)
    await enter(member, channel, MESSAGE)
    failed = ErrorCode.LOCK_OPERATION_FAILED
    await fails(member.lock.set(channel, MESSAGE, "l"), failed)
    await fails(member.lock.remove(channel, MESSAGE, "l"), failed)
    await fails(member.lock.revoke(channel, MESSAGE, "l", owner=member.config.user_id), failed)
    assert await member.lock.get(channel, MESSAGE) == {}
