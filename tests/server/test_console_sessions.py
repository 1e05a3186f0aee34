"""The console's server-side sessions (issue 18): expiry, the cap, and the CSRF check."""

from __future__ import annotations

from rtm2.server.http.console.sessions import ConsoleSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_while_used_and_ends_after_its_idle_time() -> None:
    clock = Clock()
    sessions = ConsoleSessions(idle=60, lifetime=3600, clock=clock)
    token, session = sessions.open("*")
    clock.now += 50
    assert sessions.get(token) is session
    clock.now += 50  # 100 s after the start, 50 s after its last use
    assert sessions.get(token) is session
    clock.now += 61
    assert sessions.get(token) is None
    assert len(sessions) == 0


def test_a_session_ends_at_its_lifetime_however_often_it_is_used() -> None:
    clock = Clock()
    sessions = ConsoleSessions(idle=60, lifetime=100, clock=clock)
    token, _ = sessions.open("app")
    for _ in range(3):
        clock.now += 30
        assert sessions.get(token) is not None
    clock.now += 15
    assert sessions.get(token) is None


def test_unknown_empty_and_closed_tokens_open_nothing() -> None:
    sessions = ConsoleSessions()
    token, _ = sessions.open("*")
    assert sessions.get("") is None
    assert sessions.get(token + "x") is None
    sessions.close(token)
    assert sessions.get(token) is None


def test_past_the_cap_the_oldest_session_goes() -> None:
    sessions = ConsoleSessions(limit=2)
    first, _ = sessions.open("*")
    second, _ = sessions.open("*")
    third, _ = sessions.open("*")
    assert sessions.get(first) is None
    assert sessions.get(second) is not None
    assert sessions.get(third) is not None


def test_writes_need_the_sessions_csrf_token_and_reads_do_not() -> None:
    sessions = ConsoleSessions()
    _, session = sessions.open("*")
    for method in ("GET", "HEAD", "OPTIONS"):
        assert sessions.csrf_ok(session, method, "")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert not sessions.csrf_ok(session, method, "")
        assert not sessions.csrf_ok(session, method, session.csrf[:-1])
        assert sessions.csrf_ok(session, method, session.csrf)
    _, other = sessions.open("*")
    assert not sessions.csrf_ok(session, "POST", other.csrf)
