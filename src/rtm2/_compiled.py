"""The optional mypyc build of the server's hot path, and the finder that loads it.

``make compile`` (``rtm2._compiled.main(["build"])``) compiles the modules in ``MODULES`` with
mypyc into ``build/mypyc/`` at the top of the checkout, never next to the sources: an extension
module beside its ``.py`` in ``src/`` would shadow it, and a developer who then edited the
``.py`` would silently run the old code. The build records a SHA-256 of every ``.py`` file of
the package (the compiled code also bakes in what it knew of the modules it imports), the
Python ABI and the mypy version. Importing ``rtm2`` imports this module first; it puts a finder
for the compiled modules on ``sys.meta_path`` only if every recorded hash still matches, so an
edit anywhere in the package sends the whole process back to pure Python (a partial mix would
break mypyc's direct calls between the modules of one build). ``rtm2 serve`` says in its
banner, its log and ``/v1/info`` which modules run compiled.

``RTM2_COMPILED`` chooses: ``auto`` (the default: the build when present and current),
``0`` (pure Python, what the tests run unless ``make compile-test``), ``1`` (the build or an
error at import).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

__all__ = [
    "BUILD_DIR",
    "ENV",
    "MODULES",
    "PACKAGE_DIR",
    "CompiledFinder",
    "State",
    "activate",
    "build",
    "compiled_modules",
    "inspect",
    "source_hashes",
    "state",
    "write_manifest",
]

ENV = "RTM2_COMPILED"
PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout's top (src/rtm2/ -> src/ -> top). An installed (non-editable) package has no
# build there, and runs pure Python.
BUILD_DIR = PACKAGE_DIR.parent.parent / "build" / "mypyc"
MANIFEST = "manifest.json"

# What a publish runs through, by the callgrind profile (docs/PERFORMANCE.md): receive and
# route (gateway, session), the publish (messages, checks, rate limit, subject names), the
# engine's numbering and the recovery buffer, the bus dispatch and the fan-out, the counters.
# None of them may define a msgspec Struct: mypyc drops a class's keywords (array_like, frozen,
# gc), so a compiled node would write the bus, metadata and history in another format than a
# pure one (``rtm2.server.engines.base``, full of them, stays pure for that reason).
MODULES = (
    "rtm2.protocol.codec",
    "rtm2.protocol.names",
    "rtm2.server.checks",
    "rtm2.server.engines.memory",
    "rtm2.server.gateway",
    "rtm2.server.hub",
    "rtm2.server.interest",
    "rtm2.server.messages",
    "rtm2.server.metrics",
    "rtm2.server.ratelimit",
    "rtm2.server.recovery",
    "rtm2.server.session",
    "rtm2.server.subjects",
)


class State(NamedTuple):
    """What ``activate`` did: the modules it will load compiled (none: pure Python), and why
    not when a build is there but unusable ("" when there simply is none, or it is used)."""

    modules: tuple[str, ...]
    problem: str


state = State((), "")


def _abi() -> dict[str, str]:
    import mypy.version  # only the build needs mypy, and only the build calls this

    return {
        "python": sys.implementation.cache_tag,
        "suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
        "mypy": mypy.version.__version__,
    }


def source_hashes(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """SHA-256 of every ``.py`` file of the package, by path relative to it."""
    return {
        str(p.relative_to(package_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(package_dir.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def inspect(build_dir: Path = BUILD_DIR, package_dir: Path = PACKAGE_DIR) -> State:
    """The build in ``build_dir`` if it may be loaded: present, for this Python, and built from
    exactly the sources in ``package_dir``. Otherwise no modules and the reason."""
    manifest_file = build_dir / MANIFEST
    if not manifest_file.exists():
        return State((), "")
    rebuild = "run `make compile` to rebuild it"
    try:
        manifest = json.loads(manifest_file.read_text())
        abi, recorded, files = manifest["abi"], manifest["sources"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return State((), f"{manifest_file} is unreadable: {rebuild}")
    if (
        abi.get("python") != sys.implementation.cache_tag
        or abi.get("suffix") != importlib.machinery.EXTENSION_SUFFIXES[0]
    ):
        return State((), f"the build in {build_dir} is for another Python: {rebuild}")
    current = source_hashes(package_dir)
    changed = sorted(
        name for name in recorded.keys() | current.keys() if recorded.get(name) != current.get(name)
    )
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return State(
            (),
            f"the build in {build_dir} is stale ({', '.join(changed[:3])}{more} changed since): "
            f"{rebuild}",
        )
    missing = [f for f in files.values() if not (build_dir / f).is_file()]
    if missing:
        return State((), f"the build in {build_dir} lacks {missing[0]}: {rebuild}")
    return State(tuple(sorted(m for m in files if m in manifest["modules"])), "")


class CompiledFinder:
    """Finds the build's extension modules (the compiled hot modules and the shared library
    mypyc puts their code in) before the path-based finder finds the ``.py`` files."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def activate(
    mode: str | None = None,
    build_dir: Path = BUILD_DIR,
    package_dir: Path = PACKAGE_DIR,
    meta_path: list[object] | None = None,
) -> State:
    """Put the build's finder first on ``meta_path`` (``sys.meta_path``) if ``mode`` (default:
    ``$RTM2_COMPILED``, else ``auto``) and the build allow it. ``1`` without a usable build
    raises ImportError."""
    global state
    install = meta_path is None  # the process's own activation, not a test's
    mode = (os.environ.get(ENV, "auto") if mode is None else mode).strip().lower()
    if mode in ("0", "off", "no", "false", "pure"):
        return State((), "")
    found = inspect(build_dir, package_dir)
    if not found.modules:
        if mode in ("1", "on", "yes", "true", "require"):
            missing = f"there is no build in {build_dir}: `make compile` builds it"
            raise ImportError(f"{ENV}={mode} but {found.problem or missing}")
        if install:
            state = found
        return found
    manifest = json.loads((build_dir / MANIFEST).read_text())
    files = {name: build_dir / f for name, f in manifest["files"].items()}
    (sys.meta_path if meta_path is None else meta_path).insert(0, CompiledFinder(files))
    if install:
        state = found
    return found


def compiled_modules() -> list[str]:
    """The hot modules this process runs compiled (imported from an extension module)."""
    return [
        name
        for name in MODULES
        if isinstance(
            getattr(sys.modules.get(name), "__loader__", None),
            importlib.machinery.ExtensionFileLoader,
        )
    ]


def write_manifest(
    build_dir: Path, modules: Sequence[str], files: dict[str, str], sources: dict[str, str]
) -> None:
    """Record what ``build_dir`` holds: the compiled ``modules``, every extension file by
    module name (relative paths), and the ``sources`` (``source_hashes``) it was built from."""
    manifest = {"abi": _abi(), "modules": list(modules), "files": files, "sources": sources}
    (build_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def build(
    build_dir: Path = BUILD_DIR,
    package_dir: Path = PACKAGE_DIR,
    modules: Sequence[str] = MODULES,
    opt_level: str = "3",
) -> State:
    """Compile ``modules`` with mypyc into ``build_dir`` (replaced only once the build
    succeeded) and record the sources it was built from."""
    from mypyc.build import mypycify  # the dev lock has mypy (mypyc) and setuptools
    from setuptools import setup  # type: ignore[import-untyped]  # no stubs in the lock

    src = package_dir.parent
    before = source_hashes(package_dir)
    work = build_dir.with_name(build_dir.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    out = work / "lib"
    paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in modules]
    cwd = os.getcwd()
    os.chdir(src)  # mypyc names the modules after their paths
    try:
        extensions = mypycify(paths, opt_level=opt_level, target_dir=str(work / "c"))
        setup(
            name="rtm2-compiled",
            ext_modules=extensions,
            script_args=[
                *("--quiet", "build_ext", "--build-lib", str(out)),
                *("--build-temp", str(work / "temp")),
            ],
            script_name="rtm2-compile",
        )
    finally:
        os.chdir(cwd)
    if source_hashes(package_dir) != before:
        raise RuntimeError("the sources changed while compiling: run it again")
    files: dict[str, str] = {}
    for so in sorted(out.rglob("*" + importlib.machinery.EXTENSION_SUFFIXES[0])):
        rel = so.relative_to(out)
        name = ".".join(rel.parts)[: -len(importlib.machinery.EXTENSION_SUFFIXES[0])]
        files[name] = str(rel)
    if not set(modules) <= files.keys():
        raise RuntimeError(f"mypyc built {sorted(files)}, not every one of {sorted(modules)}")
    write_manifest(out, modules, files, before)
    shutil.rmtree(build_dir, ignore_errors=True)
    out.rename(build_dir)
    shutil.rmtree(work, ignore_errors=True)
    return inspect(build_dir, package_dir)


# Importing ``rtm2`` imports this module before anything else, so the finder is in place before
# any hot module is imported.
activate()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="make compile",
        description="The optional mypyc build of rtm2's hot modules (docs/PERFORMANCE.md).",
    )
    parser.add_argument("command", choices=["build", "clean", "status"])
    args = parser.parse_args(argv)
    if args.command == "build":
        built = build()
        print(f"compiled {len(built.modules)} modules into {BUILD_DIR}: {', '.join(MODULES)}")
        print(f"`rtm2 serve` uses them while the sources are unchanged ({ENV}=0: pure Python)")
        return 0 if built.modules else 1
    if args.command == "clean":
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
        shutil.rmtree(BUILD_DIR.with_name(BUILD_DIR.name + ".work"), ignore_errors=True)
        print(f"removed {BUILD_DIR}")
        return 0
    found = inspect()
    if found.modules:
        print(f"current build in {BUILD_DIR}: {', '.join(found.modules)}")
    else:
        print(found.problem or f"no build in {BUILD_DIR}: pure Python (`make compile`)")
    return 0
