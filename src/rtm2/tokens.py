"""Agora access tokens: AccessToken2 ("007") build/parse/verify and legacy "006" RTM tokens.

Why this module exists: the Agora SDKs and their users' app servers already mint tokens with the
official ``AccessToken2`` builders, and a self-hosted RTM 2 service is only a drop-in replacement
if it accepts exactly those tokens. So the byte layout, the HMAC chain and the expiry rules here
follow Agora's format to the byte. ``docs/TOKENS.md`` describes that format and how the server
applies it, and is cited below by section name (e.g. ``docs/TOKENS.md §Signing``); the test
vectors of ``tests/test_tokens.py``, made with Agora's official builders, pin the code down.

Design choices, each explained where it is made:

* No I/O and no clock reads except as a default for ``now``/``issued_at``, so the server can
  verify on its event loop and tests can fix time.
* Parsing never trusts input: strict Base64, a cap on the decompressed size, and every malformed
  token becomes ``RTMError(INVALID_TOKEN)``; no other exception type escapes.
* Expiry is capped at 24 hours (docs/TOKENS.md §Expiry): a lifetime of 0 or above 86400 s counts
  as 86400 s, because Agora treats it that way and doc samples that pass ``now + seconds`` must
  still work.
* Certificate-less apps are the caller's business (:func:`accepts_without_certificate`); the
  ``verify_*`` functions always require a certificate, so a misconfigured server fails closed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rtm2.errors import ErrorCode, RTMError

__all__ = [
    "MAX_TOKEN_LIFETIME",
    "PRIVILEGE_JOIN_CHANNEL",
    "PRIVILEGE_PUBLISH_AUDIO",
    "PRIVILEGE_PUBLISH_DATA_STREAM",
    "PRIVILEGE_PUBLISH_VIDEO",
    "PRIVILEGE_RTM_LOGIN",
    "PRIVILEGE_RTM_LOGIN_006",
    "RESOURCE_GROUP_CHANNELS",
    "RESOURCE_MESSAGE_CHANNELS",
    "RESOURCE_SERVER_GROUPS",
    "RESOURCE_STREAM_CHANNELS",
    "RESOURCE_USERS",
    "PERMISSION_READ",
    "PERMISSION_WRITE",
    "SERVICE_APAAS",
    "SERVICE_CHAT",
    "SERVICE_FCDN",
    "SERVICE_FPA",
    "SERVICE_RTC",
    "SERVICE_RTM",
    "SERVICE_RTM2",
    "SERVICE_STREAMING",
    "SIGNATURE_MISMATCH",
    "VERSION_006",
    "VERSION_007",
    "AccessToken",
    "Service",
    "accepts_without_certificate",
    "build_combined_token",
    "build_rtm_token",
    "build_stream_token",
    "build_token",
    "build_token_006_rtm",
    "parse_token",
    "verify_rtm_token",
    "verify_stream_token",
]

VERSION_007 = "007"
VERSION_006 = "006"

# Service types (docs/TOKENS.md §Services). Only RTC, RTM and RTM2 matter to this server; the
# others are listed so tokens that also carry them (e.g. Chat + RTM) parse instead of stopping
# early.
SERVICE_RTC = 1
SERVICE_RTM = 2
SERVICE_STREAMING = 3
SERVICE_FPA = 4
SERVICE_CHAT = 5
SERVICE_FCDN = 6
SERVICE_APAAS = 7
SERVICE_RTM2 = 8

PRIVILEGE_JOIN_CHANNEL = 1
PRIVILEGE_PUBLISH_AUDIO = 2
PRIVILEGE_PUBLISH_VIDEO = 3
PRIVILEGE_PUBLISH_DATA_STREAM = 4
PRIVILEGE_RTM_LOGIN = 1
# 006 uses one flat privilege namespace, so RTM login got its own id there
# (docs/TOKENS.md §Legacy 006).
PRIVILEGE_RTM_LOGIN_006 = 1000

# RTM2 resource permissions (docs/TOKENS.md §Services, service type 8).
RESOURCE_MESSAGE_CHANNELS = 0
RESOURCE_STREAM_CHANNELS = 1
RESOURCE_GROUP_CHANNELS = 2
RESOURCE_SERVER_GROUPS = 3
RESOURCE_USERS = 4
PERMISSION_READ = 0
PERMISSION_WRITE = 1

MAX_TOKEN_LIFETIME = 86400
"""Longest validity in seconds of a token or privilege; 0 or more than this counts as this."""

# A real token is a few hundred bytes; these bounds only stop a hostile client from making the
# server decode or inflate megabytes (a zlib "bomb" is tiny on the wire).
_MAX_CONTENT = 64 * 1024
_MAX_TOKEN_CHARS = 2 * _MAX_CONTENT
_APP_ID_006_LENGTH = 32
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_SALT_MAX = 99_999_999


@dataclass(frozen=True)
class Service:
    """One service entry of a token.

    Attributes:
        type: the service type (``SERVICE_*``).
        privileges: privilege id -> value. In 007 tokens the value is seconds after
            ``issued_at``; in 006 tokens it is an absolute Unix time (0 = no privilege expiry).
            Use :meth:`AccessToken.privilege_expires_at` rather than reading it directly.
        channel: the channel (RTC, Streaming, FCDN) or room UUID (APaaS); empty otherwise.
        user_id: the RTM user id, the RTC uid/account string (``""`` = any uid), or the account
            of the other services. For a 006 token it is ``""``: 006 carries only a CRC32 of
            the account, which :func:`verify_rtm_token` checks.
        resources: RTM2 (type 8) resource permissions as ``(resource_type, permission_type,
            names)`` triples; empty for every other type.
    """

    type: int
    privileges: dict[int, int]
    channel: str = ""
    user_id: str = ""
    resources: tuple[tuple[int, int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class AccessToken:
    """A parsed token. Parsing does not check the signature; only ``verify_*`` do.

    Attributes:
        version: ``"007"`` or ``"006"``.
        app_id: the app id the token was built for.
        issued_at: Unix seconds at build time. 006 has no such field, so it is inferred as
            ``ts - 86400`` (the official builder sets ``ts`` to build time + 24 h).
        expire: token lifetime in seconds after ``issued_at``, as encoded (uncapped).
        salt: the random salt.
        services: the services read, in token order. Parsing stops at the first unknown
            service type and keeps what came before (forward compatibility, see
            docs/TOKENS.md §Parsing).
    """

    version: str
    app_id: str
    issued_at: int
    expire: int
    salt: int
    services: tuple[Service, ...]

    @property
    def expires_at(self) -> int:
        """Unix time after which the token can no longer be used, with the 24 h cap applied."""
        if self.version == VERSION_006:
            # 006 encodes this instant directly as ``ts``; see ``issued_at``.
            return self.issued_at + self.expire
        return self.issued_at + _cap(self.expire)

    def privilege_expires_at(self, service: Service, privilege: int) -> int | None:
        """Unix time at which ``privilege`` of ``service`` lapses, or None if it is not granted.

        The privilege's own expiry only; callers combine it with :attr:`expires_at`.
        """
        value = service.privileges.get(privilege)
        if value is None:
            return None
        if self.version == VERSION_006:
            return value if value else self.expires_at
        return self.issued_at + _cap(value)


def _cap(seconds: int) -> int:
    # A lifetime of 0 or above 24 h counts as 24 h (docs/TOKENS.md §Expiry).
    return MAX_TOKEN_LIFETIME if seconds == 0 or seconds > MAX_TOKEN_LIFETIME else seconds


# --------------------------------------------------------------------------------------------
# Signing (docs/TOKENS.md §Signing)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _k1(app_certificate: str, issued_at: int) -> bytes:
    # The certificate is used as its ASCII hex text, not hex-decoded (docs/TOKENS.md §Signing,
    # step 1).
    return _hmac(struct.pack("<I", issued_at), app_certificate.encode())


def _signing_key(app_certificate: str, issued_at: int, salt: int) -> bytes:
    return _hmac(struct.pack("<I", salt), _k1(app_certificate, issued_at))


def _signature(app_certificate: str, issued_at: int, salt: int, signing_info: bytes) -> bytes:
    return _hmac(_signing_key(app_certificate, issued_at, salt), signing_info)


def _signature_006(app_certificate: str, app_id: str, channel: str, uid: str, m: bytes) -> bytes:
    # Plain concatenation without length prefixes, exactly as the 1.x builders do
    # (docs/TOKENS.md §Legacy 006).
    return _hmac(app_certificate.encode(), app_id.encode() + channel.encode() + uid.encode() + m)


# --------------------------------------------------------------------------------------------
# Building


def _invalid_parameter(reason: str) -> RTMError:
    return RTMError(ErrorCode.INVALID_PARAMETER, reason)


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _check_u32(name: str, value: int) -> int:
    if not 0 <= value <= _U32_MAX:
        raise _invalid_parameter(f"{name} must fit in 32 unsigned bits, got {value}")
    return value


def _str(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > _U16_MAX:
        raise _invalid_parameter(f"string of {len(raw)} bytes does not fit a token field")
    return _u16(len(raw)) + raw


def _map32(values: dict[int, int]) -> bytes:
    out = [_u16(len(values))]
    for key in sorted(values):
        if not 0 <= key <= _U16_MAX:
            raise _invalid_parameter(f"privilege id {key} does not fit in 16 bits")
        out.append(_u16(key) + _u32(_check_u32("privilege value", values[key])))
    return b"".join(out)


def _pack_resources(resources: Iterable[tuple[int, int, tuple[str, ...]]]) -> bytes:
    grouped: dict[int, dict[int, list[str]]] = {}
    for resource_type, permission, names in resources:
        grouped.setdefault(resource_type, {}).setdefault(permission, []).extend(names)
    out = [_u16(len(grouped))]
    for resource_type in sorted(grouped):
        permissions = grouped[resource_type]
        out.append(_u16(resource_type) + _u16(len(permissions)))
        for permission in sorted(permissions):
            granted = permissions[permission]
            out.append(_u16(permission) + _u16(len(granted)))
            out.extend(_str(name) for name in granted)
    return b"".join(out)


def _pack_service(service: Service) -> bytes:
    head = _u16(service.type) + _map32(service.privileges)
    if service.type in (SERVICE_RTC, SERVICE_STREAMING, SERVICE_FCDN):
        return head + _str(service.channel) + _str(service.user_id)
    if service.type in (SERVICE_RTM, SERVICE_CHAT):
        return head + _str(service.user_id)
    if service.type == SERVICE_RTM2:
        return head + _str(service.user_id) + _pack_resources(service.resources)
    if service.type == SERVICE_FPA:
        return head
    # APaaS needs a role this dataclass does not carry; nothing here builds it.
    raise _invalid_parameter(f"cannot build service type {service.type}")


def _defaults(issued_at: int | None, salt: int | None) -> tuple[int, int]:
    if issued_at is None:
        issued_at = int(time.time())
    if salt is None:
        salt = secrets.randbelow(_SALT_MAX) + 1
    return _check_u32("issued_at", issued_at), _check_u32("salt", salt)


def build_token(
    app_id: str,
    app_certificate: str,
    services: Sequence[Service],
    expire: int = 3600,
    *,
    issued_at: int | None = None,
    salt: int | None = None,
) -> str:
    """Build a 007 token carrying arbitrary services.

    Services are written sorted by type (stable), as the official builders have done since
    November 2023 (docs/TOKENS.md §Layout). Unlike the official builders, app id and certificate
    need not be 32 hex characters: a self-hosted server may name its apps freely.

    Args:
        app_id: the app id (non-empty).
        app_certificate: the app certificate (non-empty), used as text.
        services: at least one service; types 1-6 and 8 can be built.
        expire: token lifetime in seconds after ``issued_at`` (verifiers cap it at 24 h).
        issued_at: Unix seconds; defaults to now.
        salt: defaults to a random number in 1..99,999,999.

    Returns:
        The token string, ``"007"`` + Base64(zlib(content)).

    Raises:
        RTMError: ``INVALID_PARAMETER`` for empty ids, no services, or out-of-range values.
    """
    if not app_id or not app_certificate:
        raise _invalid_parameter("app id and app certificate must be non-empty")
    if not services:
        raise _invalid_parameter("a token needs at least one service")
    issued_at, salt = _defaults(issued_at, salt)
    ordered = sorted(services, key=lambda s: s.type)
    signing_info = b"".join(
        [
            _str(app_id),
            _u32(issued_at),
            _u32(_check_u32("expire", expire)),
            _u32(salt),
            _u16(len(ordered)),
            *(_pack_service(s) for s in ordered),
        ]
    )
    signature = _signature(app_certificate, issued_at, salt, signing_info)
    content = _u16(len(signature)) + signature + signing_info
    # Level 6 is zlib's default and what every official builder uses, so our strings are
    # byte-identical to theirs (docs/TOKENS.md §Format).
    return VERSION_007 + base64.b64encode(zlib.compress(content, 6)).decode("ascii")


def build_rtm_token(
    app_id: str,
    app_certificate: str,
    user_id: str,
    expire: int = 3600,
    *,
    issued_at: int | None = None,
    salt: int | None = None,
) -> str:
    """Build a 007 RTM login token: one RTM service with LOGIN valid for ``expire`` seconds.

    Same as the official ``RtmTokenBuilder2.build_token``; see :func:`build_token` for the
    arguments and errors.
    """
    rtm = Service(SERVICE_RTM, {PRIVILEGE_RTM_LOGIN: expire}, user_id=user_id)
    return build_token(app_id, app_certificate, [rtm], expire, issued_at=issued_at, salt=salt)


def build_stream_token(
    app_id: str,
    app_certificate: str,
    channel: str,
    user_id: str,
    expire: int = 3600,
    *,
    issued_at: int | None = None,
    salt: int | None = None,
) -> str:
    """Build a 007 RTC token that lets ``user_id`` join the stream channel ``channel``.

    One RTC service with JOIN_CHANNEL; the RTM user id goes in the uid/account slot
    (docs/TOKENS.md §Verification step 6). See :func:`build_token` for the other arguments and
    errors.
    """
    rtc = Service(SERVICE_RTC, {PRIVILEGE_JOIN_CHANNEL: expire}, channel=channel, user_id=user_id)
    return build_token(app_id, app_certificate, [rtc], expire, issued_at=issued_at, salt=salt)


def build_combined_token(
    app_id: str,
    app_certificate: str,
    channel: str,
    user_id: str,
    expire: int = 3600,
    *,
    issued_at: int | None = None,
    salt: int | None = None,
) -> str:
    """Build one 007 token for both RTM login and joining the stream channel ``channel``.

    RTC (JOIN_CHANNEL only) + RTM (LOGIN), like the official ``build_token_with_rtm`` for a
    user account (docs/TOKENS.md §Combined token); it reproduces the combined test vector of
    tests/test_tokens.py. See :func:`build_token`.
    """
    services = [
        Service(SERVICE_RTC, {PRIVILEGE_JOIN_CHANNEL: expire}, channel=channel, user_id=user_id),
        Service(SERVICE_RTM, {PRIVILEGE_RTM_LOGIN: expire}, user_id=user_id),
    ]
    return build_token(app_id, app_certificate, services, expire, issued_at=issued_at, salt=salt)


def build_token_006_rtm(
    app_id: str,
    app_certificate: str,
    user_id: str,
    expire_ts: int,
    *,
    ts: int | None = None,
    salt: int | None = None,
) -> str:
    """Build a legacy 006 RTM token, as the 1.x ``RtmTokenBuilder.buildToken`` does.

    Mainly for tests and migration tooling; new tokens should be 007. The format is described in
    docs/TOKENS.md §Legacy 006.

    Args:
        app_id: exactly 32 characters, because 006 stores it in clear at a fixed width.
        app_certificate: the app certificate (non-empty).
        user_id: the RTM account; it goes in the channel-name slot, the uid slot stays empty.
        expire_ts: absolute Unix time at which login lapses; 0 = only the 24 h limit applies.
        ts: the "use before" time; defaults to now + 24 h like the official builder.
        salt: defaults to a random number in 1..99,999,999.

    Raises:
        RTMError: ``INVALID_PARAMETER`` for a bad app id, empty certificate or out-of-range values.
    """
    if len(app_id) != _APP_ID_006_LENGTH or not app_id.isascii():
        raise _invalid_parameter("a 006 token needs a 32-character ASCII app id")
    if not app_certificate:
        raise _invalid_parameter("app certificate must be non-empty")
    if ts is None:
        ts = int(time.time()) + MAX_TOKEN_LIFETIME
    ts, salt = _defaults(ts, salt)
    m = _u32(salt) + _u32(ts) + _map32({PRIVILEGE_RTM_LOGIN_006: expire_ts})
    signature = _signature_006(app_certificate, app_id, user_id, "", m)
    content = (
        _str_bytes(signature)
        + _u32(zlib.crc32(user_id.encode()))
        + _u32(zlib.crc32(b""))
        + _str_bytes(m)
    )
    return VERSION_006 + app_id + base64.b64encode(content).decode("ascii")


def _str_bytes(value: bytes) -> bytes:
    return _u16(len(value)) + value


# --------------------------------------------------------------------------------------------
# Parsing (docs/TOKENS.md §Parsing and §Legacy 006)


def _malformed(reason: str) -> RTMError:
    return RTMError(ErrorCode.INVALID_TOKEN, f"malformed token: {reason}")


class _Reader:
    """Little-endian cursor over token bytes; running off the end is a malformed token."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise _malformed("truncated")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def i16(self) -> int:
        value: int = struct.unpack("<h", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def bytes_(self) -> bytes:
        return self.take(self.u16())

    def str_(self) -> str:
        try:
            return self.bytes_().decode()
        except UnicodeDecodeError:
            raise _malformed("string is not UTF-8") from None

    def map32(self) -> dict[int, int]:
        return {self.u16(): self.u32() for _ in range(self.u16())}


def _read_service(reader: _Reader, service_type: int) -> Service | None:
    """Read one service body; None for an unknown type (whose tail length we cannot know)."""
    if not SERVICE_RTC <= service_type <= SERVICE_RTM2:
        return None
    privileges = reader.map32()
    if service_type in (SERVICE_RTC, SERVICE_STREAMING, SERVICE_FCDN):
        channel = reader.str_()
        return Service(service_type, privileges, channel=channel, user_id=reader.str_())
    if service_type in (SERVICE_RTM, SERVICE_CHAT):
        return Service(service_type, privileges, user_id=reader.str_())
    if service_type == SERVICE_RTM2:
        user_id = reader.str_()
        resources: list[tuple[int, int, tuple[str, ...]]] = []
        for _ in range(reader.u16()):
            resource_type = reader.u16()
            for _ in range(reader.u16()):
                permission = reader.u16()
                names = tuple(reader.str_() for _ in range(reader.u16()))
                resources.append((resource_type, permission, names))
        return Service(service_type, privileges, user_id=user_id, resources=tuple(resources))
    if service_type == SERVICE_APAAS:
        room = reader.str_()
        user = reader.str_()
        reader.i16()  # the role means nothing to an RTM server
        return Service(service_type, privileges, channel=room, user_id=user)
    return Service(service_type, privileges)  # FPA: no tail


@dataclass(frozen=True)
class _Envelope:
    """A parsed token plus what verification needs and the public view leaves out."""

    token: AccessToken
    signature: bytes
    signed: bytes  # 007: signing_info; 006: the message ``m``
    crc_channel: int = 0  # 006 only
    crc_uid: int = 0  # 006 only


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters in a str
        raise _malformed("bad Base64") from None


def _parse_007(body: str) -> _Envelope:
    compressed = _b64decode(body)
    inflater = zlib.decompressobj()
    try:
        content = inflater.decompress(compressed, _MAX_CONTENT)
    except zlib.error:
        raise _malformed("bad zlib stream") from None
    if inflater.unconsumed_tail or (len(content) >= _MAX_CONTENT and not inflater.eof):
        raise _malformed(f"content exceeds {_MAX_CONTENT} bytes")
    if not inflater.eof:
        raise _malformed("truncated zlib stream")
    if inflater.unused_data:
        raise _malformed("data after the zlib stream")
    reader = _Reader(content)
    signature = reader.bytes_()
    signing_info = reader.rest()
    reader = _Reader(signing_info)
    app_id = reader.str_()
    issued_at = reader.u32()
    expire = reader.u32()
    salt = reader.u32()
    services: list[Service] = []
    for _ in range(reader.u16()):
        service = _read_service(reader, reader.u16())
        if service is None:
            break
        services.append(service)
    # Bytes after the last service are covered by the signature, so they are tolerated, as
    # in the official parsers.
    token = AccessToken(VERSION_007, app_id, issued_at, expire, salt, tuple(services))
    return _Envelope(token, signature, signing_info)


def _parse_006(body: str) -> _Envelope:
    app_id = body[:_APP_ID_006_LENGTH]
    if len(app_id) != _APP_ID_006_LENGTH:
        raise _malformed("truncated")
    reader = _Reader(_b64decode(body[_APP_ID_006_LENGTH:]))
    signature = reader.bytes_()
    crc_channel = reader.u32()
    crc_uid = reader.u32()
    m = reader.bytes_()
    if reader.remaining:
        # Unlike 007, nothing outside ``m`` is signed, so extra bytes would be unauthenticated.
        raise _malformed("trailing bytes")
    inner = _Reader(m)
    salt = inner.u32()
    ts = inner.u32()
    privileges = inner.map32()
    # ``ts`` is the "use before" instant, build time + 24 h (docs/TOKENS.md §Legacy 006);
    # present it as a 24 h token.
    issued_at = max(ts - MAX_TOKEN_LIFETIME, 0)
    service = Service(SERVICE_RTM, privileges)
    token = AccessToken(VERSION_006, app_id, issued_at, ts - issued_at, salt, (service,))
    return _Envelope(token, signature, m, crc_channel, crc_uid)


def _parse(token: str) -> _Envelope:
    if not isinstance(token, str):
        raise _malformed("not a string")
    if len(token) > _MAX_TOKEN_CHARS:
        raise _malformed("too long")
    version, body = token[:3], token[3:]
    if version == VERSION_007:
        return _parse_007(body)
    if version == VERSION_006:
        return _parse_006(body)
    raise _malformed("unknown version")


def parse_token(token: str) -> AccessToken:
    """Decode a 007 or 006 token without checking its signature.

    For 006 the result has one RTM service whose privileges hold ``{1000: absolute expiry}``
    and whose ``user_id`` is ``""`` (006 stores only a CRC32 of the account); ``issued_at`` is
    inferred as ``ts - 86400`` and ``expire`` is 86400, so :attr:`AccessToken.expires_at` is
    the token's ``ts``.

    Raises:
        RTMError: ``INVALID_TOKEN`` for anything that is not a well-formed token.
    """
    return _parse(token).token


# --------------------------------------------------------------------------------------------
# Verification (docs/TOKENS.md §Verification)


def accepts_without_certificate(token: str, app_id: str) -> bool:
    """Whether ``token`` is a valid login token for an app that has no certificate.

    Such apps accept an empty token or the app id itself (docs/TOKENS.md §Verification step 1).
    The server calls this instead of ``verify_*`` when the app has no certificate.
    """
    return token in ("", app_id)


# The reason given when another certificate signed the token: the least telling verdict, which
# a server trying several certificates reports only when no certificate says more.
SIGNATURE_MISMATCH = "signature mismatch"


def _invalid(reason: str) -> RTMError:
    return RTMError(ErrorCode.INVALID_TOKEN, reason)


def _expired(at: int) -> RTMError:
    return RTMError(ErrorCode.TOKEN_EXPIRED, f"token expired at {at}")


def _authenticate(token: str, app_id: str, app_certificate: str) -> _Envelope:
    """Parse, check the app id, then the signature (docs/TOKENS.md §Verification steps 2-4)."""
    if not app_certificate:
        raise _invalid("no app certificate to verify against; see accepts_without_certificate")
    envelope = _parse(token)
    if envelope.token.app_id != app_id:
        raise RTMError(ErrorCode.INCONSISTENT_APPID, "token was issued for another app id")
    if envelope.token.version == VERSION_007:
        parsed = envelope.token
        expected = _signature(app_certificate, parsed.issued_at, parsed.salt, envelope.signed)
        # Constant time, so response timing leaks nothing about the right signature.
        if not hmac.compare_digest(expected, envelope.signature):
            raise _invalid(SIGNATURE_MISMATCH)
    return envelope


def _refuse_resource_permissions(token: AccessToken) -> None:
    """rtm2 does not enforce RTM 2 resource permissions (docs/TOKENS.md §Services), so a
    token that carries them would grant more than its issuer meant: it is refused instead."""
    if any(s.type == SERVICE_RTM2 and s.resources for s in token.services):
        raise _invalid(
            "RTM 2 resource permissions (per-channel read/write) are not supported by rtm2: "
            "build the token without them"
        )


def _grant(token: AccessToken, matches: list[Service], privilege: int, now: int) -> int:
    """Expiry of the best matching privilege, capped by the token expiry.

    This is docs/TOKENS.md §Verification steps 6 (the privilege is granted) and 7 (not expired).
    """
    expiries = [token.privilege_expires_at(service, privilege) for service in matches]
    granted = [at for at in expiries if at is not None]
    if not granted:
        raise _invalid("token does not grant the needed privilege")
    best = max(granted)
    if now > best:
        raise _expired(best)
    return min(best, token.expires_at)


def verify_rtm_token(
    token: str,
    *,
    app_id: str,
    app_certificate: str,
    user_id: str,
    now: int | None = None,
) -> int:
    """Check that ``token`` lets ``user_id`` log in to ``app_id`` at ``now``.

    Accepts 007 tokens with an RTM (type 2) or RTM2 (type 8) service for ``user_id`` holding
    LOGIN, and legacy 006 RTM tokens. For 006, whose login privilege is an absolute time and
    which has no issue time, the result is also capped at ``now + 86400`` so the 24 h rule
    holds even for a token built with a far ``ts``.

    Args:
        token: the token string from the client.
        app_id: the app the client logs in to.
        app_certificate: that app's certificate; must be non-empty.
        user_id: the user logging in.
        now: Unix seconds; defaults to the current time.

    Returns:
        The Unix time at which the login right expires: the earlier of the token expiry and
        the LOGIN privilege expiry, each capped at 24 h after issue.

    Raises:
        RTMError: ``INVALID_TOKEN`` (malformed, bad signature, no certificate, no LOGIN for this
            user, RTM 2 resource permissions), ``INCONSISTENT_APPID`` (another app's token) or
            ``TOKEN_EXPIRED``.
    """
    if now is None:
        now = int(time.time())
    envelope = _authenticate(token, app_id, app_certificate)
    parsed = envelope.token
    if parsed.version == VERSION_006:
        return _verify_006(envelope, app_certificate, user_id, now)
    if now > parsed.expires_at:
        raise _expired(parsed.expires_at)
    _refuse_resource_permissions(parsed)
    matches = [
        s for s in parsed.services if s.type in (SERVICE_RTM, SERVICE_RTM2) and s.user_id == user_id
    ]
    if not matches:
        raise _invalid(f"token carries no RTM service for user {user_id!r}")
    return _grant(parsed, matches, PRIVILEGE_RTM_LOGIN, now)


def _verify_006(envelope: _Envelope, app_certificate: str, user_id: str, now: int) -> int:
    parsed = envelope.token
    # The CRCs are not signed; checking them first only gives a clearer reason than "signature
    # mismatch" when the user is wrong. The signature below is what decides.
    if envelope.crc_channel != zlib.crc32(user_id.encode()) or envelope.crc_uid != 0:
        raise _invalid(f"token was not issued for user {user_id!r}")
    expected = _signature_006(app_certificate, parsed.app_id, user_id, "", envelope.signed)
    if not hmac.compare_digest(expected, envelope.signature):
        raise _invalid(SIGNATURE_MISMATCH)
    if now > parsed.expires_at:
        raise _expired(parsed.expires_at)
    return min(
        _grant(parsed, list(parsed.services), PRIVILEGE_RTM_LOGIN_006, now),
        now + MAX_TOKEN_LIFETIME,
    )


def verify_stream_token(
    token: str,
    *,
    app_id: str,
    app_certificate: str,
    channel: str,
    user_id: str,
    now: int | None = None,
) -> int:
    """Check that ``token`` lets ``user_id`` join the stream channel ``channel`` at ``now``.

    Needs a 007 RTC (type 1) service for ``channel`` whose uid string is ``user_id`` or ``""``
    (any uid) and that holds JOIN_CHANNEL (docs/TOKENS.md §Verification step 6). 006 tokens are
    refused: the 1.x RTM tokens this module accepts carry no channel.

    Args:
        token: the token string from the client.
        app_id: the app the client belongs to.
        app_certificate: that app's certificate; must be non-empty.
        channel: the stream channel being joined.
        user_id: the joining user.
        now: Unix seconds; defaults to the current time.

    Returns:
        The Unix time at which the join right expires: the earlier of the token expiry and the
        JOIN_CHANNEL privilege expiry, each capped at 24 h after issue.

    Raises:
        RTMError: ``INVALID_TOKEN``, ``INCONSISTENT_APPID`` or ``TOKEN_EXPIRED``, as for
            :func:`verify_rtm_token`.
    """
    if now is None:
        now = int(time.time())
    parsed = _authenticate(token, app_id, app_certificate).token
    if parsed.version != VERSION_007:
        raise _invalid("stream channels need a 007 token")
    if now > parsed.expires_at:
        raise _expired(parsed.expires_at)
    _refuse_resource_permissions(parsed)
    matches = [
        s
        for s in parsed.services
        if s.type == SERVICE_RTC and s.channel == channel and s.user_id in ("", user_id)
    ]
    if not matches:
        raise _invalid(f"token carries no RTC service for channel {channel!r}")
    return _grant(parsed, matches, PRIVILEGE_JOIN_CHANNEL, now)
