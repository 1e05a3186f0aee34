"""Unit tests for the sans-I/O wire layer: frames, codec, codes, and the error/enum tables."""

from __future__ import annotations

import pickle
import random
import struct
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from rtm2 import types as t
from rtm2.errors import ErrorCode, RTMError
from rtm2.protocol.codec import (
    decode_client,
    decode_result,
    decode_server,
    encode,
    encode_result,
    ws_binary_frame,
)
from rtm2.protocol.codes import timeout_code
from rtm2.protocol.frames import (
    PROTOCOL_VERSION,
    Hello,
    Kick,
    Login,
    LoginResult,
    Logout,
    Ping,
    Pong,
    RenewToken,
    Reply,
    TokenWillExpire,
    Welcome,
)

CLIENT_FRAMES = [
    Hello(rid=1, agent="rtm2-test/1.0"),
    Login(rid=2, app_id="a" * 32, user_id="alice", token="tok", presence_timeout=30),
    Logout(rid=3),
    RenewToken(rid=4, token="new", channel="stream-1"),
    Ping(ts=1234.5),
]
SERVER_FRAMES = [
    Reply(rid=1, code=10005, reason="bad token", result=encode_result([1, "x"])),
    Pong(ts=1234.5),
    TokenWillExpire(channel="", expires_at=1_700_000_000),
    Kick(reason=t.ConnectionChangeReason.SAME_UID_LOGIN, code=10005, message="bye"),
]
ALL_FRAMES = CLIENT_FRAMES + SERVER_FRAMES
WELCOME = Welcome(1, "rtm2", heartbeat_interval=5.0, heartbeat_grace=2.5, max_frame_size=65536)
LOGIN_RESULT = LoginResult(session_id="s-1", server_time_ms=1_700_000_000_000, expires_at=0)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _raised(decode: Callable[[Any], object], data: Any) -> Exception | None:
    """What ``decode(data)`` raised, or None if it returned."""
    try:
        decode(data)
    except Exception as exc:
        return exc
    return None


def _assert_rejected(decode: Callable[[Any], object], data: Any) -> None:
    exc = _raised(decode, data)
    assert isinstance(exc, RTMError), f"{bytes(data)[:40]!r} raised {exc!r}, not an RTMError"
    assert exc.code == ErrorCode.INVALID_PARAMETER


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=_type_name)
def test_every_client_frame_round_trips_through_decode_client(frame: Any) -> None:
    assert decode_client(encode(frame)) == frame


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=_type_name)
def test_every_server_frame_round_trips_through_decode_server(frame: Any) -> None:
    assert decode_server(encode(frame)) == frame


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=_type_name)
def test_a_frame_encodes_to_a_msgpack_array_whose_first_element_is_its_tag(frame: Any) -> None:
    wire = msgspec.msgpack.decode(encode(frame))
    assert isinstance(wire, list)
    assert wire[0] == type(frame).__struct_config__.tag


@pytest.mark.parametrize("result", [WELCOME, LOGIN_RESULT], ids=_type_name)
def test_a_reply_result_round_trips_with_its_declared_type(result: Any) -> None:
    reply = decode_server(encode(Reply(rid=9, result=encode_result(result))))
    assert isinstance(reply, Reply)
    assert decode_result(reply.result, type(result)) == result


def test_a_reply_without_a_result_carries_nil_which_decodes_as_none() -> None:
    reply = decode_server(encode(Reply(rid=1)))
    assert isinstance(reply, Reply)
    assert bytes(reply.result) == b"\xc0"
    assert decode_result(reply.result, type(None)) is None


def test_decoding_a_result_as_the_wrong_type_is_invalid_parameter() -> None:
    _assert_rejected(lambda raw: decode_result(raw, Welcome), encode_result(LOGIN_RESULT))
    _assert_rejected(lambda raw: decode_result(raw, LoginResult), encode_result("nope"))


def test_a_client_hello_fed_to_decode_server_is_read_as_a_reply_because_tags_overlap() -> None:
    # Tags are per direction by design: [1, rid, version, agent] is also a valid Reply shape.
    assert decode_server(encode(Hello(rid=7))) == Reply(rid=7, code=PROTOCOL_VERSION)


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=_type_name)
def test_a_frame_decoded_in_the_wrong_direction_is_a_frame_or_invalid_parameter(frame: Any) -> None:
    exc = _raised(decode_server if frame in CLIENT_FRAMES else decode_client, encode(frame))
    assert exc is None or (isinstance(exc, RTMError) and exc.code == ErrorCode.INVALID_PARAMETER)


MALFORMED = {
    "empty": b"",
    "never-used-byte": b"\xc1",
    "map": b"\x81\xa1a\x01",
    "unknown-tag": encode([99, 1]),
    "wrong-field-type": encode([2, "rid", "app", "user"]),
    "truncated": encode(Login(rid=2, app_id="a", user_id="u"))[:-3],
    "trailing-bytes": encode(Pong(ts=1.0)) + b"\x00",
    "empty-array": encode([]),
    "nil": encode(None),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("decode", [decode_client, decode_server])
def test_malformed_bytes_are_invalid_parameter(decode: Any, data: bytes) -> None:
    _assert_rejected(decode, data)


@pytest.mark.parametrize("decode", [decode_client, decode_server])
def test_a_string_field_holding_invalid_utf8_is_invalid_parameter(decode: Any) -> None:
    # BUG: msgspec raises UnicodeDecodeError, which codec.py does not translate.
    frame = b"\x94\x01\x01\x01\xa1\xff" if decode is decode_client else b"\x93\x03\xa1\xff\x05"
    _assert_rejected(decode, frame)


@pytest.mark.parametrize("decode", [decode_client, decode_server])
def test_deeply_nested_trailing_data_is_invalid_parameter(decode: Any) -> None:
    # BUG: a 2 KB frame nesting 2,000 arrays makes msgspec raise RecursionError.
    tag = b"\x05" if decode is decode_client else b"\x02"  # Ping / Pong, then extra junk
    _assert_rejected(decode, b"\x93" + tag + b"\x00" + b"\x91" * 2000 + b"\xc0")


def _non_rtmerror_escapes(inputs: list[bytes]) -> list[tuple[str, bytes, str]]:
    return [
        (decode.__name__, data, type(exc).__name__)
        for data in inputs
        for decode in (decode_client, decode_server)
        if (exc := _raised(decode, data)) is not None and not isinstance(exc, RTMError)
    ]


def test_random_bytes_only_ever_raise_rtmerror() -> None:
    rng = random.Random(20240601)
    offenders = _non_rtmerror_escapes([rng.randbytes(rng.randrange(48)) for _ in range(2000)])
    assert offenders == [], f"{len(offenders)} inputs escaped as non-RTMError: {offenders[:3]}"


def test_valid_frames_with_one_corrupted_byte_only_ever_raise_rtmerror() -> None:
    rng = random.Random(20240601)
    inputs = []
    for _ in range(2000):
        mutated = bytearray(encode(rng.choice(ALL_FRAMES)))
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        inputs.append(bytes(mutated))
    offenders = _non_rtmerror_escapes(inputs)
    assert offenders == [], f"{len(offenders)} inputs escaped as non-RTMError: {offenders[:3]}"


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_ws_binary_frame_has_an_rfc6455_header_and_the_payload_unchanged(length: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = ws_binary_frame(payload)
    assert frame[0] == 0x82  # FIN + binary opcode
    assert frame[1] & 0x80 == 0  # server frames are unmasked
    if length < 126:
        assert frame[1] == length
        header = 2
    elif length < 65536:
        assert (frame[1], struct.unpack_from("!H", frame, 2)[0]) == (126, length)
        header = 4
    else:
        assert (frame[1], struct.unpack_from("!Q", frame, 2)[0]) == (127, length)
        header = 10
    assert frame[header:] == payload


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (Hello(rid=1), ErrorCode.LOGIN_TIMEOUT),
        (Login(rid=1, app_id="a", user_id="u"), ErrorCode.LOGIN_TIMEOUT),
        (RenewToken(rid=1, token="t"), ErrorCode.RENEW_TOKEN_TIMEOUT),
    ],
)
def test_a_request_times_out_with_its_official_code(request_: Any, code: ErrorCode) -> None:
    assert timeout_code(request_) is code


def test_an_rtmerror_knows_its_code_and_name_and_shows_both() -> None:
    err = RTMError(10005, "expired")
    assert err.code is ErrorCode.INVALID_TOKEN
    assert err.name == "INVALID_TOKEN"
    assert "10005" in str(err)
    assert "INVALID_TOKEN" in str(err)


def test_an_rtmerror_with_an_unknown_code_is_named_unknown() -> None:
    err = RTMError(424242)
    assert (err.code, err.name) == (424242, "UNKNOWN")


def test_an_rtmerror_survives_pickling_with_its_code_and_reason() -> None:
    err = pickle.loads(pickle.dumps(RTMError(ErrorCode.LOCK_NOT_EXIST, "no lock")))
    assert isinstance(err, RTMError)
    assert (err.code, err.name, err.reason) == (14008, "LOCK_NOT_EXIST", "no lock")


def test_error_codes_and_enums_use_the_rtm2_numbering() -> None:
    assert int(ErrorCode.NOT_LOGIN) == 10002
    assert int(ErrorCode.INVALID_TOKEN) == 10005
    assert int(ErrorCode.TOKEN_EXPIRED) == 10009
    assert int(ErrorCode.CHANNEL_TOPIC_NOT_JOINED) == 11016
    assert int(ErrorCode.STORAGE_OUTDATED_REVISION) == 12014
    assert int(ErrorCode.LOCK_NOT_EXIST) == 14008
    assert {e.name: e.value for e in t.ChannelType} == {"MESSAGE": 1, "STREAM": 2, "USER": 3}
    assert {e.name: e.value for e in t.MessageType} == {"BINARY": 0, "STRING": 1}
    assert {e.name: e.value for e in t.StreamQos} == {"UNORDERED": 0, "ORDERED": 1}
    assert {e.name: e.value for e in t.StreamPriority} == {
        "HIGHEST": 0, "HIGH": 1, "NORMAL": 4, "LOW": 8}  # fmt: skip
    assert [e.name for e in sorted(t.ConnectionState)] == [
        "DISCONNECTED", "CONNECTING", "CONNECTED", "RECONNECTING", "FAILED"]  # fmt: skip
    assert [int(e) for e in sorted(t.ConnectionState)] == [1, 2, 3, 4, 5]
    assert int(t.ConnectionChangeReason.SAME_UID_LOGIN) == 19
    assert int(t.ConnectionChangeReason.TOKEN_EXPIRED) == 9
    assert int(t.ConnectionChangeReason.LOGIN_SUCCESS) == 10001
    assert int(t.ConnectionChangeReason.LOGOUT) == 10002
