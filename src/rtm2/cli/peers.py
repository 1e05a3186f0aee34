"""``rtm2 bench peers``: rtm2 side by side with Redis pub/sub and NATS, in one harness.

One publisher and N subscribers, 128-byte messages, against three servers this command starts
itself on free ports, each pinned to CPU 0 while the load runs in this process on CPU 1:

* rtm2 (``rtm2 serve``, embedded engine): a message channel;
* ``redis-server``: PUBLISH / SUBSCRIBE;
* ``nats-server``: core NATS PUB / SUB.

Every client is a raw, minimal implementation of its wire protocol (rtm2: WebSocket framing and
MessagePack parsed here with msgspec, no SDK; Redis: RESP; NATS: its text protocol), so client
cost is alike and the figures compare servers. Systems alternate within a run, so a run's
ratios are measured under the same machine load.

Figures: server CPU per delivery (the server process's user+sys time over the measured window
divided by deliveries), deliveries/s, p50/p99 publish-to-receive latency, and whether anything
was lost or reordered.

The load runs either here (asyncio, the clients below) or in the Go generator of
``bench/loadgen`` (``loadgen.py``), which takes the same steps with the same clients written in
Go, and is what the latency figures need: one Python core decoding 100k deliveries/s is itself
the bottleneck. For it, this module encodes rtm2's requests from ``protocol/frames.py`` and a
publish frame of each system with its payload (and request id) at known offsets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil

from ..protocol.frames import Hello, Login, Logout, Publish, Subscribe
from .loadgen import GoLoad
from .loadgen import run as run_go
from .local import local_server

__all__ = ["PeerResult", "Template", "go_spec", "publish_template", "run_peers"]

SIZE = 128
CHANNEL = "bench"
SYSTEMS = ("rtm2", "redis", "nats")
WINDOW = 100  # throughput: messages per write, at most two windows in flight
WARMUP_WINDOWS = 5
SETTLE = 0.2  # seconds between opening the clients and the first publish

_encode = msgspec.msgpack.Encoder().encode
_decode_any = msgspec.msgpack.Decoder().decode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None

    def pin() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})

    return pin


def _wait_port(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start (code {proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within 15 s")


@contextlib.contextmanager
def _native(name: str, argv: list[str], port: int, cpu: int | None) -> Iterator[int]:
    """Run a peer server until the block ends; yields its pid."""
    if shutil.which(argv[0]) is None:
        raise RuntimeError(
            f"{argv[0]} is not installed (Debian: apt-get install -y {argv[0]}); "
            f"or leave {name} out with --systems"
        )
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pin(cpu)
    )
    try:
        _wait_port(port, proc, name)
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _rtm2_config(directory: Path) -> Path:
    from .bench import BENCH_APP

    path = directory / "peers.toml"
    path.write_text(
        "\n".join(
            [
                "[timers]",
                "heartbeat_grace = 600.0",
                "[[apps]]",
                f'id = "{BENCH_APP}"',
                "[apps.limits]",
                "message_rate = 1e12",
                "topic_message_rate = 1e12",
                "request_rate = 1e12",
            ]
        )
        + "\n"
    )
    return path


# --- what every subscriber checks ------------------------------------------------------------


class Tally:
    """Deliveries per subscriber: counts, order, and latency while ``measure`` is on."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.next_seq = [0] * n
        self.reordered = 0
        self.latencies: list[int] = []
        self.measure = False
        self.total = 0
        self.target = 0
        self.reached: asyncio.Event = asyncio.Event()

    def expect(self, total: int) -> asyncio.Event:
        """An event set once ``total`` deliveries in all have arrived."""
        self.target = total
        self.reached = asyncio.Event()
        if self.total >= total:
            self.reached.set()
        return self.reached

    def got(self, i: int, payload: bytes | memoryview) -> None:
        seq = int.from_bytes(payload[:8], "big")
        if seq != self.next_seq[i]:
            self.reordered += 1
        self.next_seq[i] = seq + 1
        if self.measure:
            self.latencies.append(time.perf_counter_ns() - int.from_bytes(payload[8:16], "big"))
        self.total += 1
        if self.total >= self.target:
            self.reached.set()


def payload(seq: int) -> bytes:
    return seq.to_bytes(8, "big") + time.perf_counter_ns().to_bytes(8, "big") + bytes(SIZE - 16)


# --- raw clients -----------------------------------------------------------------------------


class _Stream(asyncio.Protocol):
    """A TCP connection handing its bytes to ``feed``; ``transport`` for writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.feed()

    def feed(self) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(factory: Callable[[], _Stream], port: int) -> _Stream:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(factory, "127.0.0.1", port)
    sock = proto.transport.get_extra_info("socket") if proto.transport else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return proto


def _masked(data: bytes) -> bytes:
    """A client-to-server WebSocket binary frame. Its mask key is zero: the server unmasks
    anyway (RFC 6455 lets any key through), and XOR with zero leaves the payload as it is."""
    n = len(data)
    if n < 126:
        return bytes((0x82, 0x80 | n, 0, 0, 0, 0)) + data
    if n < 65536:
        return bytes((0x82, 0xFE)) + n.to_bytes(2, "big") + b"\0\0\0\0" + data
    return bytes((0x82, 0xFF)) + n.to_bytes(8, "big") + b"\0\0\0\0" + data


class RTM2Client(_Stream):
    """WebSocket by hand: the upgrade, then server frames (never masked) parsed here; each
    frame's MessagePack array decoded with msgspec. Tag 1 is a Reply, tag 8 a ChannelMessage
    (docs/PROTOCOL.md)."""

    def __init__(self, on_message: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.upgraded = False
        self.on_message = on_message
        self.replies: dict[int, asyncio.Future[list[object]]] = {}
        self.acks = 0
        self.errors = 0

    def feed(self) -> None:
        buf = self.buf
        pos = 0
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"rtm2 refused the upgrade: {bytes(buf[:80])!r}")
            self.upgraded = True
            pos = end + 4
        size = len(buf)
        view = memoryview(buf)
        while size - pos >= 2:
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + n:
                break
            if buf[pos] & 0x0F == 0x2:
                self._frame(view[pos + head : pos + head + n])
            pos += head + n
        view.release()
        del buf[:pos]

    def _frame(self, data: memoryview) -> None:
        frame = _decode_any(data)
        tag = frame[0]
        if tag == 8 and self.on_message is not None:
            self.on_message(frame[4])
        elif tag == 1:
            if frame[2]:
                self.errors += 1
            waiter = self.replies.pop(frame[1], None)
            if waiter is not None:
                waiter.set_result(frame)
            else:
                self.acks += 1

    async def request(self, frame: msgspec.Struct) -> list[object]:
        rid = getattr(frame, "rid")  # noqa: B009
        waiter: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = waiter
        self.write(_masked(_encode(frame)))
        reply = await asyncio.wait_for(waiter, 10)
        if reply[2]:
            raise RuntimeError(f"rtm2 answered {type(frame).__name__} with {reply[2:4]}")
        return reply

    @classmethod
    async def open(
        cls, port: int, user: str, app: str, on_message: Callable[[bytes], None] | None = None
    ) -> RTM2Client:
        client = await _connect(lambda: cls(on_message), port)
        assert isinstance(client, RTM2Client)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        client.write(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        for frame in rtm2_requests(app, user, subscribe=on_message is not None):
            await client.request(frame)
        return client

    @staticmethod
    def publish_frame(rid: int, data: bytes) -> bytes:
        return _masked(_encode(Publish(rid, CHANNEL, data)))


def rtm2_requests(app: str, user: str, subscribe: bool) -> list[Hello | Login | Subscribe]:
    """What an rtm2 client of the bench sends once upgraded, each answered before the next."""
    frames: list[Hello | Login | Subscribe] = [Hello(1), Login(2, app, user)]
    if subscribe:
        frames.append(Subscribe(3, CHANNEL, with_presence=False))
    return frames


class RedisClient(_Stream):
    """RESP by hand: a subscriber reads ``message`` pushes; a publisher counts PUBLISH's
    integer replies."""

    def __init__(self, on_message: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.on_message = on_message
        self.acks = 0
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self) -> None:
        buf = self.buf
        pos = 0
        size = len(buf)
        while pos < size:
            if buf[pos] == 0x3A:  # ":<n>\r\n": a PUBLISH reply
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                self.acks += 1
                pos = end + 2
                continue
            parsed = _resp_array(buf, pos)
            if parsed is None:
                break
            items, pos = parsed
            if items[0] == b"message" and self.on_message is not None:
                self.on_message(items[2])
            elif items[0] == b"subscribe" and not self.subscribed.done():
                self.subscribed.set_result(None)
        del buf[:pos]

    @classmethod
    async def open(
        cls, port: int, on_message: Callable[[bytes], None] | None = None
    ) -> RedisClient:
        client = await _connect(lambda: cls(on_message), port)
        assert isinstance(client, RedisClient)
        if on_message is not None:
            client.write(_resp(b"SUBSCRIBE", CHANNEL.encode()))
            await asyncio.wait_for(client.subscribed, 10)
        return client

    @staticmethod
    def publish_frame(rid: int, data: bytes) -> bytes:
        return _resp(b"PUBLISH", CHANNEL.encode(), data)


def _resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _resp_array(buf: bytearray, pos: int) -> tuple[list[bytes], int] | None:
    """One ``*n`` array of bulk strings or integers at ``pos``; None if incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    if buf[pos] != 0x2A:
        raise RuntimeError(f"unexpected RESP: {bytes(buf[pos : pos + 40])!r}")
    count = int(buf[pos + 1 : end])
    pos = end + 2
    items: list[bytes] = []
    for _ in range(count):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        if buf[pos] == 0x24:  # $len
            n = int(buf[pos + 1 : end])
            start = end + 2
            if len(buf) < start + n + 2:
                return None
            items.append(bytes(buf[start : start + n]))
            pos = start + n + 2
        else:  # :int
            items.append(bytes(buf[pos + 1 : end]))
            pos = end + 2
    return items, pos


class NATSClient(_Stream):
    """The NATS text protocol by hand: ``CONNECT`` (not verbose, so PUB has no ack), ``SUB``,
    ``MSG`` pushes, and ``PING``/``PONG`` to know the server has taken what came before."""

    def __init__(self, on_message: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.on_message = on_message
        self.acks = 0
        self.pongs: list[asyncio.Future[None]] = []

    def feed(self) -> None:
        buf = self.buf
        pos = 0
        size = len(buf)
        while pos < size:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            if buf.startswith(b"MSG ", pos):
                n = int(buf[buf.rfind(b" ", pos, end) + 1 : end])
                start = end + 2
                if size < start + n + 2:
                    break
                if self.on_message is not None:
                    self.on_message(bytes(buf[start : start + n]))
                pos = start + n + 2
                continue
            line = bytes(buf[pos:end])
            pos = end + 2
            if line == b"PING":
                self.write(b"PONG\r\n")
            elif line == b"PONG":
                if self.pongs:
                    self.pongs.pop(0).set_result(None)
            elif line.startswith(b"-ERR"):
                raise RuntimeError(f"nats-server: {line.decode()}")
        del buf[:pos]

    async def ping(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pongs.append(waiter)
        self.write(b"PING\r\n")
        await asyncio.wait_for(waiter, 10)

    @classmethod
    async def open(cls, port: int, on_message: Callable[[bytes], None] | None = None) -> NATSClient:
        client = await _connect(lambda: cls(on_message), port)
        assert isinstance(client, NATSClient)
        client.write(b'CONNECT {"verbose":false,"pedantic":false,"echo":false}\r\n')
        if on_message is not None:
            client.write(b"SUB %s 1\r\n" % CHANNEL.encode())
        await client.ping()
        return client

    @staticmethod
    def publish_frame(rid: int, data: bytes) -> bytes:
        return b"PUB %s %d\r\n%s\r\n" % (CHANNEL.encode(), len(data), data)


# --- what the Go load generator is given -----------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A publish frame of one system that the Go generator copies and patches per message: its
    ``SIZE``-byte payload at ``payload_offset`` (all zeros here; the generator writes the
    sequence number and send time into the first 16 bytes, as :func:`payload` does) and, for
    rtm2, the request id as a big-endian uint64 at ``rid_offset`` (-1: no request id)."""

    frame: bytes
    payload_offset: int
    rid_offset: int = -1

    def patch(self, rid: int, data: bytes) -> bytes:
        """The frame the generator writes for request ``rid`` with payload ``data``."""
        out = bytearray(self.frame)
        out[self.payload_offset : self.payload_offset + len(data)] = data
        if self.rid_offset >= 0:
            out[self.rid_offset : self.rid_offset + 8] = rid.to_bytes(8, "big")
        return bytes(out)


# A payload whose bytes occur nowhere else in a frame, to find where the payload lands; and a
# request id that MessagePack writes in its widest form (0xcf + 8 bytes), so that every id
# fits the same place.
_MARK = bytes(range(0x80, 0x80 + SIZE))
_RID_MARK = 2**64 - 1


def publish_template(system: str) -> Template:
    """The publish frame of ``system`` with the payload and request id located."""
    rid_offset = -1
    if system == "rtm2":
        frame = RTM2Client.publish_frame(_RID_MARK, _MARK)
        rid_at = b"\xcf" + _RID_MARK.to_bytes(8, "big")
        if frame.count(rid_at) != 1:
            raise RuntimeError("the publish frame's request id is not where expected")
        rid_offset = frame.index(rid_at) + 1
    elif system == "redis":
        frame = RedisClient.publish_frame(0, _MARK)
    elif system == "nats":
        frame = NATSClient.publish_frame(0, _MARK)
    else:
        raise ValueError(f"unknown system {system!r}")
    if frame.count(_MARK) != 1:
        raise RuntimeError(f"the {system} publish frame does not carry its payload as is")
    at = frame.index(_MARK)
    return Template(frame[:at] + bytes(SIZE) + frame[at + SIZE :], at, rid_offset)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def go_spec(
    server: Server, mode: str, n: int, seconds: float, app: str, tag: str, rate: float = 0.0
) -> dict[str, Any]:
    """The JSON spec of one measurement by the Go generator (bench/loadgen/main.go's ``Spec``):
    the same steps as :func:`throughput` and :func:`latency`."""
    tpl = publish_template(server.system)
    spec: dict[str, Any] = {
        "system": server.system,
        "host": "127.0.0.1",
        "port": server.port,
        "mode": mode,
        "subscribers": n,
        "seconds": seconds,
        "rate": rate,
        "window": WINDOW,
        "warmup_windows": WARMUP_WINDOWS,
        "settle_seconds": SETTLE,
        "timeout_seconds": 30.0,
        "channel": CHANNEL,
        "size": SIZE,
        "server_pid": server.pid,
        "clock_ticks": os.sysconf("SC_CLK_TCK"),
        "publish": {
            "frame": _b64(tpl.frame),
            "payload_offset": tpl.payload_offset,
            "rid_offset": tpl.rid_offset,
        },
        "start_rid": 10,
        "goodbye": _b64(GOODBYE) if server.system == "rtm2" else "",
    }
    if server.system == "rtm2":

        def handshake(user: str, subscribe: bool) -> list[str]:
            return [_b64(_masked(_encode(f))) for f in rtm2_requests(app, user, subscribe)]

        spec["subscriber_handshakes"] = [handshake(f"{tag}s{i}", True) for i in range(n)]
        spec["publisher_handshake"] = handshake(f"{tag}p", False)
    return spec


async def go_measure(
    load: GoLoad,
    server: Server,
    mode: str,
    n: int,
    seconds: float,
    app: str,
    tag: str,
    rate: float = 0.0,
) -> PeerResult:
    """One throughput or latency measurement by the Go generator."""
    r = await run_go(load, go_spec(server, mode, n, seconds, app, tag, rate))
    extra = {
        k: float(r[k])
        for k in ("load_cpu", "p999_ms", "max_ms", "samples", "published_per_s", "gcs")
    }
    elapsed = float(r["elapsed_s"]) or 1.0
    extra["load_cpu_kernel"] = float(r["load_cpu_kernel"])
    extra["server_wait"] = float(r["server_runqueue_wait_ms"]) / 1e3 / elapsed
    extra["load_wait"] = float(r["load_runqueue_wait_ms"]) / 1e3 / elapsed
    return PeerResult(
        server.system,
        n,
        int(r["messages"]),
        float(r["deliveries_per_s"]),
        float(r["cpu_us_per_delivery"]),
        float(r["p50_ms"]),
        float(r["p99_ms"]),
        lost=int(r["lost"]),
        reordered=int(r["reordered"]),
        errors=int(r["errors"]),
        extra=extra,
        detail=r,
    )


# --- one measurement -------------------------------------------------------------------------


@dataclass
class PeerResult:
    system: str
    subscribers: int
    messages: int = 0
    deliveries_per_s: float = 0.0
    cpu_us_per_delivery: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    lost: int = 0
    reordered: int = 0
    errors: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)  # the Go generator's whole result


@dataclass
class Server:
    system: str
    port: int
    pid: int

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def runqueue_wait(pid: int) -> int:
    """Nanoseconds the threads of ``pid`` spent ready to run but waiting for a CPU (the second
    field of /proc/<pid>/task/<tid>/schedstat, summed; 0 where the kernel does not say). On a
    machine shared with other work, this is latency neither the server nor the load caused."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(task.path, "schedstat").read_text().split()[1])
    return total


async def _open_all(
    server: Server, n: int, tally: Tally, app: str, tag: str
) -> tuple[RTM2Client | RedisClient | NATSClient, list[_Stream]]:
    def receiver(i: int) -> Callable[[bytes], None]:
        got = tally.got
        return lambda data: got(i, data)

    subs: list[_Stream] = []
    pub: RTM2Client | RedisClient | NATSClient
    if server.system == "rtm2":
        for i in range(n):
            subs.append(await RTM2Client.open(server.port, f"{tag}s{i}", app, receiver(i)))
        pub = await RTM2Client.open(server.port, f"{tag}p", app)
    elif server.system == "redis":
        for i in range(n):
            subs.append(await RedisClient.open(server.port, receiver(i)))
        pub = await RedisClient.open(server.port)
    else:
        for i in range(n):
            subs.append(await NATSClient.open(server.port, receiver(i)))
        pub = await NATSClient.open(server.port)
    return pub, subs


async def _quiesce(subs: list[_Stream], pub: _Stream) -> None:
    if isinstance(pub, NATSClient):
        for sub in subs:  # the SUBs are in place before the first PUB
            assert isinstance(sub, NATSClient)
            await sub.ping()
    await asyncio.sleep(SETTLE)


async def throughput(server: Server, n: int, seconds: float, app: str, tag: str) -> PeerResult:
    """As fast as the subscribers take it: windows of 100 messages, at most two in flight."""
    window = WINDOW
    tally = Tally(n)
    pub, subs = await _open_all(server, n, tally, app, tag)
    proc = server.process
    try:
        await _quiesce(subs, pub)
        seq = 0
        rid = 10

        def send_window() -> None:
            nonlocal seq, rid
            frames = []
            for _ in range(window):
                frames.append(pub.publish_frame(rid, payload(seq)))
                seq += 1
                rid += 1
            pub.write(b"".join(frames))

        # Warm-up: a few windows, not measured.
        for _ in range(WARMUP_WINDOWS):
            send_window()
            await tally.expect(seq * n).wait()
        counted_from = seq
        cpu0 = _cpu(proc)
        t0 = time.perf_counter()
        send_window()
        windows = 1
        while True:
            send_window()
            windows += 1
            await asyncio.wait_for(tally.expect((seq - window) * n).wait(), 30)
            if time.perf_counter() - t0 >= seconds:
                break
        await asyncio.wait_for(tally.expect(seq * n).wait(), 30)
        elapsed = time.perf_counter() - t0
        cpu = _cpu(proc) - cpu0
        messages = seq - counted_from
        deliveries = messages * n
        await _settle_acks(pub, seq)
        return PeerResult(
            server.system,
            n,
            messages,
            deliveries / elapsed,
            cpu / deliveries * 1e6,
            lost=sum(seq - s for s in tally.next_seq),
            reordered=tally.reordered,
            errors=_errors(pub),
        )
    finally:
        await _close(pub, subs)


async def latency(
    server: Server, n: int, rate: float, seconds: float, app: str, tag: str
) -> PeerResult:
    """Paced at ``rate`` messages/s for ``seconds``: publish-to-receive quantiles."""
    tally = Tally(n)
    pub, subs = await _open_all(server, n, tally, app, tag)
    proc = server.process
    try:
        await _quiesce(subs, pub)
        total = int(rate * seconds)
        tally.measure = True
        me = psutil.Process()
        cpu0, mine0, kernel0 = _cpu(proc), _cpu(me), me.cpu_times().system
        wait0, my_wait0 = runqueue_wait(proc.pid), runqueue_wait(me.pid)
        start = time.perf_counter()
        for seq in range(total):
            delay = start + seq / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pub.write(pub.publish_frame(seq + 10, payload(seq)))
        await asyncio.wait_for(tally.expect(total * n).wait(), 30)
        elapsed = time.perf_counter() - start
        cpu = _cpu(proc) - cpu0
        # Near 100 %, the load process itself is what delays deliveries (this one core parses
        # every delivery of every subscriber), and p50/p99 no longer measure the server.
        load = (_cpu(me) - mine0) / elapsed
        kernel = (me.cpu_times().system - kernel0) / elapsed
        waited = (runqueue_wait(proc.pid) - wait0) / 1e9 / elapsed
        i_waited = (runqueue_wait(me.pid) - my_wait0) / 1e9 / elapsed
        await _settle_acks(pub, total)
        lat = sorted(tally.latencies)
        # statistics.quantiles extrapolates past the largest sample when there are few: a
        # percentile is at most the maximum.
        top = lat[-1] if lat else 0
        q = [min(x, top) for x in statistics.quantiles(lat, n=100)] if len(lat) >= 2 else [0] * 99
        q999 = min(statistics.quantiles(lat, n=1000)[998], top) if len(lat) >= 2 else 0.0
        return PeerResult(
            server.system,
            n,
            total,
            total * n / elapsed,
            cpu / (total * n) * 1e6,
            q[49] / 1e6,
            q[98] / 1e6,
            lost=sum(total - s for s in tally.next_seq),
            reordered=tally.reordered,
            errors=_errors(pub),
            extra={
                "load_cpu": load,
                "load_cpu_kernel": kernel,
                "p999_ms": q999 / 1e6,
                "max_ms": (lat[-1] if lat else 0) / 1e6,
                "samples": len(lat),
                "server_wait": waited,
                "load_wait": i_waited,
            },
        )
    finally:
        await _close(pub, subs)


async def _settle_acks(pub: _Stream, published: int) -> None:
    """rtm2 acknowledges each publish, Redis answers each PUBLISH: wait for them all."""
    if isinstance(pub, NATSClient):
        await pub.ping()
        return
    assert isinstance(pub, RTM2Client | RedisClient)
    for _ in range(1000):  # at most 10 s
        if pub.acks >= published:
            return
        await asyncio.sleep(0.01)


def _errors(pub: _Stream) -> int:
    return pub.errors if isinstance(pub, RTM2Client) else 0


# Logged out at the end of each step: a connection that just closes leaves its rtm2 session
# present, and subscribed, for its presence timeout (300 s), and every later step's publishes
# would go to those sessions too; Redis and NATS drop a subscriber with its connection.
GOODBYE = _masked(_encode(Logout(4)))


async def _close(pub: _Stream, subs: list[_Stream]) -> None:
    """Close every client; rtm2's log out first, and the server ends their sessions."""
    rtm2 = [c for c in (pub, *subs) if isinstance(c, RTM2Client) and c.upgraded]
    for client in rtm2:
        client.write(GOODBYE)
    with contextlib.suppress(TimeoutError):  # the server closes each once it has logged out
        await asyncio.wait_for(asyncio.gather(*(c.lost for c in rtm2)), 10)
    for stream in (pub, *subs):
        stream.close()


# --- the whole comparison --------------------------------------------------------------------


@contextlib.contextmanager
def servers(systems: tuple[str, ...], cpu: int | None) -> Iterator[dict[str, Server]]:
    """Start each system on a free port (pinned to ``cpu``), stop them all on exit."""
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        started: dict[str, Server] = {}
        for system in systems:
            if system == "rtm2":
                config = _rtm2_config(Path(tmp))
                srv = stack.enter_context(
                    local_server(["--config", str(config)], cwd=Path(tmp), cpu=cpu)
                )
                port = int(srv.url.rsplit(":", 1)[1].split("/")[0])
                started[system] = Server(system, port, srv.pid)
            elif system == "redis":
                port = _free_port()
                argv = [
                    "redis-server",
                    *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                    *("--appendonly", "no", "--client-output-buffer-limit", "pubsub 0 0 0"),
                    *("--protected-mode", "no", "--dir", tmp),
                ]
                pid = stack.enter_context(_native("redis", argv, port, cpu))
                started[system] = Server(system, port, pid)
            elif system == "nats":
                port = _free_port()
                argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
                pid = stack.enter_context(_native("nats", argv, port, cpu))
                started[system] = Server(system, port, pid)
            else:
                raise ValueError(f"unknown system {system!r}")
        yield started


async def run_peers(
    started: dict[str, Server],
    counts: tuple[int, ...],
    seconds: float,
    latency_rate: float,
    latency_subscribers: int,
    run: int,
    app: str,
    load: GoLoad | None = None,
) -> tuple[list[PeerResult], list[PeerResult]]:
    """One run: throughput at each N, then the latency run, systems alternating at each step;
    the load in this process, or in the Go generator ``load``."""
    order = list(started)
    tp: list[PeerResult] = []
    for n in counts:
        for system in order:
            tag = f"r{run}n{n}"
            if load is None:
                tp.append(await throughput(started[system], n, seconds, app, tag))
            else:
                tp.append(
                    await go_measure(load, started[system], "throughput", n, seconds, app, tag)
                )
    lat: list[PeerResult] = []
    if latency_subscribers:
        for system in order:
            server, n = started[system], latency_subscribers
            if load is None:
                lat.append(await latency(server, n, latency_rate, seconds, app, f"r{run}l"))
            else:
                lat.append(
                    await go_measure(
                        load, server, "latency", n, seconds, app, f"r{run}l", latency_rate
                    )
                )
    return tp, lat
