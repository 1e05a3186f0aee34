"""Hypothesis strategies for structure-aware fuzzing: client frames that decode, with values
chosen to hurt (wrong states are the caller's business, huge and negative numbers, odd Unicode
names, empty and over-long strings), batches of them, and MessagePack that does not match any
frame (wrong types, unknown tags, truncated and mutated frames).

Fields are generated from each frame's own declaration (``msgspec.structs.fields``), so a field
added to ``protocol/frames.py`` is fuzzed without touching this file.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
from hypothesis import strategies as st

from rtm2.protocol.codec import encode
from rtm2.protocol.frames import Batch, ClientFrame, MetadataItem, Ping, Position

CLIENT_FRAME_TYPES: tuple[type[Any], ...] = typing.get_args(ClientFrame)

# An app without certificate (any token, or none, logs in) and one whose tokens we cannot sign:
# both must be configured on the server under test.
OPEN_APP = "d" * 32
SIGNED_APP = "970CA35de60c44645bbae8a215061b33"

# Numbers at the edges of every integer type a peer might overflow, and the int64/uint64 range
# MessagePack can carry (msgspec refuses to encode a Python int beyond it).
INT_EDGES = (
    0,
    1,
    -1,
    -5,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**31 - 1,
    2**31,
    -(2**31),
    2**32,
    2**53 + 1,
    10**15,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
)
ints = st.one_of(st.integers(-3, 40), st.sampled_from(INT_EDGES), st.integers(-(2**63), 2**64 - 1))
# Small enumerations (channel types, metadata ops, message types): mostly the meaningful values
# and their neighbours, sometimes anything.
enums = st.one_of(st.integers(-1, 5), st.sampled_from(INT_EDGES))

# A few names that exist (so requests meet real channels, users and locks) and many that should
# be refused: empty, reserved "_", "." in user ids, over the length limits, control characters,
# right-to-left overrides, astral-plane characters, NUL, and arbitrary text.
GOOD_NAMES = ("alice", "bob", "carol", "ch1", "ch2", "t1", "t2", "lock1", "k1")
ODD_NAMES = (
    "",
    " ",
    "_x",
    "a.b",
    "a/b",
    "*",
    "x" * 64,
    "x" * 65,
    "x" * 1000,
    "é",
    "\U0001f600",
    "\u202etxt",
    "\x00",
    "a\x00b",
    "\ufeff",
    "ﬁ",
    "\u0130",
    "a\nb",
    "\U0010ffff",
)
names = st.one_of(st.sampled_from(GOOD_NAMES), st.sampled_from(ODD_NAMES), st.text(max_size=80))
# Big payloads are cheap repeated bytes: their size is what matters (size limits), and drawing
# 30 KB of random bytes would make every example slow.
# Names that mostly exist: requests then get past validation and reach the services.
friendly_names = st.one_of(st.sampled_from(GOOD_NAMES), st.sampled_from(GOOD_NAMES), names)
blobs = st.one_of(st.binary(max_size=256), st.integers(30_000, 40_000).map(lambda n: b"\xff" * n))
states = st.dictionaries(names, names, max_size=6)

_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "channel_type": enums,
    "op": enums,
    "message_type": enums,
    "qos": enums,
    "priority": enums,
    "version": st.one_of(st.just(1), ints),
    "app_id": st.one_of(st.sampled_from((OPEN_APP, SIGNED_APP, OPEN_APP.upper())), names),
    "token": st.one_of(st.just(""), st.just(OPEN_APP), names),
    "presence_timeout": st.one_of(st.sampled_from((5, 30, 300)), ints),
    "payload": blobs,
    "state": states,
}


def _for_type(
    tp: Any, allow_nan: bool, text: st.SearchStrategy[str] = names
) -> st.SearchStrategy[Any]:
    if tp is int:
        return ints
    if tp is str:
        return text
    if tp is bytes:
        return blobs
    if tp is bool:
        return st.booleans()
    if tp is float:
        return st.floats(allow_nan=allow_nan, allow_infinity=True)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return st.lists(_for_type(args[0], allow_nan, text), max_size=6)
    if origin is dict:
        return st.dictionaries(
            _for_type(args[0], allow_nan, text), _for_type(args[1], allow_nan, text), max_size=6
        )
    if tp in (MetadataItem, Position):
        return struct_of(tp, allow_nan, text)
    raise TypeError(f"no strategy for {tp!r}: teach fuzz_strategies about it")


def struct_of(
    cls: type[Any],
    allow_nan: bool = True,
    text: st.SearchStrategy[str] = names,
    **fixed: st.SearchStrategy[Any],
) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with every field drawn (optional ones sometimes left out), strings
    from ``text``."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in msgspec.structs.fields(cls):
        if field.name in fixed:
            strategy = fixed[field.name]
        elif field.name in _BY_NAME:
            strategy = _BY_NAME[field.name]
        else:
            strategy = _for_type(field.type, allow_nan, text)
        if not field.required and field.name not in fixed:
            strategy = st.one_of(st.just(msgspec.UNSET), strategy)
        fields[field.name] = strategy

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        values = {name: draw(strategy) for name, strategy in fields.items()}
        return cls(**{k: v for k, v in values.items() if v is not msgspec.UNSET})

    return build()


def client_frames(
    rids: st.SearchStrategy[int] = ints,
    allow_nan: bool = True,
    text: st.SearchStrategy[str] = names,
) -> st.SearchStrategy[Any]:
    """Any client frame, valid by type, with ``rid`` drawn from ``rids``."""
    return st.one_of(
        *(
            struct_of(cls, allow_nan, text)
            if cls is Ping
            else struct_of(cls, allow_nan, text, rid=rids)
            for cls in CLIENT_FRAME_TYPES
        )
    )


def client_messages(allow_nan: bool = True) -> st.SearchStrategy[Any]:
    """A frame or a batch of frames, as a client sends them."""
    frame = client_frames(allow_nan=allow_nan)
    return st.one_of(frame, st.builds(Batch, st.lists(frame, max_size=8)))


_any_frame = client_frames()
_any_message = client_messages()

# MessagePack values of any shape, for frames whose fields have the wrong types.
msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        ints,
        st.floats(),
        names,
        st.binary(max_size=64),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(names, inner, max_size=4)),
    max_leaves=20,
)


@st.composite
def wrongly_typed(draw: st.DrawFn) -> bytes:
    """An array that starts with a frame tag (known or not) and goes on with anything: the
    shape of a frame, the types of none."""
    tag = draw(st.one_of(st.integers(-2, 40), st.sampled_from(INT_EDGES)))
    rest = draw(st.lists(msgpack_values, max_size=10))
    if draw(st.booleans()):  # inside a batch, among good frames
        good = draw(st.lists(_any_frame, max_size=3))
        return encode([0, [*good, [tag, *rest]]])
    return encode([tag, *rest])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A good client message, truncated or with a few bytes overwritten."""
    data = bytearray(encode(draw(_any_message)))
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


bad_messages = st.one_of(wrongly_typed(), mutated(), st.binary(max_size=200))
