"""``rtm2 bench``: fan-out throughput, CPU and latency; memory per idle connection.

Each benchmark starts its own server (pinned to CPU 0 when the machine has two) and drives it
from this process (pinned to CPU 1) through the public SDK, so the figures are what an
application sees. Server CPU is the server process's own user+sys time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import psutil

from ..client import PARAM_ENDPOINT, EventStream, RTMClient, RTMConfig
from ..errors import RTMError
from ..types import Message
from .local import local_server

if TYPE_CHECKING:
    from .peers import PeerResult

__all__ = ["bench"]

BENCH_APP = "be" * 16
_SIZE = 128


def _config(directory: Path) -> Path:
    path = directory / "bench.toml"
    path.write_text(
        "\n".join(
            [
                "[timers]",
                "heartbeat_grace = 600.0",  # idle clients must survive the whole run
                "[[apps]]",
                f'id = "{BENCH_APP}"',
                'stream_join_policy = "login"',
                "[apps.limits]",
                "topic_message_rate = 1e12",
                "message_rate = 1e12",
                "channel_users = 1000000",
            ]
        )
        + "\n"
    )
    return path


def _pin_self() -> tuple[int | None, str]:
    """Pin this process to CPU 1 and return the CPU for the server (or no pinning)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
        return 0, "server on CPU 0, load on CPU 1"
    return None, "no CPU pinning (fewer than 2 CPUs)"


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


async def _login_all(url: str, users: list[str], batch: int = 200) -> list[RTMClient]:
    clients = []
    for start in range(0, len(users), batch):
        group = []
        for user in users[start : start + batch]:
            client = RTMClient(RTMConfig(app_id=BENCH_APP, user_id=user, request_timeout=60))
            client.set_parameters({PARAM_ENDPOINT: url})
            group.append(client)
        await asyncio.gather(*(c.login("") for c in group))
        clients += group
    return clients


async def _logout_all(clients: list[RTMClient]) -> None:
    await asyncio.gather(*(c.logout() for c in clients), return_exceptions=True)


# --- fan-out ----------------------------------------------------------------------------------


@dataclass
class FanoutResult:
    subscribers: int
    messages: int
    deliveries_per_s: float
    cpu_us_per_delivery: float
    p50_ms: float
    p99_ms: float
    lost: int
    reordered: int


class _Receivers:
    """Counts deliveries per subscriber, checks order, and measures latency."""

    def __init__(self, n: int, window: int) -> None:
        self.n = n
        self.window = window
        self.counts = [0] * n
        self.next_seq = [0] * n
        self.reordered = 0
        self.latencies: list[int] = []
        self.measure = False
        # window index -> how many subscribers received all of it, and an event set at n
        self._arrivals: dict[int, int] = {}
        self._done: dict[int, asyncio.Event] = {}

    def window_done(self, index: int) -> asyncio.Event:
        """Set once every subscriber has received the first ``index`` windows."""
        return self._done.setdefault(index, asyncio.Event())

    def _arrived(self, index: int) -> None:
        self._arrivals[index] = arrived = self._arrivals.get(index, 0) + 1
        if arrived == self.n:
            self.window_done(index).set()

    async def drain(self, i: int, stream: EventStream[Message]) -> None:
        async for message in stream:
            data = message.message
            assert isinstance(data, bytes)
            seq = int.from_bytes(data[:8], "big")
            if seq != self.next_seq[i]:
                self.reordered += 1
            self.next_seq[i] = seq + 1
            if self.measure:
                self.latencies.append(time.perf_counter_ns() - int.from_bytes(data[8:16], "big"))
            self.counts[i] += 1
            if self.counts[i] % self.window == 0:
                self._arrived(self.counts[i] // self.window)


def _payload(seq: int) -> bytes:
    return seq.to_bytes(8, "big") + time.perf_counter_ns().to_bytes(8, "big") + bytes(_SIZE - 16)


async def _fanout(
    urls: list[str], pids: list[int], kind: str, n: int, messages: int, window: int
) -> FanoutResult:
    """The publisher on the first node, the subscribers on the last (with two nodes, every
    delivery crosses the engine); CPU is that of every process in ``pids``."""
    servers = [psutil.Process(pid) for pid in pids]
    (pub,) = await _login_all(urls[0], ["pub"])
    subs = await _login_all(urls[-1], [f"sub{i}" for i in range(n)])
    receivers = _Receivers(n, window)
    tasks = []
    if kind == "stream":
        channel = pub.stream_channel("bench")
        await channel.join(with_presence=False)
        await channel.join_topic("t")

        def publish(payload: bytes) -> Coroutine[None, None, None]:
            return channel.publish_topic("t", payload)

        for i, client in enumerate(subs):
            ch = client.stream_channel("bench")
            await ch.join(with_presence=False)
            stream = await ch.subscribe_topic("t", ["pub"])
            tasks.append(asyncio.create_task(receivers.drain(i, stream)))
    else:

        def publish(payload: bytes) -> Coroutine[None, None, None]:
            return pub.publish("bench", payload)

        for i, client in enumerate(subs):
            stream = await client.subscribe("bench", with_presence=False)
            tasks.append(asyncio.create_task(receivers.drain(i, stream)))
    windows = messages // window
    seq = 0

    async def send_window() -> None:
        nonlocal seq
        first, seq = seq, seq + window
        await asyncio.gather(*(publish(_payload(s)) for s in range(first, seq)))

    # Throughput: at most two windows in flight (published but not yet at every subscriber).
    cpu0 = _cpu(servers)
    t0 = time.perf_counter()
    for w in range(windows):
        if w >= 2:
            await receivers.window_done(w - 1).wait()
        await send_window()
    await receivers.window_done(windows).wait()
    elapsed = time.perf_counter() - t0
    cpu1 = _cpu(servers)
    deliveries = windows * window * n
    cpu = cpu1 - cpu0

    # Latency at half the peak message rate, paced in 1 ms ticks, for about 2 seconds.
    rate = windows * window / elapsed / 2
    total = max(window, int(rate * 2) // window * window)
    receivers.measure = True
    start = time.perf_counter()
    sends: set[asyncio.Task[None]] = set()  # only those in flight: no GC pressure from done ones
    for s in range(seq, seq + total):
        due = start + (s - seq) / rate
        delay = due - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        task = asyncio.create_task(publish(_payload(s)))
        sends.add(task)
        task.add_done_callback(sends.discard)
    seq += total
    while sends:
        await asyncio.gather(*sends)
    await receivers.window_done(seq // window).wait()
    lat = sorted(receivers.latencies)
    quantiles = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99

    for task in tasks:
        task.cancel()
    await _logout_all([pub, *subs])
    lost = sum(seq - c for c in receivers.counts)
    return FanoutResult(
        n,
        windows * window,
        deliveries / elapsed,
        cpu / deliveries * 1e6,
        quantiles[49] / 1e6,
        quantiles[98] / 1e6,
        lost,
        receivers.reordered,
    )


def _cpu(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def _run_fanout(
    urls: list[str], pids: list[int], kind: str, n: int, messages: int, window: int
) -> FanoutResult:
    out: list[FanoutResult] = []

    async def main() -> None:
        out.append(await _fanout(urls, pids, kind, n, messages, window))

    _run(main())
    return out[0]


# --- connections ------------------------------------------------------------------------------


async def _connections(url: str, server_pid: int, count: int) -> tuple[float, float, float]:
    server = psutil.Process(server_pid)
    await asyncio.sleep(0.5)
    rss0 = server.memory_info().rss
    clients = await _login_all(url, [f"idle{i}" for i in range(count)], batch=250)
    await asyncio.sleep(2.0)
    rss1 = server.memory_info().rss
    for client in clients:  # now every connection also joins a stream channel and subscribes
        ch = client.stream_channel("idle")
        await ch.join(with_presence=False)
        await ch.subscribe_topic("t", ["nobody"])
    await asyncio.sleep(1.0)
    rss2 = server.memory_info().rss
    await _logout_all(clients)
    return rss0 / 1024, (rss1 - rss0) / count / 1024, (rss2 - rss0) / count / 1024


# --- commands -----------------------------------------------------------------------------------


@click.group()
def bench() -> None:
    """Benchmarks (figures recorded in docs/PERFORMANCE.md)."""


@bench.command()
@click.option("--subscribers", "-n", multiple=True, type=int, help="Subscriber counts [1 10 100].")
@click.option(
    "--messages",
    type=int,
    default=None,
    help="Messages per run [200,000 for 1 subscriber, 100,000 for 10, 20,000 for more]: "
    "enough server CPU time to measure with the kernel's 10 ms accounting.",
)
@click.option("--window", type=int, default=100, show_default=True, help="Messages per window.")
@click.option(
    "--channel",
    "kind",
    type=click.Choice(["stream", "message"]),
    default="stream",
    show_default=True,
    help="A stream-channel topic (subscribers pick the publisher) or a message channel.",
)
@click.option(
    "--engine",
    default="memory",
    show_default=True,
    help="'memory', or a redis:// URL to run the nodes on Redis (its CPU is counted too).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="With 2 (needs --engine redis://...), the publisher is on one node and the "
    "subscribers on the other.",
)
def fanout(
    subscribers: tuple[int, ...],
    messages: int | None,
    window: int,
    kind: str,
    engine: str,
    nodes: int,
) -> None:
    """One publisher, N subscribers, 128-byte messages: deliveries/s, server CPU per delivery,
    and p50/p99 publish-to-receive latency at half the peak rate."""
    if nodes > 1 and not engine.startswith("redis://"):
        raise click.UsageError("several nodes need --engine redis://...")
    counts = subscribers or (1, 10, 100)
    server_cpu, pinning = _pin_self()
    where = f"{nodes} node(s), engine {_shown(engine)}"
    click.echo(f"fan-out in a {kind} channel, {_SIZE} B messages, {where}; {pinning}")
    click.echo("")
    click.echo(
        "| subscribers | messages | deliveries/s | server CPU µs/delivery | p50 ms | p99 ms "
        "| lost | reordered |"
    )
    click.echo("|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        for n in counts:
            per_run = messages or (200_000 if n < 10 else 100_000 if n < 100 else 20_000)
            args = ["--config", str(config)]
            env = {}
            if engine != "memory":
                prefix = f"rtm2bench:{os.getpid()}:{n}:"
                # In the environment: a password in the URL stays out of the process list.
                env["RTM2_SERVE_ENGINE"] = f"{engine}{'&' if '?' in engine else '?'}prefix={prefix}"
            with contextlib.ExitStack() as stack:
                servers = [
                    stack.enter_context(local_server(args, cwd=Path(tmp), cpu=server_cpu, env=env))
                    for _ in range(nodes)
                ]
                pids = [srv.pid for srv in servers] + _redis_pids(engine)
                r = _run_fanout([srv.url for srv in servers], pids, kind, n, per_run, window)
            if engine != "memory":
                _run(_forget(engine, prefix))
            click.echo(
                f"| {r.subscribers} | {r.messages:,} | {r.deliveries_per_s:,.0f} "
                f"| {r.cpu_us_per_delivery:.2f} "
                f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.lost} | {r.reordered} |"
            )


async def _forget(engine: str, prefix: str) -> None:
    """Delete the keys a benchmark run left in Redis."""
    from ..server.redisio import RedisClient

    client = RedisClient(engine.split("?", 1)[0])
    await client.connect()
    cursor = b"0"
    while True:
        cursor, keys = await client.call("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", 1000)
        if keys:
            await client.call("DEL", *keys)
        if cursor == b"0":
            break
    await client.close()


def _shown(engine: str) -> str:
    if engine == "memory":
        return engine
    from ..server.redisio import redact_url  # only a bench on Redis loads its client

    return redact_url(engine)


def _redis_pids(engine: str) -> list[int]:
    """The Redis server behind ``engine`` when it runs on this machine (its CPU counts too)."""
    if not engine.startswith("redis://"):
        return []
    port = int(engine.split("://", 1)[1].split("/", 1)[0].split("?")[0].rsplit(":", 1)[-1])
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("redis-server"):
            with contextlib.suppress(psutil.Error):
                if any(c.laddr.port == port for c in proc.net_connections("tcp")):
                    return [proc.pid]
    return []


@bench.command()
@click.option("--count", type=int, default=5000, show_default=True, help="Connections to open.")
def connections(count: int) -> None:
    """Server memory per idle logged-in connection (and per connection in a channel)."""
    server_cpu, pinning = _pin_self()
    with contextlib.suppress(ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count * 2 + 100)), hard))
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        with local_server(["--config", str(config)], cwd=Path(tmp), cpu=server_cpu) as srv:
            out: list[tuple[float, float, float]] = []

            async def main() -> None:
                out.append(await _connections(srv.url, srv.pid, count))

            try:
                _run(main())
            except RTMError as exc:
                raise click.ClickException(f"could not open {count} connections: {exc}") from None
    base, idle, joined = out[0]
    click.echo(f"{count} connections; {pinning}; server RSS at start {base / 1024:.1f} MiB")
    click.echo(f"  idle, logged in:                  {idle:.1f} KiB per connection")
    click.echo(f"  + joined a channel and subscribed: {joined:.1f} KiB per connection")


@bench.command()
@click.option("--runs", type=int, default=1, show_default=True, help="Runs, one table each.")
@click.option("--n", "counts", multiple=True, type=int, help="Subscriber counts [1 10 100].")
@click.option(
    "--seconds",
    type=float,
    default=3.0,
    show_default=True,
    help="Length of each measurement (throughput per N and system, and the latency run).",
)
@click.option(
    "--systems",
    default="rtm2,redis,nats",
    show_default=True,
    help="Which servers to compare, in the order they alternate.",
)
@click.option(
    "--latency-rate", type=float, default=1000.0, show_default=True, help="Messages/s paced."
)
@click.option(
    "--latency-subscribers",
    type=int,
    default=100,
    show_default=True,
    help="Subscribers in the latency run (0: no latency run).",
)
@click.option(
    "--load",
    type=click.Choice(["go", "python"]),
    default=None,
    help="Where the clients run: go = the Go generator of bench/loadgen (built with `go build` "
    "into ~/.cache/rtm2 on first use and when its sources change), python = this process "
    "(asyncio + uvloop; at 100k deliveries/s its decoding sets the latency).  "
    "[default: go if go is installed, else python]",
)
def peers(
    runs: int,
    counts: tuple[int, ...],
    seconds: float,
    systems: str,
    latency_rate: float,
    latency_subscribers: int,
    load: str | None,
) -> None:
    """rtm2 (message channel) next to redis-server and nats-server, started here on free ports:
    server CPU per delivery, deliveries/s and the rtm2/Redis ratio at each fan-out, then
    publish-to-receive latency (p50, p99, p99.9, max) at --latency-rate x
    --latency-subscribers. Servers run on CPU 0, the load on CPU 1; the latency table shows the
    load's CPU and how long the servers and the load waited for a CPU (a busy machine)."""
    from . import loadgen
    from . import peers as p

    chosen = tuple(s.strip() for s in systems.split(",") if s.strip())
    unknown = set(chosen) - set(p.SYSTEMS)
    if unknown or not chosen:
        raise click.UsageError(f"--systems takes some of {', '.join(p.SYSTEMS)}")
    counts = counts or (1, 10, 100)
    server_cpu, pinning = _pin_self()
    with contextlib.suppress(ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = (max(counts) + latency_subscribers) * 2 + 100
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, need)), hard))
    cpu_model = _cpu_model()
    click.echo(
        f"rtm2 vs peers: {p.SIZE} B messages, one publisher; {pinning}; "
        f"{os.cpu_count()} CPUs ({cpu_model}); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    try:
        generator, line = loadgen.choose(
            load, lambda: click.echo("building bench/loadgen with go (the first time: ~1 min)")
        )
        click.echo(line)
        with p.servers(chosen, server_cpu) as started:
            for run in range(1, runs + 1):
                out: list[tuple[list[p.PeerResult], list[p.PeerResult]]] = []

                async def main(run: int = run, out: list[Any] = out) -> None:
                    out.append(
                        await p.run_peers(
                            started,
                            counts,
                            seconds,
                            latency_rate,
                            latency_subscribers,
                            run,
                            BENCH_APP,
                            generator,
                        )
                    )

                _run(main())
                _peer_tables(run, chosen, counts, *out[0], latency_rate, latency_subscribers)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _peer_tables(
    run: int,
    systems: tuple[str, ...],
    counts: tuple[int, ...],
    tp: list[PeerResult],
    lat: list[PeerResult],
    rate: float,
    subscribers: int,
) -> None:
    by = {(r.system, r.subscribers): r for r in tp}
    ratio = "rtm2" in systems and "redis" in systems
    click.echo("")
    click.echo(f"run {run}: server CPU µs per delivery (deliveries/s)")
    click.echo("")
    head = "| N | " + " | ".join(systems) + (" | rtm2 / redis |" if ratio else " |")
    click.echo(head)
    click.echo("|---:|" + "---:|" * (len(systems) + ratio))
    bad = []
    for n in counts:
        cells = []
        for system in systems:
            r = by[(system, n)]
            cells.append(f"{r.cpu_us_per_delivery:.3f} ({r.deliveries_per_s:,.0f})")
            if r.lost or r.reordered or r.errors:
                bad.append(
                    f"{system} N={n}: {r.lost} lost, {r.reordered} reordered, {r.errors} errors"
                )
        row = f"| {n} | " + " | ".join(cells)
        if ratio:
            rtm2, redis = by[("rtm2", n)], by[("redis", n)]
            row += f" | {_ratio(rtm2.cpu_us_per_delivery, redis.cpu_us_per_delivery)}"
        click.echo(row + " |")
    if lat:
        click.echo("")
        click.echo(f"run {run}: latency at {rate:g} msg/s x {subscribers} subscribers")
        click.echo("")
        click.echo(
            "| system | p50 ms | p99 ms | p99.9 ms | max ms | CPU µs/delivery | deliveries "
            "| load CPU | server waited | load waited |"
        )
        click.echo("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        lats = {r.system: r for r in lat}
        for system in systems:
            r = lats[system]
            click.echo(
                f"| {system} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                f"| {r.extra.get('p999_ms', 0.0):.2f} | {r.extra.get('max_ms', 0.0):.2f} "
                f"| {r.cpu_us_per_delivery:.3f} "
                f"| {r.messages * subscribers:,} | {r.extra.get('load_cpu', 0.0):.0%} "
                f"(sys {r.extra.get('load_cpu_kernel', 0.0):.0%}) "
                f"| {r.extra.get('server_wait', 0.0):.0%} | {r.extra.get('load_wait', 0.0):.0%} |"
            )
            if r.lost or r.reordered or r.errors:
                bad.append(f"{system} latency: {r.lost} lost, {r.reordered} reordered")
        if ratio:
            mine, theirs = lats["rtm2"], lats["redis"]
            click.echo(
                f"| rtm2 / redis | {_ratio(mine.p50_ms, theirs.p50_ms)} "
                f"| {_ratio(mine.p99_ms, theirs.p99_ms)} "
                f"| {_ratio(mine.extra.get('p999_ms', 0.0), theirs.extra.get('p999_ms', 0.0))} "
                f"| {_ratio(mine.extra.get('max_ms', 0.0), theirs.extra.get('max_ms', 0.0))} "
                f"| {_ratio(mine.cpu_us_per_delivery, theirs.cpu_us_per_delivery)} | | | | |"
            )
        click.echo("")
        click.echo(
            "load CPU: the load process's CPU time over the run (sys: the part in the kernel, "
            "mostly TCP receive under read()); near 100 % the load delays deliveries itself. "
            "server/load waited: time their threads were ready to run but waited for a CPU "
            "(other work on the machine)."
        )
    click.echo("")
    click.echo("nothing lost or reordered" if not bad else "PROBLEMS: " + "; ".join(bad))


def _ratio(a: float, b: float) -> str:
    """``a / b``; a window too short for the kernel's 10 ms CPU accounting may measure 0."""
    return f"{a / b:.2f}" if b else "n/a"
