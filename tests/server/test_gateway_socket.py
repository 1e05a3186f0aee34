"""Accepted sockets let the kernel find dead peers too."""

from __future__ import annotations

import socket
import sys

import pytest

from rtm2.server.gateway import _tune_socket


def test_keepalive_is_on_for_accepted_sockets() -> None:
    with socket.socket() as sock:
        _tune_socket(sock, 15.0)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_USER_TIMEOUT is Linux's")
def test_unacknowledged_data_drops_the_socket_after_keepalive_time_on_linux() -> None:
    with socket.socket() as sock:
        _tune_socket(sock, 15.0)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 15_000
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
