"""The examples run as documented against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import APP_A, APP_SMALL, CERT_A, CERT_SMALL, ServerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_login_example_renews_its_token_when_warned(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "dev-app.json").write_text(json.dumps({"app_id": APP_A, "certificate": CERT_A}))
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "login.py"),
            "--endpoint",
            server.url,
            "--data-dir",
            str(tmp_path),
            "--user",
            "example-user",
            "--seconds",
            "4",
            "--token-lifetime",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [
        "connection: CONNECTING (CONNECTING)",
        "connection: CONNECTED (LOGIN_SUCCESS)",
    ]
    assert "token of the login will expire soon; renewing" in lines
    assert lines[-1] == "connection: DISCONNECTED (LOGOUT)"
    assert not any("FAILED" in line for line in lines)


def test_the_stream_quickstart_runs_the_rtm2_workflow(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "dev-app.json").write_text(
        json.dumps({"app_id": APP_SMALL, "certificate": CERT_SMALL})
    )
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "stream_quickstart.py"),
            "--endpoint",
            server.url,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "bob received b'Hello world!' from alice in MyTopic",
        "bob is subscribed to ['alice']",
        "done",
    ]


def test_rtm2_demo_starts_its_own_server_and_narrates_the_workflow(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rtm2", "demo", "--endpoint", "ws://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("no server at ws://127.0.0.1:9; started one at ws://")
    assert "[bob] received from alice in MyTopic: 'Hello world!'" in lines
    assert "[bob] topic event: REMOTE_JOIN alice in MyTopic" in lines
    assert "[bob] topic event: REMOTE_LEAVE alice in MyTopic" in lines
    assert lines[-1] == "[bob] logged out"
    assert out.stderr == ""


def test_rtm2_demo_uses_a_running_server_with_its_dev_app(tmp_path: Path) -> None:
    from rtm2.cli.local import local_server

    with local_server([], cwd=tmp_path) as srv:
        out = subprocess.run(
            [sys.executable, "-m", "rtm2", "demo", "--endpoint", srv.url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"using the server at {srv.url}"
    assert "[bob] logged out" in out.stdout


def test_the_resilient_client_renews_its_token_writes_metadata_and_recreates_itself(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "dev-app.json").write_text(json.dumps({"app_id": APP_A, "certificate": CERT_A}))
    user = f"resilient{time.monotonic_ns() % 10**9}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "resilient_client.py"),
            "--endpoint",
            server.url,
            "--data-dir",
            str(tmp_path),
            "--user",
            user,
            "--seconds",
            "7",
            "--token-lifetime",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4.5)  # let it log in, renew once and write a few times, then evict it
        evictor = subprocess.run(
            [
                sys.executable,
                "-c",
                _EVICT.format(url=server.url, app=APP_A, cert=CERT_A, user=user),
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert evictor.returncode == 0, evictor.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert "token renewed" in lines
    assert "connection: FAILED (SAME_UID_LOGIN)" in lines
    assert "recreating the client" in lines
    beats = [line for line in lines if line.startswith("metadata UPDATE")]
    assert len(beats) >= 4
    assert f"'beat': ('0', '{user}')" in beats[0]
    assert lines.count("connection: CONNECTED (LOGIN_SUCCESS)") == 2
    assert lines[-1] == "done"


_EVICT = """
import asyncio, rtm2
async def main():
    c = rtm2.RTMClient(rtm2.RTMConfig(app_id="{app}", user_id="{user}"))
    c.set_parameters({{rtm2.PARAM_ENDPOINT: "{url}"}})
    await c.login(rtm2.build_rtm_token("{app}", "{cert}", "{user}"))
    await c.logout()
asyncio.run(main())
"""
