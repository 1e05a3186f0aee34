"""Presence: who is in a channel, their temporary state, and the events that tell others.

Presence is shared state (the engine's ``PresenceStore``) plus events on the channel's bus
subject. Every node keeps a *view* of each channel it has local members in: the count of
visible users (kept by the events) and the local sessions that listen. The view decides how
events reach them: one by one while the channel is small, or aggregated into one INTERVAL event
per period once it has more users than the app's threshold (RTM 2's interval mode).

Timing rules, all driven by the hub's one sweep (see docs/PRESENCE.md):
- an explicit leave is announced ``presence_debounce`` seconds later, and not at all if the
  user comes back before then;
- a lost connection keeps the user present for its presence timeout; then REMOTE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING

import msgspec

from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode, encode_result, ws_binary_frame
from ..protocol.frames import (
    ChannelInfo,
    GetState,
    PresenceEvent,
    RemoveState,
    SetState,
    UserState,
    WhereNow,
    WhereNowResult,
    WhoNow,
    WhoNowResult,
)
from ..protocol.names import is_valid_user_id
from ..types import ChannelType, PresenceEventType
from .engines.base import Broker, BusEvent, BusKind, PresenceStore
from .ratelimit import RateBucket
from .subjects import channel_subject, parse_subject

if TYPE_CHECKING:
    from .config import AppLimits, Timers
    from .session import Session

__all__ = ["PresenceService"]

PAGE_SIZE = 100
MAX_STATE_KEY = 64  # bytes
MAX_STATE_VALUE = 8 * 1024  # bytes

_decode_event = msgspec.msgpack.Decoder(PresenceEvent).decode


class ChannelView:
    """This node's view of a channel in which it has local members."""

    __slots__ = (
        "channel",
        "channel_type",
        "count",
        "interval",
        "joined",
        "left",
        "listeners",
        "members",
        "next_flush",
        "states",
        "threshold",
        "timeout",
    )

    def __init__(self, subj: str, count: int, threshold: int) -> None:
        _, self.channel_type, self.channel = parse_subject(subj)
        self.count = count  # visible users present, cluster-wide
        self.threshold = threshold
        self.members: set[Session] = set()  # local sessions present
        self.listeners: set[Session] = set()  # local sessions that want events
        self.interval = False
        self.next_flush = 0.0
        self.joined: list[str] = []
        self.left: list[str] = []
        self.timeout: list[str] = []
        self.states: dict[str, dict[str, str]] = {}


class _PendingLeave:
    __slots__ = ("deadline", "member")

    def __init__(self, deadline: float, member: str) -> None:
        self.deadline = deadline
        self.member = member


class PresenceService:
    def __init__(self, store: PresenceStore, broker: Broker, timers: Timers) -> None:
        self.store = store
        self.broker = broker
        self.timers = timers
        self.views: dict[str, ChannelView] = {}
        # Local session -> channels (by subject) where its user is present -> whether quietly.
        self.joined: dict[Session, dict[str, bool]] = {}
        self.pending: dict[tuple[str, str], _PendingLeave] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = time.monotonic
        self.buckets: dict[Session, RateBucket] = {}  # each session's SetState/RemoveState rate
        # Every change broadcasts the user's full state, so a burst of small changes to a big
        # state multiplies bytes: at most one change per (subject, user) goes out at once per
        # sweep interval, the rest wait for the sweep and only the latest of them goes out.
        self.state_quiet_until: dict[tuple[str, str], float] = {}
        self.state_due: dict[tuple[str, str], dict[str, str]] = {}

    # --- membership (called by the message and stream services) -------------------------

    async def join(
        self, s: Session, subj: str, state: dict[str, str], quiet: bool, listen: bool
    ) -> dict[str, dict[str, str]]:
        """Make the session's user present in ``subj``; return the snapshot (self included)."""
        limits = s.app_config.limits
        _check_state(state, limits)
        user = s.user_id
        # A leave still in its debounce time is taken back: it will never be announced.
        self.pending.pop((subj, user), None)
        self.state_due.pop((subj, user), None)  # the join tells the state as it is now
        previous = await self.store.join(subj, user, s.session_id, state, quiet)
        members = await self.store.members(subj)
        self.joined.setdefault(s, {})[subj] = quiet
        announce = not quiet and (previous is None or previous.quiet)
        view = self.views.get(subj)
        if view is None:
            visible = sum(1 for e in members.values() if not e.quiet)
            view = self.views[subj] = ChannelView(
                subj, visible - (1 if announce else 0), limits.presence_interval_threshold
            )
        view.members.add(s)
        if listen:
            view.listeners.add(s)
        if announce:
            self._publish(subj, PresenceEventType.REMOTE_JOIN, user, state)
        elif quiet and previous is not None and not previous.quiet:
            # Back within the debounce time, but quiet now: to others the user has left.
            self._publish(subj, PresenceEventType.REMOTE_LEAVE, user, {})
        elif not quiet and previous is not None and previous.state != state:
            self._publish(subj, PresenceEventType.REMOTE_STATE_CHANGED, user, state)
        return {u: e.state for u, e in members.items() if not e.quiet or u == user}

    def leave(self, s: Session, subj: str, timed_out: bool = False) -> None:
        """The session's user leaves ``subj``: announced after the debounce time, or at once
        as REMOTE_TIMEOUT when its connection was lost for longer than its presence timeout."""
        joined = self.joined.get(s)
        if joined is None or joined.pop(subj, None) is None:
            return
        if not joined:
            del self.joined[s]
        # A change still waiting for the sweep must not follow the user's leave or timeout.
        self.state_due.pop((subj, s.user_id), None)
        view = self.views.get(subj)
        if view is not None:
            view.members.discard(s)
            view.listeners.discard(s)
            if not view.members:
                del self.views[subj]
        if timed_out:
            self._spawn(
                self._remove(subj, s.user_id, s.session_id, PresenceEventType.REMOTE_TIMEOUT)
            )
        else:
            deadline = self._clock() + self.timers.presence_debounce
            self.pending[(subj, s.user_id)] = _PendingLeave(deadline, s.session_id)

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        for subj in list(self.joined.get(s, ())):
            self.leave(s, subj, timed_out)
        self.buckets.pop(s, None)

    async def remove_orphan(self, subj: str, user: str, member: str) -> None:
        """A dead node's user: it timed out."""
        await self._remove(subj, user, member, PresenceEventType.REMOTE_TIMEOUT)

    async def _remove(self, subj: str, user: str, member: str, kind: PresenceEventType) -> None:
        entry = await self.store.leave(subj, user, member)
        if entry is not None and not entry.quiet:
            self._publish(subj, kind, user, {})

    def _publish(
        self, subj: str, kind: PresenceEventType, user: str, state: dict[str, str]
    ) -> None:
        _, channel_type, channel = parse_subject(subj)
        frame = encode(PresenceEvent(kind, channel, channel_type, user, state))
        self.broker.publish(subj, BusEvent(BusKind.PRESENCE, str(int(kind)), user, frame))

    # --- events from the bus -------------------------------------------------------------

    def on_bus(self, subj: str, event: BusEvent) -> None:
        view = self.views.get(subj)
        if view is None:
            return
        kind = int(event.topic)
        if kind == PresenceEventType.REMOTE_JOIN:
            view.count += 1
        elif kind in (PresenceEventType.REMOTE_LEAVE, PresenceEventType.REMOTE_TIMEOUT):
            view.count -= 1
        if not view.interval and view.count <= view.threshold:
            data = ws_binary_frame(event.frame)
            for s in view.listeners:
                if s.user_id != event.user:
                    s.conn.send(data)
            return
        if not view.interval:
            view.interval = True
            view.next_flush = self._clock() + self.timers.presence_interval
        pushed = _decode_event(event.frame)
        if kind == PresenceEventType.REMOTE_JOIN:
            view.joined.append(event.user)
            view.states[event.user] = pushed.state
        elif kind == PresenceEventType.REMOTE_LEAVE:
            view.left.append(event.user)
            view.states.pop(event.user, None)
        elif kind == PresenceEventType.REMOTE_TIMEOUT:
            view.timeout.append(event.user)
            view.states.pop(event.user, None)
        elif kind == PresenceEventType.REMOTE_STATE_CHANGED:
            view.states[event.user] = pushed.state
        if view.count <= view.threshold:  # small again: report what is pending, then instant
            self._flush(view)
            view.interval = False

    def _flush(self, view: ChannelView) -> None:
        if view.joined or view.left or view.timeout or view.states:
            frame = encode(
                PresenceEvent(
                    PresenceEventType.INTERVAL,
                    view.channel,
                    view.channel_type,
                    joined=view.joined,
                    left=view.left,
                    timeout=view.timeout,
                    states=view.states,
                )
            )
            data = ws_binary_frame(frame)
            for s in view.listeners:
                s.conn.send(data)
        view.joined, view.left, view.timeout, view.states = [], [], [], {}
        view.next_flush = self._clock() + self.timers.presence_interval

    def sweep(self) -> None:
        """Announce leaves whose debounce time passed; send INTERVAL events that are due."""
        now = self._clock()
        due = [key for key, p in self.pending.items() if p.deadline <= now]
        for key in due:
            pending = self.pending.pop(key)
            self._spawn(
                self._remove(key[0], key[1], pending.member, PresenceEventType.REMOTE_LEAVE)
            )
        for view in self.views.values():
            if view.interval and now >= view.next_flush:
                self._flush(view)
        due_states, self.state_due = self.state_due, {}
        quiet_until = now + self.timers.sweep_interval
        self.state_quiet_until = {k: t for k, t in self.state_quiet_until.items() if t > now}
        for (subj, user), state in due_states.items():
            self.state_quiet_until[(subj, user)] = quiet_until
            self._publish(subj, PresenceEventType.REMOTE_STATE_CHANGED, user, state)

    def _state_changed(self, subj: str, user: str, state: dict[str, str]) -> None:
        key = (subj, user)
        now = self._clock()
        if key in self.state_due or now < self.state_quiet_until.get(key, 0.0):
            self.state_due[key] = state
            return
        self.state_quiet_until[key] = now + self.timers.sweep_interval
        self._publish(subj, PresenceEventType.REMOTE_STATE_CHANGED, user, state)

    # --- requests ------------------------------------------------------------------------

    async def who_now(self, s: Session, f: WhoNow) -> None:
        subj = channel_subject(s.app_config.app_id, f.channel, f.channel_type)
        if f.include_state and not f.include_user_id:
            raise RTMError(
                ErrorCode.PRESENCE_INVALID_ARGUMENT, "include_state needs include_user_id"
            )
        found = await self.who_now_page(subj, f.include_user_id, f.include_state, f.page)
        s.reply(f.rid, result=encode_result(found))

    async def who_now_page(
        self, subj: str, include_user_id: bool, include_state: bool, page: str
    ) -> WhoNowResult:
        """One page of who is in a channel, as a client's WhoNow (and the HTTP API) sees it."""
        members = await self.store.members(subj)
        visible = sorted(u for u, e in members.items() if not e.quiet)
        start = bisect.bisect_left(visible, page) if page else 0
        users_here = visible[start : start + PAGE_SIZE]
        more = include_user_id and start + PAGE_SIZE < len(visible)
        next_page = visible[start + PAGE_SIZE] if more else ""
        users = (
            [UserState(u, members[u].state if include_state else {}) for u in users_here]
            if include_user_id
            else []
        )
        return WhoNowResult(users, next_page, len(visible))

    async def where_now(self, s: Session, f: WhereNow) -> None:
        if not is_valid_user_id(f.user):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {f.user!r}")
        found = await self.store.where_now(s.app_config.app_id, f.user)
        channels = []
        for subj, quiet in found:
            if not quiet:
                _, channel_type, channel = parse_subject(subj)
                channels.append(ChannelInfo(channel, channel_type))
        s.reply(f.rid, result=encode_result(WhereNowResult(channels)))

    async def get_state(self, s: Session, f: GetState) -> None:
        subj = channel_subject(s.app_config.app_id, f.channel, f.channel_type)
        entry = (await self.store.members(subj)).get(f.user)
        if entry is None or (entry.quiet and f.user != s.user_id):
            raise RTMError(ErrorCode.PRESENCE_USER_NOT_EXIST, f"{f.user!r} is not in {f.channel!r}")
        s.reply(f.rid, result=encode_result(entry.state))

    async def set_state(self, s: Session, f: SetState | RemoveState) -> None:
        subj = channel_subject(s.app_config.app_id, f.channel, f.channel_type)
        joined = self.joined.get(s)
        quiet = joined.get(subj) if joined is not None else None
        if quiet is None:
            raise RTMError(_not_in(f.channel_type), f"not in channel {f.channel!r}")
        limits = s.app_config.limits
        self._rate(s, limits.presence_state_rate)
        upsert = f.state if isinstance(f, SetState) else {}
        remove = f.keys if isinstance(f, RemoveState) else []
        _check_state(upsert, limits)
        entry = (await self.store.members(subj)).get(s.user_id)
        current = entry.state if entry is not None else {}
        merged = {k: v for k, v in current.items() if k not in remove} | upsert
        if len(merged) > limits.presence_state_pairs:
            raise RTMError(
                ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW,
                f"at most {limits.presence_state_pairs} state pairs per channel",
            )
        _check_state_bytes(merged, limits)
        state = await self.store.update_state(subj, s.user_id, s.session_id, upsert, remove)
        if state is None:
            raise RTMError(_not_in(f.channel_type), f"not in channel {f.channel!r}")
        if not quiet:
            self._state_changed(subj, s.user_id, state)
        s.reply(f.rid)

    def _rate(self, s: Session, rate: float) -> None:
        now = self._clock()
        bucket = self.buckets.get(s)
        if bucket is None:
            bucket = self.buckets[s] = RateBucket(rate, now)
        if not bucket.allow(now, rate):
            raise RTMError(
                ErrorCode.OPERATION_RATE_EXCEED_LIMITATION, f"over {rate:g} state changes/s"
            )

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _not_in(channel_type: int) -> ErrorCode:
    if channel_type == ChannelType.STREAM:
        return ErrorCode.CHANNEL_NOT_JOINED
    return ErrorCode.CHANNEL_NOT_SUBSCRIBED


def _check_state_bytes(state: dict[str, str], limits: AppLimits) -> None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in state.items())
    if size > limits.presence_state_bytes:
        raise RTMError(
            ErrorCode.PRESENCE_STATE_VALUE_SIZE_OVERFLOW,
            f"state over {limits.presence_state_bytes} bytes (keys + values) per channel",
        )


def _check_state(state: dict[str, str], limits: AppLimits) -> None:
    if len(state) > limits.presence_state_pairs:
        raise RTMError(
            ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW,
            f"at most {limits.presence_state_pairs} state pairs per channel",
        )
    for key, value in state.items():
        if not key:
            raise RTMError(ErrorCode.PRESENCE_INVALID_STATE_KEY, "a state key is empty")
        if len(key.encode()) > MAX_STATE_KEY:
            raise RTMError(
                ErrorCode.PRESENCE_STATE_KEY_SIZE_OVERFLOW, f"state key over {MAX_STATE_KEY} bytes"
            )
        if len(value.encode()) > MAX_STATE_VALUE:
            raise RTMError(
                ErrorCode.PRESENCE_STATE_VALUE_SIZE_OVERFLOW,
                f"state value over {MAX_STATE_VALUE} bytes",
            )
    _check_state_bytes(state, limits)
