"""
The shape of chatroom/ (docs/architecture.rst) that import-linter cannot
check: what the core imports of Twisted, and where the reactor is imported.
The layers and cycles are import-linter's contracts (.importlinter), run by
.ci/run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chatroom"
# Twisted modules that touch sockets, TLS or the running reactor.
NOT_FOR_THE_CORE = (
    "twisted.internet.reactor",
    "twisted.internet.ssl",
    "twisted.internet.tcp",
    "twisted.internet.endpoints",
    "twisted.internet.protocol",
    "twisted.protocols",
    "twisted.web",
)


def imports(path: Path, top_level_only: bool = False) -> Iterator[tuple[int, str]]:
    """
    The modules (and C{module.name} for C{from module import name}) that
    C{path} imports, with their line numbers.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def violations(paths: list[Path], forbidden: tuple[str, ...], top_level_only: bool = False) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in paths
        for line, name in imports(path, top_level_only)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_the_core_imports_no_socket_tls_or_reactor_module() -> None:
    assert violations(sorted((PACKAGE / "core").glob("*.py")), NOT_FOR_THE_CORE) == []


def test_no_module_imports_the_reactor_at_import_time() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert violations(paths, ("twisted.internet.reactor",), top_level_only=True) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from twisted.internet import reactor\n", True),
        ("import twisted.internet.ssl\n", True),
        ("def f():\n    from twisted.internet import reactor\n", True),
        ("from twisted.internet.defer import Deferred\n", False),
    ],
)
def test_the_check_finds_what_it_looks_for(tmp_path: Path, source: str, found: bool) -> None:
    module = PACKAGE / "core" / "_probe.py"
    path = tmp_path / "probe.py"
    path.write_text(source)
    # The same check, on a file of the test's own (named as if in the core).
    result = [f"{module}: {name}" for _, name in imports(path) if name.startswith(NOT_FOR_THE_CORE)]
    assert bool(result) is found
