"""The house rules, checked on the code itself: no import cycles, no private names across modules, no
file over 500 lines, and only the CLI prints. The floors (which package may import which) are
import-linter's contracts in pyproject.toml, run by `lint-imports` in the README's test command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "datamodules", "lightning_modules", "tasks", "experiments", "reports", "cli")
SOURCES = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_takes_part_in_an_import_cycle() -> None:
    """Tarjan's strongly connected components over every import grimp finds (function-level imports
    included, annotations-only ones not): each component must be a single module."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # iterative enough: the graph is ~120 modules deep at most
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for module in modules:
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_layer_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def _imports_of(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) for every ``from module import name`` in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module(path).split(".")
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


def test_no_module_imports_another_modules_private_name() -> None:
    crossings = [
        f"{path.relative_to(REPO)}:{line}: from {module} import {name}"
        for path in SOURCES
        for module, name, line in _imports_of(path)
        if name.startswith("_") and not name.startswith("__") and module != _module(path)
    ]
    assert crossings == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_is_over_500_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 500


def test_only_the_cli_prints() -> None:
    printing = []
    for path in SOURCES:
        if path.relative_to(REPO).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(REPO)}:{node.lineno}: print(...)")
            if isinstance(node, ast.Name) and node.id == "Console":
                printing.append(f"{path.relative_to(REPO)}:{node.lineno}: a rich Console")
    assert printing == []
