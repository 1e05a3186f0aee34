"""Shared fixtures: real ``rtm2 serve`` processes on free ports, and apps to log into; and the
test layers (unit, e2e, redis, cluster), given to every test at collection."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_cluster import LocalCluster, local_cluster

E2E_DIR = Path(__file__).parent / "e2e"

# Every `rtm2 serve` the tests start has no HTTP API unless it asks for one (ServerProcess's
# http=True): otherwise each would take the default port 7002, and two at once would clash.
os.environ.setdefault("RTM2_SERVE_HTTP", "false")
# The tests run the pure-Python modules (and so do the servers they start), even with a
# `make compile` build in the checkout: `make compile-test` sets RTM2_COMPILED=1 to run some
# of them on the build.
os.environ.setdefault("RTM2_COMPILED", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test its layer: ``e2e`` under tests/e2e, ``cluster`` (and so ``redis``) where
    it uses the local Redis Cluster, and ``unit`` where it is neither e2e nor marked ``redis``.
    Redis tests outside tests/e2e are their own layer: they need a Redis but no ``rtm2 serve``."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()) or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.redis)
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
        elif item.get_closest_marker("redis") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``unit`` test that opens a network connection, listens, or starts a process fails: the
    layer promises ``make test-fast`` needs no server and no Redis. (An event loop's own
    socketpair is fine: it neither connects nor binds.)"""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what: str) -> object:
        def refused(*args: object, **kwargs: object) -> None:
            raise AssertionError(
                f"{request.node.nodeid} is a unit test but {what}: mark it redis, or move it "
                "to tests/e2e"
            )

        return refused

    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, refuse(f"called socket.{method}"))
    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("started a subprocess"))


# Two apps with certificates (tokens required), one without.
APP_A = "970CA35de60c44645bbae8a215061b33"
CERT_A = "5CFd2fd1755d40ecb72977518be15d3b"
CERT_A2 = "0123456789abcdef0123456789abcdef"
APP_B = "b" * 32
CERT_B = "c" * 32
APP_OPEN = "d" * 32
# "login" join policy and small limits, for limit tests; no rate limit to speak of.
APP_SMALL = "a1" * 16
CERT_SMALL = "e" * 32
# No certificate, "login" join policy, and a recovery buffer of only 3 messages.
APP_TINY = "a3" * 16

# HTTP API keys (docs/API.md): app A's in the clear, app B's as its SHA-256 in the config.
API_KEY_A = "key-of-app-a"
API_KEY_B = "key-of-app-b"
API_KEY_B_HASH = "sha256:" + hashlib.sha256(API_KEY_B.encode()).hexdigest()

# The suite's lock tests were written for RTM 2's rule (anyone logged in may set, remove and
# revoke); the stricter default is tested on apps of its own (tests/e2e/test_lock_policy.py).
LOCKS_BY_ANYONE = 'lock_admin = "anyone"'

# Timers shrunk so expiry and keepalive tests take seconds.
FAST_TIMERS = {
    "heartbeat_interval": 0.5,
    "heartbeat_grace": 1.0,
    "token_warning": 2.0,
    "login_timeout": 3.0,
    "sweep_interval": 0.1,
    "presence_debounce": 0.5,
    "presence_interval": 1.0,
}


class ServerProcess:
    """A real ``rtm2 serve`` subprocess, listening on a free port on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        timers: dict[str, float] | None = None,
        port: int = 0,
        server: dict[str, int | str] | None = None,  # values as TOML: strings quoted
        http: bool = False,  # serve the HTTP API too, on a free port (then http_url)
    ) -> None:
        self.workdir = workdir
        self.timers = FAST_TIMERS | (timers or {})
        self.port = port  # 0: any free port (a restart then gets another one)
        self.server_options = server or {}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.banner = ""  # the "serving on" line
        self.http = http
        self.http_url = ""
        self.log_path = workdir / "server.log"

    def write_config(self) -> Path:
        lines = ["[server]"]
        lines += [f"{k} = {v}" for k, v in self.server_options.items()]
        lines += ["[timers]"]
        lines += [f"{k} = {v}" for k, v in self.timers.items()]
        lines += [
            "[[apps]]",
            f'id = "{APP_A}"',
            f'certificates = ["{CERT_A}", "{CERT_A2}"]',
            f'api_keys = ["{API_KEY_A}"]',
            LOCKS_BY_ANYONE,
            "[[apps]]",
            f'id = "{APP_B}"',
            f'certificates = ["{CERT_B}"]',
            f'api_keys = ["{API_KEY_B_HASH}"]',
            LOCKS_BY_ANYONE,
            "[[apps]]",
            f'id = "{APP_OPEN}"',
            LOCKS_BY_ANYONE,
            "[[apps]]",
            f'id = "{APP_SMALL}"',
            f'certificates = ["{CERT_SMALL}"]',
            'stream_join_policy = "login"',
            LOCKS_BY_ANYONE,
            "[apps.limits]",
            "channel_users = 3",
            "stream_channels = 3",
            "topic_message_rate = 1000000",
            "message_rate = 1000000",
            "presence_interval_threshold = 8",
            "[[apps]]",
            f'id = "{APP_TINY}"',
            'stream_join_policy = "login"',
            LOCKS_BY_ANYONE,
            "[apps.limits]",
            "recovery_messages = 3",
        ]
        path = self.workdir / "rtm2.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> ServerProcess:
        config = self.write_config()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtm2",
                "serve",
                "--port",
                str(self.port),
                "--config",
                str(config),
                "--data-dir",
                str(self.workdir / "data"),
                *(["--http", "--http-port", "0"] if self.http else []),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("a"),
            text=True,
            cwd=self.workdir,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = re.search(r"serving on (wss?://\S+)", line)
            if match:
                self.url = match.group(1)
                self.banner = line
                if not self.http:
                    return self
            http = re.search(r"HTTP API on (http://\S+)", line)
            if http:
                self.http_url = http.group(1)
                return self
        self.stop()
        raise RuntimeError(f"rtm2 serve did not start:\n{self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 10) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def admin_key(self) -> str:
        """The server-wide HTTP API key it generated into its data dir."""
        return (self.workdir / "data" / "admin-key").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a test module (tests must not stop or pause it)."""
    srv = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for servers that must come back on the same one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, which it may pause, signal or kill."""
    srv = ServerProcess(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local 3-master Redis Cluster (tests/redis_cluster.py) for every test that asks for one,
    started once per pytest process (with pytest-xdist, once per worker): starting one costs
    seconds. Tests share it the way they share the Redis on port 6379, each under a key prefix
    of its own. A test may move a slot to another master, as a resharding does, but must leave
    every slot served; a module that needs a cluster to itself defines its own ``cluster``."""
    with local_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running
