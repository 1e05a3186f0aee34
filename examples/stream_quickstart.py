"""The RTM 2 stream-channel workflow with two users: alice publishes, bob subscribes.

    .venv/bin/python examples/stream_quickstart.py [--endpoint ws://127.0.0.1:7001]

Start a server first (``make run``); the example signs its tokens with the development app
that the server keeps in ``rtm2-data/dev-app.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import rtm2


async def main(endpoint: str, data_dir: Path) -> None:
    app = json.loads((data_dir / "dev-app.json").read_text())

    async def login(user: str) -> rtm2.RTMClient:
        client = rtm2.RTMClient(rtm2.RTMConfig(app_id=app["app_id"], user_id=user))
        client.set_parameters({rtm2.PARAM_ENDPOINT: endpoint})
        await client.login(rtm2.build_rtm_token(app["app_id"], app["certificate"], user))
        return client

    alice, bob = await login("alice"), await login("bob")

    # 1. Create the stream channel and join it.
    alice_channel = alice.stream_channel("MyChannel")
    bob_channel = bob.stream_channel("MyChannel")
    await alice_channel.join()
    await bob_channel.join()

    # 2. alice joins a topic: she is now one of its publishers.
    await alice_channel.join_topic("MyTopic")

    # 3. bob subscribes to alice in that topic; alice publishes.
    messages = await bob_channel.subscribe_topic("MyTopic", ["alice"])
    await alice_channel.publish_topic("MyTopic", b"Hello world!")

    # 4. bob receives the message.
    message = await messages.get(timeout=5)
    print(f"bob received {message.message!r} from {message.user_id} in {message.topic}")

    # 5. List, then drop, bob's subscriptions; alice leaves the topic.
    print("bob is subscribed to", await bob_channel.get_subscribed_users("MyTopic"))
    await bob_channel.unsubscribe_topic("MyTopic", ["alice"])
    await alice_channel.leave_topic("MyTopic")

    # 6. Both leave the channel and log out.
    await alice_channel.leave()
    await bob_channel.leave()
    await alice.logout()
    await bob.logout()
    print("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="ws://127.0.0.1:7001")
    parser.add_argument("--data-dir", type=Path, default=Path("rtm2-data"))
    args = parser.parse_args()
    asyncio.run(main(args.endpoint, args.data_dir))
