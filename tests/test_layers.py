"""The package's layers hold: imports point down only; server and SDK never meet.

The layers of ``rtm2``, bottom to top:

* ``rtm2.errors``, ``rtm2.types`` and ``rtm2.tokens``: error codes, the enums and event types
  shared by server and SDK, and access tokens. Plain code that imports nothing above it.
* ``rtm2.protocol``: the wire format (frames, codec, code mappings, name rules). It does no I/O,
  so the server, the SDK and clients in other languages can follow the same definitions.
* ``rtm2.server`` (the asyncio server) and ``rtm2.client`` (the SDK), side by side. Each builds
  on the layers below and never imports the other, so either works without the other.
  Inside the server, ``rtm2.server.redisio`` (the Redis clients and Lua scripts) imports nothing
  of rtm2 outside itself.
* ``rtm2.cli``: the ``rtm2`` command (serve, token, demo, bench), the one layer that may use
  both the server and the SDK.

The package root re-exports the SDK's public names. ``rtm2.sync`` (``client/sync*.py``) is the
blocking facade of the SDK and is built on its public API alone, so the SDK's internals can
change without it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rtm2

SRC = Path(rtm2.__file__).parent


def imported(path: Path) -> set[str]:
    """Absolute names of the rtm2 modules (and stdlib roots) a module imports."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def modules(sub: str) -> list[Path]:
    return sorted((SRC / sub).rglob("*.py"))


@pytest.mark.parametrize("path", modules("server"), ids=lambda p: p.name)
def test_the_server_never_imports_the_sdk(path: Path) -> None:
    assert not any(n.startswith("rtm2.client") for n in imported(path))


@pytest.mark.parametrize("path", modules("client"), ids=lambda p: p.name)
def test_the_sdk_never_imports_the_server(path: Path) -> None:
    assert not any(n.startswith("rtm2.server") for n in imported(path))


@pytest.mark.parametrize("path", modules("server/redisio"), ids=lambda p: p.name)
def test_the_redis_client_knows_nothing_of_rtm(path: Path) -> None:
    names = imported(path)
    assert all(n.startswith("rtm2.server.redisio") for n in names if n.startswith("rtm2"))


@pytest.mark.parametrize("path", modules("protocol"), ids=lambda p: p.name)
def test_the_protocol_does_no_io(path: Path) -> None:
    names = imported(path)
    assert not names & {"asyncio", "socket", "picows", "ssl", "selectors"}
    assert not any(n.startswith(("rtm2.server", "rtm2.client", "rtm2.cli")) for n in names)


def test_the_package_root_exports_exactly_its_public_names() -> None:
    assert sorted(rtm2.__all__) == sorted(set(rtm2.__all__))
    for name in rtm2.__all__:
        assert hasattr(rtm2, name), name
    assert rtm2.RTMError.__mro__[1] is Exception  # one exception root


def runtime_imports(path: Path) -> set[str]:
    """The rtm2 modules a module imports when it runs: ``imported`` without the imports under
    ``if TYPE_CHECKING:``, and with ``from package import module`` resolved to the module."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    names: set[str] = set()
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n in MODULES}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


@pytest.mark.parametrize("layer", ["server", "client"])
def test_no_module_of_the_server_or_the_sdk_imports_itself_in_a_circle(layer: str) -> None:
    graph = {
        name: runtime_imports(path) - {name}
        for name, path in MODULES.items()
        if name.startswith(f"rtm2.{layer}")
    }
    cycles: list[list[str]] = []
    # Depth-first search; a back edge to a module on the current path closes a circle.
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


SYNC_FACADE = sorted((SRC / "client").glob("sync*.py"))
# What the facade may import from rtm2: the SDK's public names (the ``rtm2.client`` package),
# the shared errors and types, and its own modules.
SYNC_MAY_IMPORT = {"rtm2.client", "rtm2.errors", "rtm2.types"}


@pytest.mark.parametrize("path", SYNC_FACADE, ids=lambda p: p.name)
def test_the_sync_facade_uses_only_the_public_async_api(path: Path) -> None:
    own = {module_name(p) for p in SYNC_FACADE}
    names = {n for n in imported(path) if n.startswith("rtm2")}
    assert names <= SYNC_MAY_IMPORT | own
    private = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == [], "private members of other objects"


def test_rtm2_sync_is_the_facade_and_nothing_else() -> None:
    assert imported(SRC / "sync.py") == {"rtm2.client.sync"}


@pytest.mark.parametrize("path", modules("sidecar"), ids=lambda p: p.name)
def test_the_go_sidecar_is_a_client_of_the_server_through_the_public_sdk(path: Path) -> None:
    names = {n for n in imported(path) if n.startswith("rtm2")}
    assert not any(n.split(".")[:2] in (["rtm2", "server"], ["rtm2", "cli"]) for n in names)
    assert not any(n.startswith("rtm2.client.") for n in names), "only rtm2.client's public names"


@pytest.mark.parametrize("name", ["framing", "dialect", "convert"])
def test_the_go_sidecar_codec_does_no_io(name: str) -> None:
    names = imported(SRC / "sidecar" / f"{name}.py")
    assert not names & {"asyncio", "socket", "ssl", "selectors"}
    assert not any(n.startswith(("rtm2.client", "rtm2.server", "rtm2.cli")) for n in names)
