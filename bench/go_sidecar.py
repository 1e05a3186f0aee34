"""Messages/s and latency through two Go SDK sidecars (docs/PERFORMANCE.md, "Go SDK sidecar").

    .venv/bin/python bench/go_sidecar.py [--messages 20000] [--window 64]

A publisher and a subscriber speak the Go SDK's sidecar protocol (framing, Header, protobuf
messages) to two separate ``rtm2 sidecar`` processes, which reach one ``rtm2 serve``:

    publisher -> sidecar A -> rtm2 serve -> sidecar B -> subscriber

The two ends are Python clients of the protocol, not the Go SDK (the Go module proxy refuses
it, see docs/GO.md). They do what the SDK does on the wire: a ``StreamMessageReq`` per
``PublishTopic``, waiting for its reply; ``window`` publishes in flight stand for that many
goroutines publishing at once (the SDK has no pipelining of its own). Payloads are 128 bytes.
Throughput counts messages received by the subscriber over the time from the first publish to
the last arrival; latency is publish-to-receive, paced at half that rate. The CPU time each
sidecar and the server spend per message is printed too: unlike rates, it holds up on a busy
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from rtm2.cli.bench import BENCH_APP, _config
from rtm2.cli.local import local_server
from rtm2.sidecar.framing import URI_COMMON_REQUEST, FrameDecoder, encode_frame
from rtm2.sidecar.proto import gosdk_pb2 as pb

PAYLOAD = 128


class Wire:
    """A minimal client of the sidecar protocol: calls with replies, events to a callback."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seq = itertools.count(1)
        self.pending: dict[int, asyncio.Future[pb.Header]] = {}
        self.on_event: Callable[[pb.Header], None] = lambda _: None
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        decoder = FrameDecoder()
        while data := await self.reader.read(1 << 16):
            for raw in decoder.feed(data):
                header = pb.Header()
                header.ParseFromString(raw)
                future = self.pending.pop(header.seqId, None) if header.seqId else None
                if future is not None:
                    future.set_result(header)
                else:
                    self.on_event(header)

    def call(self, uri: int, message: object) -> asyncio.Future[pb.Header]:
        seq = next(self.seq)
        body = message.SerializeToString()  # type: ignore[attr-defined]
        header = pb.Header(seqId=seq, uri=uri, message=body).SerializeToString()
        self.writer.write(encode_frame(header, uri=URI_COMMON_REQUEST))
        future = self.pending[seq] = asyncio.get_running_loop().create_future()
        return future

    async def ok(self, uri: int, message: object) -> None:
        header = await self.call(uri, message)
        if header.errCode:
            raise RuntimeError(f"uri {uri} failed with {header.errCode}")


def sidecar(url: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtm2", "sidecar", "--port", "0", "--endpoint", url,
         "--log-level", "warning"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    raise RuntimeError("the sidecar did not start")


def cpu(pids: list[int]) -> list[float]:
    """CPU seconds (user + system) each process has used so far."""
    out = []
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        out.append(times.user + times.system)
    return out


async def run(
    url: str, ports: tuple[int, int], pids: list[int], messages: int, window: int
) -> None:
    pub = Wire(*await asyncio.open_connection("127.0.0.1", ports[0]))
    sub = Wire(*await asyncio.open_connection("127.0.0.1", ports[1]))
    await pub.ok(100, pb.LoginReq(appId=BENCH_APP, userId="go-pub"))
    await sub.ok(100, pb.LoginReq(appId=BENCH_APP, userId="go-sub"))
    for wire in (pub, sub):
        await wire.ok(4, pb.StreamJoinReq(channel="bench"))
    await pub.ok(6, pb.StreamJoinTopicReq(channel="bench", topic="t"))
    await sub.ok(11, pb.StreamSubTopicReq(channel="bench", topic="t", userIds=["go-pub"]))

    received: list[int] = []  # receive time minus send time, ns
    done = asyncio.Event()
    target = [0]

    def arrived(header: pb.Header) -> None:
        if header.uri != 9:
            return
        event = pb.StreamMessageEvent()
        event.ParseFromString(header.message)
        (sent,) = struct.unpack_from("<q", event.message)
        received.append(time.perf_counter_ns() - sent)
        if len(received) >= target[0]:
            done.set()

    sub.on_event = arrived

    def message() -> pb.StreamMessageReq:
        stamp = struct.pack("<q", time.perf_counter_ns())
        return pb.StreamMessageReq(channel="bench", topic="t", message=stamp + b"x" * (PAYLOAD - 8))

    async def publish(count: int, width: int) -> float:
        received.clear()
        done.clear()
        target[0] = count
        start = time.perf_counter()
        inflight: set[asyncio.Future[pb.Header]] = set()
        for _ in range(count):
            if len(inflight) >= width:
                _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            inflight.add(pub.call(8, message()))
        await asyncio.wait_for(done.wait(), 60)
        return count / (time.perf_counter() - start)

    await publish(min(2000, messages), window)  # warm-up
    for width in (1, window):
        count = messages if width > 1 else messages // 4
        before = cpu(pids)
        rate = await publish(count, width)
        used = [(b - a) / count * 1e6 for a, b in zip(before, cpu(pids), strict=True)]
        print(
            f"window {width:3d}: {rate:9,.0f} messages/s through two sidecars; CPU per message:"
            f" sidecar A {used[0]:.0f} µs, server {used[1]:.0f} µs, sidecar B {used[2]:.0f} µs"
        )
    peak = rate

    # Latency at half the peak rate, paced in 1 ms ticks, for about 2 seconds.
    pace = peak / 2
    count = int(pace * 2)
    received.clear()
    done.clear()
    target[0] = count
    start = time.perf_counter()
    for i in range(count):
        due = start + i / pace
        delay = due - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        pub.call(8, message())
    await asyncio.wait_for(done.wait(), 60)
    lat = sorted(x / 1e6 for x in received)
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]
    print(f"latency at {pace:,.0f} messages/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({count} msgs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        with local_server(["--config", str(config), "--data-dir", tmp]) as server:
            sidecars = [sidecar(server.url), sidecar(server.url)]
            try:
                ports = (sidecars[0][1], sidecars[1][1])
                pids = [sidecars[0][0].pid, server.pid, sidecars[1][0].pid]
                asyncio.run(run(server.url, ports, pids, args.messages, args.window))
            finally:
                for proc, _ in sidecars:
                    proc.terminate()
                    proc.wait(10)


if __name__ == "__main__":
    main()
