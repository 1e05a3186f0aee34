"""The caps on connections and the checks of upgrade requests, as plain bookkeeping."""

from __future__ import annotations

from http import HTTPStatus

from rtm2.server.admission import Admission


def test_each_cap_refuses_the_connection_past_it_and_counts_nothing() -> None:
    gate = Admission(max_connections=4, max_per_ip=2, max_pending=3, max_pending_per_ip=2)
    assert gate.admit("a") is None
    assert gate.admit("a") is None
    assert gate.admit("a") == "too many connections from this address"
    assert gate.admit("b") is None
    assert gate.admit("c") == "too many connections logging in"
    gate.logged_in("a")
    gate.logged_in("a")
    assert gate.admit("c") is None
    assert gate.admit("d") == "too many connections"
    assert (gate.open, gate.pending) == (4, 2)


def test_a_connection_that_ends_frees_its_places() -> None:
    gate = Admission(max_connections=1, max_per_ip=1, max_pending=1, max_pending_per_ip=1)
    assert gate.admit("a") is None
    gate.release("a", pending=True)
    assert gate.admit("a") is None
    gate.logged_in("a")
    gate.release("a", pending=False)
    assert (gate.open, gate.pending) == (0, 0)
    assert gate.admit("b") is None


def test_pending_connections_per_address_have_their_own_cap() -> None:
    gate = Admission(max_connections=9, max_per_ip=9, max_pending=9, max_pending_per_ip=1)
    assert gate.admit("a") is None
    assert gate.admit("a") == "too many connections logging in from this address"
    assert gate.admit("b") is None


def test_only_the_root_path_is_upgraded() -> None:
    gate = Admission(1, 1, 1, 1)
    assert gate.check_request(b"/", None) is None
    assert gate.check_request(b"/?v=1", None) is None
    assert gate.check_request(b"/ws", None) == (
        HTTPStatus.NOT_FOUND,
        "rtm2 serves WebSocket on / only",
    )


def test_the_origin_allow_list_applies_to_browsers_only_and_ignores_case_and_slash() -> None:
    gate = Admission(1, 1, 1, 1, allowed_origins=["https://App.example/"])
    assert gate.check_request(b"/", "https://app.example") is None
    assert gate.check_request(b"/", None) is None
    assert gate.check_request(b"/", "https://evil.example") == (
        HTTPStatus.FORBIDDEN,
        "origin not allowed",
    )
    assert Admission(1, 1, 1, 1).check_request(b"/", "https://any.example") is None
