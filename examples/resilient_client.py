"""The RTM 2 exception-handling pattern in Python: a client that looks after itself.

    .venv/bin/python examples/resilient_client.py [--user alice] [--seconds 30]

It logs in, then at the same time:
- watches connection events; on FAILED of the login connection it logs out and creates a
  new client (the RTM 2 recovery rule);
- watches ``client.errors`` (fatal errors) and does the same;
- renews the login token whenever it is warned that the token will expire;
- follows its own user metadata and sets it every second (recording author and time),
  printing every metadata event.

Start a server first (``make run``); tokens are signed here with the development app, which in
a real deployment is your backend's job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

import rtm2


class Token:
    """Stands in for your backend's token endpoint."""

    def __init__(self, data_dir: Path, user: str, lifetime: int) -> None:
        app = json.loads((data_dir / "dev-app.json").read_text())
        self.app_id, self.certificate = app["app_id"], app["certificate"]
        self.user, self.lifetime = user, lifetime

    def new(self) -> str:
        return rtm2.build_rtm_token(self.app_id, self.certificate, self.user, self.lifetime)


async def run_client(endpoint: str, tokens: Token, deadline: float) -> bool:
    """Run one client until the deadline (False) or until it must be recreated (True)."""
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=tokens.app_id, user_id=tokens.user))
    client.set_parameters({rtm2.PARAM_ENDPOINT: endpoint})
    conn_events, token_events = await client.login(tokens.new())
    failed = asyncio.Event()

    async def watch_connection() -> None:
        async for event in conn_events:
            print(f"connection: {event.state.name} ({event.reason.name})", flush=True)
            if event.state is rtm2.ConnectionState.FAILED and not event.channel:
                failed.set()

    async def watch_errors() -> None:
        async for error in client.errors:
            print(f"fatal error: {error}", flush=True)
            failed.set()

    async def renew_tokens() -> None:
        async for _ in token_events:
            await client.renew_token(tokens.new())
            print("token renewed", flush=True)

    async def follow_metadata() -> None:
        _, events = await client.storage.subscribe_user_metadata(tokens.user)
        async for event in events:
            values = {k: (i.value, i.author) for k, i in event.items.items()}
            print(f"metadata {event.type.name} r{event.major_revision}: {values}", flush=True)

    async def write_metadata() -> None:
        count = 0
        while True:
            item = rtm2.MetadataItem("beat", str(count))
            await client.storage.set_user_metadata(
                tokens.user, [item], record_author=True, record_ts=True
            )
            count += 1
            await asyncio.sleep(1)

    tasks = [
        asyncio.create_task(job())
        for job in (watch_connection, watch_errors, renew_tokens, follow_metadata, write_metadata)
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(failed.wait(), max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # a task failing is the failure above
    await client.logout()
    return failed.is_set()


async def main(endpoint: str, data_dir: Path, user: str, seconds: float, lifetime: int) -> None:
    tokens = Token(data_dir, user, lifetime)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not await run_client(endpoint, tokens, deadline):
                break
        except rtm2.RTMError as exc:  # login refused or server unreachable: try again shortly
            print(f"login failed: {exc}", flush=True)
            await asyncio.sleep(1)
            continue
        print("recreating the client", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="ws://127.0.0.1:7001")
    parser.add_argument("--data-dir", type=Path, default=Path("rtm2-data"))
    parser.add_argument("--user", default="alice")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--token-lifetime", type=int, default=60, help="seconds per token")
    args = parser.parse_args()
    asyncio.run(main(args.endpoint, args.data_dir, args.user, args.seconds, args.token_lifetime))
