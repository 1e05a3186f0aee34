"""The layers of DESIGN.md hold: imports point down only; server and SDK never meet."""

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
