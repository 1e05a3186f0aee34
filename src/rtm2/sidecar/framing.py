"""The Go SDK's sidecar framing, as pure functions (no I/O): ``flex`` integers and frames.

A frame is ``flex(T) | u16 serviceId | u16 uri | flex(H) | Header`` (little-endian), where
``Header`` is the serialized ``gosdk.Header`` protobuf of ``H`` bytes and ``T`` is the whole
frame's length, its own prefix included. ``flex(v)`` is two bytes for ``v < 0x8000`` and three
above (the low 15 bits with the top bit set, then ``v >> 15``), so at most 2**23 - 1.

The Go reader ignores the two u16 fields and the *value* of ``flex(H)`` (it uses only its
width): the Header runs to the end of the frame. This reader does the same, so a frame is
accepted however its writer filled those fields.
"""

from __future__ import annotations

__all__ = [
    "FLEX_MAX",
    "SERVICE_ID",
    "URI_COMMON_REQUEST",
    "URI_COMMON_RESPONSE",
    "FrameDecoder",
    "FrameError",
    "decode_flex",
    "encode_flex",
    "encode_frame",
    "frame_length",
]

FLEX_MAX = (1 << 23) - 1
_TWO_BYTES = 0x8000
SERVICE_ID = 2380  # what the Go SDK writes ("todo change service id")
URI_COMMON_REQUEST = 0x0FFE  # the Go SDK's frames
URI_COMMON_RESPONSE = 0x0FFF  # ours: defined by the SDK for this, never checked


class FrameError(ValueError):
    """Bytes that cannot be a frame: the connection is not speaking this protocol."""


def encode_flex(value: int) -> bytes:
    """``value`` as a ``flex`` integer: 2 bytes below 0x8000, else 3."""
    if not 0 <= value <= FLEX_MAX:
        raise FrameError(f"flex integer out of range: {value}")
    if value < _TWO_BYTES:
        return value.to_bytes(2, "little")
    return ((value & 0x7FFF) | 0x8000).to_bytes(2, "little") + bytes((value >> 15,))


def decode_flex(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """The ``flex`` integer at ``offset``: ``(value, width)``; width 0 if ``data`` ends before
    the integer does (read more and try again)."""
    if len(data) - offset < 2:
        return 0, 0
    low = data[offset] | (data[offset + 1] << 8)
    if low < _TWO_BYTES:
        return low, 2
    if len(data) - offset < 3:
        return 0, 0
    return (low & 0x7FFF) + (data[offset + 2] << 15), 3


def frame_length(body_length: int) -> int:
    """``T`` for a frame whose bytes after its length prefix number ``body_length``."""
    total = body_length + 2
    return total if total < _TWO_BYTES else body_length + 3


def encode_frame(
    header: bytes, service_id: int = SERVICE_ID, uri: int = URI_COMMON_RESPONSE
) -> bytes:
    """One frame around a serialized ``Header``."""
    body = (
        service_id.to_bytes(2, "little")
        + uri.to_bytes(2, "little")
        + encode_flex(len(header))
        + header
    )
    total = frame_length(len(body))
    if total > FLEX_MAX:
        raise FrameError(f"frame too long: {total} bytes")
    return encode_flex(total) + body


class FrameDecoder:
    """Splits a byte stream into the serialized Headers of its frames.

    ``feed`` takes bytes as they arrive and returns the Headers of the frames now complete;
    ``max_frame`` bounds what one frame may claim, so a peer speaking something else is
    refused at once instead of buffering without end.
    """

    __slots__ = ("_buffer", "_max_frame")

    def __init__(self, max_frame: int = FLEX_MAX) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return the Headers of every frame completed by it, in order.

        Raises:
            FrameError: a frame too short to hold its own fields, or longer than allowed.
        """
        buffer = self._buffer
        buffer += data
        headers: list[bytes] = []
        start = 0
        while True:
            total, width = decode_flex(buffer, start)
            if not width:
                break
            if total > self._max_frame:
                raise FrameError(f"frame of {total} bytes exceeds {self._max_frame}")
            if len(buffer) - start < total:
                break
            # The header-length field: only its width is used, like the Go reader does.
            fixed = width + 4
            _, h_width = decode_flex(buffer, start + fixed)
            if not h_width or fixed + h_width > total:
                raise FrameError(f"frame of {total} bytes is too short for its fields")
            headers.append(bytes(buffer[start + fixed + h_width : start + total]))
            start += total
        if start:
            del buffer[:start]
        return headers
