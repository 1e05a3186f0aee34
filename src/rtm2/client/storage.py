"""``client.storage``: channel and user metadata (RTM 2 storage), with revisions and events.

Writes are compare-and-set when asked: ``major_revision`` (-1 = no check) must equal the set's
revision, and each item's ``revision`` (-1 = no check, 0 = must not exist yet) must equal the
item's. A write is all or nothing. Channel metadata events reach members that joined or
subscribed with ``with_metadata=True``; user metadata events reach ``subscribe_user_metadata``
callers. Each event carries the whole set as it is after the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol import frames as f
from ..types import ChannelType, Metadata, MetadataItem, StorageEvent, StorageEventType, StorageType
from .common import not_in_channel_code
from .streams import EventStream
from .views import ChannelViews

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Storage"]

OP_SET, OP_UPDATE, OP_REMOVE = 0, 1, 2

Items = Iterable[MetadataItem] | Mapping[str, MetadataItem]
ViewKey = tuple[ChannelType, str] | str  # a channel, or a user id


def _wire_items(items: Items) -> list[f.MetadataItem]:
    if isinstance(items, Mapping):
        out = []
        for key, item in items.items():
            if item.key and item.key != key:
                raise RTMError(
                    ErrorCode.STORAGE_INVALID_METADATA_ITEM,
                    f"item under key {key!r} names key {item.key!r}",
                )
            out.append(f.MetadataItem(key, item.value, item.revision))
        return out
    return [f.MetadataItem(i.key, i.value, i.revision) for i in items]


def _metadata(result: f.MetadataResult) -> Metadata:
    return Metadata(
        result.major_revision,
        {
            i.key: MetadataItem(i.key, i.value, i.revision, i.author, i.update_ts)
            for i in result.items
        },
    )


def _stream_name(key: ViewKey) -> str:
    return f"user {key}/metadata" if isinstance(key, str) else f"{key[1]}/metadata"


class Storage:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._views: ChannelViews[ViewKey, Metadata, StorageEvent] = ChannelViews(_stream_name)

    # --- channel metadata ------------------------------------------------------------------

    async def set_channel_metadata(
        self,
        channel: str,
        channel_type: ChannelType,
        items: Items,
        *,
        major_revision: int = -1,
        lock_name: str = "",
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        """Create or overwrite items of a channel's metadata.

        ``lock_name`` binds the write to a lock of that channel: only its holder may write
        (STORAGE_LOCK_NOT_ACQUIRED otherwise).
        """
        await self._channel_write(
            OP_SET,
            channel,
            channel_type,
            items,
            major_revision,
            lock_name,
            record_ts,
            record_author,
        )

    async def update_channel_metadata(
        self,
        channel: str,
        channel_type: ChannelType,
        items: Items,
        *,
        major_revision: int = -1,
        lock_name: str = "",
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        """Change existing items only; a missing key fails the whole call."""
        await self._channel_write(
            OP_UPDATE,
            channel,
            channel_type,
            items,
            major_revision,
            lock_name,
            record_ts,
            record_author,
        )

    async def remove_channel_metadata(
        self,
        channel: str,
        channel_type: ChannelType,
        items: Items = (),
        *,
        major_revision: int = -1,
        lock_name: str = "",
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        """Remove items (values are ignored); an empty ``items`` removes the whole set."""
        await self._channel_write(
            OP_REMOVE,
            channel,
            channel_type,
            items,
            major_revision,
            lock_name,
            record_ts,
            record_author,
        )

    async def _channel_write(
        self,
        op: int,
        channel: str,
        channel_type: ChannelType,
        items: Items,
        major_revision: int,
        lock_name: str,
        record_ts: bool,
        record_author: bool,
    ) -> None:
        wire = _wire_items(items)
        await self._session.request(
            lambda rid: f.ChannelMetadataWrite(
                rid,
                channel,
                channel_type,
                op,
                wire,
                major_revision,
                lock_name,
                record_ts,
                record_author,
            ),
            None,
        )

    async def get_channel_metadata(self, channel: str, channel_type: ChannelType) -> Metadata:
        """The channel's metadata: ``major_revision, items = await ...``."""
        result = await self._session.request(
            lambda rid: f.GetChannelMetadata(rid, channel, channel_type), f.MetadataResult
        )
        assert result is not None
        return _metadata(result)

    async def get_channel_metadata_events(
        self, channel: str, channel_type: ChannelType
    ) -> tuple[Metadata, EventStream[StorageEvent]]:
        """The channel's metadata now and its event stream (SNAPSHOT first, then UPDATE).

        Needs the channel joined or subscribed with ``with_metadata=True``.
        """
        self._session.require_login()
        view = self._views.get((ChannelType(channel_type), channel))
        if view is None:
            raise RTMError(
                not_in_channel_code(channel_type),
                f"{channel!r} is not joined or subscribed with metadata",
            )
        return view.snapshot, view.stream

    # --- user metadata ---------------------------------------------------------------------

    async def set_user_metadata(
        self,
        user_id: str,
        items: Items,
        *,
        major_revision: int = -1,
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        await self._user_write(OP_SET, user_id, items, major_revision, record_ts, record_author)

    async def update_user_metadata(
        self,
        user_id: str,
        items: Items,
        *,
        major_revision: int = -1,
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        await self._user_write(OP_UPDATE, user_id, items, major_revision, record_ts, record_author)

    async def remove_user_metadata(
        self,
        user_id: str,
        items: Items = (),
        *,
        major_revision: int = -1,
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        await self._user_write(OP_REMOVE, user_id, items, major_revision, record_ts, record_author)

    async def _user_write(
        self,
        op: int,
        user_id: str,
        items: Items,
        major_revision: int,
        record_ts: bool,
        record_author: bool,
    ) -> None:
        wire = _wire_items(items)
        await self._session.request(
            lambda rid: f.UserMetadataWrite(
                rid, user_id, op, wire, major_revision, record_ts, record_author
            ),
            None,
        )

    async def get_user_metadata(self, user_id: str) -> Metadata:
        result = await self._session.request(
            lambda rid: f.GetUserMetadata(rid, user_id), f.MetadataResult
        )
        assert result is not None
        return _metadata(result)

    async def subscribe_user_metadata(
        self, user_id: str
    ) -> tuple[Metadata, EventStream[StorageEvent]]:
        """Follow a user's metadata: its current set and an event stream (SNAPSHOT first).

        Subscribing again returns the same stream.
        """
        view = self._views.get(user_id)
        if view is not None:
            self._session.require_login()
            return view.snapshot, view.stream

        await self._follow(user_id)
        view = self._views.get(user_id)
        assert view is not None  # opened by the reply
        return view.snapshot, view.stream

    async def unsubscribe_user_metadata(self, user_id: str) -> None:
        """Stop following a user's metadata; its event stream ends."""
        self._session.require_login()
        if user_id not in self._views:
            raise RTMError(ErrorCode.STORAGE_NOT_SUBSCRIBE, f"not following {user_id!r}")
        await self._session.request(
            lambda rid: f.UnsubscribeUserMetadata(rid, user_id),
            None,
            lambda _: self.close_view(user_id, ErrorCode.STORAGE_NOT_SUBSCRIBE),
        )

    # --- views (kept current by events) -----------------------------------------------------

    def open_view(self, key: ViewKey, result: f.MetadataResult) -> None:
        snapshot = _metadata(result)
        if isinstance(key, str):
            event = StorageEvent(
                StorageEventType.SNAPSHOT,
                StorageType.USER,
                "",
                None,
                key,
                snapshot.major_revision,
                snapshot.items,
            )
        else:
            event = StorageEvent(
                StorageEventType.SNAPSHOT,
                StorageType.CHANNEL,
                key[1],
                key[0],
                "",
                snapshot.major_revision,
                snapshot.items,
            )
        self._views.open(key, snapshot, event)

    def close_view(self, key: ViewKey, code: ErrorCode) -> None:
        self._views.close(key, code)

    def _on_event(self, frame: f.StorageEvent) -> None:
        user = frame.storage_type == StorageType.USER
        key: ViewKey = frame.user if user else (ChannelType(frame.channel_type), frame.channel)
        view = self._views.get(key)
        if view is None:
            return
        snapshot = _metadata(f.MetadataResult(frame.major_revision, frame.items))
        view.snapshot = snapshot
        view.stream.put(
            StorageEvent(
                StorageEventType(frame.kind),
                StorageType(frame.storage_type),
                frame.channel,
                None if user else ChannelType(frame.channel_type),
                frame.user,
                snapshot.major_revision,
                snapshot.items,
            )
        )

    def reset(self) -> None:
        self._views.reset()

    async def restore(self) -> None:
        """After a new login: follow the same users' metadata again (same streams)."""
        for user in [k for k in self._views if isinstance(k, str)]:
            try:
                await self._follow(user)
            except RTMError:
                self.close_view(user, ErrorCode.STORAGE_NOT_SUBSCRIBE)

    async def _follow(self, user_id: str) -> None:
        def subscribed(result: f.MetadataResult | None) -> None:
            assert result is not None
            self.open_view(user_id, result)

        await self._session.request(
            lambda rid: f.SubscribeUserMetadata(rid, user_id), f.MetadataResult, subscribed
        )
