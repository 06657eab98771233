"""The cluster scenarios' figures as a table: every run's rows of ``results.jsonl`` (one per scenario
and mode, appended by each run) folded per scenario and mode: the worst missing and duplicates and
dead letters over the runs, the median stall, recovery and time not ready.

``python -m tests.chaos.cluster.results [FILE]`` prints it in Markdown (what docs/cluster.md shows).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["MAX_LINE_BYTES", "bounded_lines", "fold", "read_rows", "table"]

MAX_LINE_BYTES = 64 << 10
ORDER = [
    "input-leader-killed",
    "coordinator-killed",
    "isr-below-min",
    "broker-isolated",
    "controller-lost",
    "rolling-brokers",
    "member-cut-off",
    "rolling-members",
]


def bounded_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Its lines, none read whole past ``MAX_LINE_BYTES`` (a longer one comes out cut at that
    length plus one byte, the rest of it skipped)."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        yield line
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass


def read_rows(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows, and one line per line skipped (too long, not JSON, not a row with the figures)."""
    rows, skipped = [], []
    for number, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE_BYTES:
            skipped.append(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            skipped.append(f"line {number}: not JSON")
            continue
        needed = {"scenario": str, "mode": str, "uploads": int, "missing": int, "duplicates": int}
        if not isinstance(row, dict) or not all(isinstance(row.get(k), t) for k, t in needed.items()):
            skipped.append(f"line {number}: not a scenario's figures")
            continue
        rows.append(row)
    return rows, skipped


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def fold(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per scenario and mode, in the scenarios' order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["mode"]), []).append(row)

    def rank(key: tuple[str, str]) -> tuple[int, str, str]:
        return (ORDER.index(key[0]) if key[0] in ORDER else len(ORDER), key[0], key[1])

    folded = []
    for key in sorted(groups, key=rank):
        runs = groups[key]
        not_ready = [
            max((_number(v) for v in r.get("not_ready_s", {}).values()), default=0.0)
            if isinstance(r.get("not_ready_s"), dict)
            else 0.0
            for r in runs
        ]
        folded.append(
            {
                "scenario": key[0],
                "mode": key[1],
                "runs": len(runs),
                "uploads": int(statistics.median(r["uploads"] for r in runs)),
                "missing": max(r["missing"] for r in runs),
                "duplicates": max(r["duplicates"] for r in runs),
                "dead_letters": max(int(_number(r.get("dead_letters"))) for r in runs),
                "stall_s": statistics.median(_number(r.get("stall_s")) for r in runs),
                "recover_s": statistics.median(_number(r.get("recover_s")) for r in runs),
                "not_ready_s": statistics.median(not_ready),
            }
        )
    return folded


def table(folded: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | mode | runs | uploads (median) | missing (worst) | duplicates (worst) | dead letters"
        " (worst) | verdicts stalled s (median) | recovered s after the heal (median) | longest not"
        " ready s (median) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    return head + "".join(
        f"| {f['scenario']} | `{f['mode']}` | {f['runs']} | {f['uploads']:,} | {f['missing']} |"
        f" {f['duplicates']} | {f['dead_letters']} | {f['stall_s']:.1f} | {f['recover_s']:.1f} |"
        f" {f['not_ready_s']:.1f} |\n"
        for f in folded
    )


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else ".local/chaos-cluster/results.jsonl")
    if not path.is_file():
        print(f"error: {path}: no results file (run make chaos-cluster first)", file=sys.stderr)
        return 1
    with path.open("rb") as lines:
        rows, skipped = read_rows(bounded_lines(lines))
    for line in skipped:
        print(f"{path}: {line} (skipped)", file=sys.stderr)
    print(table(fold(rows)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
