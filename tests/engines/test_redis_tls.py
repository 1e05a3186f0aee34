"""rediss://: the Redis client over TLS, against a throwaway ``redis-server --tls-port`` whose
certificate a test CA (trustme) signed."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from rtm2.server.redisio import RedisClient, RedisError

from ..conftest import free_port

pytestmark = pytest.mark.redis

PASSWORD = "tls-test-password"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_redis(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The TLS port of a redis-server of the module's own (no plain port)."""
    workdir = tmp_path_factory.mktemp("redis-tls")
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    port = free_port()
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(workdir / "cert.pem")),
            *("--tls-key-file", str(workdir / "key.pem")),
            *("--tls-ca-cert-file", str(workdir / "ca.pem")),
            *("--tls-auth-clients", "no", "--requirepass", PASSWORD),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server --tls-port did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def trust(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the test CA the way an operator would: SSL_CERT_FILE."""
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))


@pytest.mark.usefixtures("trust")
async def test_rediss_connects_over_tls_and_authenticates(tls_redis: int) -> None:
    client = RedisClient(f"rediss://:{PASSWORD}@127.0.0.1:{tls_redis}/0")
    await client.connect()
    try:
        assert await client.send("PING") == b"PONG"
    finally:
        await client.close()


async def test_rediss_refuses_a_certificate_it_does_not_trust(tls_redis: int) -> None:
    client = RedisClient(f"rediss://:{PASSWORD}@127.0.0.1:{tls_redis}/0")
    with pytest.raises(RedisError, match="cannot reach Redis"):
        await client.connect()
    await client.close()
