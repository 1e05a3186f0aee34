"""A server's metrics move as real SDK clients connect, publish and receive over real sockets.

The server runs in the test's own event loop (``Server`` on port 0, embedded engine), so the
test reads its metrics object directly; the HTTP route that serves ``render()`` is the HTTP
listener's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import rtm2
from rtm2.server.config import AppConfig, AppLimits, HttpConfig, ServerConfig, Timers
from rtm2.server.node import Server
from rtm2.server.redisio import RedisClient

from .proxy import TcpProxy

APP = "ce" * 16


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = ServerConfig(
        port=0, data_dir=tmp_path, apps=(AppConfig(APP, stream_join_policy="login"),)
    )
    node = Server(config)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def login(server: Server, user: str) -> rtm2.RTMClient:
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP, user_id=user))
    client.set_parameters({rtm2.PARAM_ENDPOINT: server.url})
    await client.login("")
    return client


def scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = server.hub.metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def at(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[name, frozenset(labels.items())]


async def test_publishing_to_subscribers_moves_the_message_byte_and_request_counters(
    server: Server,
) -> None:
    before = scrape(server)
    alice, bob, carol = [await login(server, u) for u in ("alice", "bob", "carol")]
    try:
        channels = [c.stream_channel("room") for c in (alice, bob, carol)]
        for channel in channels:
            await channel.join(with_presence=False)
        await channels[0].join_topic("t")
        streams = [await c.subscribe_topic("t", ["alice"]) for c in channels[1:]]
        for i in range(5):
            await channels[0].publish_topic("t", f"hello {i}".encode())
        for stream in streams:
            for _ in range(5):
                await stream.get(timeout=5)
        message_streams = [await c.subscribe("news") for c in (bob, carol)]
        await alice.publish("news", b"extra")
        for stream in message_streams:
            await stream.get(timeout=5)

        after = scrape(server)
        assert at(after, "rtm2_connections") == 3
        assert (
            at(after, "rtm2_connections_accepted_total")
            - at(before, "rtm2_connections_accepted_total")
            == 3
        )
        assert at(after, "rtm2_sessions", app=APP, state="attached") == 3
        assert at(after, "rtm2_channels", app=APP, channel_type="stream") == 1
        assert at(after, "rtm2_channels", app=APP, channel_type="message") == 1
        published = "rtm2_messages_published_total"
        delivered = "rtm2_messages_delivered_total"
        assert at(after, published, channel_type="stream") == 5
        assert at(after, delivered, channel_type="stream") == 10  # 5 messages x 2 subscribers
        assert at(after, published, channel_type="message") == 1
        assert at(after, delivered, channel_type="message") == 2
        assert at(after, "rtm2_received_bytes_total") > at(before, "rtm2_received_bytes_total")
        assert at(after, "rtm2_sent_bytes_total") > at(before, "rtm2_sent_bytes_total")
        count = "rtm2_request_duration_seconds_count"
        assert at(after, count, frame_type="Login") == 3
        assert at(after, "rtm2_request_duration_seconds_sum", frame_type="Login") > 0
        # Publishes are sampled (one in 64 timed): never more timings than publishes.
        timed = after.get((count, frozenset({("frame_type", "PublishTopic")})), 0.0)
        assert 0 <= timed <= 5
    finally:
        for client in (alice, bob, carol):
            await client.logout()


async def test_a_request_the_server_refuses_is_counted_by_its_error_code(server: Server) -> None:
    alice = await login(server, "alice")
    try:
        with pytest.raises(rtm2.RTMError):
            await alice.publish("nobody", b"hello?", channel_type=rtm2.ChannelType.USER)
        samples = scrape(server)
        errors = {
            dict(labels)["error"]: v
            for (name, labels), v in samples.items()
            if name == "rtm2_errors_total"
        }
        assert errors == {"CHANNEL_RECEIVER_OFFLINE": 1}
    finally:
        await alice.logout()


async def test_http_api_requests_are_timed_by_route_template_never_by_filled_path(
    tmp_path: Path,
) -> None:
    config = ServerConfig(
        port=0,
        data_dir=tmp_path,
        apps=(AppConfig(APP, api_keys=("k" * 32,)),),
        http=HttpConfig(port=0, admin_key="a" * 32),
    )
    node = Server(config)
    await node.start()
    try:
        assert node.http is not None
        async with httpx.AsyncClient(
            base_url=node.http.url, headers={"X-API-Key": "k" * 32}
        ) as api:
            for channel in ("news", "sport", "weather"):
                sent = await api.post(f"/v1/apps/{APP}/channels/{channel}/messages", json={})
                assert sent.status_code == 400  # timed all the same
            assert (await api.get(f"/v1/apps/{APP}/users/bob")).status_code == 200
            assert (await api.get("/nowhere/at/all")).status_code == 404
        samples = scrape(node)
        name = "rtm2_http_request_duration_seconds_count"
        publish = "/v1/apps/{app_id}/channels/{channel}/messages"
        assert at(samples, name, route=publish, method="POST") == 3
        assert at(samples, name, route="/v1/apps/{app_id}/users/{user_id}", method="GET") == 1
        assert at(samples, name, route="unmatched", method="GET") == 1
        routes = {dict(labels)["route"] for n, labels in samples if n == name}
        assert not any("news" in route or APP in route for route in routes)
    finally:
        await node.stop()


@pytest.mark.redis
async def test_redis_latency_bus_lag_and_reconnects_move_on_two_nodes(tmp_path: Path) -> None:
    """Node a reaches Redis through a proxy that can cut its connections; node b directly."""
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    async with TcpProxy(6379) as proxy:
        nodes = [
            Server(
                ServerConfig(
                    port=0,
                    data_dir=tmp_path / name,
                    apps=(AppConfig(APP, limits=AppLimits(message_rate=10_000)),),
                    engine=f"redis://127.0.0.1:{port}/0?prefix={prefix}",
                    timers=Timers(sweep_interval=0.1),
                )
            )
            for name, port in (("a", proxy.port), ("b", 6379))
        ]
        for node in nodes:
            await node.start()
        a, b = nodes
        try:
            before = scrape(a)
            alice, bob = await login(a, "alice"), await login(b, "bob")
            stream = await bob.subscribe("news")
            for i in range(100):  # one script call each, at least: some of them timed
                await alice.publish("news", f"m{i}")
            for _ in range(100):
                await stream.get(timeout=5)
            await asyncio.gather(alice.logout(), bob.logout())

            async def moved(name: str, **labels: str) -> None:
                for _ in range(200):  # polled: the figures change on their own
                    if at(scrape(a), name, **labels) > at(before, name, **labels):
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"{name} {labels} did not move")

            latency = "rtm2_redis_command_duration_seconds_count"
            await moved(latency, command="script")
            await moved("rtm2_bus_lag_seconds_count")  # b's timestamps, received by a
            lag = scrape(a)
            assert at(lag, "rtm2_bus_lag_seconds_sum") / at(lag, "rtm2_bus_lag_seconds_count") < 1

            assert proxy.cut() >= 2  # a's command and pub/sub connections
            await moved("rtm2_redis_reconnects_total", connection="command")
            await moved("rtm2_redis_reconnects_total", connection="pubsub")
            keys = {name for name, _ in scrape(a) if name.startswith("rtm2_redis")}
            assert all("news" not in key for key in keys)
        finally:
            for node in nodes:
                await node.stop()
            cleaner = RedisClient("redis://127.0.0.1:6379/0")
            await cleaner.connect()
            _, found = await cleaner.call("SCAN", 0, "MATCH", f"{prefix}*", "COUNT", 100000)
            if found:
                await cleaner.call("DEL", *found)
            await cleaner.close()
