"""Stream-channel limits, precondition errors, and the stream-token join policy and expiry.

Every refused call must change nothing: the tests check state before and after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import pytest

import rtm2
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import ErrorCode, Message
from rtm2 import TopicEventType as Kind
from rtm2.tokens import build_combined_token, build_stream_token, verify_stream_token

from ..conftest import APP_A, APP_OPEN, APP_SMALL, CERT_A, CERT_A2
from .util import Users, client_for, token_for, uid, unique


def stream_token(channel: str, user: str, expire: int = 3600, **kw: Any) -> str:
    return build_stream_token(APP_A, kw.pop("cert", CERT_A), channel, user, expire, **kw)


async def join(client: rtm2.RTMClient, channel: str) -> rtm2.JoinResult:
    """Join ``channel``, with a stream token where the app's policy asks for one."""
    token = None
    if client.config.app_id == APP_A:
        token = stream_token(channel, client.config.user_id)
    return await client.stream_channel(channel).join(token)


async def refused(call: Coroutine[Any, Any, object], code: ErrorCode) -> None:
    with pytest.raises(rtm2.RTMError) as info:
        await call
    assert info.value.code == code, info.value


async def barrier(ch: rtm2.StreamChannel) -> None:
    """One round trip on ``ch``'s connection that changes nothing (an invalid topic name is
    refused by the server): whatever the server wrote to it before is in its streams after."""
    await refused(ch.subscribe_topic("_barrier"), ErrorCode.CHANNEL_INVALID_TOPIC_NAME)


async def payloads(stream: rtm2.EventStream[Message], n: int) -> list[bytes | str]:
    return [(await stream.get(timeout=5)).message for _ in range(n)]


async def publisher_and_subscriber(
    users: Users, prefix: str, app_id: str = APP_OPEN
) -> tuple[rtm2.StreamChannel, rtm2.StreamChannel, rtm2.EventStream[Message]]:
    """A publisher in topic "t" of a new channel, a subscriber, and its stream of the messages."""
    channel = unique(prefix)
    alice = await users.login("alice", app_id)
    bob = await users.login("bob", app_id)
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t")
    await join(bob, channel)
    return a, b, await b.subscribe_topic("t", [uid(alice)])


# --- names ---------------------------------------------------------------------------------------

BAD_NAMES = {
    "too-long": "c" * 65,
    "dot": "a.b",
    "leading-underscore": "_lobby",
    "empty": "",
    "slash": "a/b",
    "star": "a*b",
    "backslash": "a\\b",
    "non-ascii": "café",
    "control": "a\nb",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_an_invalid_channel_name_is_refused_at_once(users: Users, name: str) -> None:
    alice = await users.login("alice")
    with pytest.raises(rtm2.RTMError) as info:
        alice.stream_channel(name)
    assert info.value.code == ErrorCode.INVALID_CHANNEL_NAME
    # Not logged in is no excuse: the name is checked first.
    with pytest.raises(rtm2.RTMError) as info:
        client_for(users.server, "nobody").stream_channel(name)
    assert info.value.code == ErrorCode.INVALID_CHANNEL_NAME


async def test_a_channel_name_of_64_allowed_characters_can_be_joined(users: Users) -> None:
    alice = await users.login("alice")
    name = ("a-Z0 !#$%&()+,:;<=>?@[]^_{|}~`" + "x" * 64)[:64]
    await join(alice, name)
    assert alice.stream_channel(name).joined


BAD_TOPICS = {
    "too-long": "t" * 17,
    "dot": "a.b",
    "leading-underscore": "_t",
    "empty": "",
    "slash": "a/b",
    "star": "a*b",
    "non-ascii": "tópico",
}


@pytest.mark.parametrize("topic", BAD_TOPICS.values(), ids=BAD_TOPICS.keys())
async def test_an_invalid_topic_name_is_refused_by_join_topic_and_subscribe_topic(
    users: Users, topic: str
) -> None:
    channel = unique("topicname")
    alice, bob = await users.login("alice", APP_OPEN), await users.login("bob", APP_OPEN)
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    _, b_events, _ = await join(bob, channel)
    assert (await b_events.get(timeout=5)).type is Kind.SNAPSHOT

    await refused(a.join_topic(topic), ErrorCode.CHANNEL_INVALID_TOPIC_NAME)
    await refused(a.subscribe_topic(topic, [uid(bob)]), ErrorCode.CHANNEL_INVALID_TOPIC_NAME)
    await refused(a.subscribe_topic(topic), ErrorCode.CHANNEL_INVALID_TOPIC_NAME)
    # Nothing changed: not a publisher, not subscribed, nobody told.
    await refused(a.publish_topic(topic, "x"), ErrorCode.CHANNEL_TOPIC_NOT_JOINED)
    await refused(a.get_subscribed_users(topic), ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED)
    await refused(a.unsubscribe_topic(topic), ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED)
    assert len(b_events) == 0
    assert b.topics == {}

    longest = "T0 !#$%&()+,:;<="  # 16 allowed characters
    await a.join_topic(longest)
    await a.subscribe_topic(longest, [uid(bob)])
    event = await b_events.get(timeout=5)
    assert (event.type, event.topic) == (Kind.REMOTE_JOIN, longest)


# --- messages ------------------------------------------------------------------------------------


async def test_a_message_may_take_1024_bytes_with_its_custom_type_and_not_one_more(
    users: Users,
) -> None:
    a, _, messages = await publisher_and_subscriber(users, "size")
    too_long = ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION
    await a.publish_topic("t", b"x" * 1024)
    await refused(a.publish_topic("t", b"x" * 1025), too_long)
    await a.publish_topic("t", b"y" * 1020, custom_type="abcd")
    await refused(a.publish_topic("t", b"y" * 1021, custom_type="abcd"), too_long)
    await a.publish_topic("t", "é" * 512)  # 1024 bytes of UTF-8
    await refused(a.publish_topic("t", "é" * 513), too_long)
    await refused(a.publish_topic("t", "z" * 1000, custom_type="c" * 25), too_long)
    await a.publish_topic("t", "last")
    assert await payloads(messages, 4) == [b"x" * 1024, b"y" * 1020, "é" * 512, "last"]


async def test_a_custom_type_takes_at_most_32_printable_ascii_characters(users: Users) -> None:
    a, _, messages = await publisher_and_subscriber(users, "ctype")
    await a.publish_topic("t", "ok", custom_type="c" * 32)
    await refused(
        a.publish_topic("t", "long", custom_type="c" * 33),
        ErrorCode.CHANNEL_CUSTOM_TYPE_LENGTH_OVERFLOW,
    )
    for bad in ("typé", "a\tb", "\x7f", "☃"):
        await refused(
            a.publish_topic("t", "bad", custom_type=bad), ErrorCode.CHANNEL_INVALID_CUSTOM_TYPE
        )
    await a.publish_topic("t", "last", custom_type="~ !")
    got = [await messages.get(timeout=5) for _ in range(2)]
    assert [(m.message, m.custom_type) for m in got] == [("ok", "c" * 32), ("last", "~ !")]


@pytest.mark.parametrize("payload", [42, None, 1.5, ["x"], {"k": "v"}])
async def test_a_message_that_is_neither_bytes_nor_text_is_refused(
    users: Users, payload: object
) -> None:
    a, _, messages = await publisher_and_subscriber(users, "badmsg")
    await refused(a.publish_topic("t", payload), ErrorCode.CHANNEL_INVALID_MESSAGE)  # type: ignore[arg-type]
    await a.publish_topic("t", "fine")
    assert await payloads(messages, 1) == ["fine"]


async def test_topic_meta_takes_at_most_256_bytes(users: Users) -> None:
    channel = unique("meta")
    alice, bob = await users.login("alice", APP_OPEN), await users.login("bob", APP_OPEN)
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    _, b_events, _ = await join(bob, channel)
    assert (await b_events.get(timeout=5)).type is Kind.SNAPSHOT

    await refused(a.join_topic("t", meta="m" * 257), ErrorCode.CHANNEL_INVALID_TOPIC_META)
    await refused(a.join_topic("t", meta="é" * 129), ErrorCode.CHANNEL_INVALID_TOPIC_META)
    await refused(a.publish_topic("t", "x"), ErrorCode.CHANNEL_TOPIC_NOT_JOINED)
    assert len(b_events) == 0
    await a.join_topic("t", meta="m" * 256)
    await a.join_topic("u", meta="é" * 128)
    events = [await b_events.get(timeout=5) for _ in range(2)]
    assert [(e.type, e.topic) for e in events] == [(Kind.REMOTE_JOIN, "t"), (Kind.REMOTE_JOIN, "u")]
    assert b.topics == {"t": [uid(alice)], "u": [uid(alice)]}


# --- topic limits --------------------------------------------------------------------------------


async def test_a_client_publishes_in_at_most_8_topics_of_a_channel(users: Users) -> None:
    channel = unique("joined8")
    alice, bob = await users.login("alice", APP_OPEN), await users.login("bob", APP_OPEN)
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await join(bob, channel)
    for i in range(8):
        await a.join_topic(f"t{i}")
    await refused(a.join_topic("t8"), ErrorCode.CHANNEL_EXCEED_TOPIC_LIMITATION)
    await refused(a.publish_topic("t8", "x"), ErrorCode.CHANNEL_TOPIC_NOT_JOINED)
    assert sorted(b.topics) == [f"t{i}" for i in range(8)]

    await a.leave_topic("t0")
    await a.join_topic("t8")
    messages = await b.subscribe_topic("t8", [uid(alice)])
    await a.publish_topic("t8", "ninth")
    assert await payloads(messages, 1) == ["ninth"]


async def test_a_client_subscribes_to_at_most_50_topics_of_a_channel(users: Users) -> None:
    channel = unique("subs50")
    alice = await users.login("alice", APP_OPEN)
    a = alice.stream_channel(channel)
    await join(alice, channel)
    for i in range(50):
        await a.subscribe_topic(f"t{i}", ["bob"])
    await refused(a.subscribe_topic("t50", ["bob"]), ErrorCode.CHANNEL_EXCEED_TOPIC_LIMITATION)
    await refused(a.subscribe_topic("t50"), ErrorCode.CHANNEL_EXCEED_TOPIC_LIMITATION)
    await refused(a.get_subscribed_users("t50"), ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED)
    # More publishers in a topic already subscribed is not another topic.
    await a.subscribe_topic("t0", ["carol"])
    assert await a.get_subscribed_users("t0") == ["bob", "carol"]

    await a.unsubscribe_topic("t1")
    await a.subscribe_topic("t50", ["bob"])
    assert await a.get_subscribed_users("t50") == ["bob"]


async def test_a_subscriber_picks_at_most_64_publishers_per_topic_and_a_refusal_changes_nothing(
    users: Users,
) -> None:
    channel = unique("pick64")
    alice, bob, carol = [await users.login(n, APP_OPEN) for n in ("alice", "bob", "carol")]
    a, b, c = (u.stream_channel(channel) for u in (alice, bob, carol))
    for user in (alice, bob, carol):
        await join(user, channel)
    await a.join_topic("t")
    await b.join_topic("t")
    too_many = ErrorCode.CHANNEL_EXCEED_TOPIC_USER_LIMITATION

    # One call over the limit on a new topic: the topic stays unsubscribed.
    sixty_five = [f"ghost{i:02}" for i in range(64)] + [uid(alice)]
    await refused(c.subscribe_topic("t", sixty_five), too_many)
    await refused(c.get_subscribed_users("t"), ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED)

    picked = [f"ghost{i:02}" for i in range(63)] + [uid(alice)]
    messages = await c.subscribe_topic("t", picked)
    assert await c.get_subscribed_users("t") == sorted(picked)
    await refused(c.subscribe_topic("t", [uid(bob)]), too_many)
    await refused(c.subscribe_topic("t", [uid(alice), uid(bob)]), too_many)
    assert await c.get_subscribed_users("t") == sorted(picked)
    assert await c.subscribe_topic("t", [uid(alice), "ghost00"]) is messages  # nothing new: fine

    # Bob was refused, so only alice's messages arrive.
    await b.publish_topic("t", "bob-1")
    await a.publish_topic("t", "alice-1")
    assert [(m.user_id, m.message) for m in [await messages.get(timeout=5)]] == [
        (uid(alice), "alice-1")
    ]

    # Room made, bob fits.
    await c.unsubscribe_topic("t", ["ghost00"])
    await c.subscribe_topic("t", [uid(bob)])
    assert len(await c.get_subscribed_users("t")) == 64
    await b.publish_topic("t", "bob-2")
    assert await payloads(messages, 1) == ["bob-2"]


async def test_an_empty_user_list_picks_at_most_64_of_the_topics_publishers(users: Users) -> None:
    channel = unique("many")
    publishers = await asyncio.gather(
        *(users.login(user=f"{channel}-p{i:02}", app_id=APP_OPEN) for i in range(65))
    )
    await asyncio.gather(*(join(p, channel) for p in publishers))
    await asyncio.gather(*(p.stream_channel(channel).join_topic("t") for p in publishers))
    carol = await users.login("carol", APP_OPEN)
    c = carol.stream_channel(channel)
    snapshot, _, _ = await join(carol, channel)
    assert len(snapshot["t"]) == 65

    messages = await c.subscribe_topic("t")
    picked = await c.get_subscribed_users("t")
    assert len(picked) == 64
    assert set(picked) < {uid(p) for p in publishers}
    await refused(
        c.subscribe_topic("t", ["someone-else"]), ErrorCode.CHANNEL_EXCEED_TOPIC_USER_LIMITATION
    )
    assert await c.get_subscribed_users("t") == picked

    left_out = next(p for p in publishers if uid(p) not in picked)
    await left_out.stream_channel(channel).publish_topic("t", "not picked")
    await asyncio.gather(
        *(p.stream_channel(channel).publish_topic("t", uid(p)) for p in publishers)
    )
    got = {(await messages.get(timeout=5)).message for _ in range(64)}
    assert got == set(picked)
    await barrier(c)
    assert len(messages) == 0


# --- channel limits (APP_SMALL: 3 users per channel, 3 channels per client) ----------------------


async def test_a_full_channel_refuses_another_user_until_someone_leaves(users: Users) -> None:
    channel = unique("full")
    members = [await users.login(n, APP_SMALL) for n in ("alice", "bob", "carol")]
    for member in members:
        await join(member, channel)
    dave = await users.login("dave", APP_SMALL)
    d = dave.stream_channel(channel)
    await refused(d.join(), ErrorCode.CHANNEL_JOIN_FAILED)
    assert not d.joined
    await refused(d.join_topic("t"), ErrorCode.CHANNEL_NOT_JOINED)

    await members[0].stream_channel(channel).leave()
    await d.join()
    assert d.joined


async def test_a_client_is_in_at_most_3_channels_of_the_small_app(users: Users) -> None:
    alice = await users.login("alice", APP_SMALL)
    channels = [unique(f"ch{i}-") for i in range(4)]
    for name in channels[:3]:
        await join(alice, name)
    fourth = alice.stream_channel(channels[3])
    await refused(fourth.join(), ErrorCode.CHANNEL_INSTANCE_EXCEED_LIMITATION)
    assert not fourth.joined

    await alice.stream_channel(channels[0]).leave()
    await fourth.join()
    assert fourth.joined
    await refused(
        alice.stream_channel(channels[0]).join(), ErrorCode.CHANNEL_INSTANCE_EXCEED_LIMITATION
    )


async def test_publishing_faster_than_200_messages_a_second_in_a_topic_is_refused(
    users: Users,
) -> None:
    a, b, messages = await publisher_and_subscriber(users, "rate", app_id=APP_A)
    await a.join_topic("other")
    start = time.monotonic()
    results = await asyncio.gather(
        *(a.publish_topic("t", str(i)) for i in range(250)), return_exceptions=True
    )
    elapsed = time.monotonic() - start
    # Another topic has its own budget.
    await a.publish_topic("other", "elsewhere")

    sent = [str(i) for i, r in enumerate(results) if r is None]
    errors = [r for r in results if r is not None]
    assert errors, f"all 250 went through in {elapsed:.2f} s"
    for error in errors:
        assert isinstance(error, rtm2.RTMError)
        assert error.code == ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT
    assert 200 <= len(sent) <= 200 + 200 * elapsed + 2, elapsed
    # Refused messages are not delivered; the accepted ones are, in order.
    assert await payloads(messages, len(sent)) == sent
    await barrier(b)
    assert len(messages) == 0

    await asyncio.sleep(0.2)  # the budget comes back
    await a.publish_topic("t", "later")
    assert await payloads(messages, 1) == ["later"]


# --- preconditions -------------------------------------------------------------------------------


def every_call(ch: rtm2.StreamChannel) -> dict[str, Coroutine[Any, Any, object]]:
    return {
        "leave": ch.leave(),
        "renew_token": ch.renew_token("token"),
        "join_topic": ch.join_topic("t"),
        "leave_topic": ch.leave_topic("t"),
        "publish_topic": ch.publish_topic("t", "x"),
        "subscribe_topic": ch.subscribe_topic("t", ["bob"]),
        "unsubscribe_topic": ch.unsubscribe_topic("t"),
        "get_subscribed_users": ch.get_subscribed_users("t"),
    }


async def test_every_channel_call_before_join_and_after_leave_is_channel_not_joined(
    users: Users,
) -> None:
    channel = unique("notjoined")
    alice = await users.login("alice")
    ch = alice.stream_channel(channel)
    for name, call in every_call(ch).items():
        with pytest.raises(rtm2.RTMError) as info:
            await call
        assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED, name
    await join(alice, channel)
    await ch.join_topic("t")
    await ch.subscribe_topic("t", ["bob"])
    await ch.leave()
    for name, call in every_call(ch).items():
        with pytest.raises(rtm2.RTMError) as info:
            await call
        assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED, name


async def test_every_channel_call_before_login_and_after_logout_is_not_login(
    users: Users,
) -> None:
    channel = unique("nologin")
    alice = client_for(users.server, unique("alice"))
    ch = alice.stream_channel(channel)
    calls = {"join": ch.join(), **every_call(ch)}
    for name, call in calls.items():
        with pytest.raises(rtm2.RTMError) as info:
            await call
        assert info.value.code == ErrorCode.NOT_LOGIN, name

    await alice.login(token_for(uid(alice)))
    await join(alice, channel)
    await alice.logout()
    assert not ch.joined
    calls = {"join": ch.join(stream_token(channel, uid(alice))), **every_call(ch)}
    for name, call in calls.items():
        with pytest.raises(rtm2.RTMError) as info:
            await call
        assert info.value.code == ErrorCode.NOT_LOGIN, name


async def test_joining_twice_is_refused_and_leaves_the_membership_as_it_was(users: Users) -> None:
    a, _, messages = await publisher_and_subscriber(users, "twice")
    await refused(a.join(), ErrorCode.CHANNEL_JOIN_FAILED)
    assert a.joined
    await a.publish_topic("t", "still here")
    assert await payloads(messages, 1) == ["still here"]

    # Two joins at once: one wins, the other is refused.
    bob = await users.login("bob", APP_OPEN)
    ch = bob.stream_channel(unique("race"))
    results = await asyncio.gather(ch.join(), ch.join(), return_exceptions=True)
    assert sum(isinstance(r, rtm2.JoinResult) for r in results) == 1
    errors = [r for r in results if isinstance(r, rtm2.RTMError)]
    assert [e.code for e in errors] == [ErrorCode.CHANNEL_JOIN_FAILED]
    assert ch.joined


async def test_joining_a_topic_twice_is_refused_and_announced_once(users: Users) -> None:
    channel = unique("topic2x")
    alice, bob = await users.login("alice", APP_OPEN), await users.login("bob", APP_OPEN)
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    _, b_events, _ = await join(bob, channel)
    messages = await b.subscribe_topic("t", [uid(alice)])
    await a.join_topic("t")
    await refused(a.join_topic("t"), ErrorCode.CHANNEL_JOIN_TOPIC_FAILED)
    await refused(a.join_topic("t", meta="other"), ErrorCode.CHANNEL_JOIN_TOPIC_FAILED)
    await a.publish_topic("t", "one")
    assert await payloads(messages, 1) == ["one"]
    assert [e.type for e in [await b_events.get(timeout=5) for _ in range(2)]] == [
        Kind.SNAPSHOT,
        Kind.REMOTE_JOIN,
    ]
    assert len(b_events) == 0


async def test_publishing_in_a_topic_not_joined_is_refused(users: Users) -> None:
    channel = unique("notpub")
    alice, bob = await users.login("alice", APP_OPEN), await users.login("bob", APP_OPEN)
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await join(bob, channel)
    await b.join_topic("t")  # somebody else's topic is not ours
    await refused(a.publish_topic("t", "x"), ErrorCode.CHANNEL_TOPIC_NOT_JOINED)
    await refused(a.publish_topic("nowhere", b"x"), ErrorCode.CHANNEL_TOPIC_NOT_JOINED)
    await refused(a.leave_topic("t"), ErrorCode.CHANNEL_TOPIC_NOT_JOINED)


async def test_unsubscribing_or_listing_a_topic_not_subscribed_is_refused(users: Users) -> None:
    channel = unique("notsub")
    alice = await users.login("alice", APP_OPEN)
    a = alice.stream_channel(channel)
    await join(alice, channel)
    await a.subscribe_topic("t", ["bob"])
    for call in (
        a.unsubscribe_topic("u"),
        a.unsubscribe_topic("u", ["bob"]),
        a.get_subscribed_users("u"),
    ):
        await refused(call, ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED)
    assert await a.get_subscribed_users("t") == ["bob"]


# --- the stream-token join policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "code"),
    [
        pytest.param(lambda ch, user: None, ErrorCode.INVALID_TOKEN, id="login-token"),
        pytest.param(lambda ch, user: "", ErrorCode.INVALID_TOKEN, id="empty"),
        pytest.param(
            lambda ch, user: stream_token("elsewhere", user), ErrorCode.INVALID_TOKEN, id="other-ch"
        ),
        pytest.param(
            lambda ch, user: stream_token(ch, "mallory"), ErrorCode.INVALID_TOKEN, id="other-user"
        ),
        pytest.param(
            lambda ch, user: stream_token(ch, user, cert="f" * 32),
            ErrorCode.INVALID_TOKEN,
            id="wrong-cert",
        ),
        pytest.param(
            lambda ch, user: stream_token(ch, user, 60, issued_at=int(time.time()) - 120),
            ErrorCode.TOKEN_EXPIRED,
            id="expired",
        ),
        pytest.param(lambda ch, user: token_for(user), ErrorCode.INVALID_TOKEN, id="rtm-token"),
    ],
)
async def test_the_token_policy_refuses_a_join_without_a_stream_token_for_that_channel_and_user(
    users: Users, token: Callable[[str, str], str | None], code: ErrorCode
) -> None:
    channel = unique("policy")
    alice = await users.login("alice")
    ch = alice.stream_channel(channel)
    await refused(ch.join(token(channel, uid(alice))), code)
    assert not ch.joined
    assert alice.logged_in
    await ch.join(stream_token(channel, uid(alice)))
    assert ch.joined


async def test_a_stream_token_signed_with_the_second_certificate_is_accepted(users: Users) -> None:
    channel = unique("cert2")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    token = stream_token(channel, uid(alice), cert=CERT_A2)
    with pytest.raises(rtm2.RTMError):  # really not signed with the first certificate
        verify_stream_token(
            token, app_id=APP_A, app_certificate=CERT_A, channel=channel, user_id=uid(alice)
        )
    await a.join(token)
    assert a.joined
    # The membership is real: alice publishes in a topic and bob, joined the usual way, gets it.
    await a.join_topic("t")
    snapshot, _, _ = await join(bob, channel)
    assert snapshot == {"t": [uid(alice)]}
    messages = await b.subscribe_topic("t", [uid(alice)])
    await a.publish_topic("t", "signed with the second certificate")
    assert await payloads(messages, 1) == ["signed with the second certificate"]


async def test_a_combined_login_token_lets_join_go_without_a_stream_token(users: Users) -> None:
    channel = unique("combined")
    user = unique("alice")
    combined = build_combined_token(APP_A, CERT_A, channel, user)
    alice = await users.login(user=user, token=combined)
    await alice.stream_channel(channel).join()
    assert alice.stream_channel(channel).joined
    # It carries the join right for its own channel only.
    await refused(alice.stream_channel(unique("other")).join(), ErrorCode.INVALID_TOKEN)


async def test_the_login_policy_lets_any_logged_in_user_join_without_a_stream_token(
    users: Users,
) -> None:
    alice = await users.login("alice", APP_SMALL)
    ch = alice.stream_channel(unique("open"))
    await ch.join()
    assert ch.joined


# --- stream-token expiry (FAST_TIMERS: warned 2 s before, swept every 0.1 s) ---------------------


class Expiring(NamedTuple):
    bob: rtm2.RTMClient
    b: rtm2.StreamChannel  # bob's channel, joined with a 3-second stream token
    joined: rtm2.JoinResult  # what bob's join returned
    a: rtm2.StreamChannel  # alice's channel, joined with a long token
    alice_events: rtm2.EventStream[rtm2.TopicEvent]
    expires_at: int  # when bob's token expires (Unix seconds)


async def expiring_member(users: Users, prefix: str) -> Expiring:
    """Alice and bob publish in topic "t"; bob's stream token lasts 3 seconds."""
    channel = unique(prefix)
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    _, alice_events, _ = await join(alice, channel)
    assert (await alice_events.get(timeout=5)).type is Kind.SNAPSHOT
    await a.join_topic("t")
    issued_at = int(time.time())
    joined = await b.join(stream_token(channel, uid(bob), 3, issued_at=issued_at))
    await b.join_topic("t")
    event = await alice_events.get(timeout=5)
    assert (event.type, event.user_id) == (Kind.REMOTE_JOIN, uid(bob))
    return Expiring(bob, b, joined, a, alice_events, issued_at + 3)


async def test_a_stream_token_about_to_expire_is_announced_and_can_be_renewed(
    users: Users,
) -> None:
    x = await expiring_member(users, "renew")
    messages = await x.b.subscribe_topic("t")  # alice
    assert await x.joined.token_events.get(timeout=5) == x.b.channel_name
    assert time.time() < x.expires_at
    await x.b.renew_token(stream_token(x.b.channel_name, uid(x.bob)))

    await asyncio.sleep(max(0.0, x.expires_at + 1 - time.time()))  # well past the first expiry
    assert x.b.joined
    await x.a.publish_topic("t", "still subscribed")
    assert await payloads(messages, 1) == ["still subscribed"]
    assert [e.state for e in drain(users.conn_events(x.bob))] == [
        State.CONNECTING,
        State.CONNECTED,
        State.CONNECTED,  # JOIN_SUCCESS, and nothing after it
    ]
    assert len(x.alice_events) == 0


async def test_renewing_a_stream_token_with_a_token_for_another_channel_is_refused(
    users: Users,
) -> None:
    x = await expiring_member(users, "badrenew")
    await refused(x.b.renew_token(stream_token("elsewhere", uid(x.bob))), ErrorCode.INVALID_TOKEN)
    assert x.b.joined


async def test_an_expired_stream_token_removes_the_member_from_that_channel_only(
    users: Users,
) -> None:
    x = await expiring_member(users, "expire")
    _, topic_events, token_events = x.joined
    messages = await x.b.subscribe_topic("t")  # alice
    conn = users.conn_events(x.bob)
    assert await token_events.get(timeout=5) == x.b.channel_name

    async with asyncio.timeout(x.expires_at + 3 - time.time()):
        events = [await conn.get() for _ in range(4)]
    assert time.time() >= x.expires_at - 0.1
    assert events == [
        rtm2.ConnectionEvent(State.CONNECTING, Reason.CONNECTING, ""),
        rtm2.ConnectionEvent(State.CONNECTED, Reason.LOGIN_SUCCESS, ""),
        rtm2.ConnectionEvent(State.CONNECTED, Reason.JOIN_SUCCESS, x.b.channel_name),
        rtm2.ConnectionEvent(State.FAILED, Reason.TOKEN_EXPIRED, x.b.channel_name),
    ]
    assert not x.b.joined
    assert x.bob.logged_in
    assert await collect(messages) == []
    assert [e.type for e in await collect(topic_events)] == [Kind.SNAPSHOT]
    assert await collect(token_events) == []
    await refused(x.b.publish_topic("t", "x"), ErrorCode.CHANNEL_NOT_JOINED)
    event = await x.alice_events.get(timeout=5)
    assert (event.type, event.user_id, event.topic) == (Kind.REMOTE_LEAVE, uid(x.bob), "t")

    # The login is untouched: bob can come back with a fresh token.
    await x.b.join(stream_token(x.b.channel_name, uid(x.bob)))
    messages = await x.b.subscribe_topic("t")
    await x.a.publish_topic("t", "welcome back")
    assert await payloads(messages, 1) == ["welcome back"]


def drain(stream: rtm2.EventStream[Any]) -> list[Any]:
    items = []
    while (item := stream.get_nowait()) is not None:
        items.append(item)
    return items


async def collect(stream: rtm2.EventStream[Any]) -> list[Any]:
    async with asyncio.timeout(5):
        return [item async for item in stream]
