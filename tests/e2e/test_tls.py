"""TLS built in: ``rtm2 serve --tls-cert/--tls-key`` serves wss://, and the SDK verifies it.

Every certificate here comes from a throwaway CA made by the test (trustme); nothing touches
the system's trust store.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import rtm2
from rtm2 import ErrorCode

from ..conftest import APP_A, ServerProcess
from .util import client_for, token_for, unique


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(workdir / "cert.pem"), append=True)
    srv = ServerProcess(
        workdir,
        server={
            "tls_cert": json.dumps(str(workdir / "cert.pem")),
            "tls_key": json.dumps(str(workdir / "key.pem")),
        },
    ).start()
    yield srv
    srv.stop()


async def test_a_server_with_a_certificate_serves_wss(tls_server: ServerProcess) -> None:
    assert tls_server.url.startswith("wss://127.0.0.1:")


async def test_clients_trusting_the_ca_log_in_and_exchange_messages_over_wss(
    tls_server: ServerProcess, ca_file: Path
) -> None:
    alice = client_for(tls_server, unique("alice"), tls_ca_file=str(ca_file))
    context = ssl.create_default_context(cafile=str(ca_file))
    bob = client_for(tls_server, unique("bob"), ssl_context=context)
    channel = unique("tls")
    try:
        await alice.login(token_for(alice.config.user_id))
        await bob.login(token_for(bob.config.user_id))
        stream = await bob.subscribe(channel)
        await alice.publish(channel, "over tls")
        message = await stream.get(timeout=5)
        assert (message.user_id, message.message) == (alice.config.user_id, "over tls")
    finally:
        await alice.logout()
        await bob.logout()


async def test_a_certificate_from_an_unknown_ca_is_refused_with_a_clear_error(
    tls_server: ServerProcess, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    # Another CA, and the system's CAs (the default): neither signed the server's certificate.
    for config in ({"tls_ca_file": str(other)}, {}):
        user = unique("mallory")
        client = client_for(tls_server, user, auto_reconnect=False, **config)
        with pytest.raises(rtm2.RTMError) as info:
            await client.login(token_for(user))
        assert info.value.code == ErrorCode.NOT_CONNECTED
        assert "certificate" in info.value.reason
        assert "not trusted" in info.value.reason
        await client.logout()


async def test_plain_ws_still_works_without_any_tls_setting(server: ServerProcess) -> None:
    assert server.url.startswith("ws://")
    user = unique("plain")
    client = client_for(server, user)
    await client.login(token_for(user))
    await client.logout()


def test_serve_takes_the_certificate_and_key_as_flags(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rtm2", "serve", "--port", "0", "--app", APP_A),
            *("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert "serving on wss://127.0.0.1:" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tls-cert", "cert.pem"], "tls_cert and tls_key go together"),
        (["--tls-cert", "missing.pem", "--tls-key", "missing.key"], "cannot load the TLS"),
    ],
)
def test_serve_with_half_or_missing_tls_files_is_a_usage_error(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rtm2", "serve", "--port", "0", "--app", APP_A, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert out.returncode == 2
    assert expected in out.stderr


def test_serve_help_explains_the_tls_and_access_key_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rtm2", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    for option in ("--tls-cert", "--tls-key", "--access-key", "RTM2_ACCESS_KEY"):
        assert option in out.stdout
