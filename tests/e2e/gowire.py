"""A test client of the Go SDK's sidecar protocol, written from the behaviour spec (§6.3-6.6),
not from rtm2.sidecar's codec: it frames with ``struct`` itself, and speaks the Header and the
inner messages as the Go SDK does (service id 2380, URI 0x0FFE, seqIds 1, 2, 3 ...).

It also starts sidecar processes: ``rtm2-wrapper.exe --port=N --mode=1`` (what the Go SDK
spawns) or ``rtm2 sidecar``, from this venv's bin/.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message as ProtoMessage

from rtm2.sidecar.proto import gosdk_pb2 as pb

BIN = Path(sys.executable).parent
WRAPPER = BIN / "rtm2-wrapper.exe"
RTM2 = BIN / "rtm2"

EVENT_TYPES: dict[int, type[ProtoMessage]] = {
    3: pb.MessageEvent,
    9: pb.StreamMessageEvent,
    10: pb.StreamTopicEvent,
    30: pb.StorageChannelEvent,
    31: pb.StorageUserEvent,
    41: pb.PresenceEvent,
    102: pb.ConnectionStateChangeEvent,
    111: pb.LockEvent,
    112: pb.TokenPrivilegeExpire,
}

M = TypeVar("M", bound=ProtoMessage)


def flex(value: int) -> bytes:
    if value < 0x8000:
        return struct.pack("<H", value)
    return struct.pack("<HB", (value & 0x7FFF) | 0x8000, value >> 15)


def frame(header: bytes) -> bytes:
    """§6.3: flex(T) | u16 serviceId | u16 uri | flex(H) | Header, T counting its own prefix."""
    body = struct.pack("<HH", 2380, 0x0FFE) + flex(len(header)) + header
    total = len(body) + 2 if len(body) + 2 < 0x8000 else len(body) + 3
    return flex(total) + body


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll a (possibly async) check until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


class Reply:
    def __init__(self, header: pb.Header) -> None:
        self.header = header
        self.code = header.errCode

    def body(self, kind: type[M]) -> M:
        message = kind()
        message.ParseFromString(self.header.message)
        return message


class GoWire:
    """One Go SDK connection to a sidecar."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = itertools.count(1)
        self.sent = 0
        self.login_user = ""
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.replies: dict[int, int] = {}  # seqId -> how many replies came for it
        self.events_before: dict[int, int] = {}  # seqId -> events received before its reply
        self.events: list[tuple[int, Any]] = []  # every event, in arrival order
        self.unclaimed: list[tuple[int, Any]] = []  # events no wait_event took yet
        self.arrived = asyncio.Condition()
        self.closed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> GoWire:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def pause(self) -> None:
        """Stop reading, like a Go client whose event loop is stuck: once the socket buffers
        fill, the sidecar cannot write to this connection any more."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.writer.transport.pause_reading()

    def resume(self) -> None:
        self.writer.transport.resume_reading()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                prefix = await self.reader.readexactly(2)
                (low,) = struct.unpack("<H", prefix)
                if low & 0x8000:
                    prefix += await self.reader.readexactly(1)
                    total = (low & 0x7FFF) + (prefix[2] << 15)
                else:
                    total = low
                rest = await self.reader.readexactly(total - len(prefix))
                width = 3 if rest[4 + 1] & 0x80 else 2  # flex(H): only its width matters
                header = pb.Header()
                header.ParseFromString(rest[4 + width :])
                if header.uri in EVENT_TYPES:
                    event = EVENT_TYPES[header.uri]()
                    event.ParseFromString(header.message)
                    async with self.arrived:
                        self.events.append((header.uri, event))
                        self.unclaimed.append((header.uri, event))
                        self.arrived.notify_all()
                else:
                    self.replies[header.seqId] = self.replies.get(header.seqId, 0) + 1
                    self.events_before.setdefault(header.seqId, len(self.events))
                    future = self.pending.pop(header.seqId, None)
                    if future is not None and not future.done():
                        future.set_result(Reply(header))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("sidecar closed the connection"))

    def send(self, uri: int, message: ProtoMessage | bytes | None) -> int:
        seq = next(self.seq)
        self.sent = seq
        raw = message.SerializeToString() if isinstance(message, ProtoMessage) else message
        body = raw or b""
        self.writer.write(frame(pb.Header(seqId=seq, uri=uri, message=body).SerializeToString()))
        return seq

    async def call(
        self, uri: int, message: ProtoMessage | bytes | None, timeout: float = 8
    ) -> Reply:
        seq = self.send(uri, message)
        future = self.pending[seq] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(future, timeout)

    async def ok(self, uri: int, message: ProtoMessage | None = None) -> Reply:
        reply = await self.call(uri, message)
        assert reply.code == 0, f"uri {uri} failed with {reply.code}"
        assert reply.header.uri == uri
        return reply

    async def wait_event(
        self, kind: type[M], match: Callable[[M], bool] = lambda _: True, timeout: float = 8
    ) -> M:
        """The first unclaimed event of ``kind`` that ``match``es (claimed: a later wait does
        not see it again)."""

        def found() -> M | None:
            for i, (_, event) in enumerate(self.unclaimed):
                if isinstance(event, kind) and match(event):
                    del self.unclaimed[i]
                    return event
            return None

        async with asyncio.timeout(timeout), self.arrived:
            while (event := found()) is None:
                await self.arrived.wait()
        return event

    def of(self, kind: type[M]) -> list[M]:
        return [e for _, e in self.events if isinstance(e, kind)]


class SidecarProcess:
    """A real sidecar process: the console script the Go SDK spawns, or ``rtm2 sidecar``."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        environ = dict(os.environ)
        environ.pop("RTM2_ENDPOINT", None)
        environ.update(env or {})
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=environ, text=True,
        )  # fmt: skip
        self.log: list[str] = []
        self.port = 0
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            match = re.search(r"listening on [\d.]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        if not self.port:
            self.stop()
            raise RuntimeError("sidecar did not start:\n" + "".join(self.log))
        self._drain = __import__("threading").Thread(target=self._keep_log, daemon=True)
        self._drain.start()

    def _keep_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    @classmethod
    def wrapper(cls, port: int, endpoint: str | None) -> SidecarProcess:
        env = {"RTM2_ENDPOINT": endpoint} if endpoint else {}
        return cls([str(WRAPPER), f"--port={port}", "--mode=1"], env)

    @classmethod
    def command(cls, endpoint: str, *extra: str) -> SidecarProcess:
        return cls([str(RTM2), "sidecar", "--port", "0", "--endpoint", endpoint, *extra])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def text(self) -> str:
        return "".join(self.log)
