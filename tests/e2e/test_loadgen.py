"""The Go load generator of ``rtm2 bench peers`` (bench/loadgen) against a real ``rtm2 serve``:
it builds once per version of its sources, and measures paced and windowed runs with every
delivery counted, nothing lost and percentiles that make sense."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from rtm2.cli import loadgen
from rtm2.cli import peers as p
from rtm2.cli.bench import BENCH_APP
from rtm2.protocol.frames import WhoNow, WhoNowResult

from .util import unique

# The first `go build` on a machine compiles the standard library too (~30 s on 2 loaded
# cores); after that it is cached and this file takes seconds.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def load() -> loadgen.GoLoad:
    go, src = loadgen.find_go(), loadgen.sources()
    assert go is not None, "these tests need Go (https://go.dev/dl/, or /usr/local/go/bin/go)"
    assert src is not None
    return loadgen.build(go, src)


@pytest.fixture(scope="module")
def rtm2_server() -> Iterator[p.Server]:
    with p.servers(("rtm2",), None) as started:
        yield started["rtm2"]


def test_the_generator_is_rebuilt_when_its_sources_change_and_only_then(tmp_path: Path) -> None:
    go, src = loadgen.find_go(), loadgen.sources()
    assert go is not None
    assert src is not None
    copy = tmp_path / "loadgen"
    shutil.copytree(src, copy)
    cache = tmp_path / "cache"
    builds: list[int] = []
    first = loadgen.build(go, copy, cache, on_build=lambda: builds.append(1))
    built_at = first.binary.stat().st_mtime_ns
    again = loadgen.build(go, copy, cache, on_build=lambda: builds.append(2))
    assert again.binary == first.binary
    assert again.binary.stat().st_mtime_ns == built_at
    with (copy / "main.go").open("a") as f:
        f.write("\n// changed\n")
    changed = loadgen.build(go, copy, cache, on_build=lambda: builds.append(3))
    assert builds == [1, 3]
    assert changed.binary != first.binary
    assert changed.binary.exists()
    assert sorted(x.name for x in cache.iterdir()) == sorted(
        [first.binary.name, changed.binary.name]
    )


def test_the_generators_go_tests_pass() -> None:
    """Its parsers at every split of a frame (encoded as rtm2 serve encodes them), its
    quantiles against Python's, its patching of the publish template."""
    go, src = loadgen.find_go(), loadgen.sources()
    assert go is not None
    out = subprocess.run(
        [go, "test", "."], cwd=src, capture_output=True, text=True, env=loadgen.env(), timeout=250
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_test_file_does_not_make_a_new_binary(tmp_path: Path) -> None:
    go, src = loadgen.find_go(), loadgen.sources()
    assert go is not None
    assert src is not None
    copy = tmp_path / "loadgen"
    shutil.copytree(src, copy)
    first = loadgen.build(go, copy, tmp_path / "cache")
    (copy / "extra_test.go").write_text("package main\n")
    assert loadgen.build(go, copy, tmp_path / "cache").binary == first.binary


def test_a_broken_source_is_a_clear_build_error(tmp_path: Path) -> None:
    go, src = loadgen.find_go(), loadgen.sources()
    assert go is not None
    assert src is not None
    copy = tmp_path / "loadgen"
    shutil.copytree(src, copy)
    (copy / "broken.go").write_text("package main\n\nfunc broken() { undefined() }\n")
    with pytest.raises(RuntimeError, match=r"(?s)go build of .* failed:.*undefined"):
        loadgen.build(go, copy, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


async def _present(server: p.Server) -> int:
    """How many users are in the bench channel, as a newcomer asks rtm2."""
    client = await p.RTM2Client.open(server.port, unique("who"), BENCH_APP)
    try:
        reply = await client.request(WhoNow(4, p.CHANNEL, 1))
        result = msgspec.convert(reply[4], WhoNowResult)
        return int(result.total)
    finally:
        await p._close(client, [])


async def _present_after_debounce(server: p.Server) -> int:
    """Users in the bench channel once those who left are gone (the debounce is 2 s)."""
    for _ in range(75):  # up to 15 s
        present = await _present(server)
        if present == 0:
            break
        await asyncio.sleep(0.2)
    return present


async def test_both_loads_log_their_rtm2_clients_out_so_no_session_outlives_its_step(
    load: loadgen.GoLoad, rtm2_server: p.Server
) -> None:
    assert await _present(rtm2_server) == 0  # first in this file: a fresh server
    r = await p.go_measure(load, rtm2_server, "throughput", 5, 0.2, BENCH_APP, unique("bye"))
    assert r.lost == 0
    r = await p.throughput(rtm2_server, 5, 0.2, BENCH_APP, unique("bye"))
    assert r.lost == 0
    # Closed without a logout, the ten would stay present (and subscribed) for 300 s.
    assert await _present_after_debounce(rtm2_server) == 0


async def test_a_paced_run_against_rtm2_counts_every_delivery_with_nothing_lost(
    load: loadgen.GoLoad, rtm2_server: p.Server
) -> None:
    n, rate, seconds = 10, 500.0, 2.0
    r = await p.go_measure(
        load, rtm2_server, "latency", n, seconds, BENCH_APP, unique("lat"), rate=rate
    )
    d = r.detail
    messages = int(rate * seconds)
    assert (r.system, r.subscribers, r.messages) == ("rtm2", n, messages)
    assert (r.lost, r.reordered, r.errors, d["timed_out"]) == (0, 0, 0, False)
    assert d["deliveries"] == d["samples"] == messages * n
    assert d["deliveries_min_max"] == {"min": messages, "max": messages}
    assert d["acks"] == messages  # every publish acknowledged by the server
    assert sum(b["count"] for b in d["histogram"]) == messages * n
    # Percentiles in order, each a real latency: above zero, below the run's length.
    assert 0 < d["p50_ms"] <= d["p90_ms"] <= d["p99_ms"] <= d["p999_ms"] <= d["max_ms"]
    assert d["max_ms"] < seconds * 1000
    assert d["slowest"][0]["latency_ms"] == d["max_ms"]
    assert r.extra["load_cpu"] > 0
    assert 0 <= r.extra["load_cpu_kernel"] <= r.extra["load_cpu"]
    assert r.cpu_us_per_delivery > 0
    assert d["published_per_s"] > rate / 2


async def test_a_windowed_run_against_rtm2_measures_throughput_with_nothing_lost(
    load: loadgen.GoLoad, rtm2_server: p.Server
) -> None:
    r = await p.go_measure(load, rtm2_server, "throughput", 10, 1.0, BENCH_APP, unique("tp"))
    d = r.detail
    # At least the two windows sent before the first wait, then whole windows.
    assert r.messages >= 2 * p.WINDOW
    assert r.messages % p.WINDOW == 0
    assert (r.lost, r.reordered, r.errors, d["timed_out"]) == (0, 0, 0, False)
    assert d["deliveries"] == r.messages * 10
    # The warm-up windows are delivered but not measured, and acknowledged like the rest.
    assert d["acks"] == r.messages + p.WARMUP_WINDOWS * p.WINDOW
    assert r.deliveries_per_s > 0
    assert r.cpu_us_per_delivery > 0
    assert d["samples"] == 0


def test_bench_peers_with_the_go_load_says_so_and_fills_the_same_tables() -> None:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "rtm2", "bench", "peers", "--load", "go"),
            *("--systems", "rtm2", "--n", "3", "--seconds", "0.3"),
            *("--latency-subscribers", "5", "--latency-rate", "400"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"^load: go \(bench/loadgen, go[\d.]+", out.stdout, re.M), out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert re.fullmatch(r"\d+\.\d{3} \([\d,]+\)", cells[1]), row
    assert float(cells[1].split()[0]) > 0, row
    lat = next(line for line in out.stdout.splitlines() if line.startswith("| rtm2 |"))
    cells = [c.strip() for c in lat.strip("|").split("|")]
    p50, p99, p999, top = (float(c) for c in cells[1:5])
    assert 0 < p50 <= p99 <= p999 <= top, lat
    assert cells[6] == "600", lat  # 400 msg/s x 0.3 s x 5 subscribers
    # The load's CPU, and how long the server and the load waited for a CPU.
    assert re.fullmatch(r"\d+% \(sys \d+%\)", cells[7]), lat
    assert all(re.fullmatch(r"\d+%", c) for c in cells[8:10]), lat
    assert out.stdout.rstrip().endswith("nothing lost or reordered"), out.stdout
