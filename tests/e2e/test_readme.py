"""The README's Python examples work as pasted (only the endpoint is pointed at a test server)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def run_against_a_fresh_server(example: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``example`` in a folder where ``rtm2 serve`` (the dev app's home) is running."""
    server = subprocess.Popen(
        [sys.executable, "-m", "rtm2", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        url = ""
        for line in server.stdout:
            match = re.search(r"serving on (ws://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url
        script = example.replace("ws://127.0.0.1:7001", url)
        return subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
    finally:
        server.terminate()
        server.wait(10)


def test_the_readme_example_logs_in_and_out(tmp_path: Path) -> None:
    blocks = BLOCK.findall(README.read_text())
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 15
    out = run_against_a_fresh_server(example, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "LOGIN_SUCCESS" in out.stdout


def test_the_readme_example_without_asyncio_publishes_and_receives(tmp_path: Path) -> None:
    section = README.read_text().split("\n## Without asyncio\n", 1)[1]
    match = BLOCK.search(section)
    assert match is not None
    example = match.group(1)
    assert len(example.strip().splitlines()) <= 15
    out = run_against_a_fresh_server(example, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "carol hello without asyncio\n"
