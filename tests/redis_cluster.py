"""A throwaway 3-master Redis Cluster of local ``redis-server`` processes, for tests.

``LocalCluster(workdir).start()`` picks free ports on 127.0.0.1 (each node's cluster bus port,
port + 10000, must be free too), starts the nodes, joins them with ``redis-cli --cluster
create`` and waits (bounded) for ``cluster_state:ok``. ``stop()`` kills every node; it runs
on any failure during ``start()`` as well, so no ``redis-server`` is ever left behind.
``local_cluster(workdir)`` is the same as a context manager, for pytest fixtures.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ClusterUnavailable", "LocalCluster", "local_cluster"]

_BUS_OFFSET = 10000


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started; the message holds the commands' output."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20000, 55000 - _BUS_OFFSET)
        if port in ports or port + _BUS_OFFSET in ports:
            continue
        if _port_free(port) and _port_free(port + _BUS_OFFSET):
            ports.append(port)
    return ports


class LocalCluster:
    """Three cluster-enabled masters on 127.0.0.1, no replicas, no persistence."""

    def __init__(self, workdir: Path, masters: int = 3, timeout: float = 30.0) -> None:
        self.workdir = Path(workdir)
        self.count = masters
        self.timeout = timeout
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def cli(self, port: int, *args: str, timeout: float = 10.0) -> str:
        """``redis-cli -p port args...``'s output (raises on a non-zero exit)."""
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def start(self) -> LocalCluster:
        started = time.monotonic()
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise ClusterUnavailable("redis-server or redis-cli is not on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)  # even if the test run never reaches stop()
        try:
            self._start_nodes()
            self._create()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _start_nodes(self) -> None:
        self.ports = _free_ports(self.count)
        for port in self.ports:
            log = (self.workdir / f"redis-{port}.log").open("ab")
            conf = str(self.workdir / f"nodes-{port}.conf")
            argv = ["redis-server", "--port", str(port), "--cluster-enabled", "yes"]
            argv += ["--cluster-config-file", conf, "--cluster-node-timeout", "2000"]
            argv += ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
            argv += ["--dir", str(self.workdir)]
            self.procs.append(
                subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            )
            log.close()
        deadline = time.monotonic() + self.timeout
        for port, proc in zip(self.ports, self.procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise ClusterUnavailable(
                        f"redis-server on port {port} exited ({proc.returncode}):\n"
                        + self._log(port)
                    )
                with contextlib.suppress(subprocess.SubprocessError):
                    if self.cli(port, "PING", timeout=2).strip() == "PONG":
                        break
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(
                        f"redis-server on port {port} did not answer:\n{self._log(port)}"
                    )
                time.sleep(0.05)

    def _create(self) -> None:
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=self.timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise ClusterUnavailable(
                f"redis-cli --cluster create failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.timeout
        info = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError):
                # Every node must agree, or a client's first CLUSTER SLOTS may be partial.
                infos = [self.cli(p, "CLUSTER", "INFO", timeout=2) for p in self.ports]
                info = infos[0]
                if all("cluster_state:ok" in i for i in infos):
                    return
            time.sleep(0.05)
        raise ClusterUnavailable(f"cluster_state never became ok:\n{info}")

    def owner_of(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        for line in self.cli(self.ports[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                start, _, end = part.partition("-")
                if start.isdigit() and int(start) <= slot <= int(end or start):
                    return port
        raise ClusterUnavailable(f"nobody serves slot {slot}")

    def migrate_slot(self, slot: int, target: int) -> None:
        """Move ``slot`` with its keys to the master on port ``target``, as a resharding does
        (IMPORTING/MIGRATING, MIGRATE the keys, then SETSLOT NODE everywhere)."""
        source = self.owner_of(slot)
        if source == target:
            return
        target_id = self.begin_migration(slot, target)
        while keys := self.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
            self.cli(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
        for port in (target, source, *self.ports):
            self.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)

    def begin_migration(self, slot: int, target: int) -> str:
        """Mark ``slot`` as moving from its owner to the master on port ``target`` (IMPORTING
        there, MIGRATING on the owner), no key moved yet; the target's node id."""
        source = self.owner_of(slot)
        source_id = self.cli(source, "CLUSTER", "MYID").strip()
        target_id = self.cli(target, "CLUSTER", "MYID").strip()
        self.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        self.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        return target_id

    def move_key(self, source: int, target: int, key: str) -> None:
        self.cli(source, "MIGRATE", "127.0.0.1", str(target), key, "0", "5000")

    def end_migration(self, slot: int, target_id: str) -> None:
        """Tell every master that the node ``target_id`` owns ``slot`` now."""
        for port in self.ports:
            self.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)

    def _log(self, port: int) -> str:
        path = self.workdir / f"redis-{port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Kill every node and wait for it (idempotent)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs = []
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_cluster(workdir: Path, masters: int = 3) -> Iterator[LocalCluster]:
    """A started ``LocalCluster``, stopped on exit whatever happens."""
    cluster = LocalCluster(workdir, masters)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
