"""The examples run as documented against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import APP_A, CERT_A, ServerProcess

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
