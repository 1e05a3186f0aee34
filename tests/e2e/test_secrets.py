"""Secrets stay secret: the sidecar's certificate and key are not on its command line, the SDK
uses no listener it did not start, the sidecar lets in only the client that started it, data
files are the owner's only, and Redis passwords (of ACL users too) never reach a log."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import websockets

import rtm2
from rtm2 import ErrorCode
from rtm2.client import sidecar

from ..conftest import APP_A, CERT_A, ServerProcess, free_port
from .util import client_for, token_for, unique


def sidecar_client(port: int, user: str, **params: object) -> rtm2.RTMClient:
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP_A, user_id=user, auto_reconnect=False))
    client.set_parameters({rtm2.PARAM_SIDECAR_PORT: port, **params})
    return client


def _cmdline(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


async def test_the_sidecar_gets_its_certificate_and_key_in_its_environment_not_in_argv() -> None:
    port = free_port()
    user = unique("quiet")
    client = sidecar_client(port, user, **{rtm2.PARAM_SIDECAR_CERTIFICATE: CERT_A})
    try:
        await client.login(token_for(user))  # signed with CERT_A: the sidecar checks it
        proc = client._sidecar._proc
        assert proc is not None
        # What `ps` or any local user sees.
        argv = _cmdline(proc.pid)
        assert APP_A.encode() in argv
        assert not [arg for arg in argv if CERT_A.encode() in arg]
        assert not [arg for arg in argv if sidecar._launched[port].encode() in arg]
    finally:
        await client.logout()


async def test_a_listener_the_sdk_did_not_start_is_never_used_as_its_sidecar() -> None:
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        impostor.setblocking(False)
        port = impostor.getsockname()[1]
        user = unique("wary")
        client = sidecar_client(port, user)
        with pytest.raises(rtm2.RTMError) as info:
            await client.login(token_for(user))
        await client.logout()
        assert info.value.code == ErrorCode.INIT_SERVICE_FAILED
        assert f"is port {port} free" in info.value.reason
        # Not even a probe: the impostor never saw a connection, let alone a token.
        with pytest.raises(BlockingIOError):
            impostor.accept()


async def test_the_sidecar_lets_in_only_clients_of_the_process_that_started_it() -> None:
    port = free_port()
    first = sidecar_client(port, unique("owner"))
    second = sidecar_client(port, unique("sibling"))
    try:
        await first.login("")
        await second.login("")  # same process: shares the sidecar, key included
        assert not second._sidecar.started
        # Anyone else on the machine: refused at the upgrade, before any session exists.
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"ws://127.0.0.1:{port}")
        assert info.value.response.status_code == 403
    finally:
        await second.logout()
        await first.logout()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_directory_and_its_database_are_private_to_the_owner(
    tmp_path: Path,
) -> None:
    srv = ServerProcess(tmp_path).start()  # creates tmp_path/data for rtm2.db
    try:
        user = unique("owner")
        client = client_for(srv, user)
        await client.login(token_for(user))
        await client.storage.set_user_metadata(user, [rtm2.MetadataItem("k", "v")])  # durable
        await client.logout()
        data = tmp_path / "data"
        assert _mode(data) == 0o700
        for db_file in data.glob("rtm2.db*"):  # the database, its -wal and -shm
            assert _mode(db_file) == 0o600, db_file.name
        assert (data / "rtm2.db").exists()
    finally:
        srv.stop()


def test_the_development_apps_directory_is_private_to_the_owner(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtm2", "serve", "--port", "0", "--data-dir", "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert "serving on" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    assert _mode(tmp_path / "dev") == 0o700
    assert _mode(tmp_path / "dev" / "dev-app.json") == 0o600


def _redis_cli(*args: str) -> str:
    out = subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.redis
async def test_a_redis_acl_user_logs_in_and_its_password_is_never_logged(tmp_path: Path) -> None:
    name = f"rtm2test-{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    assert _redis_cli("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all") == "OK"
    srv = ServerProcess(
        tmp_path,
        server={
            "engine": json.dumps(f"redis://{name}:{password}@127.0.0.1:6379/0?prefix={prefix}")
        },
    )
    try:
        srv.start()
        alice, bob = client_for(srv, unique("alice")), client_for(srv, unique("bob"))
        for client in (alice, bob):
            await client.login(token_for(client.config.user_id))
        channel = unique("acl")
        inbox = await bob.subscribe(channel)
        await alice.publish(channel, "through an ACL user")
        assert (await inbox.get(timeout=5)).message == "through an ACL user"
        for client in (alice, bob):
            await client.logout()
        # The server really is that user (not the default one).
        clients = _redis_cli("CLIENT", "LIST")
        assert f"user={name}" in clients
        assert f"{name}:***@127.0.0.1:6379" in srv.banner
        assert f"{name}:***@127.0.0.1:6379" in srv.log()
        assert password not in srv.banner
        assert password not in srv.log()
    finally:
        srv.stop()
        _redis_cli("ACL", "DELUSER", name)
        keys = _redis_cli("--scan", "--pattern", f"{prefix}*").split()
        if keys:
            _redis_cli("DEL", *keys)


@pytest.mark.redis
def test_a_wrong_redis_password_stops_the_server_with_a_message_that_does_not_show_it(
    tmp_path: Path,
) -> None:
    name, password = f"rtm2test-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    out = subprocess.run(
        [sys.executable, "-m", "rtm2", "serve", "--port", "0", "--app", APP_A],
        env={**os.environ, "RTM2_SERVE_ENGINE": f"redis://{name}:{password}@127.0.0.1:6379/0"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert out.returncode == 1
    assert "the engine did not start" in out.stderr
    assert "WRONGPASS" in out.stderr
    assert "Traceback" not in out.stderr
    assert password not in out.stderr + out.stdout
