"""Generate the Python code of the sidecar's ``.proto`` files (``make proto``).

The generated ``*_pb2.py`` and ``*_pb2.pyi`` files are committed, so running the sidecar needs
only ``protobuf``; ``grpcio-tools`` (a dev dependency) is needed to regenerate them, and a unit
test regenerates them into a temporary folder and compares, so they cannot drift.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

__all__ = ["HERE", "PROTOS", "generate", "main"]

HERE = Path(__file__).parent
PROTOS = sorted(p.name for p in HERE.glob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Write the generated modules of every ``.proto`` here into ``out``; return their paths."""
    from grpc_tools import protoc  # dev dependency: imported only when generating

    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTOS}")
    return sorted(p for p in out.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi")))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            target = HERE / path.name
            target.write_bytes(path.read_bytes())
            print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
