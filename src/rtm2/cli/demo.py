"""``rtm2 demo``: the RTM 2 stream-channel workflow with two users, narrated.

Uses the server at ``--endpoint`` with the development app from ``--data-dir``; when nothing
answers there, starts a server of its own for the length of the demo.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from ..client import PARAM_ENDPOINT, RTMClient, RTMConfig
from ..errors import ErrorCode, RTMError
from ..tokens import build_rtm_token
from .local import local_server

__all__ = ["demo"]

CHANNEL, TOPIC = "MyChannel", "MyTopic"


async def workflow(
    endpoint: str, app_id: str, certificate: str, say: Callable[[str], None]
) -> None:
    """alice publishes in a topic, bob subscribes to her, then both leave and log out."""

    def client(user: str) -> RTMClient:
        c = RTMClient(RTMConfig(app_id=app_id, user_id=user))
        c.set_parameters({PARAM_ENDPOINT: endpoint})
        return c

    alice, bob = client("alice"), client("bob")
    for user, c in (("alice", alice), ("bob", bob)):
        await c.login(build_rtm_token(app_id, certificate, user))
        say(f"[{user}] logged in")
    a_ch, b_ch = alice.stream_channel(CHANNEL), bob.stream_channel(CHANNEL)
    await a_ch.join()
    say(f"[alice] joined stream channel {CHANNEL}")
    _, topic_events, _ = await b_ch.join()
    say(f"[bob] joined stream channel {CHANNEL}")
    await topic_events.get(timeout=5)  # the snapshot

    await a_ch.join_topic(TOPIC)
    say(f"[alice] joined topic {TOPIC} as a publisher")
    event = await topic_events.get(timeout=5)
    say(f"[bob] topic event: {event.type.name} {event.user_id} in {event.topic}")

    messages = await b_ch.subscribe_topic(TOPIC, ["alice"])
    say(f"[bob] subscribed to alice in {TOPIC}")
    await a_ch.publish_topic(TOPIC, "Hello world!")
    say("[alice] published 'Hello world!'")
    message = await messages.get(timeout=5)
    say(f"[bob] received from {message.user_id} in {message.topic}: {message.message!r}")
    say(f"[bob] subscribed users in {TOPIC}: {await b_ch.get_subscribed_users(TOPIC)}")

    await b_ch.unsubscribe_topic(TOPIC, ["alice"])
    say("[bob] unsubscribed from alice")
    await a_ch.leave_topic(TOPIC)
    say(f"[alice] left topic {TOPIC}")
    event = await topic_events.get(timeout=5)
    say(f"[bob] topic event: {event.type.name} {event.user_id} in {event.topic}")
    for user, ch, c in (("alice", a_ch, alice), ("bob", b_ch, bob)):
        await ch.leave()
        say(f"[{user}] left {CHANNEL}")
        await c.logout()
        say(f"[{user}] logged out")


def _dev_app(data_dir: Path) -> tuple[str, str]:
    raw = json.loads((data_dir / "dev-app.json").read_text())
    return str(raw["app_id"]), str(raw["certificate"])


async def _reachable(endpoint: str) -> bool:
    probe = RTMClient(RTMConfig(app_id="0" * 32, user_id="probe", request_timeout=2))
    probe.set_parameters({PARAM_ENDPOINT: endpoint})
    try:
        await probe.login("")
    except RTMError as exc:
        return exc.code not in (ErrorCode.NOT_CONNECTED, ErrorCode.LOGIN_TIMEOUT)
    await probe.logout()
    return True


@click.command()
@click.option("--endpoint", default="ws://127.0.0.1:7001", show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("rtm2-data"),
    show_default=True,
    help="Where the running server keeps its development app.",
)
def demo(endpoint: str, data_dir: Path) -> None:
    """Run the RTM 2 stream-channel workflow (alice publishes, bob subscribes)."""

    def run(url: str, directory: Path) -> None:
        app_id, certificate = _dev_app(directory)
        asyncio.run(workflow(url, app_id, certificate, click.echo))

    if asyncio.run(_reachable(endpoint)):
        if not (data_dir / "dev-app.json").exists():
            raise click.UsageError(
                f"a server answers at {endpoint}, but its development app is not in {data_dir} "
                "(pass --data-dir)"
            )
        click.echo(f"using the server at {endpoint}")
        run(endpoint, data_dir)
        return
    with tempfile.TemporaryDirectory() as tmp, local_server([], cwd=Path(tmp)) as server:
        click.echo(f"no server at {endpoint}; started one at {server.url} for this demo")
        run(server.url, Path(tmp) / "rtm2-data")
