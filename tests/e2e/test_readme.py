"""The README's Python example works as pasted (only the endpoint is pointed at a test server)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_logs_in_and_out(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 15
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
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert "LOGIN_SUCCESS" in out.stdout
    finally:
        server.terminate()
        server.wait(10)
