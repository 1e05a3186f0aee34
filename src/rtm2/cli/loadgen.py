"""The Go load generator of ``rtm2 bench peers`` (``bench/loadgen``): finding Go, building the
binary once per version of its sources, and running it.

The asyncio load of ``bench peers`` decodes every delivery on one core; at 100k deliveries/s it
sits at 90-99 % of that core and measures itself. The Go generator (standard library only) runs
one goroutine per subscriber connection and keeps well below a core at that rate. It reads one
JSON spec on stdin and prints one JSON result on stdout; ``peers.py`` writes the spec (with
rtm2's request frames encoded from ``protocol/frames.py``) and folds the result into its tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LOADS", "GoLoad", "build", "choose", "env", "find_go", "run", "sources"]

LOADS = ("go", "python")


def sources() -> Path | None:
    """``bench/loadgen`` of the checkout this package runs from; None for an installed wheel,
    which does not ship the bench."""
    here = Path(__file__).resolve().parents[3] / "bench" / "loadgen"
    return here if (here / "go.mod").is_file() else None


def find_go() -> str | None:
    """The ``go`` command: on PATH, or where the official tarball puts it."""
    found = shutil.which("go")
    if found is None and os.access("/usr/local/go/bin/go", os.X_OK):
        found = "/usr/local/go/bin/go"
    return found


def env() -> dict[str, str]:
    # Standard library only: nothing to download, and no toolchain switch behind our back.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "CGO_ENABLED": "0"}


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "rtm2"


class GoLoad:
    """A built generator: its binary and the Go version that built it."""

    def __init__(self, binary: Path, version: str) -> None:
        self.binary = binary
        self.version = version


def build(
    go: str, src: Path, cache: Path | None = None, on_build: Callable[[], None] | None = None
) -> GoLoad:
    """Build ``src`` into ``<cache>/loadgen-<hash>`` unless that binary exists: the hash covers
    the sources and the Go version, so changing either rebuilds, and nothing else does.
    ``on_build`` is called before a build (the first one on a machine takes up to a minute)."""
    try:
        version = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=True, env=env()
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"{go} does not run: {exc}") from None
    digest = hashlib.sha256(version.encode())
    for path in sorted(src.iterdir()):
        built = path.suffix == ".go" and not path.name.endswith("_test.go")
        if built or path.name in ("go.mod", "go.sum"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    directory = cache or _cache_dir()
    binary = directory / f"loadgen-{digest.hexdigest()[:16]}"
    if not binary.exists():
        if on_build is not None:
            on_build()
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{binary.name}.{os.getpid()}"
        out = subprocess.run(
            [go, "build", "-trimpath", "-o", str(partial), "."],
            cwd=src,
            capture_output=True,
            text=True,
            env=env(),
        )
        if out.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"go build of {src} failed:\n{out.stderr.strip()}")
        os.replace(partial, binary)  # atomic: two builds at once both end with a whole binary
    return GoLoad(binary, version)


def choose(
    requested: str | None, on_build: Callable[[], None] | None = None
) -> tuple[GoLoad | None, str]:
    """The load to use (None: this Python process) and a line saying which and why.

    ``requested`` None picks Go when both Go and the sources are there, Python otherwise."""
    if requested == "python":
        return None, "load: python (this process, asyncio + uvloop), as asked"
    go, src = find_go(), sources()
    if go is None or src is None:
        missing = "go is not installed" if go is None else "bench/loadgen is not in this install"
        if requested == "go":
            raise RuntimeError(f"--load go: {missing}")
        return None, f"load: python (this process, asyncio + uvloop): {missing}"
    load = build(go, src, on_build=on_build)
    return load, f"load: go (bench/loadgen, {load.version}, one goroutine per connection)"


async def run(load: GoLoad, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement; the generator's JSON result."""
    proc = await asyncio.create_subprocess_exec(
        str(load.binary),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(json.dumps(spec).encode())
    if proc.returncode != 0:
        raise RuntimeError(err.decode(errors="replace").strip() or f"loadgen: {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result
