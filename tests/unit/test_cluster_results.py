"""The cluster scenarios' results file folded into the docs' table, and hostile lines in it."""

from __future__ import annotations

import io
import json

from tests.chaos.cluster.results import MAX_LINE_BYTES, bounded_lines, fold, read_rows, table


def row(scenario: str, mode: str, **figures: object) -> bytes:
    base = {"scenario": scenario, "mode": mode, "uploads": 2000, "missing": 0, "duplicates": 0}
    return json.dumps({**base, **figures}).encode() + b"\n"


def test_runs_fold_into_the_worst_counts_and_the_median_times() -> None:
    lines = [
        row("rolling-members", "exactly_once", stall_s=1.0, recover_s=3.0, not_ready_s={"a": 1.5, "b": 0.5}),
        row("input-leader-killed", "at_least_once", duplicates=12, stall_s=5.0, recover_s=10.0),
        row("input-leader-killed", "at_least_once", duplicates=40, stall_s=7.0, recover_s=20.0),
        row(
            "input-leader-killed", "at_least_once", duplicates=3, stall_s=6.0, recover_s=30.0, dead_letters=1
        ),
    ]
    rows, skipped = read_rows(lines)
    folded = fold(rows)
    assert skipped == []
    assert [(f["scenario"], f["runs"]) for f in folded] == [
        ("input-leader-killed", 3),
        ("rolling-members", 1),
    ]
    first = folded[0]
    assert (first["duplicates"], first["dead_letters"], first["stall_s"], first["recover_s"]) == (
        40,
        1,
        6.0,
        20.0,
    )
    assert folded[1]["not_ready_s"] == 1.5
    assert "| input-leader-killed | `at_least_once` | 3 | 2,000 | 0 | 40 | 1 | 6.0 | 20.0 | 0.0 |" in table(
        folded
    )


def test_lines_that_are_not_figures_are_named_and_skipped() -> None:
    lines = [b"not json\n", b"[1, 2]\n", json.dumps({"scenario": "x", "mode": 3}).encode(), row("a", "b")]
    rows, skipped = read_rows(lines)
    assert len(rows) == 1
    assert skipped == [
        "line 1: not JSON",
        "line 2: not a scenario's figures",
        "line 3: not a scenario's figures",
    ]


def test_an_endless_line_is_read_no_further_than_the_bound() -> None:
    stream = io.BytesIO(
        b"x" * (5 * MAX_LINE_BYTES) + b"\n" + row("a", "b") + b'{"oops": ' + b"9" * MAX_LINE_BYTES * 2
    )
    lines = list(bounded_lines(stream))
    assert all(len(line) <= MAX_LINE_BYTES + 1 for line in lines)
    rows, skipped = read_rows(lines)
    assert [r["scenario"] for r in rows] == ["a"]
    assert skipped == [
        f"line 1: longer than {MAX_LINE_BYTES} bytes",
        f"line 3: longer than {MAX_LINE_BYTES} bytes",
    ]


def test_figures_of_the_wrong_type_count_as_nothing() -> None:
    rows, _ = read_rows([row("a", "b", stall_s="slow", recover_s=True, not_ready_s=[1], dead_letters="many")])
    (folded,) = fold(rows)
    assert (folded["stall_s"], folded["recover_s"], folded["not_ready_s"], folded["dead_letters"]) == (
        0,
        0,
        0,
        0,
    )
