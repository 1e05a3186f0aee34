"""Storage: channel and user metadata with revisions, compare-and-set and lock-bound writes.

The semantics (all-or-nothing writes, revision checks, the bound lock) live in the engine's
``MetadataStore`` so that every engine enforces them atomically; this service checks the
request, applies per-app policy and limits, and sends the resulting set to listeners: channel
members that asked for metadata, and subscribers of a user's metadata.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode, encode_result, ws_binary_frame
from ..protocol.frames import (
    ChannelMetadataWrite,
    GetChannelMetadata,
    GetUserMetadata,
    MetadataItem,
    MetadataResult,
    StorageEvent,
    SubscribeUserMetadata,
    UnsubscribeUserMetadata,
    UserMetadataWrite,
)
from ..protocol.names import is_valid_user_id
from ..types import StorageEventType, StorageType
from .engines.base import (
    OP_REMOVE,
    Broker,
    BusEvent,
    BusKind,
    ItemWrite,
    Metadata,
    MetadataStore,
)
from .interest import Interest
from .ratelimit import RateBucket
from .subjects import SubjectKind, channel_subject, parse_subject, subject_kind, user_subject

if TYPE_CHECKING:
    from .config import AppConfig
    from .session import Session

__all__ = ["MAX_LOCK_NAME", "SERVER_AUTHOR", "StorageService", "metadata_result"]

MAX_LOCK_NAME = 64
SERVER_AUTHOR = "server"  # the author of writes through the HTTP API
_NONE: frozenset[str] = frozenset()


def metadata_result(metadata: Metadata) -> MetadataResult:
    return MetadataResult(
        metadata.major_revision,
        [
            MetadataItem(i.key, i.value, i.revision, i.author, i.update_ts)
            for i in sorted(metadata.items.values(), key=lambda i: i.key)
        ],
    )


class StorageService:
    def __init__(self, store: MetadataStore, broker: Broker, interest: Interest) -> None:
        self.store = store
        self.broker = broker
        self.interest = interest
        self.listeners: dict[str, set[Session]] = {}  # channel subject -> with_metadata members
        self.watchers: dict[str, set[Session]] = {}  # user target -> subscribed sessions
        self.watching: dict[Session, set[str]] = {}  # ... and the other way round
        self.buckets: dict[Session, RateBucket] = {}  # each session's storage-call rate
        self._clock = time.monotonic

    # --- membership hooks -----------------------------------------------------------------

    async def member_joined(self, s: Session, subj: str, listen: bool) -> MetadataResult | None:
        if not listen:
            return None
        self.listeners.setdefault(subj, set()).add(s)
        return metadata_result(await self.store.read(subj))

    def member_left(self, s: Session, subj: str) -> None:
        _discard(self.listeners, subj, s)

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        for subj in [k for k, v in self.listeners.items() if s in v]:
            _discard(self.listeners, subj, s)
        for target in list(self.watching.get(s, ())):
            self._unwatch(s, target)
        self.buckets.pop(s, None)

    # --- writes ---------------------------------------------------------------------------

    async def write_channel(self, s: Session, f: ChannelMetadataWrite) -> None:
        self._rate(s)
        subj = channel_subject(s.app_config.app_id, f.channel, f.channel_type)
        lock = (subj, _lock_name(f.lock), s.user_id) if f.lock else None
        await self._write(
            s.app_config, s.user_id, subj, f.op, f.items, f.major_revision, lock,
            f.record_ts, f.record_author,
        )  # fmt: skip
        s.reply(f.rid)

    async def write_user(self, s: Session, f: UserMetadataWrite) -> None:
        self._rate(s)
        app = s.app_config
        if not is_valid_user_id(f.user):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {f.user!r}")
        if f.user != s.user_id and app.user_metadata_write != "all":
            raise RTMError(
                ErrorCode.STORAGE_OPERATION_FAILED,
                "a user may write only its own user metadata in this app",
            )
        await self._write(
            app, s.user_id, user_subject(app.app_id, f.user), f.op, f.items, f.major_revision,
            None, f.record_ts, f.record_author,
        )  # fmt: skip
        s.reply(f.rid)

    async def write_from_server(
        self,
        app: AppConfig,
        target: str,
        op: int,
        items: list[MetadataItem],
        major_revision: int,
        lock: tuple[str, str] | None,
        record_ts: bool,
        record_author: bool,
    ) -> MetadataResult:
        """A write by the app's backend (the HTTP API) to ``target`` (a channel or user
        subject, already checked): no per-session rate, but the same checks, quotas, codes
        and events as a client's; the author is "server". ``lock``: (name, the user who must
        hold it), for a channel."""
        bound = (target, _lock_name(lock[0]), lock[1]) if lock else None
        metadata = await self._write(
            app, SERVER_AUTHOR, target, op, items, major_revision, bound, record_ts, record_author
        )
        return metadata_result(metadata)

    async def read(self, target: str) -> MetadataResult:
        """A channel's or user's metadata (``target``: its subject, already checked)."""
        return metadata_result(await self.store.read(target))

    async def _write(
        self,
        app: AppConfig,
        author: str,
        target: str,
        op: int,
        items: list[MetadataItem],
        major_revision: int,
        lock: tuple[str, str, str] | None,
        record_ts: bool,
        record_author: bool,
    ) -> Metadata:
        limits = app.limits
        if major_revision < -1:
            raise RTMError(ErrorCode.STORAGE_INVALID_REVISION, "major_revision must be >= -1")
        seen: set[str] = set()
        writes = []
        for item in items:
            if item.key in seen:
                raise RTMError(ErrorCode.STORAGE_DUPLICATE_KEY, f"key {item.key!r} given twice")
            seen.add(item.key)
            if not item.key:
                raise RTMError(ErrorCode.STORAGE_INVALID_KEY, "a key is empty")
            if len(item.key) > limits.metadata_key_length:
                raise RTMError(
                    ErrorCode.STORAGE_KEY_LENGTH_OVERFLOW,
                    f"key over {limits.metadata_key_length} characters",
                )
            if len(item.key.encode()) + len(item.value.encode()) > limits.metadata_item_size:
                raise RTMError(
                    ErrorCode.STORAGE_VALUE_LENGTH_OVERFLOW,
                    f"item {item.key!r} over {limits.metadata_item_size} bytes",
                )
            if item.revision < -1:
                raise RTMError(ErrorCode.STORAGE_INVALID_REVISION, "item revision must be >= -1")
            writes.append(ItemWrite(item.key, "" if op == OP_REMOVE else item.value, item.revision))
        outcome = await self.store.write(
            target,
            op,
            writes,
            major_revision,
            author if record_author else "",
            int(time.time() * 1000) if record_ts else 0,
            lock,
            limits.metadata_set_size,
            limits.metadata_rows,
        )
        if outcome.code:
            raise RTMError(outcome.code, outcome.reason)
        assert outcome.metadata is not None
        self._announce(target, outcome.metadata)
        return outcome.metadata

    def _announce(self, target: str, metadata: Metadata) -> None:
        result = metadata_result(metadata)
        if subject_kind(target) is SubjectKind.USER:
            _, _, user = target.split(":", 2)
            event = StorageEvent(
                StorageEventType.UPDATE,
                StorageType.USER,
                "",
                0,
                user,
                result.major_revision,
                result.items,
            )
        else:
            _, channel_type, channel = parse_subject(target)
            event = StorageEvent(
                StorageEventType.UPDATE,
                StorageType.CHANNEL,
                channel,
                channel_type,
                "",
                result.major_revision,
                result.items,
            )
        self.broker.publish(target, BusEvent(BusKind.STORAGE, "", "", encode(event)))

    def on_bus(self, subj: str, event: BusEvent) -> None:
        # Channel subjects and user targets never share a name: one of the two has it.
        sessions = self.listeners.get(subj) or self.watchers.get(subj)
        if sessions:
            data = ws_binary_frame(event.frame)
            for s in sessions:
                s.conn.send(data)

    # --- reads and user-metadata subscriptions ---------------------------------------------

    async def get_channel(self, s: Session, f: GetChannelMetadata) -> None:
        self._rate(s)
        subj = channel_subject(s.app_config.app_id, f.channel, f.channel_type)
        s.reply(f.rid, result=encode_result(metadata_result(await self.store.read(subj))))

    async def get_user(self, s: Session, f: GetUserMetadata) -> None:
        self._rate(s)
        target = self._user(s, f.user)
        s.reply(f.rid, result=encode_result(metadata_result(await self.store.read(target))))

    async def subscribe_user(self, s: Session, f: SubscribeUserMetadata) -> None:
        self._rate(s)
        target = self._user(s, f.user)
        limit = s.app_config.limits.user_metadata_subscriptions
        watching = self.watching.get(s, _NONE)
        if target not in watching and len(watching) >= limit:
            raise RTMError(
                ErrorCode.STORAGE_SUBSCRIBE_USER_EXCEED_LIMITATION,
                f"already following {limit} users' metadata",
            )
        if target not in watching:
            self.watching.setdefault(s, set()).add(target)
            self.watchers.setdefault(target, set()).add(s)
            self.interest.add(target)
        s.reply(f.rid, result=encode_result(metadata_result(await self.store.read(target))))

    def unsubscribe_user(self, s: Session, f: UnsubscribeUserMetadata) -> None:
        target = self._user(s, f.user)
        if target not in self.watching.get(s, _NONE):
            raise RTMError(ErrorCode.STORAGE_NOT_SUBSCRIBE, f"not following {f.user!r}")
        self._unwatch(s, target)
        s.reply(f.rid)

    def _unwatch(self, s: Session, target: str) -> None:
        watching = self.watching.get(s)
        if watching is not None:
            watching.discard(target)
            if not watching:
                del self.watching[s]
        if _discard(self.watchers, target, s):
            self.interest.remove(target)

    @staticmethod
    def _user(s: Session, user: str) -> str:
        if not is_valid_user_id(user):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {user!r}")
        return user_subject(s.app_config.app_id, user)

    def _rate(self, s: Session) -> None:
        rate = s.app_config.limits.storage_rate
        now = self._clock()
        bucket = self.buckets.get(s)
        if bucket is None:
            bucket = self.buckets[s] = RateBucket(rate, now)
        if not bucket.allow(now, rate):
            raise RTMError(
                ErrorCode.OPERATION_RATE_EXCEED_LIMITATION, f"over {rate:g} storage calls/s"
            )


def _lock_name(name: str) -> str:
    if len(name) > MAX_LOCK_NAME:
        raise RTMError(ErrorCode.STORAGE_INVALID_LOCK_NAME, "lock name over 64 characters")
    return name


def _discard(index: dict[str, set[Session]], key: str, s: Session) -> bool:
    """Remove ``s`` from ``index[key]``; True when that emptied (and removed) the entry."""
    sessions = index.get(key)
    if sessions is None:
        return False
    sessions.discard(s)
    if sessions:
        return False
    del index[key]
    return True
