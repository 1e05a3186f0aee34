"""Stored messages are durable: after a SIGKILL of `rtm2 serve` on the embedded engine, every
stored publish that was acknowledged is in history after a restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from rtm2 import ChannelType

from .test_history import APP_H, HistoryServer
from .util import client_for, unique


async def test_every_acknowledged_stored_message_survives_a_sigkill(tmp_path: Path) -> None:
    server = HistoryServer(tmp_path).start()
    try:
        alice = client_for(server, unique("alice"), app_id=APP_H, auto_reconnect=False)
        await alice.login("")
        channel = unique("room")
        acked: list[str] = []
        enough = asyncio.Event()

        async def publish(text: str) -> None:
            await alice.publish(channel, text, store_in_history=True)
            acked.append(text)
            if len(acked) == 500:  # at once: what was acknowledged just now must be kept
                server.signal(signal.SIGKILL)
                enough.set()

        async def keep_publishing() -> None:
            # 50 in flight all the time, until the server is gone.
            sent = 0
            while True:
                await asyncio.gather(*(publish(f"m{sent + i}") for i in range(50)))
                sent += 50

        producer = asyncio.ensure_future(keep_publishing())
        await asyncio.wait_for(enough.wait(), 30)
        await asyncio.gather(producer, return_exceptions=True)
        assert server.wait(10) == -signal.SIGKILL
        assert len(acked) >= 500
        await alice.logout()

        again = HistoryServer(tmp_path).start()
        try:
            reader = client_for(again, unique("reader"), app_id=APP_H)
            await reader.login("")
            stored: list[str] = []
            start = 0
            while True:
                page, start = await reader.history.get_messages(
                    channel, ChannelType.MESSAGE, start=start
                )
                stored += [str(m.message) for m in page]
                if not start:
                    break
            await reader.logout()
        finally:
            again.stop()
        assert set(acked) <= set(stored)
        # Nothing is stored twice, and what is stored is in publish order.
        assert len(stored) == len(set(stored))
        assert [int(t[1:]) for t in stored] == sorted((int(t[1:]) for t in stored), reverse=True)
    finally:
        server.stop()
