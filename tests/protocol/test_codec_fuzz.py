"""Property tests of the codec, seeded so that ``make test`` runs the same few thousand cases
every time: whatever bytes a peer sends, decoding either gives a frame or refuses it with
INVALID_PARAMETER, and every frame a client can build survives the trip through the wire."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtm2.errors import ErrorCode, RTMError
from rtm2.protocol.codec import decode_client, decode_server, encode, encode_batch
from rtm2.protocol.frames import Batch
from tests.fuzz_strategies import bad_messages, client_frames, client_messages

SEEDED = settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decodes_or_is_refused(data: bytes) -> None:
    for decode in (decode_client, decode_server):
        code = ErrorCode.OK
        try:
            decode(data)
        except RTMError as exc:
            code = exc.code
        assert code in (ErrorCode.OK, ErrorCode.INVALID_PARAMETER)


@SEEDED
@given(bad_messages)
def test_decoding_anything_malformed_raises_only_invalid_parameter(data: bytes) -> None:
    decodes_or_is_refused(data)


@SEEDED
@given(st.binary(max_size=512))
def test_decoding_random_bytes_raises_only_invalid_parameter(data: bytes) -> None:
    decodes_or_is_refused(data)


@settings(SEEDED, max_examples=50)
@given(st.integers(1, 100_000))
def test_decoding_deeply_nested_arrays_raises_only_invalid_parameter(depth: int) -> None:
    decodes_or_is_refused(b"\x92\x00" + b"\x91" * depth + b"\xc0")
    decodes_or_is_refused(b"\x91" * depth)


@SEEDED
@given(client_messages(allow_nan=False))
def test_every_valid_client_message_survives_encode_then_decode(message: Any) -> None:
    assert decode_client(encode(message)) == message


@settings(SEEDED, max_examples=150)
@given(st.lists(client_frames(allow_nan=False), max_size=20))
def test_a_batch_built_from_encoded_frames_decodes_to_those_frames(frames: list[Any]) -> None:
    batch = decode_client(encode_batch([encode(frame) for frame in frames]))
    assert batch == Batch(frames)
