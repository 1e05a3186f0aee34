"""Presence for the SDK: who is where, temporary state, and per-channel presence events.

The SDK keeps the user's own state per channel. Before the user is in a channel, ``set_state``
only fills that cache (at most 100 channels' worth); the cache rides along with the subscribe or
join and becomes the user's state there in the same step. For channels joined or subscribed
with presence, a view follows the events, so ``get_presence_events`` returns a current
snapshot and the channel's event stream (a SNAPSHOT event first).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ErrorCode, RTMError
from ..protocol import frames as f
from ..types import ChannelInfo, ChannelType, PresenceEvent, PresenceEventType, UserState
from .common import not_in_channel_code
from .streams import EventStream
from .views import ChannelViews, View

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Presence", "UserList", "WhoNowResult"]

MAX_CACHED_CHANNELS = 100
MAX_STATE_PAIRS = 32

ChannelKey = tuple[ChannelType, str]


class UserList(list[UserState]):
    """A page of users; ``total`` is how many are in the channel, over all pages."""

    total: int = 0


class WhoNowResult(NamedTuple):
    users: UserList
    next_page: str | None  # pass as ``page`` for the next 100; None on the last page


Snapshot = dict[str, dict[str, str]]  # user id -> state


def _event(
    key: ChannelKey,
    kind: PresenceEventType,
    user: str = "",
    state: dict[str, str] | None = None,
    joined: list[str] | None = None,
    left: list[str] | None = None,
    timed_out: list[str] | None = None,
    snapshot: Snapshot | None = None,
) -> PresenceEvent:
    return PresenceEvent(
        kind,
        key[1],
        key[0],
        user,
        state or {},
        joined or [],
        left or [],
        timed_out or [],
        snapshot or {},
    )


def _apply(view: View[Snapshot, PresenceEvent], key: ChannelKey, frame: f.PresenceEvent) -> None:
    """Bring a channel's presence up to date with an event, and pass the event on."""
    kind = PresenceEventType(frame.kind)
    if kind in (PresenceEventType.REMOTE_JOIN, PresenceEventType.REMOTE_STATE_CHANGED):
        view.snapshot[frame.user] = dict(frame.state)
    elif kind in (PresenceEventType.REMOTE_LEAVE, PresenceEventType.REMOTE_TIMEOUT):
        view.snapshot.pop(frame.user, None)
    elif kind is PresenceEventType.INTERVAL:
        for user in (*frame.left, *frame.timeout):
            view.snapshot.pop(user, None)
        for user in frame.joined:
            view.snapshot.setdefault(user, {})
        for user, state in frame.states.items():
            view.snapshot[user] = dict(state)
        view.stream.put(
            _event(
                key,
                kind,
                joined=list(frame.joined),
                left=list(frame.left),
                timed_out=list(frame.timeout),
                snapshot={u: dict(s) for u, s in frame.states.items()},
            )
        )
        return
    view.stream.put(_event(key, kind, frame.user, dict(frame.state)))


class Presence:
    """``client.presence``: RTM 2 presence (who_now, where_now, state, events)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._views: ChannelViews[ChannelKey, Snapshot, PresenceEvent] = ChannelViews(
            lambda key: f"{key[1]}/presence"
        )
        self._inside: set[ChannelKey] = set()  # channels the user is in, per the server
        self._own: dict[ChannelKey, dict[str, str]] = {}  # own state: cached or applied

    # --- queries -----------------------------------------------------------------------------

    async def who_now(
        self,
        channel: str,
        channel_type: ChannelType,
        include_user_id: bool = True,
        include_state: bool = False,
        page: str | None = None,
    ) -> WhoNowResult:
        """Users in a channel, 100 a page, sorted by user id (quiet users are not listed).

        The caller need not be in the channel. With ``include_user_id=False`` only
        ``users.total`` is filled in.
        """
        result = await self._session.request(
            lambda rid: f.WhoNow(
                rid, channel, channel_type, include_user_id, include_state, page or ""
            ),
            f.WhoNowResult,
        )
        assert result is not None
        users = UserList(UserState(u.user, dict(u.state)) for u in result.users)
        users.total = result.total
        return WhoNowResult(users, result.next_page or None)

    async def where_now(self, user_id: str) -> list[ChannelInfo]:
        """The message and stream channels ``user_id`` is in (quiet memberships hidden)."""
        result = await self._session.request(lambda rid: f.WhereNow(rid, user_id), f.WhereNowResult)
        assert result is not None
        return [ChannelInfo(c.channel, ChannelType(c.channel_type)) for c in result.channels]

    async def get_state(
        self, channel: str, channel_type: ChannelType, user_id: str
    ) -> dict[str, str]:
        """``user_id``'s temporary state in a channel (PRESENCE_USER_NOT_EXIST if absent)."""
        result = await self._session.request(
            lambda rid: f.GetState(rid, channel, channel_type, user_id), dict[str, str]
        )
        assert result is not None
        return result

    # --- own state ---------------------------------------------------------------------------

    async def set_state(
        self, channel: str, channel_type: ChannelType, state: dict[str, str]
    ) -> None:
        """Set keys of this user's state in a channel (others get REMOTE_STATE_CHANGED).

        Before the user is in the channel, the state is cached and applied when it joins.
        """
        self._session.require_login()
        key = (ChannelType(channel_type), channel)
        pending = dict(state)
        if key not in self._inside:
            self._cache(key, {**self._own.get(key, {}), **pending})
            return

        def applied(_: None) -> None:
            self._own.setdefault(key, {}).update(pending)
            self._show_own(key)

        await self._session.request(
            lambda rid: f.SetState(rid, channel, channel_type, pending), None, applied
        )

    async def remove_state(
        self, channel: str, channel_type: ChannelType, keys: Iterable[str]
    ) -> None:
        """Remove keys from this user's state in a channel (or from the cached state)."""
        self._session.require_login()
        key = (ChannelType(channel_type), channel)
        dropped = list(keys)
        if key not in self._inside:
            self._cache(key, {k: v for k, v in self._own.get(key, {}).items() if k not in dropped})
            return

        def removed(_: None) -> None:
            own = self._own.setdefault(key, {})
            for k in dropped:
                own.pop(k, None)
            self._show_own(key)

        await self._session.request(
            lambda rid: f.RemoveState(rid, channel, channel_type, dropped), None, removed
        )

    def _show_own(self, key: ChannelKey) -> None:
        """Our own state changes reach no event of ours: keep our snapshot entry current."""
        view = self._views.get(key)
        if view is not None:
            view.snapshot[self._session.config.user_id] = dict(self._own.get(key, {}))

    def _cache(self, key: ChannelKey, state: dict[str, str]) -> None:
        if len(state) > MAX_STATE_PAIRS:
            raise RTMError(
                ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW, f"at most {MAX_STATE_PAIRS} state pairs"
            )
        cached = sum(1 for k in self._own if k not in self._inside)
        if key not in self._own and cached >= MAX_CACHED_CHANNELS:
            raise RTMError(
                ErrorCode.PRESENCE_CACHED_TOO_MANY_STATES,
                f"state cached for {MAX_CACHED_CHANNELS} channels not joined yet",
            )
        self._own[key] = state

    # --- events ------------------------------------------------------------------------------

    async def get_presence_events(
        self, channel: str, channel_type: ChannelType
    ) -> tuple[dict[str, dict[str, str]], EventStream[PresenceEvent]]:
        """The channel's presence now (user id -> state, self included) and its event stream.

        Needs the channel subscribed or joined with ``with_presence=True``. The stream begins
        with a SNAPSHOT event and ends when the channel is left.
        """
        self._session.require_login()
        key = (ChannelType(channel_type), channel)
        view = self._views.get(key)
        if view is None:
            reason = "without presence" if key in self._inside else "not in the channel"
            raise RTMError(not_in_channel_code(key[0]), f"{channel!r}: {reason}")
        return {u: dict(s) for u, s in view.snapshot.items()}, view.stream

    # --- hooks for subscribe / join / leave ---------------------------------------------------

    def state_for(self, key: ChannelKey) -> dict[str, str]:
        return dict(self._own.get(key, {}))

    def entered(self, key: ChannelKey, snapshot: dict[str, dict[str, str]], listen: bool) -> None:
        self._inside.add(key)
        if not listen:
            return
        copy = {u: dict(s) for u, s in snapshot.items()}
        self._views.open(key, copy, _event(key, PresenceEventType.SNAPSHOT, snapshot=dict(copy)))

    def left(self, key: ChannelKey, code: ErrorCode) -> None:
        """The user left the channel: its state there is gone; its event stream ends."""
        self._inside.discard(key)
        self._own.pop(key, None)
        self._views.close(key, code)

    def _on_event(self, frame: f.PresenceEvent) -> None:
        key = (ChannelType(frame.channel_type), frame.channel)
        view = self._views.get(key)
        if view is not None:
            _apply(view, key, frame)

    def reset(self) -> None:
        self._views.reset()
        self._inside.clear()
        self._own.clear()
