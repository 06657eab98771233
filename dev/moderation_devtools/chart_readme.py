"""The chart's README, generated from ``values.yaml`` in the manner of helm-docs.

``python -m moderation_devtools.chart_readme`` writes ``helm/moderation-consumer/README.md`` (with
``examples/values-openshift.yaml`` in it) and the
values table between the markers of ``docs/deploying.md`` (``--check``: exit 1 when either differs,
changing nothing; ``tests/unit/test_chart_readme.py`` runs the check). Each value of ``values.yaml``
is a row: its dotted key, its type, its default and its description, which is the comment block
right above the key (no blank line between) and the comment at the end of its line. A mapping written
as a block is not a row of its own unless it has a comment; its keys are. A sequence, a flow mapping
(``{a: 1}``), an empty mapping and a scalar are rows, their default shown as JSON. Comment lines
indented past ``# `` (examples) are shown as code, one per line.

helm-docs itself (github.com/norwoodj/helm-docs) is not served by the Go module proxy here, hence this.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from moderation_devtools import REPO

__all__ = [
    "BEGIN",
    "COMMAND",
    "DOCS",
    "END",
    "README",
    "VALUES",
    "Row",
    "docs_page",
    "main",
    "readme",
    "rows",
    "sync",
    "table",
]

CHART = REPO / "helm" / "moderation-consumer"
VALUES = CHART / "values.yaml"
CHART_YAML = CHART / "Chart.yaml"
README = CHART / "README.md"
OPENSHIFT = CHART / "examples" / "values-openshift.yaml"
DOCS = REPO / "docs" / "deploying.md"
COMMAND = "python -m moderation_devtools.chart_readme"
BEGIN = f"<!-- the chart's values: generated from helm/moderation-consumer/values.yaml by {COMMAND} -->"
END = "<!-- end of the chart's values -->"


@dataclass(frozen=True)
class Row:
    """One value: its dotted key, its type, its default (JSON) and its description (Markdown)."""

    key: str
    type: str
    default: str
    description: str


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _comment_text(lines: list[str]) -> str:
    """Comment lines (``#`` stripped) as Markdown: prose joined, examples (indented) as code."""
    parts: list[str] = []
    prose: list[str] = []
    for line in lines:
        text = line[1:] if line.startswith("#") else line
        if text.startswith("  ") and text.strip():
            if prose:
                parts.append(" ".join(prose))
                prose = []
            parts.append(f"`{text.strip()}`")
        elif text.strip():
            prose.append(text.strip())
    if prose:
        parts.append(" ".join(prose))
    return "<br>".join(parts)


def _above(lines: list[str], line: int) -> list[str]:
    """The comment block right above ``line`` (0-based), without a blank line between."""
    block: list[str] = []
    i = line - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip())
        i -= 1
    return block


def _trailing(lines: list[str], mark: yaml.Mark) -> list[str]:
    """The comment at the end of ``mark``'s line, after ``mark``'s column (a ``:`` may come first)."""
    rest = lines[mark.line][mark.column :].lstrip().removeprefix(":").strip()
    return [rest] if rest.startswith("#") else []


def _is_leaf(node: yaml.Node) -> bool:
    if isinstance(node, yaml.MappingNode):
        return bool(node.flow_style) or not node.value
    return True


def rows(text: str) -> list[Row]:
    """The rows of a values file, in its order."""
    lines = text.splitlines()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    data = yaml.safe_load(text)
    found: list[Row] = []

    def walk(node: yaml.MappingNode, path: tuple[str, ...], value: dict[str, Any]) -> None:
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = (*path, key)
            sub = value[key]
            above = _above(lines, key_node.start_mark.line)
            if _is_leaf(value_node):
                one_line = value_node.end_mark.line == key_node.start_mark.line
                trailing = _trailing(lines, value_node.end_mark if one_line else key_node.end_mark)
                found.append(
                    Row(
                        ".".join(here),
                        _type(sub),
                        json.dumps(sub, ensure_ascii=False),
                        _comment_text(above + trailing),
                    )
                )
            else:
                assert isinstance(value_node, yaml.MappingNode)
                comment = _comment_text(above + _trailing(lines, key_node.end_mark))
                if comment:
                    found.append(Row(".".join(here), "object", "", comment))
                walk(value_node, here, sub)

    if isinstance(root, yaml.MappingNode) and isinstance(data, dict):
        walk(root, (), data)
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(values_text: str) -> str:
    """The values as a Markdown table (Key, Type, Default, Description)."""
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows(values_text):
        default = f"`{_cell(row.default)}`" if row.default else ""
        out.append(f"| `{row.key}` | {row.type} | {default} | {_cell(row.description)} |")
    return "\n".join(out) + "\n"


def _header(values_text: str) -> str:
    """The comment block that opens ``values.yaml`` (before its first blank line)."""
    lines: list[str] = []
    for line in values_text.splitlines():
        if not line.strip().startswith("#"):
            break
        lines.append(line.strip())
    return _comment_text(lines)


def readme(values_text: str, chart_yaml: dict[str, Any], openshift: str) -> str:
    """``helm/moderation-consumer/README.md`` (``openshift``: the text of the OpenShift example)."""
    return f"""# {chart_yaml["name"]}

<!-- generated from values.yaml and Chart.yaml by {COMMAND}; edit those, then run it -->

{" ".join(str(chart_yaml["description"]).split())}

Chart version `{chart_yaml["version"]}`, app version `{chart_yaml["appVersion"]}`, Kubernetes
`{chart_yaml["kubeVersion"]}`. The guide (building the image, the Secret, a production values file,
scaling, upgrades, OpenShift, the checks) is [docs/deploying.md](../../docs/deploying.md).

## Installing

```bash
kubectl -n moderation create secret generic moderation-keys --from-file=hive-visual-key=… # see the guide
helm upgrade --install moderation helm/moderation-consumer -n moderation -f values-prod.yaml
helm test moderation -n moderation      # a pod asks the Service's /readyz until a pod is ready
```

On OpenShift add `-f helm/moderation-consumer/examples/values-openshift.yaml`: the namespace's
security context constraint then assigns the UID, the GID and the fsGroup.

```yaml
{openshift.rstrip()}
```

## Values

{_header(values_text)}

{table(values_text)}"""


def docs_page(current: str, values_text: str) -> str:
    """``docs/deploying.md`` with the table between its markers replaced (unchanged without them)."""
    if BEGIN not in current or END not in current:
        return current
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{table(values_text)}\n{END}{tail}"


def sync(check: bool = False) -> list[Path]:
    """The files that differ from what they should be; written unless ``check``."""
    values_text = VALUES.read_text()
    chart_yaml = yaml.safe_load(CHART_YAML.read_text())
    wanted = {README: readme(values_text, chart_yaml, OPENSHIFT.read_text())}
    if DOCS.exists():
        wanted[DOCS] = docs_page(DOCS.read_text(), values_text)
    stale: list[Path] = []
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not check:
                path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = sync(check=args.check)
    for path in stale:
        rel = path.relative_to(REPO)
        print(f"{rel} is out of date: run {COMMAND}" if args.check else f"wrote {rel}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
