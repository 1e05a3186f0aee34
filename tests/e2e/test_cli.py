"""The ``rtm2`` command as a user runs it: serve, token, --version."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import rtm2
from rtm2 import tokens

from ..conftest import APP_A, CERT_A


def rtm2_cmd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtm2", *args], capture_output=True, text=True, cwd=cwd, timeout=30
    )


def test_version_prints_the_package_version() -> None:
    out = rtm2_cmd("--version")
    assert out.returncode == 0
    assert rtm2.__version__ in out.stdout


def test_token_rtm_prints_a_token_that_verifies_for_that_user() -> None:
    out = rtm2_cmd(
        "token",
        "rtm",
        "--app-id",
        APP_A,
        "--certificate",
        CERT_A,
        "--user",
        "alice",
        "--expire",
        "600",
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("007eJ")
    expires = tokens.verify_rtm_token(token, app_id=APP_A, app_certificate=CERT_A, user_id="alice")
    assert expires == tokens.parse_token(token).issued_at + 600


def test_token_stream_prints_a_join_token_and_with_login_also_a_login_token() -> None:
    base = ["token", "stream", "--app-id", APP_A, "--certificate", CERT_A, "--user", "bob"]
    join_only = rtm2_cmd(*base, "--channel", "room").stdout.strip()
    both = rtm2_cmd(*base, "--channel", "room", "--with-login").stdout.strip()
    for token in (join_only, both):
        tokens.verify_stream_token(
            token, app_id=APP_A, app_certificate=CERT_A, channel="room", user_id="bob"
        )
    tokens.verify_rtm_token(both, app_id=APP_A, app_certificate=CERT_A, user_id="bob")
    with pytest.raises(rtm2.RTMError):
        tokens.verify_rtm_token(join_only, app_id=APP_A, app_certificate=CERT_A, user_id="bob")


def test_token_without_credentials_or_dev_app_is_a_usage_error(tmp_path: Path) -> None:
    out = rtm2_cmd("token", "rtm", "--user", "alice", "--data-dir", str(tmp_path / "none"))
    assert out.returncode == 2
    assert "--app-id" in out.stderr


def test_serve_help_explains_every_option() -> None:
    out = rtm2_cmd("serve", "--help")
    assert out.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--app", "--config", "--log-level"):
        assert option in out.stdout


def _start(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtm2", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Stop with"):
            break
    return proc, lines


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(10) == 0


async def test_serve_without_apps_creates_a_dev_app_once_and_prints_how_to_connect(
    tmp_path: Path,
) -> None:
    proc, banner = _start(tmp_path)
    try:
        text = "\n".join(banner)
        url = re.search(r"serving on (ws://\S+)", text)
        app_id = re.search(r"app id\s+([0-9a-f]{32})", text)
        command = next(line.strip() for line in banner if line.strip().startswith("rtm2 token"))
        assert url
        assert app_id
        saved = json.loads((tmp_path / "rtm2-data" / "dev-app.json").read_text())
        assert saved["app_id"] == app_id.group(1)
        assert "PARAM_ENDPOINT" in text
        # The printed token command works as pasted, and its token logs in.
        out = rtm2_cmd(*shlex.split(command)[1:])
        assert out.returncode == 0, out.stderr
        client = rtm2.RTMClient(rtm2.RTMConfig(app_id=app_id.group(1), user_id="alice"))
        client.set_parameters({rtm2.PARAM_ENDPOINT: url.group(1)})
        await client.login(out.stdout.strip())
        await client.logout()
    finally:
        _stop(proc)
    proc, banner = _start(tmp_path)
    _stop(proc)
    assert f"app id       {app_id.group(1)}" in "\n".join(banner)


def test_serve_with_a_bad_app_is_a_usage_error() -> None:
    out = rtm2_cmd("serve", "--app", "not-hex")
    assert out.returncode == 2
    assert "32 hex" in out.stderr


def test_serve_on_a_busy_port_fails_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = rtm2_cmd("serve", "--port", str(port), "--app", APP_A, cwd=tmp_path)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr


def test_serve_with_a_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[timers]\nheartbeat_interval = -1\n")
    out = rtm2_cmd("serve", "--config", str(config))
    assert out.returncode == 2
    assert "heartbeat_interval" in out.stderr


def test_bench_fanout_runs_end_to_end_and_reports_no_loss() -> None:
    out = rtm2_cmd("bench", "fanout", "-n", "3", "--messages", "600")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "600"
    assert cells[-2:] == ["0", "0"]  # lost, reordered


def test_bench_connections_reports_memory_per_connection() -> None:
    out = rtm2_cmd("bench", "connections", "--count", "40")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("40 connections;"), out.stdout
    # A connection costs the server memory: the figures are positive, never 0 or negative.
    for line in ("idle, logged in", "+ joined a channel and subscribed"):
        match = re.search(rf"{re.escape(line)}:\s+(\d+\.\d) KiB per connection", out.stdout)
        assert match, out.stdout
        assert float(match.group(1)) > 0, out.stdout


@pytest.mark.redis
def test_bench_fanout_runs_across_two_nodes_on_redis_and_cleans_up() -> None:
    out = rtm2_cmd(
        "bench",
        "fanout",
        "-n",
        "2",
        "--messages",
        "400",
        "--nodes",
        "2",
        "--engine",
        "redis://127.0.0.1:6379/0",
    )
    assert out.returncode == 0, out.stderr
    assert "2 node(s), engine redis://127.0.0.1:6379/0" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 2 |"))
    assert [c.strip() for c in row.strip("|").split("|")][-2:] == ["0", "0"]
    left = subprocess.run(
        ["redis-cli", "--scan", "--pattern", "rtm2bench:*"], capture_output=True, text=True
    )
    assert left.stdout.strip() == ""


@pytest.mark.redis
def test_bench_peers_compares_rtm2_with_a_redis_server_it_starts_and_loses_nothing() -> None:
    out = rtm2_cmd(
        "bench",
        "peers",
        *("--systems", "rtm2,redis", "--n", "2", "--seconds", "0.3", "--load", "python"),
        *("--latency-subscribers", "3", "--latency-rate", "200"),
    )
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # rtm2 and Redis each measured (deliveries/s in brackets), then their ratio.
    assert float(cells[1].split()[0]) > 0, row
    assert all(re.fullmatch(r"\d+\.\d{3} \([\d,]+\)", c) for c in cells[1:3]), row
    assert re.fullmatch(r"\d+\.\d\d|n/a", cells[3]), row
    assert "| rtm2 / redis |" in out.stdout
    assert out.stdout.rstrip().endswith("nothing lost or reordered"), out.stdout
