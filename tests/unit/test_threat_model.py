"""``docs/threat-model.md`` drives the tests: every row of its table has every column filled, and
every test it names exists (the file, and the function in it, or the class and its method)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "docs" / "threat-model.md"
COLUMNS = ["Surface", "Who can write it", "What we assume", "Bound / defense", "Tests"]
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)*)`")


def _rows() -> list[list[str]]:
    """The cells of the surface table's rows (the header and its rule excluded)."""
    lines = [line.strip() for line in MODEL.read_text().splitlines()]
    start = lines.index("| " + " | ".join(COLUMNS) + " |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


@cache
def _names(path: Path) -> frozenset[str]:
    """``name`` of each module-level function and ``Class::name`` of each method of a test file."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef):
            found.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(found)


def test_every_row_fills_every_column() -> None:
    rows = _rows()
    assert len(rows) >= 15  # one per surface the design names
    for row in rows:
        assert len(row) == len(COLUMNS), row[0]
        assert all(cell and cell != "-" for cell in row), row[0]
        assert TEST_ID.search(row[-1]), f"{row[0]}: no test named"


def test_every_named_test_exists() -> None:
    missing = []
    for row in _rows():
        for file, parts in TEST_ID.findall(row[-1]):
            path = ROOT / file
            if not path.is_file():
                missing.append(f"{row[0]}: {file} does not exist")
            elif parts and parts.removeprefix("::") not in _names(path):
                missing.append(f"{row[0]}: {file}{parts} does not exist")
    assert not missing, "\n".join(missing)
