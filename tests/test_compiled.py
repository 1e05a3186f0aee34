"""The loader of the optional mypyc build (rtm2/_compiled.py): it loads a build only while it
is current, and the pure-Python modules otherwise.

No compiler here: the "build" is a fake package whose module has an extension twin, a copy of
CPython's own ``_bisect`` extension (any extension module loads under any package name), with a
manifest written as ``make compile`` writes it. ``make compile-test`` runs the real build.
"""

from __future__ import annotations

import _bisect
import ast
import importlib
import itertools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtm2 import _compiled
from rtm2._compiled import (
    MODULES,
    PACKAGE_DIR,
    CompiledFinder,
    State,
    activate,
    compiled_modules,
    inspect,
    source_hashes,
    write_manifest,
)

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
_names = itertools.count()


class FakeBuild:
    """``<tmp>/src/<pkg>/`` with a pure ``_bisect.py``, and ``<tmp>/build`` holding its
    "compiled" twin: a copy of CPython's ``_bisect`` extension."""

    def __init__(self, tmp: Path) -> None:
        self.pkg = f"fakepkg{next(_names)}_{os.getpid()}"
        self.src = tmp / "src"
        self.package_dir = self.src / self.pkg
        self.package_dir.mkdir(parents=True)
        (self.package_dir / "__init__.py").write_text("")
        (self.package_dir / "_bisect.py").write_text("PURE = True\n")
        self.build_dir = tmp / "build"
        self.module = f"{self.pkg}._bisect"
        rel = Path(self.pkg) / ("_bisect" + SUFFIX)
        (self.build_dir / self.pkg).mkdir(parents=True)
        assert _bisect.__file__ is not None
        shutil.copy(_bisect.__file__, self.build_dir / rel)
        write_manifest(
            self.build_dir, [self.module], {self.module: str(rel)}, source_hashes(self.package_dir)
        )

    def inspect(self) -> State:
        return inspect(self.build_dir, self.package_dir)

    def activate(self, mode: str, meta_path: list[object]) -> State:
        return activate(mode, self.build_dir, self.package_dir, meta_path)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeBuild]:
    build = FakeBuild(tmp_path)
    sys.path.insert(0, str(build.src))
    yield build
    sys.path.remove(str(build.src))
    for name in [n for n in sys.modules if n.split(".")[0] == build.pkg]:
        del sys.modules[name]


def import_through(fake: FakeBuild, meta_path: list[object]) -> object:
    """Import the fake module with ``meta_path`` as the process's finders."""
    saved = sys.meta_path[:]
    sys.meta_path[:] = meta_path  # type: ignore[assignment]
    try:
        return importlib.import_module(fake.module)
    finally:
        sys.meta_path[:] = saved


def test_a_current_build_is_loaded_in_place_of_the_pure_module(fake: FakeBuild) -> None:
    meta_path: list[object] = list(sys.meta_path)
    assert fake.activate("auto", meta_path) == State((fake.module,), "")
    assert isinstance(meta_path[0], CompiledFinder)
    module = import_through(fake, meta_path)
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)  # type: ignore[attr-defined]
    assert hasattr(module, "bisect_left")
    assert not hasattr(module, "PURE")
    assert meta_path[0].find_spec("json", None) is None  # type: ignore[attr-defined]


def test_an_edited_source_makes_the_build_stale_and_the_pure_module_runs(
    fake: FakeBuild,
) -> None:
    (fake.package_dir / "__init__.py").write_text("# edited after the build\n")
    found = fake.inspect()
    assert found.modules == ()
    assert "stale (__init__.py changed since)" in found.problem
    assert "make compile" in found.problem
    meta_path: list[object] = list(sys.meta_path)
    assert fake.activate("auto", meta_path) == found
    assert meta_path == sys.meta_path  # no finder: nothing compiled is loaded
    module = import_through(fake, meta_path)
    assert module.PURE is True  # type: ignore[attr-defined]


def test_a_source_file_added_or_removed_makes_the_build_stale(fake: FakeBuild) -> None:
    (fake.package_dir / "new.py").write_text("")
    assert "new.py changed" in fake.inspect().problem
    (fake.package_dir / "new.py").unlink()
    assert fake.inspect().modules == (fake.module,)
    (fake.package_dir / "__init__.py").unlink()
    assert "__init__.py changed" in fake.inspect().problem


def test_a_build_for_another_python_or_missing_a_file_is_not_loaded(fake: FakeBuild) -> None:
    manifest = fake.build_dir / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace(sys.implementation.cache_tag, "cpython-399"))
    assert "for another Python" in fake.inspect().problem
    manifest.write_text(text)
    (fake.build_dir / fake.pkg / ("_bisect" + SUFFIX)).unlink()
    assert "lacks" in fake.inspect().problem
    manifest.write_text("{not json")
    assert "unreadable" in fake.inspect().problem


def test_no_build_means_pure_python_without_a_word(tmp_path: Path) -> None:
    meta_path: list[object] = list(sys.meta_path)
    assert activate("auto", tmp_path / "none", tmp_path, meta_path) == State((), "")
    assert meta_path == sys.meta_path


def test_rtm2_compiled_0_ignores_a_current_build_and_1_refuses_a_stale_one(
    fake: FakeBuild,
) -> None:
    meta_path: list[object] = list(sys.meta_path)
    assert fake.activate("0", meta_path) == State((), "")
    assert meta_path == sys.meta_path
    assert fake.activate("1", meta_path).modules == (fake.module,)
    (fake.package_dir / "_bisect.py").write_text("PURE = 'edited'\n")
    with pytest.raises(ImportError, match=r"RTM2_COMPILED=1 but the build in .* is stale"):
        fake.activate("1", list(sys.meta_path))
    with pytest.raises(ImportError, match="RTM2_COMPILED=1 but there is no build"):
        activate("1", fake.build_dir / "none", fake.package_dir, list(sys.meta_path))


def test_the_hot_modules_run_compiled_exactly_when_rtm2_compiled_is_1() -> None:
    """Pure Python under `make test` (tests/conftest.py sets RTM2_COMPILED=0), every hot
    module compiled under `make compile-test` (RTM2_COMPILED=1)."""
    for name in MODULES:
        importlib.import_module(name)
    if os.environ[_compiled.ENV] == "1":
        assert compiled_modules() == list(MODULES)
        assert _compiled.state.modules == tuple(sorted(MODULES))
    else:
        assert compiled_modules() == []
        assert _compiled.state == State((), "")


def test_no_compiled_module_defines_a_msgspec_struct() -> None:
    # mypyc drops a class's keywords (array_like, frozen, gc): a Struct compiled would change
    # what a node writes on the bus and into storage.
    for name in MODULES:
        path = PACKAGE_DIR.parent / (name.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                assert not any(b.endswith("Struct") for b in bases), f"{name}.{node.name}"
