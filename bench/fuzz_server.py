"""Fuzzing campaign against a real ``rtm2 serve``: a million structure-aware frames.

The script starts its own server (embedded engine, loopback only, a throwaway data dir) and
drives it from several concurrent raw connections (``websockets`` + MessagePack, no SDK).
Each connection lives for a random number of messages, in one of three conditions: fresh (no
Hello), after Hello, or logged in; it sends single frames and batches of up to 16 frames of
every client type, with values chosen to hurt (huge and negative numbers, odd Unicode names,
over-long strings, big payloads, wrong channel types, absent optional fields), a few
malformed messages (wrongly typed fields, truncated or mutated frames, random bytes), and
ends by closing, by Logout, or by dropping the TCP connection without a word.

The value pools (names, number edges, apps) are those of the seeded hypothesis tests
(``tests/fuzz_strategies.py``); here a seeded ``random.Random`` draws from them, which is
fast enough for a million frames.

It checks that the server never crashes, never logs an unhandled exception (the log is
scanned for ERROR, CRITICAL and tracebacks), answers every request at most once and only with
codes of the official RTM 2 table, and that its RSS comes back near its baseline once the
fuzzing connections are closed (psutil). It prints: frames and messages sent, the distinct
(frame type, state, reply code) triples reached, crashes, anomalies, and RSS
before / peak / after.

Usage::

    .venv/bin/python bench/fuzz_server.py [--frames 1000000] [--connections 6] [--seed 13]
        [--max-seconds 1500] [--json results.json]

Exit status 0 when every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import msgspec
import psutil
import websockets
from websockets.asyncio.client import ClientConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_strategies import (
    GOOD_NAMES,
    INT_EDGES,
    ODD_NAMES,
    OPEN_APP,
    SIGNED_APP,
)

from rtm2.errors import ErrorCode
from rtm2.protocol.codec import decode_server, encode
from rtm2.protocol.frames import (
    AcquireLock,
    Batch,
    ClientFrame,
    Hello,
    Login,
    Logout,
    MetadataItem,
    Ping,
    Position,
    Reply,
)

CLIENT_FRAME_TYPES: tuple[type[Any], ...] = typing.get_args(ClientFrame)
OFFICIAL_CODES = frozenset(int(code) for code in ErrorCode)
SIGNED_CERT = "5CFd2fd1755d40ecb72977518be15d3b"
UNHANDLED = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|exception was never retrieved")
ENUM_FIELDS = frozenset({"channel_type", "op", "message_type", "qos", "priority"})
WINDOW = 64  # requests a connection may have unanswered before it waits for replies
STALL = 15.0  # seconds without a reply, with requests outstanding: an anomaly


class Gen:
    """Seeded, structure-aware values for every field type of the client frames."""

    def __init__(self, rnd: Random) -> None:
        self.r = rnd
        self.fields = {
            cls: [(f.name, f.type, f.required) for f in msgspec.structs.fields(cls)]
            for cls in (*CLIENT_FRAME_TYPES, MetadataItem, Position)
        }

    def int_(self) -> int:
        x = self.r.random()
        if x < 0.5:
            return self.r.randint(-3, 40)
        if x < 0.8:
            return self.r.choice(INT_EDGES)
        return self.r.randint(-(2**63), 2**64 - 1)

    def enum(self) -> int:
        return self.r.randint(-1, 5) if self.r.random() < 0.85 else self.r.choice(INT_EDGES)

    def text(self) -> str:
        x = self.r.random()
        if x < 0.6:
            return self.r.choice(GOOD_NAMES)
        if x < 0.85:
            return self.r.choice(ODD_NAMES)
        n = self.r.randint(0, 40)
        return "".join(chr(self._codepoint()) for _ in range(n))

    def _codepoint(self) -> int:
        while True:
            c = self.r.choice((self.r.randint(0, 0x7F), self.r.randint(0, 0x10FFFF)))
            if not 0xD800 <= c <= 0xDFFF:  # surrogates cannot be sent as UTF-8
                return c

    def blob(self) -> bytes:
        if self.r.random() < 0.02:
            return b"\xff" * self.r.randint(30_000, 40_000)
        return self.r.randbytes(self.r.randint(0, 200))

    def value(self, name: str, tp: Any) -> Any:
        r = self.r
        if name in ENUM_FIELDS:
            return self.enum()
        if name == "app_id":
            return r.choice((OPEN_APP, OPEN_APP, OPEN_APP, SIGNED_APP, self.text()))
        if name == "token":
            return r.choice(("", OPEN_APP, self.text()))
        if name == "presence_timeout":
            return r.choice((5, 30, 300)) if r.random() < 0.7 else self.int_()
        if name == "version":
            return 1 if r.random() < 0.8 else self.int_()
        if tp is int:
            return self.int_()
        if tp is str:
            return self.text()
        if tp is bytes:
            return self.blob()
        if tp is bool:
            return r.random() < 0.5
        if tp is float:
            return r.choice((0.0, -1.0, 1e308, float("inf"), float("nan"), r.random() * 1e6))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is list:
            return [self.value("", args[0]) for _ in range(r.randint(0, 4))]
        if origin is dict:
            return {self.text(): self.text() for _ in range(r.randint(0, 4))}
        if tp in (MetadataItem, Position):
            return self.struct(tp)
        raise TypeError(f"no generator for {tp!r}")

    def struct(self, cls: type[Any], **fixed: Any) -> Any:
        values = {}
        for name, tp, required in self.fields[cls]:
            if name in fixed:
                values[name] = fixed[name]
            elif required or self.r.random() < 0.7:
                values[name] = self.value(name, tp)
        return cls(**values)

    def frame(self, rid: int) -> Any:
        cls = self.r.choice(CLIENT_FRAME_TYPES)
        while cls is Logout and self.r.random() < 0.95:  # else few connections get far
            cls = self.r.choice(CLIENT_FRAME_TYPES)
        return self.struct(cls) if cls is Ping else self.struct(cls, rid=rid)

    def malformed(self, good: bytes) -> bytes:
        """A message no frame matches: wrongly typed fields, truncated, mutated, or noise."""
        r = self.r
        x = r.random()
        if x < 0.4:
            tag = r.choice((r.randint(-2, 40), r.choice(INT_EDGES)))
            junk: list[Any] = [r.choice((None, self.int_(), self.text(), [], {}, b"x", 1.5))]
            return encode([tag, *(junk * r.randint(0, 8))])
        if x < 0.7:
            return good[: r.randint(0, max(0, len(good) - 1))]
        if x < 0.9 and good:
            data = bytearray(good)
            for _ in range(r.randint(1, 4)):
                data[r.randrange(len(data))] = r.randrange(256)
            return bytes(data)
        return r.randbytes(r.randint(1, 200))


@dataclass
class Stats:
    frames: int = 0
    messages: int = 0
    malformed: int = 0
    connections: int = 0
    replies: int = 0
    # Replies to rids no good frame used, or a second time, after a mutated message on the
    # connection (a mutation can turn a rid into another): not counted as anomalies.
    replies_to_mutated: int = 0
    triples: collections.Counter[tuple[str, str, int]] = field(default_factory=collections.Counter)
    closes: collections.Counter[str] = field(default_factory=collections.Counter)
    anomalies: list[str] = field(default_factory=list)

    def anomaly(self, what: str) -> None:
        if len(self.anomalies) < 50:
            self.anomalies.append(what)


class Fuzzer:
    """One raw connection at a time, for ``stop()`` to say when to end."""

    def __init__(self, n: int, url: str, rnd: Random, stats: Stats, stop: Callable[[], bool]):
        self.n, self.url, self.r, self.stats, self.stop = n, url, rnd, stats, stop
        self.gen = Gen(rnd)

    async def run(self) -> None:
        while not self.stop():
            try:
                await self.one_connection()
            except (OSError, websockets.InvalidHandshake) as exc:
                self.stats.anomaly(f"worker {self.n}: could not connect: {exc!r}")
                await asyncio.sleep(0.5)

    async def one_connection(self) -> None:
        st = self.stats
        r = self.r
        ws = await websockets.connect(
            self.url, max_size=None, compression=None, ping_interval=None, open_timeout=20
        )
        st.connections += 1
        state = {"s": "NEW"}
        pending: dict[int, tuple[str, str]] = {}  # rid -> (frame type, state when sent)
        sent_frames: dict[int, Any] = {}  # rid -> frame, while unanswered (for the report)
        answered: dict[int, tuple[str, int]] = {}  # rid -> (frame type, code)
        waiting = set()  # rids of acquires that may wait for the lock: not in the window
        progress = asyncio.Event()
        # After a mutated message, replies may come to rids it was mutated into.
        tainted = False
        # Rids are per connection: start at the edges of int64 and uint64 (a connection sends
        # far fewer than 2**20 requests).
        rid_base = r.choice((0, -(2**63), 2**63 - 2**20, 2**64 - 2**20))
        next_rid = [rid_base]

        def rid() -> int:
            next_rid[0] += 1
            return next_rid[0]

        async def reader() -> None:
            try:
                async for data in ws:
                    if not isinstance(data, bytes):
                        st.anomaly("a text frame from the server")
                        continue
                    frame = decode_server(data)
                    if not isinstance(frame, Reply):
                        continue
                    st.replies += 1
                    if frame.rid in answered and tainted:
                        st.replies_to_mutated += 1
                    elif frame.rid in answered:
                        first = answered[frame.rid]
                        st.anomaly(
                            f"a second reply to {first[0]} rid {frame.rid}: codes {first[1]}, "
                            f"then {frame.code} {frame.reason!r}"
                        )
                    sent = pending.pop(frame.rid, None)
                    sent_frames.pop(frame.rid, None)
                    waiting.discard(frame.rid)
                    if sent is None:
                        if frame.rid not in answered and tainted:
                            st.replies_to_mutated += 1
                        elif frame.rid not in answered:
                            st.anomaly(f"a reply to rid {frame.rid}, never sent")
                        continue
                    answered[frame.rid] = (sent[0], frame.code)
                    if frame.code not in OFFICIAL_CODES:
                        st.anomaly(f"{sent[0]} got code {frame.code}, not an RTM 2 code")
                    st.triples[(sent[0], sent[1], frame.code)] += 1
                    if frame.code == 0:
                        if sent[0] == "Hello":
                            state["s"] = "OPEN"
                        elif sent[0] in ("Login", "Resume"):
                            state["s"] = "LOGGED_IN"
                        elif sent[0] == "Logout":
                            state["s"] = "CLOSED"
                    progress.set()

            finally:  # the connection ended: nobody waits for replies any more
                progress.set()

        read = asyncio.create_task(reader())
        mode = r.random()
        try:
            if mode > 0.15:
                await self.send(ws, [Hello(rid())], pending, waiting, state)
            if mode > 0.35:
                user = f"fz{self.n}-{r.randrange(50)}"
                await self.send(ws, [Login(rid(), OPEN_APP, user, "", 5)], pending, waiting, state)
            for _ in range(r.randint(1, 300)):
                if self.stop() or read.done():
                    break
                while len(pending) - len(waiting) > WINDOW and not read.done():
                    progress.clear()
                    try:
                        await asyncio.wait_for(progress.wait(), STALL)
                    except TimeoutError:
                        if read.done():
                            break
                        stuck = collections.Counter(
                            t for rid_, (t, _) in pending.items() if rid_ not in waiting
                        )
                        oldest = next((rid_ for rid_ in pending if rid_ not in waiting), None)
                        st.anomaly(
                            f"no reply for {STALL} s, outstanding: {dict(stuck)}; the oldest: "
                            f"{sent_frames.get(oldest)!r:.600}"
                        )
                        break
                frames = [self.gen.frame(rid()) for _ in range(r.randint(1, 16))]
                if r.random() < 0.01:
                    tainted = True
                    good = encode(Batch(frames))
                    st.malformed += 1
                    st.messages += 1
                    st.frames += len(frames)
                    bad = self.gen.malformed(good)
                    await ws.send(bad)
                    continue
                await self.send(ws, frames, pending, waiting, state, sent_frames)
            end = r.random()
            if end >= 0.6 and not read.done():
                # Before a graceful end every request must have its reply; those sent after
                # the server decided to close (a malformed frame, Logout) need none.
                async with asyncio.timeout(STALL):
                    while len(pending) > len(waiting) and not read.done():
                        progress.clear()
                        await progress.wait()
            if end < 0.3 and not read.done() and state["s"] == "LOGGED_IN":
                await self.send(ws, [Logout(rid())], pending, waiting, state)
                await asyncio.wait_for(asyncio.shield(read), STALL)
            elif end < 0.6:
                ws.transport.abort()  # gone without a word: the session is detached
        except websockets.ConnectionClosed:
            pass
        except TimeoutError:
            if not read.done():
                st.anomaly(f"{len(pending) - len(waiting)} requests unanswered after {STALL} s")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
            read.cancel()
            with contextlib.suppress(BaseException):
                await read
            rcvd = ws.protocol.close_rcvd
            st.closes[str(rcvd.code) if rcvd is not None else "by client"] += 1

    async def send(
        self,
        ws: ClientConnection,
        frames: list[Any],
        pending: dict[int, tuple[str, str]],
        waiting: set[int],
        state: dict[str, str],
        sent_frames: dict[int, Any] | None = None,
    ) -> None:
        for frame in frames:
            if isinstance(frame, Ping):
                continue
            pending[frame.rid] = (type(frame).__name__, state["s"])
            if sent_frames is not None:
                sent_frames[frame.rid] = frame
            if isinstance(frame, AcquireLock) and frame.retry:
                waiting.add(frame.rid)
        message = frames[0] if len(frames) == 1 and self.r.random() < 0.5 else Batch(frames)
        self.stats.messages += 1
        self.stats.frames += len(frames)
        await ws.send(encode(message))
        await asyncio.sleep(0)  # let the reader see replies (and the state change) as they come


def write_config(workdir: Path) -> Path:
    path = workdir / "rtm2.toml"
    path.write_text(
        "\n".join(
            [
                "[[apps]]",
                f'id = "{OPEN_APP}"',
                'stream_join_policy = "login"',
                "[[apps]]",
                f'id = "{SIGNED_APP}"',
                f'certificates = ["{SIGNED_CERT}"]',
            ]
        )
        + "\n"
    )
    return path


def start_server(workdir: Path) -> tuple[subprocess.Popen[str], str, Path]:
    log_path = workdir / "server.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtm2",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            str(write_config(workdir)),
            "--data-dir",
            str(workdir / "data"),
            "--no-http",  # the fuzzer speaks WebSocket only; 7002 may be taken
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=log_path.open("w"),
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"serving on (ws://\S+)", line)
        if match:
            return proc, match.group(1), log_path
    proc.kill()
    raise SystemExit(f"rtm2 serve did not start:\n{log_path.read_text()}")


async def warm_up(url: str) -> None:
    """Log a few users in and out, so that the baseline includes what any first use loads."""
    for i in range(20):
        async with websockets.connect(url, compression=None) as ws:
            await ws.send(encode(Hello(1)))
            await ws.recv()
            await ws.send(encode(Login(2, OPEN_APP, f"warm{i}", "", 5)))
            await ws.recv()
            await ws.send(encode(Logout(3)))
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await ws.recv()


async def campaign(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="rtm2-fuzz-"))
    proc, url, log_path = start_server(workdir)
    server = psutil.Process(proc.pid)
    mib = 1024 * 1024
    try:
        await warm_up(url)
        await asyncio.sleep(1)
        rss_before = server.memory_info().rss
        peak = rss_before
        stats = Stats()
        started = time.monotonic()

        def stop() -> bool:
            return (
                stats.frames >= args.frames
                or time.monotonic() - started > args.max_seconds
                or proc.poll() is not None
            )

        rnd = Random(args.seed)
        workers = [
            asyncio.create_task(Fuzzer(n, url, Random(rnd.random()), stats, stop).run())
            for n in range(args.connections)
        ]
        last_print = started
        while not all(w.done() for w in workers):
            await asyncio.sleep(0.5)
            if proc.poll() is None:
                peak = max(peak, server.memory_info().rss)
            if time.monotonic() - last_print > 30:
                last_print = time.monotonic()
                rate = stats.frames / (last_print - started)
                print(
                    f"  {stats.frames:>9,} frames, {len(stats.triples)} triples, "
                    f"rss {server.memory_info().rss / mib:.1f} MiB, {rate:,.0f} frames/s",
                    flush=True,
                )
        for w in workers:
            if w.exception() is not None:
                stats.anomaly(f"a fuzzing worker failed: {w.exception()!r}")
        elapsed = time.monotonic() - started
        crashed = proc.poll() is not None
        # Sessions dropped without Logout stay for their presence timeout (5 s for ours, more
        # for fuzzed logins that set another): give the sweep time, then measure.
        rss_after = rss_before
        if not crashed:
            await asyncio.sleep(args.settle)
            rss_after = server.memory_info().rss
            try:
                async with websockets.connect(url, compression=None) as ws:
                    await ws.send(encode(Hello(1)))
                    reply = decode_server(await asyncio.wait_for(ws.recv(), 10))
                    if not isinstance(reply, Reply) or reply.code != 0:
                        stats.anomaly(f"a fresh client's Hello got {reply!r}")
            except Exception as exc:
                stats.anomaly(f"a fresh client is not served after the campaign: {exc!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    log = log_path.read_text(errors="replace").splitlines()
    unhandled = [line for line in log if UNHANDLED.search(line)]
    rss_ok = rss_after <= rss_before + max(args.rss_slack * mib, 0.25 * rss_before)
    frame_types = {t for t, _, _ in stats.triples}
    pairs = {(t, s) for t, s, _ in stats.triples}
    report = {
        "frames": stats.frames,
        "messages": stats.messages,
        "malformed_messages": stats.malformed,
        "connections": stats.connections,
        "replies": stats.replies,
        "replies_to_mutated_rids": stats.replies_to_mutated,
        "seconds": round(elapsed, 1),
        "frames_per_second": round(stats.frames / elapsed),
        "distinct_triples": len(stats.triples),
        "distinct_type_state_pairs": len(pairs),
        "frame_types_answered": len(frame_types),
        "reply_codes": sorted({c for _, _, c in stats.triples}),
        "closes": dict(stats.closes),
        "crashes": int(crashed),
        "unhandled_log_lines": len(unhandled),
        "warning_lines": sum(" WARNING " in line for line in log),
        "anomalies": stats.anomalies,
        "rss_before_mib": round(rss_before / mib, 1),
        "rss_peak_mib": round(peak / mib, 1),
        "rss_after_mib": round(rss_after / mib, 1),
        "rss_back_near_baseline": rss_ok,
        "seed": args.seed,
        "connections_concurrent": args.connections,
    }
    print(json.dumps(report, indent=2))
    for line in unhandled[:20]:
        print("LOG:", line)
    if args.json:
        await asyncio.to_thread(
            Path(args.json).write_text,
            json.dumps(
                report | {"triples": sorted([*k, v] for k, v in stats.triples.items())},
                indent=1,
            ),
        )
    ok = not crashed and not unhandled and not stats.anomalies and rss_ok
    print("OK" if ok else "FAILED", f"(server log: {log_path})")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=6, help="concurrent connections")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-seconds", type=float, default=1500)
    parser.add_argument("--settle", type=float, default=20, help="seconds before RSS after")
    parser.add_argument("--rss-slack", type=float, default=16, help="MiB over baseline allowed")
    parser.add_argument("--json", help="also write the figures and every triple here")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    sys.exit(asyncio.run(campaign(args)))


if __name__ == "__main__":
    main()
