"""``rtm2 bench history``: stored publishes per second, and page reads deep in a long history.

Registered on the ``rtm2 bench`` group (``cli/bench.py``) when this module is imported. Like
the other benchmarks it starts its own server (pinned to CPU 0 when the machine has two) and
drives it through the public SDK from this process (pinned to CPU 1).

1. Stored publishes: ``--clients`` clients each keep ``--window`` publishes with
   ``store_in_history=True`` in flight (each client in a message channel of its own) until
   ``--messages`` are acknowledged, i.e. durable; then the rows are counted in the database.
2. Page reads: a channel of ``--history`` messages is seeded straight through the engine's
   ``HistoryStore`` role (the same SQLite writer and group commit, without the network, for
   speed), then a client reads pages of 100: the newest page, and pages starting at random
   points of the history (``start`` = a time in it), ``--reads`` of each.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import click
import psutil

from ..client import PARAM_ENDPOINT, RTMClient, RTMConfig
from ..types import ChannelType
from .bench import _cpu, _pin_self, _run, bench
from .local import local_server

__all__ = ["history"]

HISTORY_APP = "bf" * 16


def _config(directory: Path) -> Path:
    path = directory / "bench-history.toml"
    path.write_text(
        "\n".join(
            [
                "[server]",
                f'data_dir = "{directory / "data"}"',
                "[timers]",
                "heartbeat_grace = 600.0",
                "[[apps]]",
                f'id = "{HISTORY_APP}"',
                "[apps.limits]",
                "message_rate = 1e12",
                "request_rate = 1e12",
                "[apps.history]",
                "enabled = true",
                'retention = "7d"',
                "max_messages_per_channel = 0",
            ]
        )
        + "\n"
    )
    return path


async def _client(url: str, user: str) -> RTMClient:
    client = RTMClient(RTMConfig(app_id=HISTORY_APP, user_id=user, request_timeout=120))
    client.set_parameters({PARAM_ENDPOINT: url})
    await client.login("")
    return client


async def _stored_publishes(
    url: str, pid: int, clients: int, window: int, messages: int, size: int, store: bool = True
) -> tuple[float, float]:
    """(messages/s, server CPU µs per message), stored (or, as a baseline, not)."""
    made = [await _client(url, f"writer{i}") for i in range(clients)]
    payload = b"x" * size
    per_client = messages // clients
    server = psutil.Process(pid)

    async def writer(client: RTMClient, channel: str) -> None:
        left = per_client

        async def one() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.publish(channel, payload, store_in_history=store)

        await asyncio.gather(*(one() for _ in range(window)))

    # Warm up (and make every channel exist), then measure.
    await asyncio.gather(
        *(c.publish(f"bench{i}", payload, store_in_history=True) for i, c in enumerate(made))
    )
    cpu0, t0 = _cpu([server]), time.perf_counter()
    await asyncio.gather(*(writer(c, f"bench{i}") for i, c in enumerate(made)))
    elapsed, cpu = time.perf_counter() - t0, _cpu([server]) - cpu0
    await asyncio.gather(*(c.logout() for c in made), return_exceptions=True)
    total = per_client * clients
    return total / elapsed, cpu / total * 1e6


async def _seed(data: Path, count: int, size: int) -> float:
    """Append ``count`` messages to one channel through the engine's HistoryStore; seconds."""
    from ..server.engines.base import HistoryEntry
    from ..server.engines.sqlite import SQLiteStore
    from ..server.engines.sqlite_history import SQLiteHistoryStore

    store = SQLiteStore(data / "rtm2.db")
    await store.open()
    history = SQLiteHistoryStore(store)
    await history.open()
    key = f"msg:{HISTORY_APP}:deep"
    entry = HistoryEntry("seeder", b"x" * size, 0, "")
    # Spread over the last day, several messages a millisecond at times.
    now = int(time.time() * 1000)
    span = 24 * 3600 * 1000
    t0 = time.perf_counter()
    for start in range(0, count, 20_000):
        batch = range(start, min(start + 20_000, count))
        await asyncio.gather(
            *(history.append(key, entry, now - span + i * span // count, 0, 0) for i in batch)
        )
    elapsed = time.perf_counter() - t0
    await history.close()
    await store.close()
    return elapsed


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def _reads(url: str, reads: int) -> dict[str, tuple[float, float]]:
    client = await _client(url, "reader")
    history = client.history
    page, _ = await history.get_messages("deep", ChannelType.MESSAGE, count=1)
    newest = page[0].timestamp
    oldest = newest - 24 * 3600 * 1000
    found: dict[str, list[float]] = {"newest page": [], "page at a random time": []}
    follow: list[float] = []
    for _ in range(reads):
        t0 = time.perf_counter()
        await history.get_messages("deep", ChannelType.MESSAGE)
        found["newest page"].append(time.perf_counter() - t0)
        start = random.randint(oldest, newest)
        t0 = time.perf_counter()
        _, new_start = await history.get_messages("deep", ChannelType.MESSAGE, start=start)
        found["page at a random time"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await history.get_messages("deep", ChannelType.MESSAGE, start=new_start)
        follow.append(time.perf_counter() - t0)
    found["next page (new_start)"] = follow
    await client.logout()
    return {name: _ms(samples) for name, samples in found.items()}


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM history").fetchone()[0]
    return count


@bench.command()
@click.option("--clients", type=int, default=16, show_default=True, help="Publishing clients.")
@click.option(
    "--window", type=int, default=64, show_default=True, help="Stored publishes in flight each."
)
@click.option("--messages", type=int, default=200_000, show_default=True, help="Stored in all.")
@click.option("--size", type=int, default=128, show_default=True, help="Bytes a message.")
@click.option(
    "--history",
    "depth",
    type=int,
    default=1_000_000,
    show_default=True,
    help="Messages in the channel whose pages are read (0: skip the read benchmark).",
)
@click.option("--reads", type=int, default=1000, show_default=True, help="Reads of each kind.")
def history(clients: int, window: int, messages: int, size: int, depth: int, reads: int) -> None:
    """Stored publishes/s on one embedded node, and page-read latency in a long history."""
    server_cpu, pinning = _pin_self()
    click.echo(f"message history on the embedded engine (SQLite); {pinning}")
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        args = ["--config", str(config)]
        with local_server(args, cwd=Path(tmp), cpu=server_cpu) as srv:
            out: list[tuple[float, float]] = []

            async def publish() -> None:
                # The same load without storing first: what the load side and a plain
                # publish allow on this machine now, to read the stored figures against.
                for store in (False, True):
                    out.append(
                        await _stored_publishes(
                            srv.url, srv.pid, clients, window, messages, size, store
                        )
                    )

            _run(publish())
        (plain, plain_cpu), (rate, cpu) = out
        rows = _rows(Path(tmp) / "data" / "rtm2.db")
        click.echo(f"{clients} clients x {window} publishes in flight, {size} B, {messages:,}:")
        click.echo(f"  not stored: {plain:,.0f} messages/s, {plain_cpu:.1f} µs server CPU each")
        click.echo(
            f"  stored:     {rate:,.0f} messages/s acknowledged durable, {cpu:.1f} µs server "
            f"CPU each ({rows:,} rows in the database)"
        )
    if not depth:
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        seconds: list[float] = []
        _run(_timed_seed(data, depth, size, seconds))
        click.echo(f"seeded {depth:,} messages through the HistoryStore in {seconds[0]:.1f} s")
        with local_server(["--config", str(config)], cwd=Path(tmp), cpu=server_cpu) as srv:
            found: list[dict[str, tuple[float, float]]] = []

            async def read() -> None:
                found.append(await _reads(srv.url, reads))

            _run(read())
    click.echo(f"page reads of 100 messages in a channel of {depth:,}, {reads} of each:")
    click.echo("")
    click.echo("| read | p50 ms | p99 ms |")
    click.echo("|---|---:|---:|")
    for name, (p50, p99) in found[0].items():
        click.echo(f"| {name} | {p50:.2f} | {p99:.2f} |")


async def _timed_seed(data: Path, depth: int, size: int, out: list[float]) -> None:
    out.append(await _seed(data, depth, size))
