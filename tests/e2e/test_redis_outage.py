"""While Redis is unreachable a node refuses writes with a clear code; it recovers by itself."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode

from ..conftest import APP_SMALL, CERT_SMALL, ServerProcess, free_port
from .util import client_for, unique

pytestmark = pytest.mark.redis


class RedisProcess:
    """A redis-server of the test's own, which it may stop and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    server = RedisProcess(free_port())
    server.start()
    yield server
    server.stop()


async def test_a_node_refuses_writes_while_redis_is_down_and_recovers_by_itself(
    redis: RedisProcess, tmp_path: Path
) -> None:
    node = ServerProcess(tmp_path, server={"engine": f'"redis://127.0.0.1:{redis.port}/0"'})
    node.start()
    user, other = unique("w"), unique("r")
    writer = client_for(node, user, app_id=APP_SMALL)
    reader = client_for(node, other, app_id=APP_SMALL)
    try:
        await writer.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, user))
        await reader.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, other))
        channel = unique("c")
        messages = await reader.subscribe(channel)
        await asyncio.sleep(0.2)
        await writer.publish(channel, "before")
        assert (await messages.get(timeout=5)).message == "before"
        item = rtm2.MetadataItem("k", "v1")
        await writer.storage.set_channel_metadata(channel, ChannelType.MESSAGE, [item])

        redis.stop()
        await asyncio.sleep(0.3)
        with pytest.raises(rtm2.RTMError) as info:
            await writer.storage.set_channel_metadata(channel, ChannelType.MESSAGE, [item])
        assert info.value.code == ErrorCode.STORAGE_NOT_AVAILABLE
        with pytest.raises(rtm2.RTMError) as info:
            await writer.publish(channel, "during")
        assert info.value.code == ErrorCode.CHANNEL_PUBLISH_MESSAGE_FAILED
        assert "redis" in info.value.reason
        assert "refusing writes until it is back" in node.log()

        redis.start()  # empty: this Redis keeps nothing on disk
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                await writer.storage.set_channel_metadata(channel, ChannelType.MESSAGE, [item])
                break
            except rtm2.RTMError:
                assert asyncio.get_running_loop().time() < deadline, "never recovered"
                await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)  # the pub/sub connection resubscribes too
        await writer.publish(channel, "after")
        assert (await messages.get(timeout=5)).message == "after"
        assert "is back" in node.log()
    finally:
        await writer.logout()
        await reader.logout()
        node.stop()
