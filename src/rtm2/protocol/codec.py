"""Encoding and decoding of frames, and the server's pre-built WebSocket framing.

Pure functions over bytes: nothing here touches a socket or an event loop.
"""

from __future__ import annotations

import struct
from typing import Any, TypeVar

import msgspec

from ..errors import ErrorCode, RTMError
from .frames import Batch, ClientMessage, ServerFrame

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "decode_client",
    "decode_result",
    "decode_server",
    "encode",
    "encode_batch",
    "encode_result",
    "ws_binary_frame",
]

# Large enough for a 32 KB channel message plus its envelope; configurable on the server.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024

_T = TypeVar("_T")

# What msgspec raises on bad input: besides its own errors, invalid UTF-8 in a string field is a
# UnicodeDecodeError and pathological nesting in a skipped or raw value a RecursionError.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)

_encoder = msgspec.msgpack.Encoder()
# Annotated rather than cast at each call: older mypy/msgspec infer ``Decoder[Any]`` for a union
# type, newer ones the union itself, and a cast is "redundant" to the latter.
_client_decoder: msgspec.msgpack.Decoder[ClientMessage] = msgspec.msgpack.Decoder(ClientMessage)
_server_decoder: msgspec.msgpack.Decoder[ServerFrame] = msgspec.msgpack.Decoder(ServerFrame)

encode = _encoder.encode


def encode_result(value: Any) -> msgspec.Raw:
    """Encode a reply result once, to be embedded in a ``Reply`` as raw MessagePack."""
    return msgspec.Raw(_encoder.encode(value))


def decode_client(data: bytes | memoryview) -> ClientMessage:
    """Decode one client message (a frame or a batch); anything malformed is an
    ``INVALID_PARAMETER`` error."""
    try:
        return _client_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise RTMError(ErrorCode.INVALID_PARAMETER, f"malformed frame: {exc}") from None


def decode_server(data: bytes | memoryview) -> ServerFrame:
    """Decode one server frame; anything malformed is an ``INVALID_PARAMETER`` error."""
    try:
        return _server_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise RTMError(ErrorCode.INVALID_PARAMETER, f"malformed frame: {exc}") from None


def decode_result(raw: msgspec.Raw, type_: type[_T]) -> _T:
    """Decode a reply's result as ``type_``."""
    try:
        return msgspec.msgpack.decode(raw, type=type_)
    except _DECODE_ERRORS as exc:
        raise RTMError(ErrorCode.INVALID_PARAMETER, f"malformed result: {exc}") from None


def encode_batch(frames: list[bytes]) -> bytes:
    """A :class:`Batch` of already-encoded frames, without decoding or re-encoding them."""
    n = len(frames)
    if n < 16:  # MessagePack: [tag, [frames...]] with a fixarray, array16 or array32 inside
        header = bytes((0x92, _BATCH_TAG, 0x90 | n))
    elif n < 65536:
        header = bytes((0x92, _BATCH_TAG, 0xDC)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x92, _BATCH_TAG, 0xDD)) + n.to_bytes(4, "big")
    return header + b"".join(frames)


_BATCH_TAG = 0
assert Batch.__struct_config__.tag == _BATCH_TAG

_short = struct.Struct("!BB")
_medium = struct.Struct("!BBH")
_long = struct.Struct("!BBQ")


def ws_binary_frame(payload: bytes) -> bytes:
    """A complete, unmasked (server-to-client) WebSocket binary frame around ``payload``.

    The server builds this once per outgoing message and writes the same bytes to every
    recipient, which is what makes fan-out cheap (RFC 6455 §5.2).
    """
    n = len(payload)
    if n < 126:
        return _short.pack(0x82, n) + payload
    if n < 65536:
        return _medium.pack(0x82, 126, n) + payload
    return _long.pack(0x82, 127, n) + payload
