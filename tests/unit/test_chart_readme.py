"""The chart's README (and the values table of docs/deploying.md) is what values.yaml generates, every
value of values.yaml has a row and a description (its own comment or its parent's), and the generator
reads comments as helm-docs would."""

from __future__ import annotations

from typing import Any

import yaml

from moderation_devtools import chart_readme

SAMPLE = """\
# The header.

# Above a.
a: 1                # trailing a
b:
  # Above c, with | a pipe,
  # and an example:
  #   - {name: X}
  c: "x"

  d: {e: 1, f: [2]}   # a flow mapping is one row
# an object with a comment
g:
  h: []
i: {}
"""


def leaves(value: Any, path: tuple[str, ...] = ()) -> set[str]:
    """The dotted keys of a values tree's leaves (as the generator's rows: flow mappings aside)."""
    if isinstance(value, dict) and value:
        return {leaf for key, sub in value.items() for leaf in leaves(sub, (*path, str(key)))}
    return {".".join(path)}


def test_the_readme_and_the_docs_table_are_what_values_yaml_generates() -> None:
    assert chart_readme.sync(check=True) == [], f"run {chart_readme.COMMAND}"
    assert chart_readme.BEGIN in chart_readme.DOCS.read_text(), "docs/deploying.md lost its markers"


def test_every_value_has_a_row_with_its_default_and_a_description() -> None:
    text = chart_readme.VALUES.read_text()
    rows = {row.key: row for row in chart_readme.rows(text)}
    values = yaml.safe_load(text)
    flow = {key for key, row in rows.items() if row.default.startswith("{") and row.default != "{}"}
    expected = {leaf for leaf in leaves(values) if not any(leaf.startswith(f"{f}.") for f in flow)}
    assert expected <= rows.keys(), sorted(expected - rows.keys())
    described = {key for key, row in rows.items() if row.description}
    undocumented = [
        key for key in rows if key not in described and not any(key.startswith(f"{d}.") for d in described)
    ]
    assert not undocumented, f"comment these in values.yaml: {undocumented}"
    readme = chart_readme.README.read_text()
    for key, row in rows.items():
        assert f"| `{key}` | {row.type} |" in readme


def test_comments_above_and_after_a_key_describe_it() -> None:
    rows = {row.key: row for row in chart_readme.rows(SAMPLE)}
    assert list(rows) == ["a", "b.c", "b.d", "g", "g.h", "i"]
    assert rows["a"] == chart_readme.Row("a", "int", "1", "Above a. trailing a")
    assert rows["b.c"].description == "Above c, with | a pipe, and an example:<br>`- {name: X}`"
    assert rows["b.c"].default == '"x"'
    assert rows["b.d"] == chart_readme.Row("b.d", "object", '{"e": 1, "f": [2]}', "a flow mapping is one row")
    assert rows["g"] == chart_readme.Row("g", "object", "", "an object with a comment")
    assert rows["g.h"].description == "" and rows["g.h"].type == "list"
    assert rows["i"].type == "object" and rows["i"].default == "{}"
    table = chart_readme.table(SAMPLE)
    assert "with \\| a pipe" in table  # a pipe would split the cell
    assert "The header." not in table


def test_the_docs_page_keeps_everything_outside_its_markers() -> None:
    page = f"# Deploying\n\nbefore\n\n{chart_readme.BEGIN}\nold\n{chart_readme.END}\n\nafter\n"
    done = chart_readme.docs_page(page, SAMPLE)
    assert done.startswith("# Deploying\n\nbefore\n\n") and done.endswith(f"{chart_readme.END}\n\nafter\n")
    assert "old" not in done and "| `b.c` | string |" in done
    assert chart_readme.docs_page("no markers\n", SAMPLE) == "no markers\n"
