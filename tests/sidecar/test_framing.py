"""The Go SDK's framing: flex integers and frames, byte for byte (behaviour spec §6.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtm2.sidecar.dialect import EVENT_URIS, Uri, go_error_code, go_reason, rtm2_priority
from rtm2.sidecar.framing import (
    FLEX_MAX,
    FrameDecoder,
    FrameError,
    decode_flex,
    encode_flex,
    encode_frame,
)
from rtm2.sidecar.proto import gosdk_pb2 as pb
from rtm2.types import ConnectionChangeReason, StreamPriority


def test_a_flex_integer_below_0x8000_is_two_little_endian_bytes() -> None:
    assert encode_flex(0) == b"\x00\x00"
    assert encode_flex(26) == b"\x1a\x00"
    assert encode_flex(0x7FFF) == b"\xff\x7f"


def test_a_flex_integer_from_0x8000_is_three_bytes_with_the_top_bit_set() -> None:
    assert encode_flex(0x8000) == b"\x00\x80\x01"
    assert encode_flex(0x8001) == b"\x01\x80\x01"
    assert encode_flex(FLEX_MAX) == b"\xff\xff\xff"


def test_flex_integers_out_of_range_are_refused() -> None:
    with pytest.raises(FrameError):
        encode_flex(-1)
    with pytest.raises(FrameError):
        encode_flex(FLEX_MAX + 1)


@given(st.integers(0, FLEX_MAX))
def test_every_flex_integer_decodes_to_itself_with_its_width(value: int) -> None:
    data = encode_flex(value)
    assert decode_flex(data) == (value, len(data))
    assert decode_flex(data[:-1]) == (0, 0)  # one byte short: not yet decodable


def test_the_worked_example_of_an_18_byte_header_is_byte_exact() -> None:
    """§6.3: an 18-byte Header gives B = 4 + 2 + 18 = 24 and T = 26:
    ``1A 00 | 4C 09 | FE 0F | 12 00 | <18 bytes>`` (service id 2380, URI 0x0FFE)."""
    header = pb.Header(seqId=1, uri=Uri.STREAM_PUBLISH, message=b"0123456789ab").SerializeToString()
    assert len(header) == 18
    frame = encode_frame(header, uri=0x0FFE)
    assert frame == bytes.fromhex("1a00 4c09 fe0f 1200") + header
    assert len(frame) == 26


def test_a_frame_of_0x8000_bytes_or_more_uses_three_byte_lengths() -> None:
    header = pb.Header(seqId=7, message=b"x" * 0x8000).SerializeToString()
    frame = encode_frame(header)
    body = 4 + 3 + len(header)
    assert frame[:3] == encode_flex(body + 3)
    assert len(frame) == body + 3
    assert frame[7:10] == encode_flex(len(header))
    assert FrameDecoder().feed(frame) == [header]


def test_the_frame_length_switches_width_exactly_where_the_go_sdk_does() -> None:
    # B + 2 < 0x8000 -> T = B + 2 in two bytes; B + 2 = 0x8000 -> T = B + 3 in three.
    for size, width in ((0x8000 - 2 - 6 - 1, 2), (0x8000 - 2 - 6, 3)):
        header = b"\x22" + b"\x00" * (size - 1)
        frame = encode_frame(header)
        total, w = decode_flex(frame)
        assert (total, w) == (len(frame), width)


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 64))
def test_frames_split_anywhere_come_out_whole_and_in_order(
    headers: list[bytes], chunk: int
) -> None:
    stream = b"".join(encode_frame(h) for h in headers)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i : i + chunk])
    assert out == headers
    assert decoder.pending == 0


def test_the_reader_ignores_service_id_uri_and_the_header_length_value_like_go() -> None:
    header = pb.Header(seqId=3, uri=Uri.LOGIN).SerializeToString()
    frame = bytearray(encode_frame(header))
    frame[2:6] = b"\xff\xff\xff\xff"
    frame[6:8] = b"\x00\x00"  # wrong value, right width
    assert FrameDecoder().feed(bytes(frame)) == [header]


def test_a_frame_too_short_for_its_own_fields_is_refused() -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(b"\x04\x00\x4c\x09")


def test_a_frame_longer_than_allowed_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=1000).feed(encode_flex(5000))


def test_the_event_uris_are_the_nine_the_go_sdk_dispatches_as_events() -> None:
    assert sorted(EVENT_URIS) == [3, 9, 10, 30, 31, 41, 102, 111, 112]


def test_go_priorities_map_to_rtm2s_and_unknown_ones_to_normal() -> None:
    assert [rtm2_priority(p) for p in range(4)] == [
        StreamPriority.HIGHEST,
        StreamPriority.HIGH,
        StreamPriority.NORMAL,
        StreamPriority.LOW,
    ]
    assert rtm2_priority(99) == StreamPriority.NORMAL


def test_connection_reasons_use_go_2_1_numbers() -> None:
    assert go_reason(ConnectionChangeReason.REJOIN_SUCCESS) == 15
    assert go_reason(ConnectionChangeReason.LOGIN_SUCCESS) == 10001
    assert go_reason(ConnectionChangeReason.STREAM_CHANNEL_NOT_AVAILABLE) == 22
    assert go_reason(ConnectionChangeReason.INCONSISTENT_APPID) == 23


def test_error_codes_are_sent_from_the_go_2_1_table() -> None:
    from rtm2.errors import ErrorCode

    in_table = [
        *range(10001, 10020),
        *range(11001, 11034),
        *range(12001, 12020),
        *range(13001, 13014),
        *range(14001, 14010),
    ]
    for code in ErrorCode:
        if code == ErrorCode.OK:
            continue
        assert go_error_code(code) in in_table, code
    assert go_error_code(ErrorCode.LOCK_NOT_EXIST) == 14008
