"""The package's imports follow the layers docs/architecture.md declares.

That page holds the order once: a fenced block under "Layers, top to bottom", one row per layer
starting at the line's start, its members (folders ending in ``/``, modules ending in ``.py``) first
and a description after; indented lines continue a description. A
module may import from its own row and from rows below it. Every import counts, function-level and
``TYPE_CHECKING`` ones included, and the module graph has no cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "consumer"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
HEADING = "Layers, top to bottom"


def declared_layers(page: str) -> list[list[str]]:
    """Rows of the page's layer block, top first: each a list of members (``kafka/``, ``wiring.py``)."""
    start = page.index(HEADING)
    block = page[start:].split("```", 2)[1]
    rows = []
    for line in block.splitlines():
        if line[:1].isspace():
            continue  # a row's description goes on
        members = []
        for token in line.split():
            if not re.fullmatch(r"[\w]+(/|\.py)", token):
                break
            members.append(token)
        if members:
            rows.append(members)
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import of ``consumer`` in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from consumer.x import y` may name a module y: count the deepest that is one.
            for alias in node.names:
                deeper = f"{target}.{alias.name}"
                yield (deeper if _is_module(deeper) else target), node.lineno


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def member_of(module: str, layers: list[list[str]]) -> tuple[int, str]:
    """(row index, member) holding a ``consumer...`` module; row 0 is the top."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    folder, file = f"{first}/", f"{first}.py"
    for index, row in enumerate(layers):
        for member in row:
            if member in (folder, file):
                return index, member
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def graph() -> dict[str, set[tuple[str, int]]]:
    edges: dict[str, set[tuple[str, int]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        edges[module_name(path)] = {
            (target, line) for target, line in imports_of(path) if target.split(".")[0] == "consumer"
        }
    return edges


@pytest.fixture(scope="module")
def layers() -> list[list[str]]:
    return declared_layers(ARCHITECTURE.read_text())


def test_every_folder_and_module_of_the_package_has_a_layer(layers: list[list[str]]) -> None:
    declared = {member for row in layers for member in row}
    present = {f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    present |= {p.name for p in PACKAGE.glob("*.py")}
    assert present - declared == set(), "add these to the layers in docs/architecture.md"
    assert declared - present == set(), "docs/architecture.md names what is not in the package"


def test_no_import_goes_up_the_layers(layers: list[list[str]]) -> None:
    upward = []
    for module, targets in graph().items():
        row, _ = member_of(module, layers)
        for target, line in sorted(targets):
            target_row, member = member_of(target, layers)
            if target_row < row:
                upward.append(f"{module}:{line} imports {target} ({member} is above)")
    assert upward == []


def test_modules_import_each_other_without_a_cycle() -> None:
    edges = {module: {t for t, _ in targets} for module, targets in graph().items()}
    # a package's __init__ importing its own modules is how it re-exports them, not a cycle
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target in edges and not state.get(target):
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(edges):
        if not state.get(module):
            visit(module, [module])
    assert cycles == []


def test_the_layer_block_is_read_as_written() -> None:
    page = f"{HEADING}\n```\ncli/ __main__.py   the command line\n    and.py more\nkafka/   clients\n```\n"
    assert declared_layers(page) == [["cli/", "__main__.py"], ["kafka/"]]
