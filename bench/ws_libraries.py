"""Fan-out benchmark for choosing the WebSocket server library.

One publisher connection sends N binary messages (128 bytes each) to the server, which fans
every message out to K subscriber connections. Server variants:

* ``websockets``       -- ``websockets.asyncio.server.serve`` + ``websockets.broadcast``
* ``websockets-send``  -- same server, ``await conn.send(msg)`` per subscriber
* ``picows``           -- ``picows.ws_create_server``, ``transport.send()`` per subscriber
* ``picows-batched``   -- picows server that encodes the (unmasked) frame once per message,
  queues it on every subscriber and writes each subscriber's queue with a single
  ``underlying_transport.write()`` per event-loop pass

The server runs in its own process (uvloop, pinned to the first CPU); the publisher and all
subscribers run in another process (picows clients, uvloop, pinned to the second CPU). The
publisher is flow-controlled by the load process itself: at most ``--inflight`` windows of
``--window`` messages may be outstanding, i.e. not yet received by every subscriber.

Measured over the timed part (after ``--warmup`` messages): wall time from the first publish
until the last delivery at all subscribers, deliveries/s, and server CPU time (user+sys, from
psutil) per delivery. Every subscriber must receive exactly N + warmup messages, and one
subscriber checks the sequence number and size of every message it gets.

Usage::

    .venv/bin/python bench/ws_libraries.py [--messages 20000] [--subscribers 100]
        [--variants websockets,websockets-send,picows,picows-batched]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing as mp
import os
import platform
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from multiprocessing.connection import Connection
from typing import Any

import psutil
import uvloop
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_connect,
    ws_create_server,
)
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"
MSG_SIZE = 128
SEQ = struct.Struct("<Q")
PADDING = b"x" * (MSG_SIZE - SEQ.size)
READY = "ready"
PUB_PATH = "/pub"
SUB_PATH = "/sub"
VARIANTS = ("websockets", "websockets-send", "picows", "picows-batched")
DEFAULT_VARIANTS = VARIANTS


@dataclass(frozen=True)
class Config:
    messages: int
    subscribers: int
    window: int
    inflight: int
    warmup: int
    timeout: float


@dataclass
class Result:
    variant: str
    deliveries: int = 0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    load_cpu_s: float = 0.0
    error: str | None = None


def pin_to_cpu(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def encode_server_frame(payload: bytes) -> bytes:
    """Encode one unmasked, final, binary WebSocket frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x82, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x82, 126, size)
    else:
        header = struct.pack("!BBQ", 0x82, 127, size)
    return header + payload


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


class PicowsHub:
    """Subscriber registry; publish() sends one frame per subscriber via transport.send()."""

    def __init__(self) -> None:
        self.subscribers: list[WSTransport] = []

    def add(self, transport: WSTransport) -> None:
        self.subscribers.append(transport)

    def remove(self, transport: WSTransport) -> None:
        if transport in self.subscribers:
            self.subscribers.remove(transport)

    def publish(self, payload: bytes) -> None:
        binary = WSMsgType.BINARY
        for transport in self.subscribers:
            transport.send(binary, payload)


class Outbox:
    """Frames queued for one subscriber during the current event-loop pass."""

    __slots__ = ("closed", "frames", "write")

    def __init__(self, transport: WSTransport) -> None:
        self.write: Callable[[bytes], None] = transport.underlying_transport.write
        self.frames: list[bytes] = []
        self.closed = False


class BatchedPicowsHub:
    """Encodes each frame once and flushes every subscriber with one write per loop pass."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.outboxes: dict[WSTransport, Outbox] = {}
        self.subscribers: list[Outbox] = []
        self.dirty: list[Outbox] = []
        self.flush_scheduled = False

    def add(self, transport: WSTransport) -> None:
        outbox = Outbox(transport)
        self.outboxes[transport] = outbox
        self.subscribers.append(outbox)

    def remove(self, transport: WSTransport) -> None:
        outbox = self.outboxes.pop(transport, None)
        if outbox is not None:
            outbox.closed = True
            self.subscribers.remove(outbox)

    def publish(self, payload: bytes) -> None:
        frame = encode_server_frame(payload)
        dirty = self.dirty
        for outbox in self.subscribers:
            frames = outbox.frames
            if not frames:
                dirty.append(outbox)
            frames.append(frame)
        if dirty and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for outbox in dirty:
            frames, outbox.frames = outbox.frames, []
            if not outbox.closed:
                outbox.write(frames[0] if len(frames) == 1 else b"".join(frames))


Hub = PicowsHub | BatchedPicowsHub


class ServerSubscriber(WSListener):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.hub.add(transport)
        transport.send(WSMsgType.TEXT, READY.encode())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.hub.remove(transport)


class ServerPublisher(WSListener):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            self.hub.publish(frame.get_payload_as_bytes())


async def start_picows_server(batched: bool) -> asyncio.Server:
    hub: Hub = BatchedPicowsHub(asyncio.get_running_loop()) if batched else PicowsHub()

    def listener_factory(request: WSUpgradeRequest) -> WSListener | None:
        if request.path == SUB_PATH.encode():
            return ServerSubscriber(hub)
        if request.path == PUB_PATH.encode():
            return ServerPublisher(hub)
        return None

    return await ws_create_server(listener_factory, HOST, 0)


async def start_websockets_server(per_connection_send: bool) -> Any:
    subscribers: list[ServerConnection] = []

    async def handler(conn: ServerConnection) -> None:
        path = conn.request.path if conn.request is not None else ""
        try:
            if path == SUB_PATH:
                subscribers.append(conn)
                try:
                    await conn.send(READY)
                    await conn.wait_closed()
                finally:
                    subscribers.remove(conn)
            elif path == PUB_PATH:
                async for message in conn:
                    if per_connection_send:
                        for sub in tuple(subscribers):
                            await sub.send(message)
                    else:
                        broadcast(subscribers, message)
        except ConnectionClosed:
            pass

    return await serve(handler, HOST, 0, compression=None, ping_interval=None)


async def run_server(variant: str, control: Connection) -> None:
    if variant in ("picows", "picows-batched"):
        server = await start_picows_server(batched=variant == "picows-batched")
    else:
        server = await start_websockets_server(per_connection_send=variant == "websockets-send")
    control.send(server.sockets[0].getsockname()[1])
    # The parent closes its end of the pipe to stop us (EOF makes the fd readable), which
    # also covers the parent dying unexpectedly.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(control.fileno(), stop.set)
    await stop.wait()
    server.close()


def server_main(variant: str, control: Connection, cpu: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    pin_to_cpu(cpu)
    uvloop.run(run_server(variant, control))


# --------------------------------------------------------------------------------------------
# Load generator (publisher + subscribers, picows clients)
# --------------------------------------------------------------------------------------------


class WindowTracker:
    """Counts, per window of messages, how many subscribers have received all of it."""

    def __init__(self, n_windows: int, n_subscribers: int) -> None:
        loop = asyncio.get_running_loop()
        self.n_subscribers = n_subscribers
        self.done = [0] * n_windows
        self.futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(n_windows)]
        self.errors: list[str] = []
        self.closing = False  # set once we disconnect on purpose

    def reached(self, window: int) -> None:
        self.done[window] += 1
        if self.done[window] == self.n_subscribers:
            self.futures[window].set_result(None)

    def abort(self, reason: str) -> None:
        """Fail every pending window so that the publisher stops waiting."""
        if self.closing:
            return
        self.errors.append(reason)
        for future in self.futures:
            if not future.done():
                future.set_exception(RuntimeError(reason))
                future.exception()  # mark as retrieved: only the awaited one is re-raised


class LoadSubscriber(WSListener):
    def __init__(self, tracker: WindowTracker, window: int, total: int, check_all: bool) -> None:
        self.tracker = tracker
        self.window = window
        self.total = total
        self.check_all = check_all
        self.count = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check(self, frame: WSFrame) -> None:
        payload = frame.get_payload_as_memoryview()
        seq = SEQ.unpack_from(payload)[0]
        if seq != self.count - 1 or len(payload) != MSG_SIZE:
            self.tracker.errors.append(f"delivery #{self.count}: seq={seq} size={len(payload)}")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.BINARY:
            self.count += 1
            if self.check_all:
                self.check(frame)
            if self.count % self.window == 0:
                if self.count == self.total:
                    self.check(frame)
                elif self.count > self.total:
                    self.tracker.errors.append(f"received {self.count} > {self.total}")
                    return
                self.tracker.reached(self.count // self.window - 1)
        elif msg_type == WSMsgType.TEXT and not self.ready.done():
            self.ready.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.count < self.total:
            self.tracker.abort(f"subscriber disconnected after {self.count} messages")


def make_payload(seq: int) -> bytes:
    return SEQ.pack(seq) + PADDING


async def run_load(port: int, server_pid: int, cfg: Config, parent: Connection) -> Result:
    # The parent never writes to this pipe: it becomes readable (EOF) only if the parent
    # closes it or dies, and then we give up instead of running on as an orphan.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def parent_gone() -> None:
        loop.remove_reader(parent.fileno())
        task.cancel()

    loop.add_reader(parent.fileno(), parent_gone)
    total = cfg.warmup + cfg.messages
    n_windows = total // cfg.window
    warm_windows = cfg.warmup // cfg.window
    tracker = WindowTracker(n_windows, cfg.subscribers)
    transports: list[WSTransport] = []
    subscribers: list[LoadSubscriber] = []
    try:
        async with asyncio.timeout(cfg.timeout):
            for i in range(cfg.subscribers):
                factory = functools.partial(LoadSubscriber, tracker, cfg.window, total, i == 0)
                transport, listener = await ws_connect(factory, f"ws://{HOST}:{port}{SUB_PATH}")
                transports.append(transport)
                assert isinstance(listener, LoadSubscriber)
                subscribers.append(listener)
            await asyncio.gather(*(sub.ready for sub in subscribers))
            publisher, _ = await ws_connect(WSListener, f"ws://{HOST}:{port}{PUB_PATH}")
            transports.append(publisher)

            async def publish(first: int, end: int) -> None:
                binary = WSMsgType.BINARY
                for w in range(first, end):
                    if w - first >= cfg.inflight:
                        await tracker.futures[w - cfg.inflight]
                    for seq in range(w * cfg.window, (w + 1) * cfg.window):
                        publisher.send(binary, make_payload(seq))
                await asyncio.gather(*tracker.futures[first:end])

            server = psutil.Process(server_pid)
            await publish(0, warm_windows)
            server_cpu0 = server.cpu_times()
            load_cpu0 = time.process_time()
            t0 = time.perf_counter()
            await publish(warm_windows, n_windows)
            t1 = time.perf_counter()
            load_cpu1 = time.process_time()
            server_cpu1 = server.cpu_times()

        await asyncio.sleep(0.2)  # let duplicates, if any, arrive before verifying
        counts = {sub.count for sub in subscribers}
        if counts != {total}:
            tracker.errors.append(f"per-subscriber counts {sorted(counts)} != {total}")
        return Result(
            variant="",
            deliveries=cfg.messages * cfg.subscribers,
            wall_s=t1 - t0,
            server_cpu_s=(server_cpu1.user + server_cpu1.system)
            - (server_cpu0.user + server_cpu0.system),
            load_cpu_s=load_cpu1 - load_cpu0,
            error="; ".join(tracker.errors[:5]) or None,
        )
    except TimeoutError:
        done = sum(tracker.futures[i].done() for i in range(n_windows))
        received = sorted({sub.count for sub in subscribers})
        return Result(
            variant="",
            error=f"timeout: {done}/{n_windows} windows complete, "
            f"subscriber counts {received[:3]}..{received[-3:]}",
        )
    finally:
        tracker.closing = True
        for transport in transports:
            transport.disconnect()
        await asyncio.sleep(0.05)


def load_main(port: int, server_pid: int, cfg: Config, out: Connection, cpu: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    pin_to_cpu(cpu)
    try:
        result = uvloop.run(run_load(port, server_pid, cfg, out))
    except asyncio.CancelledError:
        return  # the parent has gone away
    except Exception as exc:
        result = Result(variant="", error=f"{type(exc).__name__}: {exc}")
    out.send(result)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def stop_process(proc: mp.process.BaseProcess | None, grace: float) -> None:
    if proc is None or proc.pid is None:
        return
    proc.join(grace)
    if proc.is_alive():
        proc.terminate()
        proc.join(2)
    if proc.is_alive():
        proc.kill()
        proc.join()


def run_variant(variant: str, cfg: Config, cpus: tuple[int | None, int | None]) -> Result:
    ctx = mp.get_context("spawn")
    control, server_end = ctx.Pipe()
    server = ctx.Process(
        target=server_main,
        args=(variant, server_end, cpus[0]),
        name=f"server-{variant}",
        daemon=True,
    )
    load: mp.process.BaseProcess | None = None
    results: Connection | None = None
    server.start()
    server_end.close()
    try:
        if not control.poll(20):
            return Result(variant, error="server did not report its port")
        port = control.recv()
        assert server.pid is not None
        results, load_end = ctx.Pipe()
        load = ctx.Process(
            target=load_main,
            args=(port, server.pid, cfg, load_end, cpus[1]),
            name=f"load-{variant}",
            daemon=True,
        )
        load.start()
        load_end.close()
        if not results.poll(cfg.timeout + 20):
            return Result(variant, error="load process did not report")
        result: Result = results.recv()
        result.variant = variant
        return result
    except EOFError:
        return Result(variant, error="child process died")
    finally:
        if results is not None:
            results.close()  # EOF on the load's end of the pipe -> it gives up if still running
        stop_process(load, grace=5)
        control.close()  # EOF on the server's end of the pipe -> it shuts down
        stop_process(server, grace=5)


def print_table(results: list[Result]) -> None:
    print(
        "| variant | deliveries/s | server CPU µs/delivery | wall s | server CPU % | load CPU % |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        if r.error is not None or r.deliveries == 0 or r.wall_s <= 0:
            print(f"| {r.variant} | FAILED: {r.error} | | | | |")
            continue
        print(
            f"| {r.variant} | {r.deliveries / r.wall_s:,.0f} "
            f"| {r.server_cpu_s / r.deliveries * 1e6:.2f} | {r.wall_s:.2f} "
            f"| {100 * r.server_cpu_s / r.wall_s:.0f} | {100 * r.load_cpu_s / r.wall_s:.0f} |"
        )


def parse_args(argv: list[str] | None = None) -> tuple[Config, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=20_000,
        help="timed messages published (default: %(default)s)",
    )
    parser.add_argument(
        "--subscribers", type=int, default=100, help="subscriber connections (default: %(default)s)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=100,
        help="messages per flow-control window (default: %(default)s)",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        default=2,
        help="windows outstanding before the publisher waits (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1_000,
        help="untimed messages published first (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="per-variant load timeout in seconds (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if args.window < 1 or args.inflight < 1 or args.subscribers < 1 or args.messages < 1:
        parser.error("--window, --inflight, --subscribers and --messages must be >= 1")
    if args.messages % args.window or args.warmup % args.window:
        parser.error("--messages and --warmup must be multiples of --window")
    cfg = Config(
        messages=args.messages,
        subscribers=args.subscribers,
        window=args.window,
        inflight=args.inflight,
        warmup=args.warmup,
        timeout=args.timeout,
    )
    return cfg, variants


def main(argv: list[str] | None = None) -> int:
    cfg, variants = parse_args(argv)
    # Turn SIGTERM into SystemExit so that the `finally` blocks stop the child processes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    available = sorted(os.sched_getaffinity(0))
    cpus: tuple[int | None, int | None] = (
        (available[0], available[1]) if len(available) >= 2 else (None, None)
    )
    pinning = (
        f"server on CPU{cpus[0]}, load on CPU{cpus[1]}"
        if cpus[0] is not None
        else "not pinned (fewer than 2 CPUs available)"
    )
    versions = ", ".join(f"{pkg} {version(pkg)}" for pkg in ("websockets", "picows", "uvloop"))
    print(f"Python {platform.python_version()}, {versions}; {pinning}")
    print(
        f"{cfg.messages} messages x {cfg.subscribers} subscribers "
        f"= {cfg.messages * cfg.subscribers:,} deliveries of {MSG_SIZE} B per variant "
        f"(+{cfg.warmup} warm-up messages); window {cfg.window} x {cfg.inflight} in flight\n",
        flush=True,
    )
    results: list[Result] = []
    for variant in variants:
        started = time.perf_counter()
        result = run_variant(variant, cfg, cpus)
        status = "ok" if result.error is None else f"FAILED: {result.error}"
        print(
            f"  {variant}: {status} ({time.perf_counter() - started:.1f} s total)",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    print()
    print_table(results)
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
