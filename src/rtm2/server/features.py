"""Entering and leaving a channel, the same for stream and message channels: presence, the
channel's metadata, and the locks its user holds there (``roles.ChannelFeatures``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .roles import Entered

if TYPE_CHECKING:
    from ..protocol.frames import StreamJoin, Subscribe
    from .locks import LockService
    from .presence import PresenceService
    from .session import Session
    from .storage import StorageService

__all__ = ["Features"]


class Features:
    __slots__ = ("locks", "presence", "storage")

    def __init__(
        self, presence: PresenceService, storage: StorageService, locks: LockService
    ) -> None:
        self.presence = presence
        self.storage = storage
        self.locks = locks

    async def enter(self, s: Session, subject: str, f: StreamJoin | Subscribe) -> Entered:
        presence = await self.presence.join(s, subject, f.state, f.be_quiet, f.with_presence)
        metadata = await self.storage.member_joined(s, subject, f.with_metadata)
        locks = await self.locks.member_joined(s, subject, f.with_lock)
        return Entered(presence, metadata, locks)

    def leave(self, s: Session, subject: str, timed_out: bool = False) -> None:
        self.presence.leave(s, subject, timed_out)
        self.storage.member_left(s, subject)
        self.locks.member_left(s, subject)
