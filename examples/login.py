"""Log in with the development app, watch connection and token events, renew, log out.

    .venv/bin/python examples/login.py [--endpoint ws://127.0.0.1:7001] [--data-dir rtm2-data]

Start a server first (``make run``). The token is short-lived on purpose, so the token-will-
expire notice arrives and the example renews it, as an application should.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import rtm2


async def main(endpoint: str, data_dir: Path, user: str, seconds: float, lifetime: int) -> None:
    app = json.loads((data_dir / "dev-app.json").read_text())

    def new_token(expire: int) -> str:  # in a real deployment your backend signs tokens
        return rtm2.build_rtm_token(app["app_id"], app["certificate"], user, expire)

    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=app["app_id"], user_id=user))
    client.set_parameters({rtm2.PARAM_ENDPOINT: endpoint})
    conn_events, token_events = await client.login(new_token(expire=lifetime))

    async def watch_connection() -> None:
        async for event in conn_events:
            print(f"connection: {event.state.name} ({event.reason.name})")

    async def renew_when_warned() -> None:
        async for channel in token_events:
            print(f"token of {channel or 'the login'} will expire soon; renewing")
            await client.renew_token(new_token(expire=3600))

    tasks = [asyncio.create_task(watch_connection()), asyncio.create_task(renew_when_warned())]
    await asyncio.sleep(seconds)
    await client.logout()  # ends both streams, so both tasks finish
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="ws://127.0.0.1:7001")
    parser.add_argument("--data-dir", type=Path, default=Path("rtm2-data"))
    parser.add_argument("--user", default="alice")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long to stay logged in")
    parser.add_argument("--token-lifetime", type=int, default=35, help="first token's lifetime")
    args = parser.parse_args()
    asyncio.run(main(args.endpoint, args.data_dir, args.user, args.seconds, args.token_lifetime))
